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

Example:
    >>> model = edgebnn.zoo.get("panda_fcn2")(precision="binary", input_bits=2)
"""

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


__all__ = ["MNIST_SHAPED", "get", "names", "precisions"]
