"""discretize op and InputDiscretization layer: NumPy reference, gradient, round trip, conversion."""

import numpy as np
import pytest

from conftest import layer_test
from edgebnn import ops
from edgebnn.layers import InputDiscretization

import tensorflow as tf

PIXELS = np.arange(256, dtype=np.float32) / np.float32(255.0)  # every 8-bit pixel value


def reference(x, bits):
    """Panda et al. Eq. 2 in NumPy (float64): centre of one of 2**bits equal bins of [0, 1]."""
    n = 2**bits
    k = np.clip(np.floor(np.asarray(x, np.float64) * n), 0, n - 1)
    return (k + 0.5) / n


@pytest.mark.parametrize("bits", range(1, 9))
def test_forward_matches_reference_on_all_pixels(bits):
    out = ops.discretize(tf.constant(PIXELS), bits).numpy()
    np.testing.assert_array_equal(out, reference(PIXELS, bits).astype(np.float32))
    assert len(np.unique(out)) == 2**bits


def test_eight_bits_keeps_all_256_levels_in_order():
    out = ops.discretize(tf.constant(PIXELS), 8).numpy()
    assert np.all(np.diff(out) > 0)
    np.testing.assert_allclose(out, PIXELS, atol=0.5 / 256 + 1e-7)


def test_out_of_range_inputs_are_clamped():
    out = ops.discretize(tf.constant([-0.5, 1.5]), 2).numpy()
    np.testing.assert_array_equal(out, [0.125, 0.875])


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_gradient_is_straight_through(bits):
    x = tf.constant(np.random.default_rng(bits).uniform(0, 1, (3, 5)).astype(np.float32))
    upstream = tf.constant(np.random.default_rng(9).normal(size=(3, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ops.discretize(x, bits)
    np.testing.assert_array_equal(tape.gradient(y, x, output_gradients=upstream).numpy(), upstream.numpy())


@pytest.mark.parametrize("bits", [0, 9, 2.0, True, "2", None])
def test_bad_bits_rejected(bits):
    with pytest.raises((ValueError, TypeError), match="bits"):
        InputDiscretization(bits)
    with pytest.raises((ValueError, TypeError), match="bits"):
        ops.discretize(tf.constant([0.5]), bits)


def _model(bits):
    inputs = tf.keras.Input((28, 28, 1))
    return tf.keras.Model(inputs, InputDiscretization(bits, name="disc")(inputs))


def test_layer_matches_reference_and_round_trips(tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    layer_test(InputDiscretization, kwargs={"bits": 3}, input_data=x, expected_output=reference(x, 3).astype(np.float32),
               tmp_path=tmp_path)


@pytest.mark.parametrize("bits", [1, 2, 8])
def test_converted_model_discretizes_its_own_input(bits):
    from edgebnn.deploy.convert import convert
    from edgebnn.deploy.verify import tflite_predict

    x = np.resize(PIXELS, (2, 28, 28, 1)).astype(np.float32)  # all 256 values, twice over
    out = tflite_predict(convert(_model(bits)), x)
    np.testing.assert_array_equal(out, reference(x, bits).astype(np.float32))
