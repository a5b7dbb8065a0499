"""Optimizers and learning-rate schedules by name."""

import numpy as np
import pytest

from edgebnn.training import learning_rate_schedule, make_optimizer

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
    assert isinstance(adam, tf.keras.optimizers.Adam) and adam.weight_decay is None


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
