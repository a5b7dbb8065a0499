"""One training function for every epoch of a training that draws no random numbers: same bits as a
function traced afresh per epoch, and a fresh function wherever the step draws random numbers."""

import numpy as np
import pytest

from edgebnn.training import AdversarialModel, train
from edgebnn.training import fit
from edgebnn.zoo.panda_fcn import build_fcn

import tensorflow as tf


class _Functions(tf.keras.callbacks.Callback):
    """Records the training function every epoch ran."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(self.model.train_function)


def _run(x, y, validation):
    tf.keras.utils.set_random_seed(3)
    model = build_fcn(hidden_units=32, hidden_layers=2, precision="binary")
    functions = _Functions()
    history = train(model, x, y, epochs=3, batch_size=32, seed=7, validation_data=validation, callbacks=[functions],
                    verbose=0)
    return model.get_weights(), history.history, functions.seen


def test_a_deterministic_training_runs_one_function_and_trains_the_same_bits(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (100, 28, 28, 1)).astype(np.float32)  # a partial last batch of 4
    y = rng.integers(0, 10, len(x))
    validation = (x[:20], y[:20])
    shared, shared_history, shared_functions = _run(x, y, validation)
    monkeypatch.setattr(fit, "epochs_share_functions", lambda model: False)  # a function per epoch
    fresh, fresh_history, fresh_functions = _run(x, y, validation)
    assert len({id(f) for f in shared_functions}) == 1 and len({id(f) for f in fresh_functions}) == 3
    assert shared_history == fresh_history
    for a, b in zip(shared, fresh):
        np.testing.assert_array_equal(a, b)


class _Jitter(tf.keras.layers.Layer):
    """Adds uniform noise in training: a random op no layer list knows."""

    def call(self, inputs, training=None):
        return inputs + tf.random.uniform(tf.shape(inputs), maxval=1e-3) if training else inputs


class _Subclassed(tf.keras.Model):
    """A subclassed model: no declared inputs."""

    def __init__(self):
        super().__init__()
        self.dense = tf.keras.layers.Dense(3)

    def call(self, inputs):
        return self.dense(inputs)


def _mirrored():
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        return _dense(tf.keras.layers.Dense(4))


def _dense(*layers):
    return tf.keras.Sequential([tf.keras.Input((6,)), *layers, tf.keras.layers.Dense(3)])


@pytest.mark.parametrize("make, shares", [
    (lambda: _dense(tf.keras.layers.Dense(4)), True),
    (lambda: build_fcn(hidden_units=8, hidden_layers=1, precision="binary", input_shape=(6,)), True),
    (lambda: _dense(tf.keras.layers.Dropout(0.5)), False),
    (lambda: _dense(_Jitter()), False),  # found in the traced graph
    (lambda: AdversarialModel(_dense(tf.keras.layers.Dense(4)), method="fgsm", eps=0.1), False),  # its own step
    (lambda: _Subclassed(), False),  # no declared input to trace the forward pass for
    (lambda: _mirrored(), False),  # distributed variables: traced only under its strategy
])
def test_a_function_per_epoch_wherever_the_step_may_draw_random_numbers(make, shares):
    assert fit.epochs_share_functions(make()) is shares
