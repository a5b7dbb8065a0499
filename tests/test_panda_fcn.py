"""Panda et al. FCN builders: BNN layout and validation (parameter counts, one training step and the
registry are tested with every family in test_zoo.py)."""

import numpy as np
import pytest

from edgebnn import zoo
from edgebnn.layers import InputDiscretization

import larq as lq


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


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        zoo.get("panda_fcn2")("binary")  # keyword-only
