"""Model families of the three papers, by name.

The registry is an explicit dict (no registration on import). Every builder is
keyword-only and takes at least ``precision``, ``input_bits``, ``num_classes`` and
``input_shape``; it returns an uncompiled Keras model that maps ``[0, 1]`` pixels to
logits.

Example:
    >>> model = edgebnn.zoo.get("panda_fcn2")(precision="binary", input_bits=2)
"""

from edgebnn.zoo import panda_fcn

#: name -> (builder, precisions it supports)
_REGISTRY = {
    "panda_fcn1": (panda_fcn.fcn1, panda_fcn.PRECISIONS),
    "panda_fcn2": (panda_fcn.fcn2, panda_fcn.PRECISIONS),
}


def names():
    """Sorted names of all model families."""
    return sorted(_REGISTRY)


def get(name):
    """The builder of model family ``name``; raises ``ValueError`` listing valid names."""
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise ValueError(f"Unknown model family {name!r}; valid names: {names()}.") from None


def precisions(name):
    """The precisions model family ``name`` supports."""
    get(name)
    return _REGISTRY[name][1]


__all__ = ["get", "names", "precisions"]
