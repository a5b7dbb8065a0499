"""Optimizers and learning-rate schedules by name."""

import numpy as np
import pytest

from edgebnn.training import compile_for_classification, learning_rate_schedule, make_optimizer, train
from edgebnn.training.optim import InPlaceAdam
from edgebnn.zoo.panda_fcn import build_fcn

import tensorflow as tf


def test_constant_is_a_float():
    assert learning_rate_schedule(0.1, steps_per_epoch=10, epochs=3) == 0.1


def test_step_schedule_decays_at_the_given_epochs():
    lr = learning_rate_schedule(0.1, schedule="step", steps_per_epoch=10, epochs=30,
                                decay_epochs=[10, 20], decay_factor=0.1)
    # PiecewiseConstantDecay: value i applies for steps <= boundary i
    got = [float(lr(step)) for step in (0, 99, 101, 199, 201, 299)]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_cosine_reaches_zero_at_the_end():
    lr = learning_rate_schedule(0.2, schedule="cosine", steps_per_epoch=5, epochs=4)
    assert float(lr(0)) == pytest.approx(0.2)
    assert float(lr(10)) == pytest.approx(0.1, rel=1e-5)  # half way: (1 + cos(pi/2)) / 2
    assert float(lr(20)) == pytest.approx(0.0, abs=1e-7)


def test_optimizers():
    sgd = make_optimizer("sgd", learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    assert isinstance(sgd, tf.keras.optimizers.SGD) and sgd.nesterov and sgd.weight_decay == pytest.approx(5e-4)
    assert float(sgd.momentum) == pytest.approx(0.9)
    adam = make_optimizer("adam", learning_rate=1e-3)
    assert isinstance(adam, InPlaceAdam) and isinstance(adam, tf.keras.optimizers.Adam) and adam.weight_decay is None


def _seeded_fcn(precision):
    tf.keras.utils.set_random_seed(5)
    return build_fcn(hidden_units=48, hidden_layers=2, precision=precision)


def _train_state(optimizer, precision, x, y):
    """Weights and optimizer variables after 2 epochs of a small Panda FCN (batches of 32, one
    shorter last batch) compiled with ``optimizer``."""
    model = _seeded_fcn(precision)
    compile_for_classification(model, optimizer=optimizer)
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    return [np.asarray(w) for w in model.get_weights()] + [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("precision", ["binary", "float"])
@pytest.mark.parametrize("options", [dict(learning_rate=1e-2), dict(learning_rate=1e-3, beta_1=0.8, epsilon=1e-5)])
def test_in_place_adam_trains_the_same_bits_as_keras_adam(precision, options):
    """Same weights, moments and step counter, bit for bit (signs of zeros included), as Keras' Adam
    after 2 epochs of 7 batches (the BNN's clipped latent weights included)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (200, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    keras = _train_state(tf.keras.optimizers.Adam(**options), precision, x, y)
    ours = _train_state(InPlaceAdam(**options), precision, x, y)
    assert len(ours) == len(keras)
    for a, b in zip(ours, keras):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))
    assert all(not np.array_equal(a, b) for a, b in zip(ours, _seeded_fcn(precision).get_weights()))  # all trained


def test_in_place_adam_steps_in_place_and_falls_back_where_it_must():
    """Outside XLA the update is TensorFlow's in-place training ops; with ``jit_compile`` and AMSGrad
    it is Keras' own."""

    def op_types(optimizer):
        var = tf.Variable(tf.ones([4, 3]))
        optimizer.build([var])
        step = tf.function(lambda g: optimizer.apply_gradients([(g, var)]))
        graph = step.get_concrete_function(tf.TensorSpec([4, 3])).graph
        types = {op.type for op in graph.get_operations()}
        for f in graph._functions.values():  # the XLA-compiled update is a function of its own
            types |= {node.op for node in f.definition.node_def}
        return types

    assert {"ResourceApplyAdam", "ResourceApplyGradientDescent"} <= op_types(InPlaceAdam())
    assert "ResourceApplyAdam" not in op_types(InPlaceAdam(amsgrad=True))
    xla = InPlaceAdam()
    xla.jit_compile = True  # as compile_for_classification(xla="update") sets it (Keras' default is off on CPU)
    assert "ResourceApplyAdam" not in op_types(xla)


@pytest.mark.parametrize("call, match", [
    (lambda: make_optimizer("rmsprop", learning_rate=0.1), "`name` must be one of"),
    (lambda: make_optimizer("sgd", learning_rate=0.1, momentum=1.0), "`momentum`"),
    (lambda: make_optimizer("adam", learning_rate=0.1, weight_decay=-1), "`weight_decay`"),
    (lambda: learning_rate_schedule(0.1, schedule="exp", steps_per_epoch=1, epochs=2), "`schedule`"),
    (lambda: learning_rate_schedule(0.1, schedule="step", steps_per_epoch=1, epochs=5, decay_epochs=[5]),
     "`decay_epochs`"),
    (lambda: learning_rate_schedule(0.0, steps_per_epoch=1, epochs=2), "`learning_rate`"),
])
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_run_checkpointed_with_keras_adam_resumes_with_in_place_adam_to_the_same_bits(tmp_path):
    """A resume state written by a training on Keras' Adam (before edgebnn had its own) restores into
    :class:`InPlaceAdam`, and the resumed run ends on the weights of an uninterrupted Keras run."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (96, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, len(x))

    def run(optimizer, epochs, folder=None):
        tf.keras.utils.set_random_seed(2)
        model = build_fcn(hidden_units=32, hidden_layers=2, precision="binary")
        compile_for_classification(model, optimizer=optimizer)
        history = train(model, x, y, epochs=epochs, batch_size=32, seed=4, checkpoint_dir=folder, verbose=0)
        return model.get_weights(), history.epoch

    run(tf.keras.optimizers.Adam(), 1, tmp_path)
    resumed, epochs_run = run(InPlaceAdam(), 2, tmp_path)
    assert epochs_run == [1]  # the second epoch only: the first came from the checkpoint
    for a, b in zip(resumed, run(tf.keras.optimizers.Adam(), 2)[0]):
        np.testing.assert_array_equal(a, b)
