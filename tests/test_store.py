"""The studies store as a cache of trained weights for drivers that build models in code."""

import json

import numpy as np
import pytest

from edgebnn.recipes import store
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


def test_trained_model_trains_once_and_loads_the_same_weights_under_its_payload_key(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 32)
    calls = []

    def train_data():
        calls.append(1)
        return x, y

    settings = dict(options={"precision": "binary", "input_bits": 2, "hidden_units": 8, "hidden_layers": 1},
                    data="random/32", key={"train_limit": 32}, epochs=1, batch_size=16, seed=3, cache=tmp_path)
    first = store.trained_model("panda_fcn2", train_data=train_data, **settings)
    second = store.trained_model("panda_fcn2", train_data=train_data, **settings)
    assert (first.stored, second.stored, len(calls)) == (False, True, 1)
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    payload = {"family": "panda_fcn2", "precision": "binary", "input_bits": 2, "hidden_units": 8, "hidden_layers": 1,
               "data": "random/32", "train_limit": 32, "epochs": 1, "batch_size": 16, "seed": 3}
    assert first.key == second.key == weights_key(payload)
    assert json.loads((Store(None, cache=tmp_path).model_dir(first.key) / "config.json").read_text()) == payload
    assert first.model.get_layer("dense_0").units == 8
    assert first.model.evaluate(x, y, verbose=0)[1] == second.model.evaluate(x, y, verbose=0)[1]  # both compiled


@pytest.mark.parametrize("change, message", [
    (dict(key={"seed": 1}), r"`key`: \['seed'\] are written from the other arguments"),
    (dict(key={"precision": "float"}), r"`key`: \['precision'\]"),
    (dict(epochs=0), r"`epochs` must be a positive int, got 0"),
    (dict(batch_size=2.5), r"`batch_size` must be a positive int"),
    (dict(seed=-1), r"`seed` must be an int"),
    (dict(data=""), r"`data` must be a non-empty text"),
])
def test_training_payload_refuses_bad_settings_naming_them(change, message):
    settings = {**dict(options={"precision": "binary"}, data="d", epochs=1, batch_size=8, seed=0), **change}
    with pytest.raises(ValueError, match=message):
        store.training_payload("panda_fcn2", **settings)


def test_trained_model_refuses_train_data_that_is_not_callable_before_building(tmp_path):
    with pytest.raises(TypeError, match=r"`train_data` must be a callable returning \(x, y\), got tuple"):
        store.trained_model("panda_fcn2", options={}, data="d", train_data=(1, 2), epochs=1, batch_size=8, seed=0,
                            cache=tmp_path)
    assert not any(tmp_path.iterdir())


def test_load_weights_loads_only_what_is_stored_and_leaves_the_model_alone_otherwise(tmp_path):
    def build():
        return tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2, name="out")], name="net")

    cache = Store(None, cache=tmp_path)
    payload = {"family": "dense", "seed": 0}
    model = build()
    before = [w.copy() for w in model.get_weights()]
    assert cache.load_weights(model, payload) is False
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    cache.trained_weights(build(), payload, lambda m: m.set_weights([np.ones_like(w) for w in m.get_weights()]))
    assert cache.load_weights(model, payload) is True
    assert all(np.all(w == 1.0) for w in model.get_weights())
