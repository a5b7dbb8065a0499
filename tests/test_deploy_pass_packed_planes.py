"""Pass packed_planes: the first few-channel binary convolution over channel-packed bit planes."""

import numpy as np
import pytest

from edgebnn.deploy.passes import layers, packed_planes
from edgebnn.deploy.rewrite import rewrite
from edgebnn.layers import InputDiscretization

import larq as lq
import tensorflow as tf


@pytest.mark.parametrize(("size", "kernel", "stride"), [(28, 8, 2), (13, 4, 2), (12, 3, 1), (7, 5, 3), (4, 6, 1)])
def test_same_padding_matches_tensorflow(size, kernel, stride):
    out, (before, after) = packed_planes.same_padding(size, kernel, stride)
    x = np.zeros((1, size, size, 1), np.float32)
    x[0, 0, 0, 0] = 1.0  # where the top-left pixel lands tells the padding before it
    w = np.zeros((kernel, kernel, 1, 1), np.float32)
    w[before, before, 0, 0] = 1.0
    y = tf.nn.conv2d(x, w, stride, "SAME").numpy()
    assert y.shape[1] == out and y[0, 0, 0, 0] == 1.0


def _conv(shape, filters, kernel, strides, kernel_quantizer="ste_sign"):
    layer = lq.layers.QuantConv2D(filters, kernel, strides=strides, kernel_quantizer=kernel_quantizer,
                                  use_bias=False, name="conv_0")
    layer.build((None, *shape))
    return layer


@pytest.mark.parametrize(("shape", "kernel", "strides", "bits", "expected"), [
    ((28, 28, 1), 8, 2, 2, (2, 16, 64)),  # 4x4 taps over 4 * 7 = 28 channels: one word each
    ((12, 12, 3), 3, 1, 3, (1, 18, 27)),  # 3 * 15 = 45 channels: two words per tap
    ((12, 12, 1), 3, 1, 2, (1, 9, 9)),  # no gain over float
])
def test_packed_layout_counts_words(shape, kernel, strides, bits, expected):
    assert packed_planes.packed_layout(_conv(shape, 4, kernel, strides), bits) == expected


def test_xnor_kernel_with_a_zero_channel_falls_back_and_stays_equivalent(rng):
    """alpha_c = 0 is not +-alpha: the layer goes to the batch-stacked planes instead."""
    inputs = tf.keras.Input((10, 10, 1))
    conv = lq.layers.QuantConv2D(3, 4, strides=2, kernel_quantizer="magnitude_aware_sign", use_bias=False,
                                 name="conv_0")
    model = tf.keras.Model(inputs, tf.keras.layers.Flatten()(conv(InputDiscretization(2)(inputs))))
    kernel = rng.normal(0, 1, (4, 4, 1, 3)).astype(np.float32)
    kernel[..., 1] = 0.0
    conv.set_weights([kernel])
    rewritten = rewrite(model, passes=["packed_planes", "bit_planes", "xnor_fold"])
    assert not any(isinstance(layer, layers.PackedPlanes) for layer in rewritten.layers)
    assert any(isinstance(layer, layers.BitPlanes) for layer in rewritten.layers)
    x = rng.random((8, 10, 10, 1)).astype(np.float32)
    np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), atol=1e-5)
    kernel[..., 1] = 1.0
    conv.set_weights([kernel])
    packed = rewrite(model, passes=["packed_planes", "xnor_fold"])
    assert any(isinstance(layer, layers.PackedPlanes) for layer in packed.layers)
