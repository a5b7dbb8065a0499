"""Read a Larq binary network with input discretization into an exact :class:`~edgebnn.certify.encode.BinaryNet`.

Supported (the binary FCNs of :func:`edgebnn.zoo.panda_fcn.build_fcn`): an input,
:class:`~edgebnn.layers.InputDiscretization`, ``Flatten`` / ``Reshape``, then binary
``QuantDense`` layers without bias (``ste_sign``-like kernel quantizer; no input
quantizer on the first, a sign input quantizer on the others), each optionally
followed by an inference-mode ``BatchNormalization`` on the last axis; the last one
gives the logits. Anything else is refused with one line naming the first layer
that does not fit.

Thresholds are not derived from the BatchNorm formula but read off the model: every
integer value a neuron's sum can take is pushed through the Keras BatchNorm layer
and the next layer's input quantizer (Larq's ``sign(0) = +1``), so the integer
threshold agrees with the Keras forward pass bit for bit, float32 rounding
included. :func:`real_thresholds` gives the same thresholds in exact real
arithmetic (the inference BatchNorm affine ``g z + h``, as in
:mod:`edgebnn.deploy.rewrite`, but in float64) to show where float32 and real
arithmetic part.
"""

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import EdgebnnError
from edgebnn.certify.encode import CONST_NEG, CONST_POS, FIRE_GE, FIRE_LE, BinaryNet
from edgebnn.deploy.rewrite import is_sign
from edgebnn.layers import InputDiscretization

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


def _parse(model):
    """``(bits, [(dense, batch_norm or None), ...])`` of a supported model, else raise."""
    layers = _chain(model)
    bits, blocks, i = None, [], 0
    while i < len(layers) and blocks == []:
        layer = layers[i]
        if isinstance(layer, InputDiscretization) and bits is None:
            bits = layer.bits
        elif isinstance(layer, (tf.keras.layers.Flatten, tf.keras.layers.Reshape)):
            pass
        elif isinstance(layer, lq.layers.QuantDense):
            break
        else:
            _refuse(layer, "expected InputDiscretization, Flatten or the first binary QuantDense")
        i += 1
    if bits is None:
        first = layers[i] if i < len(layers) else layers[-1]
        _refuse(first, "no InputDiscretization before it (the input must be discretized)")
    while i < len(layers):
        layer = layers[i]
        if not isinstance(layer, lq.layers.QuantDense):
            _refuse(layer, "expected a binary QuantDense")
        if not is_sign(layer.kernel_quantizer):
            _refuse(layer, f"kernel quantizer {type(layer.kernel_quantizer).__name__} is not a sign")
        if layer.use_bias:
            _refuse(layer, "QuantDense with a bias")
        first = not blocks
        if first and layer.input_quantizer is not None:
            _refuse(layer, "the first QuantDense must see the discretized pixels (no input quantizer)")
        if not first and not is_sign(layer.input_quantizer):
            _refuse(layer, "the input of every QuantDense after the first must be binarized by a sign quantizer")
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
    return bits, blocks


def _kernel(layer):
    """The ``+-1`` kernel the layer computes with (its quantizer applied)."""
    kernel = np.asarray(layer.kernel_quantizer(tf.constant(layer.get_weights()[0])))
    if not np.all(np.abs(kernel) == 1.0):
        _refuse(layer, "its quantized kernel is not all +-1")
    return kernel.astype(np.int8)


def _sum_range(block_index, kernel, bits):
    """Every integer value the layer's sum can take (a superset): its values and the float pre-activations."""
    fan_in = kernel.shape[0]
    if block_index == 0:  # S = sum W (2k + 1), z = S / (2 n)
        top = fan_in * (2 * 2**bits - 1)
        sums = np.arange(-top, top + 1, dtype=np.int64)
        return sums, (sums / (2.0 * 2**bits)).astype(np.float32)
    sums = np.arange(-fan_in, fan_in + 1, dtype=np.int64)
    return sums, sums.astype(np.float32)


def _after(bn, z, units):
    """The Keras layers after a dense sum ``z`` (one value per row, broadcast over units), in inference mode."""
    t = tf.constant(np.repeat(z[:, None], units, axis=1))
    return t if bn is None else bn(t, training=False)


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
        sums, z = _sum_range(b, kernel, bits)
        out = _after(bn, z, kernel.shape[1])
        kernels.append(kernel)
        if b + 1 < len(blocks):
            signs = blocks[b + 1][0].input_quantizer(out).numpy()
            k, t = _neuron_thresholds(sums, signs, dense if bn is None else bn)
            kinds.append(k)
            thresholds.append(t)
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
        if bn is None:
            g, h = np.ones(kernel.shape[1]), np.zeros(kernel.shape[1])
        else:
            g, h = _affine64(bn)
        signs = np.where(z[:, None] * g[None, :] + h[None, :] >= 0, 1.0, -1.0)
        out.append(_neuron_thresholds(sums, signs, dense if bn is None else bn))
    return out


def _affine64(bn):
    """Inference BatchNorm as ``g * z + h`` per channel, in float64."""
    as64 = lambda v, default: default if v is None else v.numpy().astype(np.float64)  # noqa: E731
    mean, var = as64(bn.moving_mean, None), as64(bn.moving_variance, None)
    g = as64(bn.gamma, 1.0) / np.sqrt(var + bn.epsilon) * np.ones_like(mean)
    return g, as64(bn.beta, 0.0) - g * mean
