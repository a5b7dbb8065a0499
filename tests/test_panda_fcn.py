"""Panda et al. FCN builders: architecture, parameter counts, BNN layout, validation."""

import numpy as np
import pytest

from edgebnn import zoo
from edgebnn.layers import InputDiscretization

import larq as lq
import tensorflow as tf


def _dense_weights(widths):
    return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


# Panda et al.: FCN1 784-6144x4-10 and FCN2 784-600x4-10. Hidden BatchNorm has
# beta, moving mean and moving variance (scale=False): 3 per unit.
FCN2_WEIGHTS = _dense_weights([784, 600, 600, 600, 600, 10])  # 1,556,400
FCN1_WEIGHTS = _dense_weights([784, 6144, 6144, 6144, 6144, 10])  # 118,124,544


@pytest.mark.parametrize(
    "name, weights, width",
    [("panda_fcn2", FCN2_WEIGHTS, 600), ("panda_fcn1", FCN1_WEIGHTS, 6144)],
)
def test_parameter_counts(name, weights, width):
    float_model = zoo.get(name)(precision="float")
    assert float_model.count_params() == weights + 4 * 3 * width + 10  # + output bias
    binary_model = zoo.get(name)(precision="binary")
    assert binary_model.count_params() == weights + 4 * 3 * width + 3 * 10  # + output BN


def test_binary_layout_first_layer_sees_pixels():
    model = zoo.get("panda_fcn2")(precision="binary", input_bits=2)
    assert isinstance(model.layers[1], InputDiscretization) and model.layers[1].bits == 2
    dense = [layer for layer in model.layers if isinstance(layer, lq.layers.QuantDense)]
    assert len(dense) == 5
    assert dense[0].input_quantizer is None
    assert all(isinstance(d.kernel_quantizer, lq.quantizers.SteSign) for d in dense)
    assert all(isinstance(d.input_quantizer, lq.quantizers.SteSign) for d in dense[1:])
    assert all(isinstance(d.kernel_constraint, lq.constraints.WeightClip) for d in dense)


def test_binary_hidden_layer_matches_plain_dense_on_signs():
    """A binary layer equals a plain Dense layer fed sign(inputs) with sign(weights)."""
    model = zoo.get("panda_fcn2")(precision="binary")
    layer = model.get_layer("dense_1")
    x = np.random.default_rng(0).normal(size=(3, 600)).astype(np.float32)
    kernel = layer.get_weights()[0]
    expected = np.where(x >= 0, 1.0, -1.0) @ np.where(kernel >= 0, 1.0, -1.0)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-6)


def test_outputs_logits_and_trains_one_step(fashion_small):
    x, y, _, _ = fashion_small
    model = zoo.get("panda_fcn2")(precision="binary", input_bits=2)
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.get_layer("dense_1").get_weights()[0].copy()
    model.fit(x[:64], y[:64], batch_size=64, epochs=1, verbose=0)
    assert model(x[:2]).shape == (2, 10)
    assert not np.array_equal(before, model.get_layer("dense_1").get_weights()[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(precision="xnor"), "precision"),
        (dict(input_bits=0), "input_bits"),
        (dict(num_classes=1), "num_classes"),
        (dict(input_shape=(28, -1)), "input_shape"),
        (dict(hidden_layers=0), "hidden_layers"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        zoo.get("panda_fcn2")(**kwargs)


def test_registry_lists_valid_names():
    assert {"panda_fcn1", "panda_fcn2"} <= set(zoo.names())
    with pytest.raises(ValueError, match="valid names"):
        zoo.get("lenet9000")
    with pytest.raises(TypeError):
        zoo.get("panda_fcn2")("binary")  # keyword-only
