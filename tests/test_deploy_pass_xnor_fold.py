"""Pass xnor_fold: XNOR kernels ``alpha_c sign(W)`` as a ``+-1`` kernel and a per-channel scale."""

import numpy as np

from edgebnn.deploy.passes import quant
from edgebnn.deploy.rewrite import rewrite

import larq as lq
import tensorflow as tf


def _xnor_conv_model(*, use_bias=False):
    inputs = tf.keras.Input((9, 9, 3))
    x = lq.layers.QuantConv2D(5, 3, kernel_quantizer="magnitude_aware_sign", use_bias=use_bias, name="conv")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Flatten()(x))


def test_xnor_conv_on_real_inputs_becomes_sign_kernel_and_scale(rng):
    model = _xnor_conv_model()
    latent = model.get_layer("conv").get_weights()[0]
    rewritten = rewrite(model, passes=["xnor_fold"])
    assert quant.is_sign(rewritten.get_layer("conv").kernel_quantizer)
    # the scale is XNOR-Net's alpha_c = mean |W| over each output channel (NumPy reference)
    np.testing.assert_allclose(rewritten.get_layer("conv_xnor_scale").scale, np.abs(latent).mean(axis=(0, 1, 2)),
                               rtol=1e-6)
    x = rng.random((8, 9, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), atol=1e-4)


def test_xnor_with_bias_and_fold_off_are_left_alone():
    with_bias = rewrite(_xnor_conv_model(use_bias=True), passes=["xnor_fold"])
    assert quant.is_xnor(with_bias.get_layer("conv").kernel_quantizer)
    off = rewrite(_xnor_conv_model(), passes=[])
    assert quant.is_xnor(off.get_layer("conv").kernel_quantizer)
    assert not any(layer.name.endswith("_xnor_scale") for layer in off.layers)
