"""Pass dense_to_conv: binary dense layers as 1x1 binary convolutions on column tensors."""

import numpy as np

from edgebnn.deploy.passes import dense_to_conv
from edgebnn.deploy.rewrite import rewrite

import larq as lq
import tensorflow as tf

BINARY = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip")


def _dense_model(rng, *, use_bias=False, kernel_quantizer="ste_sign"):
    inputs = tf.keras.Input((16,))
    x = lq.layers.QuantDense(12, **{**BINARY, "kernel_quantizer": kernel_quantizer}, use_bias=use_bias,
                             name="dense_0")(inputs)
    bn = tf.keras.layers.BatchNormalization(name="bn_0")
    x = tf.keras.layers.Activation("relu")(bn(x))
    x = lq.layers.QuantDense(10, **BINARY, use_bias=False, name="dense_1")(x)
    model = tf.keras.Model(inputs, x)
    bn.set_weights([rng.uniform(0.5, 2, 12), rng.normal(0, 1, 12), rng.normal(0, 3, 12), rng.uniform(1, 9, 12)])
    return model


def test_binary_dense_becomes_1x1_binary_conv_on_columns(rng):
    model = _dense_model(rng)
    rewritten = rewrite(model, passes=["dense_to_conv"])
    assert not any(isinstance(layer, lq.layers.QuantDense) for layer in rewritten.layers)
    for name in ("dense_0", "dense_1"):
        conv = rewritten.get_layer(name)
        assert isinstance(conv, lq.layers.QuantConv2D) and tuple(conv.kernel_size) == (1, 1)
        np.testing.assert_array_equal(conv.get_weights()[0][0, 0], model.get_layer(name).get_weights()[0])
    # BatchNorm and ReLU stay on the 4-D column between the two convolutions
    assert rewritten.get_layer("bn_0").output.shape.rank == 4
    x = rng.normal(0, 1, (32, 16)).astype(np.float32)
    np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), atol=1e-5)


def test_binary_dense_refuses_what_it_cannot_take(rng):
    on = type("Options", (), {"dense_to_conv": True, "fold_xnor": True})()
    off = type("Options", (), {"dense_to_conv": False, "fold_xnor": True})()
    column = dense_to_conv.Column(tf.keras.Input((1, 1, 16)))
    layer = _dense_model(rng).get_layer("dense_0")
    assert dense_to_conv.binary_dense(layer, column, off) is None
    xnor_with_bias = _dense_model(rng, use_bias=True, kernel_quantizer="magnitude_aware_sign").get_layer("dense_0")
    assert dense_to_conv.binary_dense(xnor_with_bias, column, on) is None
    float_input = lq.layers.QuantDense(4, kernel_quantizer="ste_sign")
    float_input.build((None, 16))
    assert dense_to_conv.binary_dense(float_input, column, on) is None
    out = dense_to_conv.binary_dense(layer, column, on)
    assert isinstance(out, dense_to_conv.Column) and tuple(out.tensor.shape) == (None, 1, 1, 12)
    assert tuple(out.plain().shape) == (None, 12)
