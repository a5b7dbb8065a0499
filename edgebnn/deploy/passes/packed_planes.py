"""Pass: the first binary convolution on a few-channel discretized input, over channel-packed planes.

LCE packs a binary kernel along input channels, 32 to a 32-bit word, so the
batch-stacked planes of :mod:`~edgebnn.deploy.passes.bit_planes` on a 1-channel image
cost one word per tap: no smaller than float. Instead the planes go on the channel
axis (:class:`~edgebnn.deploy.passes.layers.PackedPlanes`: thermometer planes whose
sum gives the discretized input, ``d = c + a S``), padded with ``-1`` (which stands
for a zero pixel), and a strided convolution whose kernel the stride divides is
rewritten by space-to-depth so that the ``s x s`` phases of the stride become
channels: Galloway's 8x8 stride-2 first layer becomes a 4x4 binary convolution over
28 channels, one word per tap, 4x fewer bytes than float. The binary convolution
``out`` over the planes gives the original layer's output as ``a * alpha * out +
c * sum(W)`` per output channel, exactly in float32.
"""

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.passes.bit_planes import Planes, start
from edgebnn.deploy.passes.graph import Pass, Plain, Rule
from edgebnn.deploy.passes.layers import (
    ChannelBias,
    ChannelScale,
    ConstantPad2D,
    PackedPlanes,
    SpaceToDepth,
    packed_plane_coefficients,
    packed_plane_count,
)
from edgebnn.deploy.passes.quant import binary_kernel, effective_kernel
from edgebnn.deploy.tflite import LCE_BITPACK_WIDTH

import larq as lq
import tensorflow as tf


def same_padding(size, kernel, stride):
    """TensorFlow's ``"same"`` padding: output size and ``(before, after)`` padding."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, (total // 2, total - total // 2)


def packed_layout(layer, bits):
    """``(block, packed_words, float_words)`` of conv ``layer`` as a :class:`PackedPlanes` binary convolution.

    ``block``: the space-to-depth block (the stride, when both strides are equal and
    divide the kernel; else 1). ``packed_words``: 32-bit words per output channel of the
    binary kernel (LCE packs input channels 32 to a word); ``float_words``: float32
    weights per output channel of the original layer.
    """
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    channels = layer.input_spec.axes[-1]
    block = sh if sh == sw and sh > 1 and kh % sh == 0 and kw % sw == 0 else 1
    packed_channels = channels * packed_plane_count(bits) * block * block
    packed = (kh // block) * (kw // block) * -(-packed_channels // LCE_BITPACK_WIDTH)
    return block, packed, kh * kw * channels


def eligible(layer, value, opts):
    """Whether the first layer ``layer`` on bit planes ``value`` takes the channel-packed form.

    A bias-free binary (or XNOR) ``QuantConv2D`` without input quantizer or dilation,
    on a static-shape ``channels_last`` input of fewer than
    :data:`~edgebnn.deploy.tflite.LCE_BITPACK_WIDTH` channels with no reshape in
    between; with ``opts.bit_planes == "auto"`` only if it needs fewer weight words
    than the float layer.
    """
    if not isinstance(value, Planes) or not isinstance(layer, lq.layers.QuantConv2D):
        return False
    if value.pending or not binary_kernel(layer, opts):
        return False
    if layer.input_quantizer is not None or layer.use_bias or tuple(layer.dilation_rate) != (1, 1):
        return False
    if layer.data_format != "channels_last" or None in value.tensor.shape[1:]:
        return False
    if layer.input_spec.axes[-1] >= LCE_BITPACK_WIDTH:
        return False  # the batch-stacked planes share one kernel without copies
    _, packed, float_words = packed_layout(layer, value.bits)
    return opts.bit_planes is True or packed < float_words


def first_conv(layer, value, opts):
    """The first binary convolution on :class:`Planes` as one binary conv over :class:`PackedPlanes`.

    Returns a ``Plain`` value, or ``None`` if the layer is not :func:`eligible` or its
    kernel is not ``+-alpha_c`` (sign or XNOR).
    """
    if not eligible(layer, value, opts):
        return None
    bits, x = value.bits, value.tensor
    height, width = x.shape[1:3]
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    block, _, _ = packed_layout(layer, bits)
    if layer.padding == "same":
        out_h, (top, bottom) = same_padding(height, kh, sh)
        out_w, (left, right) = same_padding(width, kw, sw)
    else:
        out_h, out_w, top, bottom, left, right = (height - kh) // sh + 1, (width - kw) // sw + 1, 0, 0, 0, 0
    bottom += -(height + top + bottom) % block
    right += -(width + left + right) % block
    kernel = effective_kernel(layer)
    alpha = np.max(np.abs(kernel), axis=(0, 1, 2))
    signs = np.sign(kernel)
    if np.any(signs == 0) or not np.array_equal(signs * alpha, kernel):
        return None
    t = PackedPlanes(bits, name=f"{layer.name}_packed_planes")(x)
    if top or bottom or left or right:
        t = ConstantPad2D(((top, bottom), (left, right)), -1.0, name=f"{layer.name}_pad")(t)
    packed = np.repeat(signs, packed_plane_count(bits), axis=2)
    if block > 1:
        t = SpaceToDepth(block, name=f"{layer.name}_space_to_depth")(t)
        cin, cout = packed.shape[2:]
        packed = packed.reshape(kh // block, block, kw // block, block, cin, cout).transpose(0, 2, 1, 3, 4, 5)
        packed = packed.reshape(kh // block, kw // block, block * block * cin, cout)
    conv = lq.layers.QuantConv2D(
        kernel.shape[-1], packed.shape[:2], strides=1 if block > 1 else layer.strides, padding="valid",
        input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False, name=layer.name,
    )
    out = conv(t)
    conv.set_weights([packed.astype(np.float32)])
    a, c = packed_plane_coefficients(bits)
    out = ChannelScale(a * alpha, name=f"{layer.name}_plane_scale")(out)
    out = ChannelBias(c * kernel.sum(axis=(0, 1, 2)), name=f"{layer.name}_plane_bias")(out)
    extra_h, extra_w = out.shape[1] - out_h, out.shape[2] - out_w
    if extra_h or extra_w:
        out = tf.keras.layers.Cropping2D(((0, extra_h), (0, extra_w)), name=f"{layer.name}_crop")(out)
    return Plain(out)


#: The pass: planes start at a discretization (as in :mod:`.bit_planes`), and the first
#: few-channel binary convolution runs on them packed on the channel axis.
PASS = Pass(rules=(Rule((Plain,), start), Rule((Planes,), first_conv)), flags=("bit_planes",))
