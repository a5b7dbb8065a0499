"""XLA in training (``xla="update"`` / ``"step"``): how close to the plain step, reproducible,
exactly resumable, refused where XLA would ignore op seeds, and an opt-in part of a recipe's
model key."""

import numpy as np
import pytest

from edgebnn.recipes import config, plan
from edgebnn.training import AdversarialModel, compile_for_classification, train
from edgebnn.zoo.panda_fcn import build_fcn

import tensorflow as tf

#: Bound on ``|xla - plain| / (1 + |plain|)`` over every weight after one training step: float
#: rounding of other summation orders (measured about 5e-7 on these models).
ONE_STEP_RTOL = 1e-5
#: Bound on ``|xla - plain|`` over every weight of a float network after a few epochs (measured
#: about 5e-6). A binary network has no such bound: a pre-activation that rounds to the other side
#: of zero flips a sign, and from then on the two runs train different (equally good) networks.
FLOAT_EPOCHS_ATOL = 1e-4


def _model(precision, *, seed=3):
    tf.keras.utils.set_random_seed(seed)
    return build_fcn(hidden_units=64, hidden_layers=2, precision=precision)


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def _fit_one_batch(precision, xla, x, y):
    model = _model(precision)
    compile_for_classification(model, xla=xla)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return _weights(model)


@pytest.fixture(scope="module")
def plain_step(fashion_small):
    """``plain_step(precision)``: the weights after one plain (``xla="off"``) step on 100 images, computed once."""
    x, y = fashion_small[0][:100], fashion_small[1][:100]
    steps = {}

    def weights(precision):
        if precision not in steps:
            steps[precision] = _fit_one_batch(precision, "off", x, y)
        return steps[precision]

    return weights


@pytest.mark.parametrize("mode", ["update", "step"])
@pytest.mark.parametrize("precision", ["binary", "float"])
def test_one_xla_step_equals_the_plain_step_up_to_float_rounding(fashion_small, plain_step, precision, mode):
    x, y = fashion_small[0][:100], fashion_small[1][:100]
    plain, xla = plain_step(precision), _fit_one_batch(precision, mode, x, y)
    start = _weights(_model(precision))
    assert any(not np.array_equal(a, b) for a, b in zip(start, plain))  # the step changed the weights
    for a, b in zip(plain, xla):
        assert np.max(np.abs(a - b) / (1 + np.abs(a))) <= ONE_STEP_RTOL


@pytest.mark.parametrize("mode", ["step"])
def test_xla_training_of_a_float_network_stays_within_float_rounding(fashion_small, mode):
    x, y = fashion_small[0][:200], fashion_small[1][:200]
    runs = {}
    for xla in ("off", mode):
        model = _model("float")
        compile_for_classification(model, xla=xla)
        train(model, x, y, epochs=2, batch_size=50, seed=0, verbose=0)
        runs[xla] = _weights(model)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(runs["off"], runs[mode])) <= FLOAT_EPOCHS_ATOL


def _adversarial():
    """A binary FCN under R-FGSM adversarial training (random steps) from the second epoch."""
    return AdversarialModel(_model("binary"), method="rfgsm", eps=0.1, mode="augment", start_epoch=1)


class _Interrupt(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt("simulated interruption")


def test_xla_update_with_random_ops_resumes_bit_for_bit(fashion_small, tmp_path):
    x, y = fashion_small[0][:120], fashion_small[1][:120]
    options = dict(epochs=3, batch_size=40, seed=5, verbose=0)
    full = compile_for_classification(_adversarial(), xla="update")
    history = train(full, x, y, checkpoint_dir=tmp_path / "full", **options).history
    interrupted = compile_for_classification(_adversarial(), xla="update")
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, x, y, checkpoint_dir=tmp_path / "cut", callbacks=[_Interrupt()], **options)
    tf.keras.backend.clear_session()  # what a new process starts from
    resumed = compile_for_classification(_adversarial(), xla="update")
    resumed_history = train(resumed, x, y, checkpoint_dir=tmp_path / "cut", **options)
    assert resumed_history.epoch == [2]
    assert resumed_history.history == history  # the adversarial epochs 1 and 2 drew the same random numbers
    for a, b in zip(_weights(full), _weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_the_xla_step_refuses_a_training_that_draws_random_numbers():
    with pytest.raises(ValueError, match=r"`xla`: 'step' ignores op seeds.*rfgsm"):
        compile_for_classification(_adversarial(), xla="step")
    dropout = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dropout(0.5), tf.keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"Dropout is random in training"):
        compile_for_classification(dropout, xla="step")
    with pytest.raises(ValueError, match=r"`xla` must be one of"):
        compile_for_classification(_model("float"), xla=True)


RECIPE = """
name = "xla"
description = "key of the XLA option"
[data]
dataset = "fashion_mnist"
train_limit = 300
test_limit = 120
[model]
family = "panda_fcn2"
[train]
epochs = 1
[[attacks]]
name = "fgsm"
eps = 0.1
"""


def _model_key(tmp_path, extra=""):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.replace("epochs = 1\n", "epochs = 1\n" + extra))
    study = config.load(path)
    return plan.plan(study, lambda recipe: (300, 120))[study.cells[0].id].model_key


def test_the_xla_step_is_an_opt_in_part_of_the_model_key(tmp_path):
    default = _model_key(tmp_path)
    assert _model_key(tmp_path, 'xla = "off"\n') == default
    keys = {_model_key(tmp_path, f'xla = "{mode}"\n') for mode in ("update", "step")}
    assert len(keys) == 2 and default not in keys
    with pytest.raises(config.RecipeError, match="xla"):
        _model_key(tmp_path, "xla = true\n")
    with pytest.raises(config.RecipeError, match=r"`train.xla`: 'step' ignores op seeds"):
        _model_key(tmp_path, 'xla = "step"\n[train.adversarial]\nmethod = "pgd"\neps = 0.1\n')
