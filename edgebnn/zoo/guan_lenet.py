"""Guan et al.'s LeNet in float, binary, stochastic-binary and 2/3/4-bit precision.

The topology is LeNet-5 (LeCun et al. 1998) for 28x28 inputs: conv 6@5x5 "same" -
max-pool 2 - conv 16@5x5 - max-pool 2 - dense 120 - dense 84 - dense classes, with
(Monte-Carlo) dropout after the 120- and 84-unit layers. Guan et al. train it with
dropout 0.5 and estimate uncertainty from 50 stochastic passes (their Eq. 12, see
:func:`edgebnn.evaluation.uncertainty.predict_mc`); their randomized BNN uses
dropout 0 or 0.05.

``"float"``: plain layers with biases and ReLU. Quantized precisions
(``"binary"``, ``"stochastic_binary"``, ``"2bit"``, ``"3bit"``, ``"4bit"``): Larq layers
without bias, each followed by BatchNorm (after max-pooling for convolutions), the
quantizers of :func:`edgebnn.zoo.common.layer_quantizers` (every layer but the first
quantizes its input; k-bit inputs are DoReFa activations in [0, 1]); the output layer
is quantized too and its BatchNorm gives the logits.
"""

from edgebnn.layers import MCDropout
from edgebnn.zoo.common import BATCH_NORM, KBIT_PRECISIONS, conv, dense, input_stem, layer_quantizers, model_name
from edgebnn.zoo.common import validate_common

import tensorflow as tf

PRECISIONS = ("float", "binary", "stochastic_binary", *KBIT_PRECISIONS)
#: LeNet-5 widths: convolution filters and hidden dense units.
CONV_FILTERS = (6, 16)
DENSE_UNITS = (120, 84)
KERNEL_SIZE = 5
#: Guan et al.'s MC-dropout rate.
DEFAULT_DROPOUT_RATE = 0.5


def guan_lenet(
    *,
    precision="float",
    dropout_rate=DEFAULT_DROPOUT_RATE,
    mc_dropout=False,
    input_bits=None,
    num_classes=10,
    input_shape=(28, 28, 1),
    name=None,
):
    """LeNet-5 in one of Guan et al.'s precisions, with (MC) dropout.

    Args:
        precision: one of :data:`PRECISIONS`.
        dropout_rate: dropout after the two hidden dense layers, in ``[0, 1)``.
        mc_dropout: keep dropout active at inference (Monte-Carlo dropout). With the
            default ``False`` dropout only acts in training and, except for
            ``"stochastic_binary"``, the model is deterministic at inference.
        input_bits: ``None`` or 1..8: prepend :class:`~edgebnn.layers.InputDiscretization`.
        num_classes: output classes.
        input_shape: shape of one input image.
        name: model name.

    Returns:
        An uncompiled ``tf.keras.Model`` mapping ``[0, 1]`` pixels to logits.

    Raises:
        TypeError, ValueError: bad ``dropout_rate``, ``mc_dropout`` or shared builder argument.
    """
    family = "guan_lenet"
    input_shape = validate_common(
        family=family, precision=precision, precisions=PRECISIONS,
        input_bits=input_bits, num_classes=num_classes, input_shape=input_shape,
    )
    if not isinstance(mc_dropout, bool):
        raise TypeError(f"{family}: `mc_dropout` must be a bool, got {mc_dropout!r}.")
    floating = precision == "float"
    activation = "relu" if floating else None
    post = {"use_bias": floating, "activation": activation}
    inputs, x = input_stem(input_shape, input_bits)
    for i, filters in enumerate(CONV_FILTERS):
        x = conv(filters, KERNEL_SIZE, quant=layer_quantizers(precision, first=i == 0),
                 padding="same" if i == 0 else "valid", name=f"conv_{i}", **post)(x)
        x = tf.keras.layers.MaxPool2D(2, name=f"pool_{i}")(x)
        if not floating:
            x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_conv_{i}")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(DENSE_UNITS):
        x = dense(units, quant=layer_quantizers(precision), name=f"dense_{i}", **post)(x)
        if not floating:
            x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_dense_{i}")(x)
        x = MCDropout(dropout_rate, always_on=mc_dropout, name=f"dropout_{i}")(x)
    if floating:
        logits = tf.keras.layers.Dense(num_classes, name="logits")(x)
    else:
        x = dense(num_classes, quant=layer_quantizers(precision), use_bias=False, name="dense_out")(x)
        logits = tf.keras.layers.BatchNormalization(**BATCH_NORM, name="logits")(x)
    suffix = "_mc" if mc_dropout else ""
    return tf.keras.Model(inputs, logits, name=name or model_name(family, precision, input_bits) + suffix)
