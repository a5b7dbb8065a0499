"""The studies store as a cache of trained weights for drivers that build models in code."""

import json

import numpy as np
import pytest

from edgebnn.recipes.store import Store, weights_key

import tensorflow as tf


def test_trained_weights_trains_once_per_payload_and_loads_the_same_weights(tmp_path):
    def build():
        return tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2, name="out")], name="net")

    calls = []

    def train_fn(model):
        calls.append(1)
        model.set_weights([np.full(w.shape, len(calls), np.float32) for w in model.get_weights()])

    store = Store(None, cache=tmp_path / "cache")
    payload = {"family": "dense", "epochs": 1, "seed": 0}
    first, second, other = build(), build(), build()
    assert store.trained_weights(first, payload, train_fn) is False
    assert store.trained_weights(second, payload, train_fn) is True
    assert len(calls) == 1
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert store.trained_weights(other, {**payload, "seed": 1}, train_fn) is False  # another payload trains
    assert len(calls) == 2 and other.get_weights()[0][0, 0] == 2.0
    folder = store.model_dir(weights_key(payload))
    assert sorted(p.name for p in folder.iterdir()) == ["checksums.json", "config.json", "model.weights.h5"]
    assert json.loads((folder / "config.json").read_text()) == payload


def test_trained_weights_stores_nothing_when_training_fails(tmp_path):
    def fail(model):
        raise RuntimeError("diverged")

    store = Store(None, cache=tmp_path / "cache")
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2, name="out")], name="net")
    with pytest.raises(RuntimeError, match="diverged"):
        store.trained_weights(model, {"seed": 0}, fail)
    folder = store.model_dir(weights_key({"seed": 0}))
    assert not folder.exists() or not any(folder.iterdir())
