"""Pass: ReLU -> BatchNorm -> sign chains as one per-channel threshold.

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
"""

import dataclasses

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.passes.dense_to_conv import Column
from edgebnn.deploy.passes.graph import Pass, Plain, Rule
from edgebnn.deploy.passes.layers import ChannelBias, ChannelScale
from edgebnn.deploy.passes.quant import batch_norm_affine, is_sign, last_axis

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
    if layer.name not in ctx.state.get(PASS, frozenset()):
        return None
    if not isinstance(layer, tf.keras.layers.BatchNormalization):
        return value
    scale, bias = sign_threshold(layer)
    out = ChannelScale(scale, name=f"{layer.name}_sign_scale")(value.tensor)
    return dataclasses.replace(value, tensor=ChannelBias(bias, name=f"{layer.name}_sign_bias")(out))


#: The pass: the chains are found once on the original model. Exact only up to rounding
#: ties, so it runs only where asked (the LCE target).
PASS = Pass(rules=(Rule((Plain, Column), fold),), prepare=sign_threshold_chains, exact=False)
