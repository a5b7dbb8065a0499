"""Quantizers: resolvable by name, counted at their bit width by Larq, serializable."""

import numpy as np
import pytest

from edgebnn import ops, quantizers

import larq as lq
import tensorflow as tf


@pytest.mark.parametrize(
    "name, kwargs, cls, precision",
    [
        ("stochastic_sign", {}, quantizers.StochasticSign, 1),
        ("xnor_weight", {}, quantizers.XnorWeight, 1),
        ("kbit_weight", {"bits": 3}, quantizers.KBitWeight, 3),
        ("kbit_weight_2", {}, quantizers.KBitWeight, 2),
        ("kbit_activation_4", {}, quantizers.KBitActivation, 4),
    ],
)
def test_get_by_name(name, kwargs, cls, precision):
    q = quantizers.get(name, **kwargs)
    assert isinstance(q, cls)
    assert q.precision == precision


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="stochastic_sign"):
        quantizers.get("nope")
    with pytest.raises(ValueError, match="bits"):
        quantizers.get("kbit_weight_2", bits=3)
    with pytest.raises(TypeError, match="name"):
        quantizers.get(3)


def test_quantized_layer_matches_plain_keras_with_numpy_weights(rng):
    """A QuantDense with k-bit weights equals a Dense fed the NumPy-quantized kernel."""
    x = rng.uniform(-1, 1, size=(8, 6)).astype(np.float32)
    layer = lq.layers.QuantDense(4, kernel_quantizer=quantizers.get("kbit_weight_2"), use_bias=False)
    out = layer(x).numpy()
    kernel = layer.get_weights()[0]
    expected = x @ np.clip(np.round(kernel * 2) / 2, -1, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_xnor_layer_matches_plain_keras_and_is_identifiable(rng):
    x = np.sign(rng.normal(size=(2, 5, 5, 3))).astype(np.float32)
    layer = lq.layers.QuantConv2D(
        4, 3, input_quantizer="ste_sign", kernel_quantizer=quantizers.get("xnor_weight"), use_bias=False
    )
    out = layer(x).numpy()
    assert quantizers.is_xnor_layer(layer)
    kernel = layer.get_weights()[0]
    ref = tf.keras.layers.Conv2D(4, 3, use_bias=False)
    ref.build(x.shape)
    ref.set_weights([np.abs(kernel).mean(axis=(0, 1, 2)) * np.where(kernel >= 0, 1.0, -1.0)])
    np.testing.assert_allclose(out, ref(x).numpy(), rtol=1e-5, atol=1e-5)


def test_larq_summary_counts_bit_widths():
    model = tf.keras.Sequential([
        tf.keras.Input((5,)),
        lq.layers.QuantDense(3, kernel_quantizer=quantizers.get("stochastic_sign"), use_bias=False),
        lq.layers.QuantDense(2, kernel_quantizer=quantizers.get("kbit_weight", bits=4), use_bias=True),
    ])
    profile = lq.models.ModelProfile(model)
    assert profile.weight_count(bitwidth=1) == 15
    assert profile.weight_count(bitwidth=4) == 6
    assert profile.weight_count(bitwidth=32) == 2  # the bias


@pytest.mark.parametrize("name", ["stochastic_sign", "xnor_weight", "kbit_weight_3", "kbit_activation_2"])
def test_serialization_round_trip(name, tmp_path, rng):
    q = quantizers.get(name)
    model = tf.keras.Sequential([
        tf.keras.Input((6,)),
        lq.layers.QuantDense(3, kernel_quantizer=q, input_quantizer=quantizers.get("kbit_activation_2")),
    ])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert type(loaded.layers[0].kernel_quantizer) is type(q)
    assert loaded.layers[0].kernel_quantizer.get_config() == q.get_config()
    if name != "stochastic_sign":
        x = rng.uniform(-1, 2, size=(4, 6)).astype(np.float32)
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)


def test_stochastic_quantizer_samples_every_call():
    layer = lq.layers.QuantDense(
        64, kernel_quantizer=quantizers.StochasticSign(seed=1), kernel_initializer="zeros", use_bias=False
    )
    x = np.ones((1, 32), np.float32)
    a, b = layer(x).numpy(), layer(x).numpy()
    assert not np.array_equal(a, b)
    assert set(np.unique(np.abs(a) % 2)) <= {0.0}  # sums of 32 values +-1 are even


def test_kbit_bits_validated():
    with pytest.raises(ValueError, match="bits"):
        quantizers.KBitWeight(0)
    assert ops.validate_bits(8) == 8
