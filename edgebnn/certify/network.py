"""Read a Larq binary network with input discretization into an exact :class:`~edgebnn.certify.encode.BinaryNet`.

Supported (the binary FCNs of :func:`edgebnn.zoo.panda_fcn.build_fcn` and the
networks of :mod:`edgebnn.zoo.eev`, EEV's conv-small included): an input,
:class:`~edgebnn.layers.InputDiscretization`, ``Flatten`` / ``Reshape``, then binary
``QuantConv2D`` (zero padding, no dilation) and ``QuantDense`` layers without bias
(``ste_sign``-like or :class:`~edgebnn.quantizers.TernaryWeight` kernel quantizer; no
input quantizer on the first, a sign input quantizer on the others), each
optionally followed by an inference-mode ``BatchNormalization`` on the last axis,
with ``Flatten`` / ``Reshape`` allowed between blocks; the last one gives the
logits. Anything else is refused with one line naming the first layer that does
not fit.

A convolution becomes the equivalent dense ``{-1, 0, +1}`` matrix from its input's
flat (row-major ``h, w, c``) pixels to its output's (:func:`conv_as_dense`; padded
positions are zeros, which contribute nothing, as in Larq's ``pad_values=0``), and its
per-channel BatchNorm thresholds are repeated over the positions.

Thresholds are not derived from the BatchNorm formula but read off the model: every
integer value a neuron's sum can take is pushed through the Keras BatchNorm layer
and the next layer's input quantizer (Larq's ``sign(0) = +1``), so the integer
threshold agrees with the Keras forward pass bit for bit, float32 rounding
included. :func:`real_thresholds` gives the same thresholds in exact real
arithmetic (the inference BatchNorm affine ``g z + h``, as in
:mod:`edgebnn.deploy.passes.sign_threshold`, but in float64) to show where float32 and real
arithmetic part.
"""

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import EdgebnnError
from edgebnn.certify.encode import CONST_NEG, CONST_POS, FIRE_GE, FIRE_LE, BinaryNet
from edgebnn.introspect import is_sign
from edgebnn.layers import InputDiscretization
from edgebnn.quantizers import TernaryWeight

import larq as lq
import tensorflow as tf


class UnsupportedModelError(EdgebnnError, ValueError):
    """The model is not a discretized binary network the exact encoding covers."""


def _refuse(layer, why):
    raise UnsupportedModelError(
        f"certify: unsupported layer {layer.name!r} ({type(layer).__name__}): {why}."
    )


