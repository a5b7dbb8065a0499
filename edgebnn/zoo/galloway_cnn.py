"""Galloway et al.'s CNN: the CleverHans tutorial base CNN, float / binary / scaled / stochastic.

Reference: A. Galloway, G. W. Taylor, M. Moussa, "Attacking binarized neural
networks", ICLR 2018, and their code (github.com/AngusG/cleverhans-attacking-bnns,
``cleverhans_tutorials/tutorial_models.py``): conv 8x8/2 "same" with K kernels,
conv 6x6/2 "valid" with 2K, conv 5x5/1 "valid" with 2K, dense to the classes; no
biases anywhere.

Variants (the ``precision`` argument):

- ``"A"``: full precision, ReLU after every convolution.
- ``"B"``: the second and third convolutions are binary (sign/STE weights and
  inputs); each is preceded by BatchNorm (centering only) "before quantizing
  activations", and followed by ReLU. The first layer and the dense output stay
  float.
- ``"C"``: B with a learned scalar (:class:`~edgebnn.layers.LearnedScale`, initial
  0.05) after the ReLU of each binary layer (their ``SReLU``).
- ``"S"``: C whose third convolution samples its binary weights stochastically
  (:class:`~edgebnn.quantizers.StochasticSign`) at every forward pass.

``binary_first=True`` (not in the paper, B/C/S only) gives the first convolution
binary weights (sign/STE, clipped) on real-valued input, the BNN convention of
Hubara et al. (2016) and Larq. With a discretized input that layer then deploys as
binary convolutions over bit planes (:mod:`edgebnn.deploy.rewrite`), so the whole
convolutional stack is binary on the device; with the paper's float first layer it
cannot be.

``classifier_bits=k`` (not in the paper either) quantizes the dense output layer's
weights with Guan et al.'s k-bit weight quantizer (:class:`~edgebnn.quantizers.KBitWeight`,
the grid ``i / 2**(k-1)`` in ``[-1, 1]``). For ``k <= 7`` every such weight is exactly an
int8 times ``2**(1-k)``, so deployment stores the classifier as int8 at no loss
(:mod:`edgebnn.deploy.storage`), where a float classifier rounded to int8 after
training changes predictions (measured: 1.1% of Fashion-MNIST test images).
"""

from edgebnn import _validate, quantizers
from edgebnn.ops import validate_bits
from edgebnn.layers import LearnedScale
from edgebnn.zoo.common import BINARY_FIRST, BINARY_HIDDEN, conv, model_input

import larq as lq
import tensorflow as tf

PRECISIONS = ("A", "B", "C", "S")
#: Numbers of first-layer kernels K the paper evaluates (32 only for B and B+ in its Table 3).
KERNELS = (32, 64, 128, 256)
#: BatchNorm epsilon of Galloway et al.'s code (``BN_EPSILON``).
BN_EPSILON = 1e-5
#: Initial standard deviation of binary (and stochastic) kernels in their code (truncated normal).
BINARY_INIT_STDDEV = 0.2


def galloway_cnn(*, precision="A", kernels=64, input_bits=None, binary_first=False, classifier_bits=None,
                 num_classes=10, input_shape=(28, 28, 1), name=None):
    """The CleverHans base CNN in Galloway et al.'s variant ``precision`` with ``kernels`` = K.

    Args:
        precision: ``"A"``, ``"B"``, ``"C"`` or ``"S"`` (see the module docstring).
        kernels: K, one of 32, 64, 128, 256 (the second and third convolutions have 2K).
        binary_first: binary weights in the first convolution (B, C, S; not in the paper).
        classifier_bits: ``None`` (float) or 1..8: k-bit weights in the dense output layer.
        input_bits, num_classes, input_shape, name: the arguments every builder shares (:mod:`edgebnn.zoo`).

    Returns:
        An uncompiled ``tf.keras.Model`` mapping ``[0, 1]`` pixels to logits.

    Raises:
        ValueError: bad ``precision``, ``kernels`` or shared builder argument.
    """
    family = "galloway_cnn"
    inputs, x = model_input(
        family, precision, PRECISIONS, input_bits=input_bits, num_classes=num_classes, input_shape=input_shape)
    _validate.one_of(kernels, "kernels", KERNELS, prefix=f"{family}: ")
    if not isinstance(binary_first, bool) or (binary_first and precision == "A"):
        raise ValueError(
            f"{family}: `binary_first` must be a bool, and True only for precision B, C or S; got "
            f"{binary_first!r} with precision {precision!r}."
        )
    if classifier_bits is not None:
        validate_bits(classifier_bits, name="classifier_bits")
    first = dict(BINARY_FIRST, kernel_initializer=tf.keras.initializers.TruncatedNormal(
        stddev=BINARY_INIT_STDDEV)) if binary_first else None
    x = conv(kernels, 8, quant=first, strides=2, padding="same", use_bias=False, name="conv_0")(x)
    x = tf.keras.layers.Activation("relu", name="relu_0")(x)
    for i, (kernel, strides) in enumerate(((6, 2), (5, 1)), start=1):
        if precision == "A":
            quant = None
        else:
            x = tf.keras.layers.BatchNormalization(scale=False, epsilon=BN_EPSILON, name=f"bn_{i}")(x)
            quant = dict(BINARY_HIDDEN, kernel_initializer=tf.keras.initializers.TruncatedNormal(
                stddev=BINARY_INIT_STDDEV))
            if precision == "S" and i == 2:
                quant["kernel_quantizer"] = quantizers.StochasticSign()
        x = conv(2 * kernels, kernel, quant=quant, strides=strides, padding="valid", use_bias=False, name=f"conv_{i}")(x)
        x = tf.keras.layers.Activation("relu", name=f"relu_{i}")(x)
        if precision in ("C", "S"):
            x = LearnedScale(name=f"scale_{i}")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    if classifier_bits is None:
        logits = tf.keras.layers.Dense(num_classes, use_bias=False, name="logits")(x)
    else:
        logits = lq.layers.QuantDense(num_classes, kernel_quantizer=quantizers.KBitWeight(classifier_bits),
                                      kernel_constraint="weight_clip", use_bias=False, name="logits")(x)
    bits = "" if input_bits is None else f"_in{input_bits}"
    first = "_binfirst" if binary_first else ""
    last = "" if classifier_bits is None else f"_cls{classifier_bits}"
    return tf.keras.Model(inputs, logits, name=name or f"{family}_{precision}_k{kernels}{first}{last}{bits}")
