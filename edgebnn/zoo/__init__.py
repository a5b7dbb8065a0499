"""Model families of the three papers, by name.

The registry is an explicit dict (no registration on import). Every builder is
keyword-only and returns an uncompiled Keras model that maps ``[0, 1]`` pixels to
logits. Besides ``precision`` and its own options (table below), every builder takes:

- ``input_bits``: ``None``, or 1..8 to prepend :class:`~edgebnn.layers.InputDiscretization`
  (the input pixels reduced to ``2**input_bits`` levels inside the graph);
- ``num_classes``: output classes (at least 2);
- ``input_shape``: shape of one input image (positive ints);
- ``name``: model name, by default ``<family>_<precision>[_in<bits>]``.

=========================  ===========================================  ==============
name                       precisions                                   extra keywords
=========================  ===========================================  ==============
``panda_fcn1``             float, binary                                --
``panda_fcn2``             float, binary                                --
``panda_alexnet_cifar10``  float, binary                                ``inflation``
``binarynet_vgg_cifar10``  float, binary                                --
``panda_resnet20_cifar100`` float, xnor                                 --
``panda_alexnet_imagenet`` float, xnor (shape-tested only)              --
``galloway_cnn``           A, B, C, S                                   ``kernels``
``guan_lenet``             float, binary, stochastic_binary, 2/3/4bit   ``dropout_rate``, ``mc_dropout``, ``kbit_activations``
=========================  ===========================================  ==============

Other packages add families through the entry point group ``edgebnn.families``
(:data:`ENTRY_POINT_GROUP`): each entry point names a builder of the same form (keyword-only
``precision``, ``input_bits``, ``num_classes``, ``input_shape``, and its own options) whose
``precisions`` attribute lists the precisions it supports. In the plugin's ``pyproject.toml``::

    [project.entry-points."edgebnn.families"]
    my_bnn = "my_package.models:my_bnn"

A recipe then says ``model.family = "my_bnn"``. Built-in names cannot be replaced.

Example:
    >>> model = edgebnn.zoo.get("panda_fcn2")(precision="binary", input_bits=2)
"""

from importlib import metadata

from edgebnn.zoo import eev, galloway_cnn, guan_lenet, panda_cnn, panda_fcn

#: name -> (builder, precisions it supports)
_REGISTRY = {
    "panda_fcn1": (panda_fcn.fcn1, panda_fcn.PRECISIONS),
    "panda_fcn2": (panda_fcn.fcn2, panda_fcn.PRECISIONS),
    "panda_alexnet_cifar10": (panda_cnn.alexnet_cifar10, panda_cnn.ALEXNET_CIFAR10_PRECISIONS),
    "binarynet_vgg_cifar10": (panda_cnn.binarynet_vgg_cifar10, panda_cnn.BINARYNET_VGG_PRECISIONS),
    "panda_resnet20_cifar100": (panda_cnn.resnet20_cifar100, panda_cnn.RESNET20_PRECISIONS),
    "panda_alexnet_imagenet": (panda_cnn.alexnet_imagenet, panda_cnn.ALEXNET_IMAGENET_PRECISIONS),
    "galloway_cnn": (galloway_cnn.galloway_cnn, galloway_cnn.PRECISIONS),
    "guan_lenet": (guan_lenet.guan_lenet, guan_lenet.PRECISIONS),
    "eev_bnn": (eev.build_verifiable, eev.PRECISIONS),
}

#: Model families whose default input is a 28x28 grayscale image (Fashion-MNIST-ready).
MNIST_SHAPED = ("panda_fcn1", "panda_fcn2", "galloway_cnn", "guan_lenet")


#: Entry point group through which other packages register model families.
ENTRY_POINT_GROUP = "edgebnn.families"


def _plugins():
    """``{name: entry point}`` of the families other packages register (read on every call,
    so that a package installed during a session is seen)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def names():
    """Sorted names of all model families, built-in and registered by other packages."""
    return sorted(set(_REGISTRY) | set(_plugins()))


def _load_plugin(name, entry_point):
    """``(builder, precisions)`` of the registered family ``name``.

    Raises:
        ValueError: the entry point cannot be loaded, names a built-in family, is not
            callable, or its builder has no ``precisions``.
    """
    where = f"family {name!r} (entry point {entry_point.value!r} in group {ENTRY_POINT_GROUP!r})"
    if name in _REGISTRY:
        raise ValueError(f"{where} would replace the built-in family of that name; rename it.")
    try:
        builder = entry_point.load()
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{where} cannot be loaded: {e}.") from None
    if not callable(builder):
        raise ValueError(f"{where} is not callable, got {type(builder).__name__}.")
    supported = getattr(builder, "precisions", None)
    if not isinstance(supported, (tuple, list)) or not supported or not all(isinstance(p, str) for p in supported):
        raise ValueError(f"{where}: the builder needs a `precisions` attribute, a non-empty tuple of names.")
    return builder, tuple(supported)


def _entry(name):
    if name in _REGISTRY:
        return _REGISTRY[name]
    plugins = _plugins()
    if name in plugins:
        return _load_plugin(name, plugins[name])
    raise ValueError(f"Unknown model family {name!r}; valid names: {names()}.")


def get(name):
    """The builder of model family ``name``; raises ``ValueError`` listing valid names."""
    return _entry(name)[0]


def precisions(name):
    """The precisions model family ``name`` supports."""
    return _entry(name)[1]


__all__ = ["ENTRY_POINT_GROUP", "MNIST_SHAPED", "get", "names", "precisions"]
