"""Guan et al.'s LeNet in float, binary, stochastic-binary and 2/3/4-bit precision.

Guan et al. use "the LeNet structure for all the networks with the only difference being
if the weights are quantized and how they are quantized", and give no layer sizes. We
use LeNet-5's (LeCun et al. 1998), adapted to 28x28 inputs: conv 6@5x5 "same" (LeNet-5
pads MNIST to 32x32, which "same" padding reproduces) - max-pool 2 - conv 16@5x5 valid -
max-pool 2 - dense 120 - dense 84 - dense classes, with (Monte-Carlo) dropout after the
120- and 84-unit layers. Guan et al. train with dropout 0.5 and estimate uncertainty from
50 stochastic passes (their Eq. 12, see :func:`edgebnn.evaluation.uncertainty.predict_mc`);
their randomized BNN uses dropout 0 or 0.05.

Every precision has the same layers: each convolution and dense layer has no bias and is
followed by BatchNorm (after max-pooling for convolutions); the output layer's BatchNorm
gives the logits. What differs is only what the paper says differs:

- ``"float"``: real weights; ReLU after each hidden BatchNorm (a full-precision network).
- ``"binary"``: Courbariaux et al.'s BNN, sign/STE weights, and every layer but the first
  binarizes its input (:func:`edgebnn.zoo.common.layer_quantizers`).
- ``"stochastic_binary"``: the randomized BNN, stochastically binarized weights.
- ``"2bit"`` / ``"3bit"`` / ``"4bit"``: "a static BNN with quantized weight values":
  the BNN with k-bit weights (Guan Eq. 11) and the BNN's binary activations.
  ``kbit_activations=True`` also quantizes the activations to k bits (DoReFa, in
  [0, 1]), a variant the paper does not use.

Dropout acts on what the next layer receives, as in Courbariaux et al.'s BinaryNet (BatchNorm,
sign, then dropout): in the quantized networks the next layer's input quantizer moves into the
dropout layer (:class:`~edgebnn.layers.MCDropout` with ``input_quantizer``), so a dropped unit
reaches the next layer as 0. Dropout before a sign would drop nothing: Larq's sign maps the
dropped 0 to +1.

Hidden BatchNorms have no scale (the next layer's sign or weights absorb it, as in
Larq's BNN examples); the output BatchNorm learns a scale so that every model can learn
how confident its softmax is, which the paper's uncertainty tables measure.
"""

from edgebnn import _validate
from edgebnn.layers import MCDropout
from edgebnn.zoo.common import BATCH_NORM, KBIT_PRECISIONS, conv, dense, layer_quantizers, model_input, model_name

import tensorflow as tf

PRECISIONS = ("float", "binary", "stochastic_binary", *KBIT_PRECISIONS)
#: LeNet-5 widths: convolution filters and hidden dense units.
CONV_FILTERS = (6, 16)
DENSE_UNITS = (120, 84)
KERNEL_SIZE = 5
#: Guan et al.'s MC-dropout rate.
DEFAULT_DROPOUT_RATE = 0.5
#: BatchNorm of the output layer: as the hidden ones, with a learned scale (the logits' temperature).
OUTPUT_BATCH_NORM = {**BATCH_NORM, "scale": True}


def guan_lenet(
    *,
    precision="float",
    dropout_rate=DEFAULT_DROPOUT_RATE,
    mc_dropout=False,
    kbit_activations=False,
    input_bits=None,
    num_classes=10,
    input_shape=(28, 28, 1),
    name=None,
):
    """LeNet-5 in one of Guan et al.'s precisions, with (MC) dropout.

    Args:
        precision: one of :data:`PRECISIONS`.
        dropout_rate: dropout after the two hidden dense layers, in ``[0, 1)``.
        mc_dropout: keep dropout active at inference (Monte-Carlo dropout; predict with
            :func:`~edgebnn.evaluation.uncertainty.predict_mc`). With the default
            ``False`` dropout only acts in training and, except for
            ``"stochastic_binary"``, the model is deterministic at inference (and
            converts with LCE; :func:`edgebnn.deploy.convert` refuses a model that samples
            at inference).
        kbit_activations: only for ``"2bit"`` / ``"3bit"`` / ``"4bit"``: quantize the
            hidden layers' inputs to k bits too, instead of the paper's binary ones.
        input_bits, num_classes, input_shape, name: the arguments every builder shares (:mod:`edgebnn.zoo`).

    Returns:
        An uncompiled ``tf.keras.Model`` mapping ``[0, 1]`` pixels to logits.

    Raises:
        TypeError, ValueError: bad ``dropout_rate``, ``mc_dropout``, ``kbit_activations``
            or shared builder argument.
    """
    family = "guan_lenet"
    inputs, x = model_input(
        family, precision, PRECISIONS, input_bits=input_bits, num_classes=num_classes, input_shape=input_shape)
    _validate.number(dropout_rate, "dropout_rate", low=0, high=1, high_open=True, type_error=True, prefix=f"{family}: ")
    _validate.boolean(mc_dropout, "mc_dropout", prefix=f"{family}: ")
    _validate.boolean(kbit_activations, "kbit_activations", prefix=f"{family}: ")
    if kbit_activations and precision not in KBIT_PRECISIONS:
        raise ValueError(f"{family}: `kbit_activations=True` needs a precision in {list(KBIT_PRECISIONS)}, "
                         f"got {precision!r}.")
    floating = precision == "float"

    def quant(first=False):
        return layer_quantizers(precision, first=first, kbit_inputs=kbit_activations)

    def quantized_input():
        """A dense layer's quantizers when the dropout before it has quantized its input already."""
        kwargs = quant()
        if kwargs is not None:
            kwargs.pop("input_quantizer")
        return kwargs

    def normalize(x, label):
        x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_{label}")(x)
        return tf.keras.layers.ReLU(name=f"relu_{label}")(x) if floating else x

    for i, filters in enumerate(CONV_FILTERS):
        x = conv(filters, KERNEL_SIZE, quant=quant(first=i == 0), padding="same" if i == 0 else "valid",
                 use_bias=False, name=f"conv_{i}")(x)
        x = tf.keras.layers.MaxPool2D(2, name=f"pool_{i}")(x)
        x = normalize(x, f"conv_{i}")
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(DENSE_UNITS):
        x = dense(units, quant=quant() if i == 0 else quantized_input(), use_bias=False, name=f"dense_{i}")(x)
        x = normalize(x, f"dense_{i}")
        # The next layer's input quantizer moves into the dropout, which quantizes and then drops (BinaryNet's
        # order): dropped before a sign, a unit would reach the next layer as sign(0) = +1, not as 0.
        x = MCDropout(dropout_rate, always_on=mc_dropout,
                      input_quantizer=None if floating else quant()["input_quantizer"], name=f"dropout_{i}")(x)
    x = dense(num_classes, quant=quantized_input(), use_bias=False, name="dense_out")(x)
    logits = tf.keras.layers.BatchNormalization(**OUTPUT_BATCH_NORM, name="logits")(x)
    suffix = ("_kbitact" if kbit_activations else "") + ("_mc" if mc_dropout else "")
    return tf.keras.Model(inputs, logits, name=name or model_name(family, precision, input_bits) + suffix)
