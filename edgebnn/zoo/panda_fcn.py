"""Panda et al.'s MNIST fully-connected networks: FCN1 784-6144x4-10, FCN2 784-600x4-10.

Reference: P. Panda, I. Chakraborty, K. Roy, "Discretization based solutions for
secure machine learning against adversarial attacks", IEEE Access 2019.
"""

import functools

from edgebnn._validate import positive_int
from edgebnn.zoo.common import BATCH_NORM, BINARY_FIRST, BINARY_HIDDEN, model_input

import larq as lq
import tensorflow as tf

PRECISIONS = ("float", "binary")
#: Hidden width of each of the four hidden layers.
FCN1_UNITS = 6144
FCN2_UNITS = 600
HIDDEN_LAYERS = 4


def build_fcn(
    *,
    hidden_units,
    hidden_layers=HIDDEN_LAYERS,
    precision="float",
    input_bits=None,
    num_classes=10,
    input_shape=(28, 28, 1),
    name=None,
):
    """Fully-connected network ``prod(input_shape)-hidden_units x hidden_layers-num_classes``.

    ``float``: Dense -> BatchNorm -> ReLU per hidden layer. ``binary`` (BNN layout,
    Courbariaux et al. 2016): ``QuantDense`` with sign/STE weights clipped to [-1, 1]
    and no bias, each followed by BatchNorm; every layer's input is binarized by the
    next layer's ``input_quantizer`` except the first, which sees the (possibly
    discretized) pixels. The output layer is binary too, followed by BatchNorm.

    Args:
        hidden_units: width of every hidden layer.
        hidden_layers: number of hidden layers.
        precision: ``"float"`` or ``"binary"``.
        input_bits, num_classes, input_shape, name: the arguments every builder shares (:mod:`edgebnn.zoo`).

    Returns:
        An uncompiled ``tf.keras.Model`` mapping ``[0, 1]`` pixels to logits.
    """
    family = "panda_fcn"
    inputs, x = model_input(
        family, precision, PRECISIONS, input_bits=input_bits, num_classes=num_classes, input_shape=input_shape)
    positive_int(hidden_units, "hidden_units", prefix=f"{family}: ")
    positive_int(hidden_layers, "hidden_layers", prefix=f"{family}: ")
    x = tf.keras.layers.Flatten()(x)
    for i in range(hidden_layers):
        if precision == "float":
            x = tf.keras.layers.Dense(hidden_units, use_bias=False, name=f"dense_{i}")(x)
            x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_{i}")(x)
            x = tf.keras.layers.Activation("relu", name=f"relu_{i}")(x)
        else:
            quant = BINARY_FIRST if i == 0 else BINARY_HIDDEN
            x = lq.layers.QuantDense(hidden_units, use_bias=False, **quant, name=f"dense_{i}")(x)
            x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_{i}")(x)
    if precision == "float":
        logits = tf.keras.layers.Dense(num_classes, name="logits")(x)
    else:
        x = lq.layers.QuantDense(num_classes, use_bias=False, **BINARY_HIDDEN, name="dense_out")(x)
        logits = tf.keras.layers.BatchNormalization(**BATCH_NORM, name="logits")(x)
    bits = "" if input_bits is None else f"_in{input_bits}"
    return tf.keras.Model(inputs, logits, name=name or f"fcn{hidden_units}_{precision}{bits}")


fcn1 = functools.partial(build_fcn, hidden_units=FCN1_UNITS)
fcn2 = functools.partial(build_fcn, hidden_units=FCN2_UNITS)
