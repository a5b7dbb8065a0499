"""Seeded draws (edgebnn.randomness) against TensorFlow's stateless ops, and the unseeded path against
TensorFlow's stateful ops."""

import numpy as np
import pytest

from edgebnn import ops, randomness
from edgebnn.layers import MCDropout

import tensorflow as tf


def _seeded(fn):
    """``fn`` traced once as ``(key) -> fn()`` within ``randomness.seeded(key)``."""

    @tf.function
    def run(key):
        with randomness.seeded(key):
            return fn()

    return run


def test_a_draw_is_the_stateless_draw_of_the_keys_next_seed():
    run = _seeded(lambda: (randomness.uniform([3], -1.0, 2.0), randomness.normal([2], 1.0, 3.0)))
    key = randomness.key(5)
    first, second = run(key)
    expected_first = tf.random.stateless_uniform([3], tf.random.experimental.stateless_fold_in(key, 0), -1.0, 2.0)
    expected_second = tf.random.stateless_normal([2], tf.random.experimental.stateless_fold_in(key, 1), 1.0, 3.0)
    np.testing.assert_array_equal(first, expected_first)
    np.testing.assert_array_equal(second, expected_second)


def test_one_trace_serves_every_key_and_draws_depend_on_the_key_alone():
    run = _seeded(lambda: randomness.uniform([4]))
    a = run(randomness.key(1)).numpy()
    tf.random.uniform([10])  # TensorFlow's random state moves; the seeded draws do not see it
    _seeded(lambda: randomness.normal([3]))(randomness.key(1))  # another graph traced and run in between
    assert np.array_equal(run(randomness.key(1)), a)
    assert not np.array_equal(run(randomness.key(2)), a)
    assert not np.array_equal(run(randomness.key(1, 1)), a)  # another stream of the same seed
    assert run.experimental_get_tracing_count() == 1


def test_every_step_of_a_graph_loop_draws_its_own_numbers():
    def loop():
        rows = tf.TensorArray(tf.float32, size=3)
        for step in tf.range(3):
            randomness.loop_step(step)
            rows = rows.write(step, randomness.uniform([2]))
        return rows.stack()

    rows = _seeded(loop)(randomness.key(0)).numpy()
    assert len({tuple(row) for row in rows}) == 3
    np.testing.assert_array_equal(_seeded(loop)(randomness.key(0)), rows)


def test_a_seeded_draw_in_a_loop_without_loop_step_is_an_error():
    def loop():
        total = tf.zeros([2])
        for _ in tf.range(3):
            total += randomness.uniform([2])
        return total

    with pytest.raises(RuntimeError, match="loop_step"):
        _seeded(loop)(randomness.key(0))


def test_per_sample_draws_differ_between_samples_and_stay_vectorized():
    def sample(index):
        with randomness.per_sample(index, 4):
            return randomness.uniform([3])

    run = _seeded(lambda: tf.vectorized_map(sample, tf.range(4)))
    rows = run(randomness.key(3)).numpy()
    assert rows.shape == (4, 3) and len({tuple(row) for row in rows}) == 4
    # One draw for the four samples: the row each takes of the [4, 3] draw (no while loop over samples).
    expected = tf.random.stateless_uniform([4, 3], tf.random.experimental.stateless_fold_in(randomness.key(3), 0))
    np.testing.assert_array_equal(rows, expected)
    assert "While" not in {op.type for op in run.get_concrete_function(randomness.key(3)).graph.get_operations()}


def test_unseeded_draws_are_tensorflows_stateful_ones():
    # The same ops with the same arguments: under the same global seed, the same numbers as before.
    for draw, reference in [(lambda: randomness.uniform([5], -1.0, 1.0), lambda: tf.random.uniform([5], -1.0, 1.0)),
                            (lambda: randomness.normal([5]), lambda: tf.random.normal([5]))]:
        tf.random.set_seed(11)
        ours = draw()
        tf.random.set_seed(11)
        np.testing.assert_array_equal(ours, reference())
    assert not randomness.is_seeded()


def test_an_eager_scope_seeds_eager_draws():
    with randomness.seeded(randomness.key(9)):
        assert randomness.is_seeded()
        a = randomness.uniform([3])
    with randomness.seeded(randomness.key(9)):
        np.testing.assert_array_equal(randomness.uniform([3]), a)
    assert not randomness.is_seeded()


def test_stochastic_sign_and_mc_dropout_draw_from_the_key():
    weights = tf.constant(np.linspace(-1.5, 1.5, 200, dtype=np.float32))
    sign = _seeded(lambda: ops.stochastic_sign(weights, seed=3))
    key = randomness.key(4)
    uniform = tf.random.stateless_uniform([200], tf.random.experimental.stateless_fold_in(key, 0))
    np.testing.assert_array_equal(sign(key), np.where(uniform < np.clip((weights + 1) / 2, 0, 1), 1.0, -1.0))
    layer = MCDropout(0.25)
    x = tf.ones([4, 50])
    dropped = _seeded(lambda: layer(x, training=False))(key)
    kept = tf.random.stateless_uniform([4, 50], tf.random.experimental.stateless_fold_in(key, 0)) >= 0.25
    np.testing.assert_allclose(dropped, np.where(kept, 1 / 0.75, 0.0), rtol=1e-6)


def test_stateful_random_ops_are_found_in_loop_bodies():
    @tf.function
    def legacy(x):
        for _ in tf.range(2):
            x += tf.nn.dropout(x, rate=0.5)
        return x

    @tf.function
    def seeded(x, key):
        with randomness.seeded(key):
            return x + randomness.uniform(tf.shape(x))

    assert randomness.stateful_random_ops(legacy.get_concrete_function(tf.ones([3]))) == ["RandomUniform"]
    assert randomness.stateful_random_ops(seeded.get_concrete_function(tf.ones([3]), randomness.key(0))) == []


@pytest.mark.parametrize("key, error", [(tf.constant([1, 2, 3]), ValueError), (tf.constant([1.0, 2.0]), ValueError)])
def test_seeded_checks_its_key(key, error):
    with pytest.raises(error, match="key"), randomness.seeded(key):
        pass


@pytest.mark.parametrize("seed", [-1, 1.5, 2**63])
def test_key_checks_its_seed(seed):
    with pytest.raises((TypeError, ValueError), match="seed"):
        randomness.key(seed)
