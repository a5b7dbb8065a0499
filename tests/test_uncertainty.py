"""predict_mc against a NumPy computation of Guan et al.'s Eq. 12."""

import numpy as np
import pytest

from edgebnn.evaluation import predict_mc
from edgebnn.layers import MCDropout
from edgebnn.testing import TraceCounter

import tensorflow as tf


def _np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class _ReplayLogits:
    """A callable that returns the next of a fixed list of logit arrays at each call."""

    def __init__(self, table):
        self.table = tf.constant(table, tf.float32)  # (samples, n, classes)
        self.calls = tf.Variable(0)

    def __call__(self, x):
        logits = tf.gather(self.table, self.calls)[: tf.shape(x)[0]]
        self.calls.assign_add(1)
        return logits


def test_matches_numpy_eq12(rng):
    samples, n, classes = 7, 5, 4
    table = rng.normal(scale=2.0, size=(samples, n, classes)).astype(np.float32)
    pred = predict_mc(_ReplayLogits(table), np.zeros((n, 3), np.float32), samples=samples, batch_size=n)
    probs = _np_softmax(table.astype(np.float64))
    np.testing.assert_allclose(pred.mean_probs, probs.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(pred.uncertainty, probs.var(axis=0).mean(axis=-1), rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(pred.classes, probs.sum(axis=0).argmax(axis=-1))


def test_deterministic_model_has_zero_uncertainty(rng):
    model = tf.keras.Sequential([tf.keras.Input((6,)), tf.keras.layers.Dense(3)])
    x = rng.normal(size=(10, 6)).astype(np.float32)
    pred = predict_mc(model, x, samples=5, batch_size=4)
    assert np.all(pred.uncertainty == 0.0)
    np.testing.assert_allclose(pred.mean_probs, _np_softmax(model(x).numpy()), rtol=1e-5)
    np.testing.assert_array_equal(pred.classes, model(x).numpy().argmax(-1))


def test_mc_dropout_model_has_positive_uncertainty(rng):
    model = tf.keras.Sequential([tf.keras.Input((20,)), MCDropout(0.5), tf.keras.layers.Dense(3)])
    pred = predict_mc(model, rng.normal(size=(6, 20)).astype(np.float32), samples=10)
    assert np.all(pred.uncertainty > 0.0)
    assert pred.mean_probs.shape == (6, 3) and pred.classes.shape == (6,)


def test_a_seed_makes_the_passes_independent_of_what_ran_before(rng):
    model = tf.keras.Sequential([tf.keras.Input((20,)), MCDropout(0.5), tf.keras.layers.Dense(3)])
    x = rng.normal(size=(6, 20)).astype(np.float32)
    first = predict_mc(model, x, samples=5, seed=7)
    predict_mc(model, x, samples=5)  # advances the cached graph's random state
    again = predict_mc(model, x, samples=5, seed=7)
    np.testing.assert_array_equal(first.uncertainty, again.uncertainty)
    np.testing.assert_array_equal(first.mean_probs, again.mean_probs)
    assert not np.array_equal(predict_mc(model, x, samples=5, seed=8).uncertainty, first.uncertainty)


def test_seeded_passes_trace_one_graph_for_every_seed_and_batch(rng):
    model = TraceCounter(tf.keras.Sequential([tf.keras.Input((20,)), MCDropout(0.5), tf.keras.layers.Dense(3)]))
    x = rng.normal(size=(6, 20)).astype(np.float32)
    first = predict_mc(model, x, samples=4, batch_size=3, seed=1)
    traced = model.calls
    for seed in (2, 3, 1):
        again = predict_mc(model, x, samples=4, batch_size=3, seed=seed)
    assert model.calls == traced
    np.testing.assert_array_equal(again.mean_probs, first.mean_probs)


@pytest.mark.parametrize("kwargs, error", [({"samples": 0}, ValueError), ({"batch_size": 1.5}, ValueError)])
def test_validation(kwargs, error):
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(2)])
    with pytest.raises(error, match=next(iter(kwargs))):
        predict_mc(model, np.zeros((2, 2), np.float32), **kwargs)
    with pytest.raises(TypeError, match="model"):
        predict_mc("model", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="x"):
        predict_mc(model, np.zeros((0, 2), np.float32))


def test_repeated_calls_trace_the_model_once(rng):
    traces = []

    class Counting(tf.keras.layers.Layer):
        def call(self, x):
            traces.append(1)  # Python side effect: runs only while tracing
            return x

    model = tf.keras.Sequential([tf.keras.Input((6,)), Counting(), tf.keras.layers.Dense(3)])
    predict_mc(model, rng.normal(size=(8, 6)).astype(np.float32), samples=3, batch_size=8)
    after_first = len(traces)
    for _ in range(3):
        predict_mc(model, rng.normal(size=(8, 6)).astype(np.float32), samples=3, batch_size=8)
    assert len(traces) == after_first


def test_deterministic_twin_equals_the_model_built_without_mc_dropout(rng):
    from edgebnn import zoo
    from edgebnn.deploy.convert import random_inference_layers
    from edgebnn.evaluation.uncertainty import deterministic_twin

    tf.keras.utils.set_random_seed(0)
    model = zoo.get("guan_lenet")(precision="float", dropout_rate=0.5, mc_dropout=True)
    plain = zoo.get("guan_lenet")(precision="float", dropout_rate=0.5, mc_dropout=False)  # the reference
    plain.set_weights(model.get_weights())
    twin = deterministic_twin(model)
    x = rng.uniform(0, 1, size=(8, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(twin(x)), np.asarray(plain(x)), rtol=1e-6, atol=1e-6)
    assert not random_inference_layers(twin) and random_inference_layers(model)  # the model is unchanged
    assert not np.array_equal(np.asarray(model(x)), np.asarray(model(x)))


def test_uncertainty_summary_against_numpy_and_a_given_threshold():
    from edgebnn.evaluation.uncertainty import MCPrediction, uncertainty_summary

    u = np.arange(10, dtype=np.float64) / 100  # 0.00 .. 0.09
    prediction = MCPrediction(np.array([0, 1] * 5, np.int64), np.zeros((10, 2), np.float32), u)
    y = np.array([0] * 10)
    own = uncertainty_summary(prediction, y)
    assert own == pytest.approx({"accuracy": 0.5, "mean": 0.045, "median": 0.045,
                                 "percentile": np.percentile(u, 90), "above": 0.1})
    assert uncertainty_summary(prediction, y, threshold=0.045)["above"] == 0.5  # 0.05 .. 0.09
    with pytest.raises(ValueError, match=r"`y` must hold one label per example, shape \(10,\), got shape \(9,\)"):
        uncertainty_summary(prediction, y[:9])
