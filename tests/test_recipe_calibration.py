"""``train.calibrate_batch_norm``: the runner recomputes every BatchNorm's statistics on the cell's
training images after training; an opt-in part of the model's store key, refused at the door on a
model it cannot calibrate."""

import numpy as np
import pytest

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn.recipes import config, plan, runner, steps
from edgebnn.recipes.console import Console
from edgebnn.recipes.schema import RecipeError
from edgebnn.recipes.store import Store

import tensorflow as tf

SIDE, CLASSES, N_TRAIN, N_TEST = 28, 3, 96, 40


class _Quiet(Console):
    def line(self, message):
        pass

    def note(self, message):
        pass


def _recipe(data_path, *, model='family = "eev_bnn"\nprecision = "ternary"\ninput_bits = 1\n'
            'options = { hidden_units = 16, hidden_layers = 1 }', train_extra=""):
    return f"""
name = "calibration"
[data]
files = "{data_path}"
[model]
{model}
[train]
epochs = 1
batch_size = 32
{train_extra}
[evaluation]
limit = {N_TEST}
batch_size = 20
[deploy]
enabled = false
"""


@pytest.fixture
def data_path(tmp_path):
    """A small ``.npz`` of uint8 images whose class is the brightest row band."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, N_TRAIN + N_TEST)
    x = rng.integers(0, 80, (len(y), SIDE, SIDE), dtype=np.uint8)
    band = SIDE // CLASSES
    for i, label in enumerate(y):
        x[i, label * band:(label + 1) * band] = 230
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x[:N_TRAIN], y_train=y[:N_TRAIN], x_test=x[N_TRAIN:], y_test=y[N_TRAIN:])
    return path


def _load(tmp_path, text):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return config.load(path)


def _model_key(tmp_path, text):
    study = _load(tmp_path, text)
    return plan.model_key(study.cells[0].recipe)


def test_calibration_is_an_opt_in_part_of_the_model_key(tmp_path, data_path):
    default = _model_key(tmp_path, _recipe(data_path))
    assert _model_key(tmp_path, _recipe(data_path, train_extra="calibrate_batch_norm = false")) == default
    calibrated = _model_key(tmp_path, _recipe(data_path, train_extra="calibrate_batch_norm = true"))
    assert calibrated != default
    train = _load(tmp_path, _recipe(data_path)).cells[0].recipe.train.model_dump(mode="json")
    assert "calibrate_batch_norm" not in train  # the keys of every recipe that does not set it stay as they were
    with pytest.raises(RecipeError, match="calibrate_batch_norm"):
        _load(tmp_path, _recipe(data_path, train_extra='calibrate_batch_norm = "yes"'))


def test_the_stored_model_has_the_statistics_of_its_training_images(tmp_path, data_path):
    study = _load(tmp_path, _recipe(data_path, train_extra="calibrate_batch_norm = true"))
    out = tmp_path / "run"
    runner.run(study, out, console=_Quiet())
    recipe = study.cells[0].recipe
    folder = Store(out).model_dir(plan.model_key(recipe))
    info = steps.read_json(folder / "train.json")
    assert info["batch_norm_calibration"]["images"] == N_TRAIN
    model = tf.keras.models.load_model(folder / "model.keras", compile=False)
    x = steps.load_data(recipe.data).x_train
    norms = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert len(norms) == 2
    for layer in norms:
        z = tf.keras.Model(model.inputs, layer.input)(x, training=False).numpy().astype(np.float64)
        np.testing.assert_allclose(layer.moving_mean.numpy(), z.mean(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), z.var(axis=0), rtol=1e-5, atol=1e-5)


def test_a_model_without_batch_norm_or_random_at_inference_is_refused_before_training(tmp_path, data_path):
    extra = "calibrate_batch_norm = true"
    no_norm = 'family = "galloway_cnn"\nprecision = "A"\noptions = { kernels = 32 }'
    with pytest.raises(RecipeError, match=r"^`train.calibrate_batch_norm`: calibrate_batch_norm: model .* has no "
                                          r"BatchNormalization layer"):
        runner.run(_load(tmp_path, _recipe(data_path, model=no_norm, train_extra=extra)), tmp_path / "a",
                   console=_Quiet())
    stochastic = 'family = "galloway_cnn"\nprecision = "S"\noptions = { kernels = 32 }'
    with pytest.raises(RecipeError, match=r"`train.calibrate_batch_norm`: the model samples at inference"):
        runner.run(_load(tmp_path, _recipe(data_path, model=stochastic, train_extra=extra)), tmp_path / "b",
                   console=_Quiet())
    assert not list((tmp_path / "a" / "store").glob("models/*/model.keras"))
