"""Shared pieces of the model builders: argument validation and the input stem."""

from edgebnn import ops
from edgebnn.layers import InputDiscretization

import tensorflow as tf

#: Larq keyword arguments of a BNN hidden layer (Courbariaux et al. 2016): binary
#: inputs and weights with the straight-through sign, latent weights clipped to [-1, 1].
BINARY_HIDDEN = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
#: The first layer of a BNN sees the (possibly discretized) pixels, not their sign.
BINARY_FIRST = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
#: BatchNorm settings used after every quantized layer (Larq's BNN examples).
BATCH_NORM = dict(momentum=0.9, scale=False)


def validate_common(*, family, precision, precisions, input_bits, num_classes, input_shape):
    """Validate the arguments every builder shares; return ``input_shape`` as a tuple."""
    if precision not in precisions:
        raise ValueError(f"{family}: `precision` must be one of {list(precisions)}, got {precision!r}.")
    if input_bits is not None:
        ops.validate_bits(input_bits, name="input_bits")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{family}: `num_classes` must be an int >= 2, got {num_classes!r}.")
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"{family}: `input_shape` must be positive ints, got {input_shape!r}.")
    return shape


def input_stem(input_shape, input_bits):
    """Model input, followed by :class:`InputDiscretization` when ``input_bits`` is set."""
    inputs = tf.keras.Input(shape=input_shape, name="pixels")
    x = inputs if input_bits is None else InputDiscretization(input_bits, name="input_discretization")(inputs)
    return inputs, x
