"""Ops against NumPy references: forward values and surrogate gradients."""

import numpy as np
import pytest

from conftest import value_and_grad
from edgebnn import ops

import tensorflow as tf


def np_hard_sigmoid(x):
    return np.clip((x + 1.0) / 2.0, 0.0, 1.0)


def np_kbit_weight(w, bits):
    steps = 2.0 ** (bits - 1)
    return np.clip(np.round(w * steps) / steps, -1.0, 1.0)


def np_kbit_activation(x, bits):
    levels = 2.0**bits - 1.0
    return np.round(np.clip(x, 0.0, 1.0) * levels) / levels


@pytest.fixture
def inputs(rng):
    x = rng.uniform(-1.5, 1.5, size=(64, 9)).astype(np.float32)
    upstream = rng.normal(size=x.shape).astype(np.float32)
    return x, upstream


def test_hard_sigmoid_matches_numpy(inputs):
    x, _ = inputs
    np.testing.assert_allclose(ops.hard_sigmoid(x).numpy(), np_hard_sigmoid(x), atol=1e-7)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_kbit_weight_forward_and_gradient(inputs, bits):
    x, upstream = inputs
    y, grad = value_and_grad(lambda v: ops.kbit_weight(v, bits), x, upstream)
    np.testing.assert_allclose(y, np_kbit_weight(x, bits), atol=1e-7)
    np.testing.assert_allclose(grad, upstream * (np.abs(x) <= 1.0), atol=1e-7)


def test_kbit_weight_two_bits_grid():
    w = np.linspace(-1.3, 1.3, 101).astype(np.float32)
    assert set(np.unique(ops.kbit_weight(w, 2).numpy())) == {-1.0, -0.5, 0.0, 0.5, 1.0}


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_kbit_activation_forward_and_gradient(inputs, bits):
    x, upstream = inputs
    y, grad = value_and_grad(lambda v: ops.kbit_activation(v, bits), x, upstream)
    np.testing.assert_allclose(y, np_kbit_activation(x, bits), atol=1e-6)
    np.testing.assert_allclose(grad, upstream * ((x >= 0) & (x <= 1)), atol=1e-7)
    assert len(np.unique(y)) <= 2**bits


def test_stochastic_sign_values_and_gradient(inputs):
    x, upstream = inputs
    y, grad = value_and_grad(lambda v: ops.stochastic_sign(v, seed=3), x, upstream)
    assert set(np.unique(y)) <= {-1.0, 1.0}
    # Outside [-1, 1] the probability is 0 or 1: the sign is deterministic there.
    np.testing.assert_array_equal(y[x >= 1.0], 1.0)
    np.testing.assert_array_equal(y[x <= -1.0], -1.0)
    np.testing.assert_allclose(grad, upstream * (np.abs(x) <= 1.0), atol=1e-7)


def test_stochastic_sign_mean_matches_hard_sigmoid():
    """Sample mean of n draws matches 2*hard_sigmoid(w)-1 within 5 standard errors."""
    w = np.linspace(-1.2, 1.2, 25).astype(np.float32)
    n = 4000
    tf.random.set_seed(0)
    samples = ops.stochastic_sign(np.tile(w, (n, 1)), seed=1).numpy()
    expected = 2.0 * np_hard_sigmoid(w) - 1.0
    std_err = np.sqrt(np.maximum(1.0 - expected**2, 1e-12) / n)
    assert np.all(np.abs(samples.mean(axis=0) - expected) <= 5 * std_err + 1e-9)


def test_stochastic_sign_draws_fresh_samples_and_is_seedable():
    w = tf.zeros((1000,))
    tf.random.set_seed(7)
    a, b = ops.stochastic_sign(w, seed=1).numpy(), ops.stochastic_sign(w, seed=1).numpy()
    tf.random.set_seed(7)
    a2 = ops.stochastic_sign(w, seed=1).numpy()
    assert (a != b).any()
    np.testing.assert_array_equal(a, a2)


@pytest.mark.parametrize("bits", [0, 9, 2.0, True])
def test_bad_bits_rejected(bits):
    with pytest.raises((TypeError, ValueError), match="bits"):
        ops.kbit_weight(tf.zeros(2), bits)
    with pytest.raises((TypeError, ValueError), match="bits"):
        ops.kbit_activation(tf.zeros(2), bits)


def test_bad_seed_rejected():
    with pytest.raises(TypeError, match="seed"):
        ops.stochastic_sign(tf.zeros(2), seed="1")


def test_stochastic_sign_check_passes_the_op_and_catches_a_biased_sampler(monkeypatch):
    from edgebnn import testing

    w = np.linspace(-1.5, 1.5, 13).astype(np.float32)
    check = testing.stochastic_sign_check(w, samples=4000, seed=0)
    np.testing.assert_allclose(check["expected"], 2.0 * np_hard_sigmoid(w) - 1.0, atol=1e-7)
    assert check["all_within"] and check["within"].shape == w.shape
    assert np.all(check["std_err"][np.abs(w) >= 1.0] == 0.0)  # always the same sign there
    monkeypatch.setattr(testing.ops, "stochastic_sign", lambda x, seed=None: tf.ones_like(x))
    biased = testing.stochastic_sign_check(w, samples=4000, seed=0)
    np.testing.assert_array_equal(biased["within"], w >= 1.0)  # only where +1 is certain anyway
    assert not biased["all_within"]
    with pytest.raises(ValueError, match=r"`w` must be a 1-D array"):
        testing.stochastic_sign_check(np.zeros((2, 2)), samples=10)
    with pytest.raises(ValueError, match=r"`samples` must be a positive int, got 0"):
        testing.stochastic_sign_check(w, samples=0)
