"""Pass: ReLU -> BatchNorm -> sign and binary layer -> BatchNorm -> sign chains as per-channel thresholds.

When a ReLU feeds only a BatchNorm whose output feeds only layers that take its sign
(a ``ste_sign`` input quantizer), write the inference-time BatchNorm as ``g x + h``
per channel (:func:`~edgebnn.deploy.passes.quant.batch_norm_affine`). Then
``sign(g * relu(z) + h)`` is ``sign(z - theta)`` with ``theta = -h / g`` for ``g > 0``
and ``theta > 0`` (the opposite for ``g < 0``), or a constant ``+-1`` channel
(``0 * z + 1``). The chain becomes that per-channel affine map, which LCE fuses
into the preceding binary convolution as an output threshold, so the convolution
writes bit-packed activations instead of a float tensor, a ReLU, a BatchNorm and a
quantize op. Exact except when ``z`` lies within rounding of ``theta``; the
converted model's agreement is measured by :func:`~edgebnn.deploy.verify.verify`.

Binary layer -> BatchNorm -> sign chains (no ReLU) become the integer threshold Larq's
float32 BatchNorm decides, exactly. A binary layer (``+-1`` kernel, ``+-1`` inputs from a
``ste_sign`` input quantizer, no bias) computes an exact integer ``z`` in ``[-n, n]``, ``n``
its fan-in (zero padding adds zeros). Larq decides ``+1`` iff the float32 BatchNorm of ``z``
is ``>= 0`` (``ste_sign(0) = +1``); LCE fuses the BatchNorm into the binary convolution as an
output threshold computed in its own arithmetic, so for a ``z`` whose BatchNorm is within
rounding of 0 (a pre-activation of ``1e-6``, one in a few thousand on an FCN2 with random
statistics) the two decided differently and the prediction changed. The rule evaluates the
BatchNorm layer itself (the model's float32 ops) on every integer ``z`` and writes, per
channel, the map whose sign is the one Larq computed: ``z - t`` (or ``t - z``) with ``t`` the
half-integer between the last ``z`` deciding ``-1`` and the first deciding ``+1``, or the
constant ``0 * z +- 1``. ``z - t`` is a half-integer, never 0, so every runtime decides it
exactly. A BatchNorm whose decisions are not monotone in ``z`` (float rounding of an affine
map cannot make them so) is left as it is.
"""

import dataclasses

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.passes.dense_to_conv import Column
from edgebnn.deploy.passes.graph import Pass, Plain, Rule
from edgebnn.deploy.passes.layers import ChannelBias, ChannelScale
from edgebnn.deploy.passes.quant import batch_norm_affine, is_quant_linear, is_sign, last_axis

import tensorflow as tf


def _is_relu(layer):
    if isinstance(layer, tf.keras.layers.ReLU):
        plain = layer.max_value is None and float(layer.threshold) == 0.0
        return plain and float(layer.negative_slope) == 0.0
    return isinstance(layer, tf.keras.layers.Activation) and layer.get_config()["activation"] == "relu"


def _single_inbound(layer):
    nodes = layer._inbound_nodes
    if len(nodes) != 1:
        return None
    inbound = nodes[0].inbound_layers
    return inbound if isinstance(inbound, tf.keras.layers.Layer) else None


def sign_threshold_chains(model):
    """Names of the ReLU and BatchNorm layers of ReLU -> BatchNorm -> sign chains in ``model``.

    A chain qualifies when the ReLU's only consumer is the BatchNorm (on the last
    axis) and every consumer of the BatchNorm takes the sign of its input
    (a ``ste_sign``-like input quantizer).
    """
    names = set()
    for bn in model.layers:
        if not isinstance(bn, tf.keras.layers.BatchNormalization) or not last_axis(bn):
            continue
        relu = _single_inbound(bn)
        if relu is None or not _is_relu(relu) or len(relu._outbound_nodes) != 1 or len(bn._inbound_nodes) != 1:
            continue
        consumers = [node.outbound_layer for node in bn._outbound_nodes]
        if consumers and all(is_sign(getattr(layer, "input_quantizer", None)) for layer in consumers):
            names |= {relu.name, bn.name}
    return frozenset(names)


def sign_threshold(bn):
    """``(scale, bias)`` per channel with ``sign(scale * z + bias) == sign(bn(relu(z)))``."""
    g, h = batch_norm_affine(bn)
    scale, bias = np.zeros_like(g), np.where(h >= 0, 1.0, -1.0).astype(np.float32)  # g == 0: sign(h)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(g != 0, -h / g, 0.0)
    up, down = g > 0, g < 0
    # g > 0: +1 iff relu(z) >= theta: always if theta <= 0, else iff z >= theta
    scale = np.where(up & (theta > 0), 1.0, np.where(up, 0.0, scale))
    bias = np.where(up & (theta > 0), -theta, np.where(up, 1.0, bias))
    # g < 0: +1 iff relu(z) <= theta: never if theta < 0, else iff z <= theta
    scale = np.where(down & (theta >= 0), -1.0, np.where(down, 0.0, scale))
    bias = np.where(down & (theta >= 0), theta, np.where(down, -1.0, bias))
    return scale.astype(np.float32), bias.astype(np.float32)


