"""What a quantized layer computes, as the deploy passes need to know it.

Shared by the passes (which quantizers are ``sign`` and which kernels XNOR-Net
``alpha_c * sign(W)`` is :mod:`edgebnn.introspect`'s to say): the kernel a layer
effectively computes with, a BatchNorm as a per-channel affine map, and
:func:`binary_linear`, the copy of a quantized linear layer with a ``+-1`` kernel that
Larq Compute Engine turns into ``LceBconv2d``.
"""

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.passes.graph import copy_layer
from edgebnn.deploy.passes.layers import ChannelScale
from edgebnn.introspect import is_sign, is_xnor

import larq as lq
import tensorflow as tf

def is_quant_linear(layer):
    """A Larq ``QuantDense`` or ``QuantConv2D``."""
    return isinstance(layer, (lq.layers.QuantDense, lq.layers.QuantConv2D))


def binary_kernel(layer, opts):
    """A quantized linear layer whose kernel is ``+-1`` (or XNOR, when ``opts.fold_xnor``)."""
    quantizer = getattr(layer, "kernel_quantizer", None)
    return is_quant_linear(layer) and (is_sign(quantizer) or (opts.fold_xnor and is_xnor(quantizer)))


def effective_kernel(layer):
    """The kernel ``layer`` computes with (quantizer applied), as a 4-D conv kernel."""
    kernel = np.asarray(layer.kernel_quantizer(tf.constant(layer.get_weights()[0])))
    return kernel.reshape(1, 1, *kernel.shape) if kernel.ndim == 2 else kernel


def xnor_alpha(layer):
    """Per-output-channel XNOR scale ``mean(|W|)`` of the latent kernel."""
    kernel = layer.get_weights()[0]
    return np.mean(np.abs(kernel), axis=tuple(range(kernel.ndim - 1)))


def last_axis(layer):
    """True if a BatchNorm-like ``layer`` normalizes the last axis only."""
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return len(axis) == 1 and axis[0] in (-1, len(layer.input_shape) - 1)


def batch_norm_affine(bn):
    """Inference-time BatchNorm as ``g * x + h`` per channel (arrays over the channels)."""
    gamma = bn.gamma.numpy() if bn.gamma is not None else 1.0
    beta = bn.beta.numpy() if bn.beta is not None else 0.0
    g = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon) * np.ones_like(bn.moving_mean.numpy())
    return g, beta - g * bn.moving_mean.numpy()


def binary_linear(layer, tensor, *, conv, input_quantizer=None):
    """Call a copy of quantized linear ``layer`` on ``tensor`` with a ``+-1`` kernel (LCE target).

    ``conv``: express a ``QuantDense`` as a 1x1 ``QuantConv2D`` (``tensor`` is 4-D).
    XNOR (magnitude-aware) kernels become ``ste_sign`` kernels and a :class:`ChannelScale`
    (:mod:`~edgebnn.deploy.passes.xnor_fold`). ``input_quantizer`` overrides the copy's
    input quantizer. Returns ``None`` for an XNOR layer with a bias (the scale would
    have to come before the bias).
    """
    config = layer.get_config()
    xnor = is_xnor(layer.kernel_quantizer)
    if xnor and layer.use_bias:
        return None
    overrides = {"kernel_quantizer": "ste_sign"} if xnor else {}
    if input_quantizer is not None:
        overrides["input_quantizer"] = input_quantizer
    weights = layer.get_weights()
    if conv and isinstance(layer, lq.layers.QuantDense):
        keep = ("name", "use_bias", "kernel_constraint", "bias_initializer", "kernel_initializer")
        new = lq.layers.QuantConv2D(
            config["units"], 1,
            input_quantizer=overrides.get("input_quantizer", config["input_quantizer"]),
            kernel_quantizer=overrides.get("kernel_quantizer", config["kernel_quantizer"]),
            **{k: config[k] for k in keep},
        )
        weights = [weights[0].reshape(1, 1, *weights[0].shape)] + weights[1:]
    else:
        new = copy_layer(layer, **overrides)
    out = new(tensor)
    new.set_weights(weights)
    if xnor:
        out = ChannelScale(xnor_alpha(layer), name=f"{layer.name}_xnor_scale")(out)
    return out
