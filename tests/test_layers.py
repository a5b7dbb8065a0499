"""Layers against plain Keras / NumPy references, with save/load round trips."""

import larq as lq
import numpy as np
import pytest

from conftest import layer_test
from edgebnn.layers import LearnedScale, MCDropout, ZeroPadShortcut

import tensorflow as tf


def test_mc_dropout_active_at_inference_when_always_on(rng):
    x = np.ones((4, 1000), np.float32)
    layer = MCDropout(0.5, seed=1)
    a = layer(x, training=False).numpy()
    b = layer(x, training=False).numpy()
    assert set(np.unique(a)) <= {0.0, 2.0}  # kept units are scaled by 1 / (1 - rate)
    assert 0.4 < (a == 0).mean() < 0.6
    assert not np.array_equal(a, b)


def test_mc_dropout_off_matches_keras_dropout(rng):
    x = rng.normal(size=(3, 10)).astype(np.float32)
    layer = MCDropout(0.5, always_on=False)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), tf.keras.layers.Dropout(0.5)(x).numpy())
    assert (layer(np.ones((2, 1000), np.float32), training=True).numpy() == 0).any()


def test_mc_dropout_rate_zero_is_identity(rng):
    x = rng.normal(size=(3, 10)).astype(np.float32)
    np.testing.assert_array_equal(MCDropout(0.0)(x).numpy(), x)


def test_mc_dropout_round_trip(tmp_path):
    out = layer_test(MCDropout, kwargs={"rate": 0.3, "always_on": True, "seed": 4},
                     input_data=np.ones((4, 50), np.float32), deterministic=False, tmp_path=tmp_path)
    assert (out == 0).any()  # dropping at inference


def test_mc_dropout_with_input_quantizer_drops_binary_units(rng, tmp_path):
    """Quantize, then drop (BinaryNet's order): a dropped unit is 0, a kept one sign(x) / (1 - rate);
    dropout before a sign would send a dropped unit on as sign(0) = +1."""
    x = rng.normal(size=(4, 1000)).astype(np.float32)
    layer = MCDropout(0.5, input_quantizer="ste_sign", seed=2)
    out = layer(x, training=False).numpy()
    kept = out != 0
    assert 0.4 < 1 - kept.mean() < 0.6
    np.testing.assert_array_equal(out[kept], 2.0 * np.where(x[kept] >= 0, 1.0, -1.0))
    off = MCDropout(0.5, always_on=False, input_quantizer="ste_sign")
    np.testing.assert_array_equal(off(x, training=False).numpy(), np.where(x >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(MCDropout(0.0, input_quantizer="ste_sign")(x).numpy(), np.where(x >= 0, 1.0, -1.0))
    inputs = tf.keras.Input((50,))
    model = tf.keras.Model(inputs, MCDropout(0.3, input_quantizer="ste_sign", name="drop")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = tf.keras.models.load_model(tmp_path / "m.keras").get_layer("drop")
    assert isinstance(loaded.input_quantizer, lq.quantizers.SteSign) and loaded.rate == 0.3 and loaded.always_on
    out = loaded(x[:, :50]).numpy()
    np.testing.assert_allclose(np.abs(out[out != 0]), 1 / 0.7, rtol=1e-6)
    with pytest.raises(ValueError, match="input_quantizer"):
        MCDropout(0.5, input_quantizer="no_such_quantizer")


@pytest.mark.parametrize("kwargs, error", [({"rate": 1.0}, ValueError), ({"rate": "a"}, TypeError),
                                           ({"rate": 0.5, "always_on": 1}, TypeError),
                                           ({"rate": 0.5, "seed": 1.5}, TypeError)])
def test_mc_dropout_validation(kwargs, error):
    with pytest.raises(error):
        MCDropout(**kwargs)


def test_learned_scale_forward_gradient_and_round_trip(rng, tmp_path):
    x = rng.normal(size=(4, 3)).astype(np.float32)
    layer = LearnedScale(0.05)
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(y)
    np.testing.assert_allclose(y.numpy(), 0.05 * x, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, layer.scale).numpy(), x.sum(), rtol=1e-5)
    assert layer.count_params() == 1
    layer_test(LearnedScale, kwargs={"initial_value": 0.2}, input_data=x, expected_output=np.float32(0.2) * x,
               tmp_path=tmp_path, exact=False)
    with pytest.raises(TypeError, match="initial_value"):
        LearnedScale("big")


def test_zero_pad_shortcut_matches_numpy(rng, tmp_path):
    x = rng.normal(size=(2, 8, 8, 16)).astype(np.float32)
    expected = np.pad(x[:, ::2, ::2, :], [(0, 0), (0, 0), (0, 0), (8, 8)])
    layer_test(ZeroPadShortcut, kwargs={"filters": 32, "strides": 2}, input_data=x, expected_output=expected,
               tmp_path=tmp_path)
    with pytest.raises(ValueError, match="filters"):
        ZeroPadShortcut(8)(x)