def fold(layer, value, ctx):
    """The rewritten output of a layer of a sign-threshold chain (:func:`sign_threshold_chains`), or ``None``.

    The ReLU passes its input through (it is folded into the BatchNorm's threshold);
    the BatchNorm becomes :func:`sign_threshold`'s per-channel map on the same kind of
    value (``value`` is per example and channel: a ``Plain`` value or a column, which
    stays a column).
    """
    if layer.name not in ctx.state.get(PASS, _NO_CHAINS).relu:
        return None
    if not isinstance(layer, tf.keras.layers.BatchNormalization):
        return value
    scale, bias = sign_threshold(layer)
    out = ChannelScale(scale, name=f"{layer.name}_sign_scale")(value.tensor)
    return dataclasses.replace(value, tensor=ChannelBias(bias, name=f"{layer.name}_sign_bias")(out))


@dataclasses.dataclass(frozen=True)
class Chains:
    """The chains of a model: ReLU and BatchNorm names of ReLU -> BatchNorm -> sign chains
    (``relu``), and ``{BatchNorm name: fan-in}`` of binary layer -> BatchNorm -> sign chains (``binary``)."""

    relu: frozenset = frozenset()
    binary: dict = dataclasses.field(default_factory=dict)


_NO_CHAINS = Chains()


def chains(model):
    """The :class:`Chains` of ``model`` (found once, on the original model)."""
    return Chains(relu=sign_threshold_chains(model), binary=exact_sign_chains(model))


def _binary_integer_layer(layer):
    """A quantized linear layer computing an integer: ``+-1`` kernel, ``+-1`` inputs, no bias."""
    return (is_quant_linear(layer) and is_sign(getattr(layer, "kernel_quantizer", None))
            and is_sign(getattr(layer, "input_quantizer", None)) and not layer.use_bias)


def exact_sign_chains(model):
    """``{BatchNorm name: fan-in n}`` of the binary layer -> BatchNorm -> sign chains of ``model``."""
    found = {}
    for bn in model.layers:
        if not isinstance(bn, tf.keras.layers.BatchNormalization) or not last_axis(bn) or len(bn._inbound_nodes) != 1:
            continue
        inbound = bn._inbound_nodes[0].inbound_layers
        if not isinstance(inbound, tf.keras.layers.Layer) or not _binary_integer_layer(inbound):
            continue
        if len(inbound._outbound_nodes) != 1:
            continue
        consumers = [node.outbound_layer for node in bn._outbound_nodes]
        if consumers and all(is_sign(getattr(layer, "input_quantizer", None)) for layer in consumers):
            found[bn.name] = int(np.prod(inbound.get_weights()[0].shape[:-1]))
    return found


def exact_threshold(bn, n):
    """``(scale, bias)`` per channel with ``sign(scale * z + bias) == ste_sign(bn(z))`` for every
    integer ``z`` in ``[-n, n]``, as ``bn`` computes in float32; ``None`` when a channel's
    decisions are not monotone in ``z``."""
    z = np.arange(-n, n + 1, dtype=np.float32)
    channels = bn.moving_mean.shape[-1]
    shape = [len(z)] + [1] * (len(bn.input_shape) - 2) + [channels]
    grid = np.broadcast_to(z.reshape([-1] + [1] * (len(shape) - 1)), shape)
    plus = np.asarray(bn(tf.constant(grid), training=False)).reshape(len(z), channels) >= 0
    scale, bias = np.zeros(channels, np.float32), np.zeros(channels, np.float32)
    for c in range(channels):
        column, first = plus[:, c], int(np.argmax(plus[:, c] != plus[0, c]))
        if column.all() or not column.any():  # one decision for every z
            bias[c] = 1.0 if column[0] else -1.0
        elif np.all(column[first:] != column[0]) and np.all(column[:first] == column[0]):
            threshold = z[first] - 0.5  # between the last z of one decision and the first of the other
            scale[c], bias[c] = (1.0, -threshold) if column[first] else (-1.0, threshold)
        else:
            return None
    return scale, bias


def fold_exact(layer, value, ctx):
    """The BatchNorm of a chain (:func:`exact_sign_chains`) as :func:`exact_threshold`'s map, or ``None``."""
    n = ctx.state.get(PASS, _NO_CHAINS).binary.get(layer.name)
    if n is None:
        return None
    found = exact_threshold(layer, n)
    if found is None:
        return None
    scale, bias = found
    out = ChannelScale(scale, name=f"{layer.name}_exact_scale")(value.tensor)
    return dataclasses.replace(value, tensor=ChannelBias(bias, name=f"{layer.name}_exact_bias")(out))


#: The pass: the chains are found once on the original model. The ReLU chains are exact only
#: up to rounding ties, so the pass runs only where asked (the LCE target).
PASS = Pass(rules=(Rule((Plain, Column), fold), Rule((Plain, Column), fold_exact)), prepare=chains, exact=False)
