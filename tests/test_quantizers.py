"""Quantizers: resolvable by name, counted at their bit width by Larq, serializable."""

import numpy as np
import pytest

from conftest import value_and_grad
from edgebnn import ops, quantizers

import larq as lq
import tensorflow as tf


@pytest.mark.parametrize(
    "name, kwargs, cls, precision",
    [
        ("stochastic_sign", {}, quantizers.StochasticSign, 1),
        ("xnor_weight", {}, lq.quantizers.MagnitudeAwareSign, 1),
        ("kbit_weight", {"bits": 3}, quantizers.KBitWeight, 4),  # 2**3 + 1 levels need 4 bits
        ("kbit_weight_2", {}, quantizers.KBitWeight, 3),
        ("kbit_activation_4", {}, lq.quantizers.DoReFa, 4),
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


def _edge_activations(bits):
    """Clip bounds, values just inside and outside them, every level and every rounding threshold."""
    n = 2**bits - 1
    return np.array([0.0, -0.0, 1.0, -1.0, 2.0, 1e-8, -1e-8, 1 - 1e-7, 1 + 1e-7, np.inf, -np.inf]
                    + [i / n for i in range(n + 1)] + [(2 * i + 1) / (2 * n) for i in range(n)], np.float32)


@pytest.mark.parametrize("bits", range(1, 9))
def test_surrogate_dorefa_is_larq_dorefa(rng, bits):
    """Outside a surrogate scope, edgebnn's k-bit activation op (behind ``SurrogateDoReFa``
    and the earlier ``KBitActivation`` name) gives exactly Larq's DoReFa forward pass and
    gradient, at random and edge values."""
    x = np.concatenate([rng.uniform(-1.5, 2.5, 2000).astype(np.float32), _edge_activations(bits)])
    upstream = rng.normal(size=x.shape).astype(np.float32)
    larq_y, larq_grad = value_and_grad(lq.quantizers.DoReFa(k_bit=bits, mode="activations"), x, upstream)
    for quantizer in (quantizers.SurrogateDoReFa(k_bit=bits), quantizers.KBitActivation(bits),
                      quantizers.get("kbit_activation", bits=bits), lambda v: ops.kbit_activation(v, bits)):
        y, grad = value_and_grad(quantizer, x, upstream)
        np.testing.assert_array_equal(y, larq_y)
        np.testing.assert_array_equal(grad, larq_grad)  # equal as numbers (a masked 0 may be -0.0)


def test_xnor_weight_is_magnitude_aware_sign(rng):
    """The earlier ``XnorWeight`` name is Larq's ``MagnitudeAwareSign``, checked against NumPy:
    ``mean(|w|)`` per output channel times ``sign(w)`` (+1 at 0), gradient ``alpha * dy * 1{|w| <= 1}``."""
    w = rng.uniform(-1.5, 1.5, size=(3, 3, 4, 5)).astype(np.float32)
    w.flat[:6] = [0.0, -0.0, 1.0, -1.0, 1 + 1e-7, -1 - 1e-7]
    upstream = rng.normal(size=w.shape).astype(np.float32)
    alpha = np.abs(w).mean(axis=(0, 1, 2))
    for quantizer in (quantizers.XnorWeight(), quantizers.get("xnor_weight")):
        y, grad = value_and_grad(quantizer, w, upstream)
        np.testing.assert_allclose(y, alpha * np.where(w >= 0, 1.0, -1.0), rtol=1e-6)
        np.testing.assert_allclose(grad, alpha * upstream * (np.abs(w) <= 1.0), rtol=1e-6)


@pytest.mark.parametrize(
    "registered_name, config, larq_quantizer",
    [
        ("edgebnn>XnorWeight", {}, lq.quantizers.MagnitudeAwareSign()),
        ("edgebnn>KBitActivation", {"bits": 3}, lq.quantizers.DoReFa(k_bit=3, mode="activations")),
    ],
)
def test_earlier_names_still_load(rng, registered_name, config, larq_quantizer):
    """Configs as saved before these names became Larq's quantizers still deserialize, to Larq's math."""
    cls = "XnorWeight" if "Xnor" in registered_name else "KBitActivation"
    saved = {"module": "edgebnn.quantizers", "class_name": cls, "registered_name": registered_name,
             "config": {"name": "q", "trainable": True, "dtype": "float32", **config}}
    loaded = tf.keras.utils.deserialize_keras_object(saved)
    assert isinstance(loaded, type(larq_quantizer)) and loaded.precision == larq_quantizer.precision
    x = rng.uniform(-1.5, 1.5, size=(4, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), larq_quantizer(x).numpy())


def test_surrogates_switch_the_gradient_of_larq_dorefa_activations(rng):
    """``use_surrogate`` swaps Larq's DoReFa activation quantizers: forward unchanged, gradient switched."""
    from edgebnn import attacks

    dorefa = lq.quantizers.DoReFa(k_bit=2, mode="activations")
    model = tf.keras.Sequential([tf.keras.Input((6,)), lq.layers.QuantDense(3, input_quantizer=dorefa)])
    x = tf.constant(rng.uniform(-0.5, 1.5, size=(5, 6)).astype(np.float32))
    out = {}
    for surrogate in ("ste", "identity", "smooth"):
        with attacks.use_surrogate(model, surrogate):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(model(x) * [1.0, -2.0, 0.5])
            out[surrogate] = model(x).numpy(), tape.gradient(loss, x).numpy()
    for surrogate in ("identity", "smooth"):
        np.testing.assert_array_equal(out[surrogate][0], out["ste"][0])
        assert not np.allclose(out[surrogate][1], out["ste"][1]), surrogate
    assert model.layers[0].input_quantizer is dorefa
    assert attacks.surrogates.larq_sign_count(model) == 1


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
    assert profile.weight_count(bitwidth=5) == 6  # 4-bit grid: 17 levels, 5 bits to store
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


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_kbit_weight_precision_stores_every_level(bits):
    """``precision`` is the storage width of the grid: its ``2**bits + 1`` levels need ``bits + 1`` bits."""
    grid = np.unique(quantizers.KBitWeight(bits)(np.linspace(-1.5, 1.5, 4001, dtype=np.float32)).numpy())
    assert len(grid) == 2**bits + 1
    precision = quantizers.KBitWeight(bits).precision
    assert 2 ** (precision - 1) < len(grid) <= 2**precision


def test_kbit_bits_validated():
    with pytest.raises(ValueError, match="bits"):
        quantizers.KBitWeight(0)
    assert ops.validate_bits(8) == 8
