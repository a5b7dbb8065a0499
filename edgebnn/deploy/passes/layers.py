"""The Keras layers the deploy passes introduce (all serializable, all exact in float32).

Each is a thin layer over one TensorFlow op or a constant per-channel map, so a
rewritten model saves, loads and converts like any other. The math of the bit-plane
layers is in their docstrings and in :mod:`edgebnn.deploy.passes.bit_planes` and
:mod:`edgebnn.deploy.passes.packed_planes`.
"""

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.ops import discretize_levels

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class BitPlanes(tf.keras.layers.Layer):
    """``[0, 1]`` pixels -> ``bits`` ``+-1`` bit planes (and an all-ones plane), stacked on the batch axis.

    Output shape ``(bits + ones) * batch`` x the input's example shape; plane ``j < bits``
    is ``2 * b_j - 1`` for bit ``j`` of :func:`edgebnn.ops.discretize_levels`. The ones
    plane is computed as ``plane_0 ** 2`` so that the converter cannot fold it into a
    stored constant image.
    """

    def __init__(self, bits, ones=True, **kwargs):
        super().__init__(**kwargs)
        self.bits, self.ones = bits, bool(ones)

    def call(self, inputs):
        levels = discretize_levels(inputs, self.bits)
        planes = [2.0 * tf.math.floormod(tf.floor(levels / 2.0**j), 2.0) - 1.0 for j in range(self.bits)]
        if self.ones:
            planes.append(planes[0] * planes[0])
        return tf.concat(planes, axis=0) if len(planes) > 1 else planes[0]

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "ones": self.ones}


def plane_coefficients(bits):
    """Weights of the planes of :class:`BitPlanes`: ``2**(j-1) / 2**bits``, and ``1/2`` for the ones plane."""
    return [2.0 ** (j - 1) / 2.0**bits for j in range(bits)] + [0.5]


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class ChannelBias(tf.keras.layers.Layer):
    """Add a constant vector on the last axis (the bit-plane constant term)."""

    def __init__(self, bias, **kwargs):
        super().__init__(**kwargs)
        self.bias = [float(b) for b in np.ravel(bias)]

    def call(self, inputs):
        return inputs + tf.constant(self.bias, dtype=inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "bias": self.bias}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class MergePlanes(tf.keras.layers.Layer):
    """Weighted sum over the batch-stacked planes: ``(P * batch, ...) -> (batch, ...)``."""

    def __init__(self, coefficients, **kwargs):
        super().__init__(**kwargs)
        self.coefficients = [float(c) for c in coefficients]

    def call(self, inputs):
        parts = tf.split(inputs, len(self.coefficients), axis=0)
        out = parts[0] * self.coefficients[0]
        for part, c in zip(parts[1:], self.coefficients[1:]):
            out = out + part * c
        return out

    def get_config(self):
        return {**super().get_config(), "coefficients": self.coefficients}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class ChannelScale(tf.keras.layers.Layer):
    """Multiply the last axis by a constant vector (folded XNOR scales)."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(s) for s in np.ravel(scale)]

    def call(self, inputs):
        return inputs * tf.constant(self.scale, dtype=inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def packed_plane_count(bits):
    """Channels per input channel of :class:`PackedPlanes`: ``2**(bits + 1) - 1``."""
    return 2 ** (bits + 1) - 1


def packed_plane_coefficients(bits):
    """``(a, c)`` with ``d = c + a * S`` (see :class:`PackedPlanes`): ``a = 2**-(bits + 2)``, ``c = (2**(bits + 1) - 1) a``."""
    a = 2.0 ** -(bits + 2)
    return a, (2.0 ** (bits + 1) - 1.0) * a


#: Added to a pixel to make :class:`PackedPlanes`' ones plane: positive for any finite input.
ONES_PLANE_SHIFT = 2.0**100


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class PackedPlanes(tf.keras.layers.Layer):
    """``[0, 1]`` pixels -> thermometer planes of the discretized input on the channel axis, with a ones plane.

    With ``n = 2**bits`` levels and level ``t = floor(n x)`` (clamped to ``[0, n - 1]``
    as :func:`edgebnn.ops.discretize_levels`), plane ``q = 1 .. n - 1`` is ``+1`` where
    ``t >= q`` and ``-1`` elsewhere (a thermometer code); each comes twice, followed by
    one plane of ones: ``P = 2 n - 1`` channels per input channel, in the order
    ``channel * P + plane``. Their sum ``S = 4 t - 2 (n - 1) + 1`` gives the discretized
    input exactly, ``d = (t + 1/2) / n = c + a S`` (:func:`packed_plane_coefficients`),
    and padding with ``-1`` on every plane gives ``S = -P``, i.e. ``d = 0``: a binary
    convolution over these channels, padded with ``-1``, equals the zero-padded
    convolution of ``d`` up to the per-channel map ``a * out + c * sum(W)``. (The
    factor 2 in the copies is what lets ``-P`` land on ``d = 0``.)

    The output is not yet ``+-1``: it is ``x - q / n`` for plane ``q`` and
    ``x + 2**100`` for the ones plane (positive for every finite pixel, and not a
    constant the converter could fold into a stored image): one broadcast ``ADD`` in
    the converted graph. The binary convolution's ``ste_sign`` input quantizer takes
    the sign. ``x - q / n >= 0`` exactly when ``t >= q``: a float subtraction is zero
    only for equal operands and never rounds across zero, and at the boundary
    ``x = q / n`` both Larq's ``ste_sign`` and LCE's bit packing give ``+1``, as
    ``floor(n x) = q`` does. Inputs outside ``[0, 1]`` saturate to the first or last
    level, as :func:`~edgebnn.ops.discretize_levels` clamps them.
    """

    def __init__(self, bits, **kwargs):
        super().__init__(**kwargs)
        self.bits = bits

    def _shift(self):
        n = 2**self.bits
        return np.array([-q / n for q in range(1, n) for _ in range(2)] + [ONES_PLANE_SHIFT], np.float32)

    def call(self, inputs):
        shift = self._shift()
        if inputs.shape[-1] == 1:  # broadcast over the channel axis: no reshape op
            return inputs + shift
        planes = inputs[..., None] + shift
        return tf.reshape(planes, (-1, *inputs.shape[1:-1], inputs.shape[-1] * len(shift)))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] * packed_plane_count(self.bits))

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class ConstantPad2D(tf.keras.layers.Layer):
    """Pad height and width with a constant: ``padding = ((top, bottom), (left, right))``."""

    def __init__(self, padding, value, **kwargs):
        super().__init__(**kwargs)
        self.padding = [[int(a), int(b)] for a, b in padding]
        self.value = float(value)

    def call(self, inputs):
        return tf.pad(inputs, [[0, 0], *self.padding, [0, 0]], constant_values=self.value)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        grow = lambda n, a, b: None if n is None else n + a + b  # noqa: E731
        return (input_shape[0], grow(input_shape[1], top, bottom), grow(input_shape[2], left, right),
                input_shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class SpaceToDepth(tf.keras.layers.Layer):
    """``tf.nn.space_to_depth``: ``(H, W, C) -> (H/b, W/b, b*b*C)``, channel ``(ry * b + rx) * C + c``."""

    def __init__(self, block, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, inputs):
        return tf.nn.space_to_depth(inputs, self.block)

    def compute_output_shape(self, input_shape):
        b = self.block
        return (input_shape[0], input_shape[1] // b, input_shape[2] // b, input_shape[3] * b * b)

    def get_config(self):
        return {**super().get_config(), "block": self.block}