def _chain(model):
    """The model's layers in order, refusing graphs that are not a single chain."""
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a tf.keras.Model, got {type(model).__name__}.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(f"certify: `model` must have one input and one output, got "
                                    f"{len(model.inputs)} and {len(model.outputs)}.")
    layers = [layer for layer in model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
    for prev, layer in zip(layers, layers[1:]):
        inbound = [node.inbound_layers for node in layer._inbound_nodes]
        if len(inbound) != 1 or inbound[0] is not prev:
            _refuse(layer, "the model must be a single chain of layers")
    return layers


def _batch_norm_ok(layer):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return len(axis) == 1 and axis[0] in (-1, len(layer.input_shape) - 1)


_QUANT = (lq.layers.QuantDense, lq.layers.QuantConv2D)
_SHAPE_ONLY = (tf.keras.layers.Flatten, tf.keras.layers.Reshape)


def _check_quant(layer, first):
    if not (is_sign(layer.kernel_quantizer) or isinstance(layer.kernel_quantizer, TernaryWeight)):
        _refuse(layer, f"kernel quantizer {type(layer.kernel_quantizer).__name__} is neither a sign nor ternary")
    if layer.use_bias:
        _refuse(layer, f"{type(layer).__name__} with a bias")
    if first and layer.input_quantizer is not None:
        _refuse(layer, "the first binary layer must see the discretized pixels (no input quantizer)")
    if not first and not is_sign(layer.input_quantizer):
        _refuse(layer, "the input of every binary layer after the first must be binarized by a sign quantizer")
    if isinstance(layer, lq.layers.QuantConv2D):
        if layer.pad_values != 0 or tuple(layer.dilation_rate) != (1, 1) or layer.data_format != "channels_last":
            _refuse(layer, "a convolution must pad with zeros, be undilated and channels-last")


def _parse(model):
    """``(bits, [(quantized layer, batch_norm or None), ...])`` of a supported model, else raise."""
    layers = _chain(model)
    bits, blocks, i = None, [], 0
    while i < len(layers) and blocks == []:
        layer = layers[i]
        if isinstance(layer, InputDiscretization) and bits is None:
            bits = layer.bits
        elif isinstance(layer, _SHAPE_ONLY):
            pass
        elif isinstance(layer, _QUANT):
            break
        else:
            _refuse(layer, "expected InputDiscretization, Flatten or the first binary QuantDense / QuantConv2D")
        i += 1
    if bits is None:
        first = layers[i] if i < len(layers) else layers[-1]
        _refuse(first, "no InputDiscretization before it (the input must be discretized)")
    while i < len(layers):
        layer = layers[i]
        if blocks and isinstance(layer, _SHAPE_ONLY):
            i += 1
            continue
        if not isinstance(layer, _QUANT):
            _refuse(layer, "expected a binary QuantDense or QuantConv2D")
        _check_quant(layer, first=not blocks)
        bn = None
        if i + 1 < len(layers) and isinstance(layers[i + 1], tf.keras.layers.BatchNormalization):
            bn = layers[i + 1]
            if not _batch_norm_ok(bn):
                _refuse(bn, "BatchNormalization must normalize the last axis")
            i += 1
        blocks.append((layer, bn))
        i += 1
    if len(blocks) < 2:
        _refuse(blocks[0][0] if blocks else layers[-1], "need at least one hidden binary layer and an output layer")
    if isinstance(blocks[-1][0], lq.layers.QuantConv2D):
        _refuse(blocks[-1][0], "the output layer must be a QuantDense")
    return bits, blocks


def conv_as_dense(kernel, input_shape, output_shape, strides, padding):
    """The dense matrix of a bias-free 2-D convolution on flat channels-last inputs (TensorFlow's padding rule).

    Args:
        kernel: ``(kh, kw, c_in, c_out)`` weights.
        input_shape, output_shape: ``(h, w, c)`` of one example.
        strides: ``(sh, sw)``.
        padding: ``"same"`` or ``"valid"``.

    Returns:
        ``(h * w * c_in, oh * ow * c_out)`` array of ``kernel``'s dtype; padded positions are absent.
    """
    kh, kw, c_in, c_out = kernel.shape
    h, w, _ = input_shape
    oh, ow, _ = output_shape
    sh, sw = strides
    top = max((oh - 1) * sh + kh - h, 0) // 2 if padding == "same" else 0
    left = max((ow - 1) * sw + kw - w, 0) // 2 if padding == "same" else 0
    dense = np.zeros((h, w, c_in, oh, ow, c_out), kernel.dtype)
    for r in range(oh):
        for c in range(ow):
            for a in range(kh):
                for b in range(kw):
                    i, j = r * sh + a - top, c * sw + b - left
                    if 0 <= i < h and 0 <= j < w:
                        dense[i, j, :, r, c, :] = kernel[a, b]
    return dense.reshape(h * w * c_in, oh * ow * c_out)


def _kernel(layer):
    """The ``{-1, 0, +1}`` dense kernel the layer computes with (quantizer applied, a convolution unrolled)."""
    kernel = np.asarray(layer.kernel_quantizer(tf.constant(layer.get_weights()[0])))
    allowed = (-1.0, 0.0, 1.0) if isinstance(layer.kernel_quantizer, TernaryWeight) else (-1.0, 1.0)
    if not np.all(np.isin(kernel, allowed)):
        _refuse(layer, f"its quantized kernel is not all in {allowed}")
    kernel = kernel.astype(np.int8)
    if isinstance(layer, lq.layers.QuantConv2D):
        kernel = conv_as_dense(kernel, tuple(layer.input_shape[1:]), tuple(layer.output_shape[1:]),
                               tuple(layer.strides), layer.padding)
    return kernel


def _channels(layer):
    """Output channels (units) of a quantized layer: its BatchNorm and thresholds are per channel."""
    return layer.filters if isinstance(layer, lq.layers.QuantConv2D) else layer.units


def _sum_range(block_index, kernel, bits, *, last=False):
    """Every integer value the layer's sum can take (a superset): its values and the float pre-activations.

    Hidden layers span the largest number of nonzero weights of a unit; the output layer spans its full
    fan-in (the logit table is indexed by ``p + fan_in``).
    """
    fan_in = kernel.shape[0] if last else int(np.abs(kernel).sum(axis=0).max())
    if block_index == 0:  # S = sum W (2k + 1), z = S / (2 n)
        top = fan_in * (2 * 2**bits - 1)
        sums = np.arange(-top, top + 1, dtype=np.int64)
        return sums, (sums / (2.0 * 2**bits)).astype(np.float32)
    sums = np.arange(-fan_in, fan_in + 1, dtype=np.int64)
    return sums, sums.astype(np.float32)


def _after(bn, z, units):
    """The Keras layers after a dense sum ``z`` (one value per row, broadcast over units), in inference mode."""
    t = tf.constant(np.repeat(z[:, None], units, axis=1))
    if bn is None:
        return t
    ndim = bn.input_spec.ndim if bn.input_spec is not None else None
    if ndim is not None and ndim > 2:  # a convolution's BatchNorm takes (rows, 1, 1, units)
        return tf.reshape(bn(tf.reshape(t, [len(z)] + [1] * (ndim - 2) + [units]), training=False), [len(z), units])
    return bn(t, training=False)


def _neuron_thresholds(sums, signs, layer):
    """Kinds and thresholds of each neuron from its ``+-1`` value on every sum (rows) and neuron (columns)."""
    kinds = np.empty(signs.shape[1], np.int8)
    thresholds = np.zeros(signs.shape[1], np.int64)
    for j in range(signs.shape[1]):
        col = signs[:, j]
        if np.all(col > 0):
            kinds[j] = CONST_POS
        elif np.all(col < 0):
            kinds[j] = CONST_NEG
        elif np.all(np.diff(col) >= 0):  # -1 ... -1 +1 ... +1
            kinds[j], thresholds[j] = FIRE_GE, sums[np.argmax(col > 0)]
        elif np.all(np.diff(col) <= 0):  # +1 ... +1 -1 ... -1
            kinds[j], thresholds[j] = FIRE_LE, sums[len(col) - 1 - np.argmax(col[::-1] > 0)]
        else:
            _refuse(layer, f"neuron {j}'s sign is not monotone in its sum")
    return kinds, thresholds


def extract(model):
    """The exact integer form of ``model`` (see the module docstring).

    Args:
        model: a Keras model of the supported form.

    Returns:
        A :class:`~edgebnn.certify.encode.BinaryNet`.

    Raises:
        TypeError: ``model`` is not a Keras model.
        UnsupportedModelError: one line naming the first layer the encoding does not cover.
    """
    bits, blocks = _parse(model)
    kernels, kinds, thresholds = [], [], []
    for b, (dense, bn) in enumerate(blocks):
        kernel = _kernel(dense)
        last = b + 1 == len(blocks)
        sums, z = _sum_range(b, kernel, bits, last=last)
        out = _after(bn, z, _channels(dense))
        kernels.append(kernel)
        if not last:
            signs = blocks[b + 1][0].input_quantizer(out).numpy()
            k, t = _neuron_thresholds(sums, signs, dense if bn is None else bn)
            repeat = kernel.shape[1] // len(k)  # a convolution: the same thresholds at every position
            kinds.append(np.tile(k, repeat))
            thresholds.append(np.tile(t, repeat))
        else:
            table = out.numpy().astype(np.float64)
            rising, falling = np.all(np.diff(table, axis=0) >= 0, axis=0), np.all(np.diff(table, axis=0) <= 0, axis=0)
            if not np.all(rising | falling):
                _refuse(bn or dense, "a logit is not monotone in its sum")
    for b, kernel in enumerate(kernels[1:]):
        if kernel.shape[0] != kernels[b].shape[1]:
            _refuse(blocks[b + 1][0], "its fan-in differs from the previous layer's width")
    return BinaryNet(
        bits=bits, input_shape=tuple(model.inputs[0].shape[1:]), kernels=tuple(kernels), kinds=tuple(kinds),
        thresholds=tuple(thresholds), logit_table=table, layer_names=tuple(d.name for d, _ in blocks),
    )


def real_thresholds(model):
    """Per hidden layer, the thresholds of :func:`extract` computed in exact real arithmetic.

    ``sign(g z + h) = +1`` iff ``g z + h >= 0`` (Larq's ``sign(0) = +1``) with ``g``, ``h``
    the inference BatchNorm affine, evaluated in float64 on the same integer sums.
    Differences from :func:`extract` are neurons whose float32 Keras BatchNorm
    rounds across zero for some sum.

    Returns:
        A list of ``(kinds, thresholds)`` pairs, as in :class:`BinaryNet`.
    """
    bits, blocks = _parse(model)
    out = []
    for b, (dense, bn) in enumerate(blocks[:-1]):
        kernel = _kernel(dense)
        sums, _ = _sum_range(b, kernel, bits)
        z = sums / (2.0 * 2**bits) if b == 0 else sums.astype(np.float64)
        channels = _channels(dense)
        if bn is None:
            g, h = np.ones(channels), np.zeros(channels)
        else:
            g, h = _affine64(bn)
        signs = np.where(z[:, None] * g[None, :] + h[None, :] >= 0, 1.0, -1.0)
        kinds, thresholds = _neuron_thresholds(sums, signs, dense if bn is None else bn)
        repeat = kernel.shape[1] // channels
        out.append((np.tile(kinds, repeat), np.tile(thresholds, repeat)))
    return out


def _affine64(bn):
    """Inference BatchNorm as ``g * z + h`` per channel, in float64."""
    as64 = lambda v, default: default if v is None else v.numpy().astype(np.float64)  # noqa: E731
    mean, var = as64(bn.moving_mean, None), as64(bn.moving_variance, None)
    g = as64(bn.gamma, 1.0) / np.sqrt(var + bn.epsilon) * np.ones_like(mean)
    return g, as64(bn.beta, 0.0) - g * mean
