"""Your own model and data in a recipe: ``model.file``, ``model.builder``, families from other
packages' entry points, ``data.files`` and tensorflow-datasets names; their checks before anything
runs, their store keys, and the TensorBoard logs of trained cells."""

import io
import shutil
import sys
import textwrap

import numpy as np
import pytest

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import data, zoo
from edgebnn.layers import InputDiscretization
from edgebnn.recipes import config, plan, runner, steps
from edgebnn.recipes.console import Console
from edgebnn.recipes.schema import RecipeError

import larq as lq
import tensorflow as tf

SIDE, CLASSES = 8, 3


def tiny_bnn(*, classes=CLASSES, side=SIDE, softmax=False, width=16):
    """A Larq binary FCN of the form edgebnn.certify decides (2-bit input, bias-free binary dense + BN)."""
    binary = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    model = tf.keras.Sequential([
        tf.keras.Input((side, side, 1)), InputDiscretization(2), tf.keras.layers.Flatten(),
        lq.layers.QuantDense(width, **binary), tf.keras.layers.BatchNormalization(scale=False),
        lq.layers.QuantDense(classes, input_quantizer="ste_sign", **binary),
        tf.keras.layers.BatchNormalization(scale=False),
    ])
    if softmax:
        model.add(tf.keras.layers.Activation("softmax"))
    return model


def tiny_data(*, n_train=96, n_test=48, classes=CLASSES, seed=0):
    """Images whose class is the brightest row band, as uint8."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(classes), rng.integers(0, classes, n_train + n_test - classes)])
    x = rng.integers(0, 80, (len(y), SIDE, SIDE), dtype=np.uint8)
    band = SIDE // classes
    for i, label in enumerate(y):
        x[i, label * band:(label + 1) * band] = 230
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}


@pytest.fixture
def files(tmp_path):
    """``(model path, data path)`` of a saved tiny BNN and its data."""
    tf.keras.utils.set_random_seed(0)
    model_path, data_path = tmp_path / "my.keras", tmp_path / "data.npz"
    tiny_bnn().save(model_path)
    np.savez(data_path, **tiny_data())
    return model_path, data_path


def recipe_text(*, model='file = "my.keras"', data='files = "data.npz"', rest=""):
    return textwrap.dedent(f"""\
        name = "own"
        [data]
        {data}
        [model]
        {model}
        [evaluation]
        limit = 16
        batch_size = 16
        [deploy]
        enabled = false
        """) + textwrap.dedent(rest)


def load(tmp_path, text, name="own.toml", **kwargs):
    path = tmp_path / name
    path.write_text(text)
    return config.load(path, **kwargs)


def run(study, out):
    return runner.run(study, out, console=Console(stream=io.StringIO()))


# --- store keys ---------------------------------------------------------------------------


def test_new_keys_leave_the_dumps_of_existing_recipes_as_they_were():
    recipe = config.recipe_model().model_validate({"name": "x"})
    assert "file" not in recipe.model.model_dump() and "builder" not in recipe.model.model_dump()
    assert "files" not in recipe.data.model_dump() and "tensorboard" not in recipe.train.model_dump()
    off = config.recipe_model().model_validate({"name": "x", "train": {"tensorboard": False}})
    assert plan.model_key(off) == plan.model_key(recipe)  # logging does not change the model


def test_a_file_model_is_keyed_by_its_sha256_not_its_path(tmp_path, files):
    key = plan.model_key(load(tmp_path, recipe_text()).cells[0].recipe)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(files[0], moved / "renamed.keras")
    shutil.copy(files[1], moved / "data.npz")
    assert plan.model_key(load(moved, recipe_text(model='file = "renamed.keras"')).cells[0].recipe) == key
    tf.keras.utils.set_random_seed(1)
    tiny_bnn().save(files[0])  # other weights, same path
    assert plan.model_key(load(tmp_path, recipe_text()).cells[0].recipe) != key


def test_a_file_model_trains_only_when_the_recipe_has_a_train_table(tmp_path, files):
    as_saved = load(tmp_path, recipe_text()).cells[0].recipe
    tuned = load(tmp_path, recipe_text(rest="[train]\nepochs = 1\n")).cells[0].recipe
    by_set = load(tmp_path, recipe_text(), overrides=["train.epochs=2"]).cells[0].recipe
    assert plan.model_key(as_saved) != plan.model_key(tuned) != plan.model_key(by_set)
    assert plan.model_key(as_saved) == plan.model_key(load(tmp_path, recipe_text(data='dataset = "mnist"'))
                                                      .cells[0].recipe)  # untrained: the data does not matter


def test_relative_paths_read_from_the_recipe_folder_and_set_paths_from_the_working_directory(
        tmp_path, files, monkeypatch):
    recipe = load(tmp_path, recipe_text()).cells[0].recipe
    assert recipe.model.file == str(files[0]) and recipe.data.files == str(files[1])
    other = tmp_path / "recipes"
    other.mkdir()
    monkeypatch.chdir(tmp_path)
    recipe = load(other, recipe_text(model='file = "missing.keras"', data='files = "missing.npz"'),
                  overrides=["model.file=my.keras", "data.files=data.npz"]).cells[0].recipe
    assert recipe.model.file == str(files[0]) and recipe.data.files == str(files[1])


# --- errors before anything runs ------------------------------------------------------------------


BUILDER_MODULE = '''
import edgebnn
import tensorflow as tf


def small(*, width=8, classes=3):
    return tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(),
                                tf.keras.layers.Dense(width, activation="relu"), tf.keras.layers.Dense(classes)])


def not_a_model():
    return "a string"

constant = 3
'''


@pytest.fixture
def builder_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(BUILDER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models"
    sys.modules.pop("my_models", None)


@pytest.mark.parametrize("model, data, message", [
    ('file = "nope.keras"', 'files = "data.npz"', r"`model.file`: no model file at .*nope.keras"),
    ('file = "data.npz"', 'files = "data.npz"', r"`model.file` must be a .keras or .h5 file"),
    ('file = "my.keras"\nfamily = "panda_fcn2"', 'files = "data.npz"', r"`model.family` applies to zoo families only"),
    ('file = "my.keras"\noptions = { width = 3 }', 'files = "data.npz"', r"`model.options` applies to zoo families"),
    ('file = "my.keras"\nbuilder = "my_models:small"', 'files = "data.npz"', r"not both"),
    ('builder = "my_models.small"', 'files = "data.npz"', r'`model.builder` must be "package.module:function"'),
    ('builder = "no_such_module_x:small"', 'files = "data.npz"', r"cannot import module 'no_such_module_x'"),
    ('builder = "my_models:large"', 'files = "data.npz"', r"module 'my_models' has no 'large'"),
    ('builder = "my_models:constant"', 'files = "data.npz"', r"is not callable"),
    ('builder = "my_models:small"\noptions = { depth = 2 }', 'files = "data.npz"',
     r"unknown key `model.options.depth` for my_models:small; valid keys: \['classes', 'width'\]"),
    ('builder = "my_models:small"\nprecision = "binary"', 'files = "data.npz"', r"`model.precision` applies to zoo"),
    ('file = "my.keras"', 'files = "nope.npz"', r"`data.files`: no data file at"),
    ('file = "my.keras"', 'files = "my.keras"', r"`data.files` must be an .npz file"),
    ('file = "my.keras"', 'files = "data.npz"\ndataset = "mnist"', r"either `data.dataset` or `data.files`"),
    ('file = "my.keras"', 'files = "data.npz"\nsplit = { train = 10, test = 10 }', r"`data.split` carves a built-in"),
    ('file = "my.keras"', 'dataset = "imdb_reviews"', r"not an image classification set"),
    ('file = "my.keras"', 'dataset = "no_such_set_x"', r"must be one of .* or a tensorflow-datasets image"),
])
def test_bad_sources_are_one_line_errors_when_the_recipe_loads(tmp_path, files, builder_module, model, data,
                                                               message):
    with pytest.raises(RecipeError, match=message) as e:
        load(tmp_path, recipe_text(model=model, data=data))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not a zip"), r"`model.file`: cannot load .* as a Keras model"),
    (lambda p: tiny_bnn(classes=4).save(p), r"`model.file`: the model's output has shape \(4,\), but the data has 3 "
                                            r"classes"),
    (lambda p: tiny_bnn(side=6).save(p), r"takes inputs of shape \(6, 6, 1\), but the data's images are \(8, 8, 1\)"),
    (lambda p: tiny_bnn(softmax=True).save(p), r"ends in a softmax; edgebnn's losses and attacks take logits"),
])
def test_bad_model_files_fail_before_any_training(tmp_path, files, make, message):
    make(files[0])
    study = load(tmp_path, recipe_text(rest="[train]\nepochs = 1\n"))
    with pytest.raises(RecipeError, match=message) as e:
        run(study, tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not list((tmp_path / "run" / "store").rglob("model.keras"))


def test_a_builder_must_return_a_keras_model(tmp_path, files, builder_module):
    study = load(tmp_path, recipe_text(model='builder = "my_models:not_a_model"'))
    with pytest.raises(RecipeError, match=r"returned a str, not a tf.keras.Model"):
        run(study, tmp_path / "run")


def test_a_builder_output_must_match_the_classes(tmp_path, files, builder_module):
    study = load(tmp_path, recipe_text(model='builder = "my_models:small"\noptions = { classes = 5 }'))
    with pytest.raises(RecipeError, match=r"`model.builder`: the model's output has shape \(5,\)"):
        run(study, tmp_path / "run")


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y_test"), r"missing array\(s\) \['y_test'\]"),
    (lambda a: a.update(x_train=a["x_train"] / 200.0), r"`x_train` float pixels must lie in \[0, 1\], got \[0, 1.15\]"),
    (lambda a: a.update(x_test=np.full((4, SIDE, SIDE), np.nan, np.float32)), r"`x_test` holds NaN"),
    (lambda a: a.update(x_test=a["x_test"][:, :4]), r"`x_test` images are \(4, 8, 1\), `x_train` images \(8, 8, 1\)"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), r"`y_train` has 95 labels for 96 images"),
    (lambda a: a.update(y_train=a["y_train"].astype(np.float32)), r"`y_train` must be integer class labels"),
    (lambda a: a.update(y_test=a["y_test"] - 1), r"`y_test` holds the negative label -1"),
    (lambda a: a.update(y_test=np.where(a["y_test"] == 0, 4, a["y_test"])),
     r"class\(es\) \[3, 4\] of 0..4 have no training images"),
    (lambda a: a.update(y_train=np.zeros_like(a["y_train"]), y_test=np.zeros_like(a["y_test"])),
     r"the labels name 1 class"),
    (lambda a: a.update(x_train=a["x_train"].astype(np.int32)), r"`x_train` must hold uint8 pixels or floats"),
])
def test_bad_data_files_name_the_array(tmp_path, change, message):
    arrays = tiny_data()
    change(arrays)
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(data.CorruptDataError, match=message) as e:
        data.load_npz(tmp_path / "d.npz")
    assert "\n" not in str(e.value)


def test_npz_pixels_uint8_and_float_give_the_same_images(tmp_path):
    arrays = tiny_data()
    np.savez(tmp_path / "u.npz", **arrays)
    np.savez(tmp_path / "f.npz", **{**arrays, "x_train": arrays["x_train"][..., None] / np.float32(255),
                                    "x_test": arrays["x_test"] / np.float32(255)})
    u, f = data.load_npz(tmp_path / "u.npz"), data.load_npz(tmp_path / "f.npz")
    np.testing.assert_allclose(u[0], f[0], atol=1e-7)
    assert u[0].shape == (96, SIDE, SIDE, 1) and u[4] == CLASSES and u[0].dtype == np.float32


def test_a_bundle_needs_test_pixels_on_the_uint8_grid(tmp_path, files):
    arrays = tiny_data()
    np.savez(files[1], **{**arrays, "x_test": arrays["x_test"] / np.float32(255) * 0.999})
    study = load(tmp_path, recipe_text().replace("enabled = false", "bundle = true"))
    with pytest.raises(RecipeError, match=r"`deploy.bundle`: .* between the 1/255 levels"):
        run(study, tmp_path / "run")


def test_an_offline_tfds_set_says_it_is_not_available_and_how_to_provide_it(monkeypatch):
    import tensorflow_datasets as tfds

    if tfds.builder("kmnist").is_prepared():
        pytest.skip("kmnist is prepared on this machine")
    monkeypatch.setattr(data, "_host_reachable", lambda address: False)
    assert data.tfds_info("kmnist") == ((28, 28, 1), 10)
    with pytest.raises(data.DatasetNotFoundError, match=r"'kmnist' split 'test' is not available: .*offline.*"
                                                        r"Run once online.*set data.files"):
        data.load_tfds("kmnist", "test")


# --- families from other packages --------------------------------------------------------------------


PLUGIN = '''
import tensorflow as tf


def plugin_mlp(*, precision, input_bits=None, num_classes=10, input_shape=(28, 28, 1), width=8):
    return tf.keras.Sequential([tf.keras.Input(input_shape), tf.keras.layers.Flatten(),
                                tf.keras.layers.Dense(width), tf.keras.layers.Dense(num_classes)])


plugin_mlp.precisions = ("float",)


def no_precisions(**kwargs):
    return None
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A package registering two families through the entry point group, on sys.path."""
    (tmp_path / "plugin_pkg.py").write_text(PLUGIN)
    info = tmp_path / "plugin_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{zoo.ENTRY_POINT_GROUP}]\nplugin_mlp = plugin_pkg:plugin_mlp\nbroken = plugin_pkg:no_precisions\n"
        "panda_fcn2 = plugin_pkg:plugin_mlp\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("plugin_pkg", None)


def test_families_registered_by_other_packages(tmp_path, plugin, files):
    assert {"plugin_mlp", "broken"} <= set(zoo.names())
    assert zoo.precisions("plugin_mlp") == ("float",)
    assert zoo.get("panda_fcn2") is zoo._REGISTRY["panda_fcn2"][0]  # built-ins win
    with pytest.raises(ValueError, match=r"needs a `precisions` attribute"):
        zoo.get("broken")
    study = load(tmp_path, recipe_text(model='family = "plugin_mlp"\nprecision = "float"\noptions = { width = 4 }',
                                       rest="[train]\nepochs = 1\n"))
    with pytest.raises(RecipeError, match=r"unknown key `model.options.depth` for plugin_mlp"):
        load(tmp_path, recipe_text(model='family = "plugin_mlp"\nprecision = "float"\noptions = { depth = 4 }'))
    report = run(study, tmp_path / "run")
    assert report["status"] == "complete" and report["cells"][0]["model"]["parameters"] == 8 * 8 * 4 + 4 + 4 * 3 + 3


# --- running, and TensorBoard ---------------------------------------------------------------------------


def scalars(log_dir):
    """``{tag: [value per epoch]}`` of the event files under ``log_dir`` (read back with TensorFlow)."""
    found = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    return found


def test_a_saved_model_runs_as_saved_and_a_train_table_fine_tunes_it(tmp_path, files):
    saved = tf.keras.models.load_model(files[0], compile=False).get_weights()
    report = run(load(tmp_path, recipe_text()), tmp_path / "run")
    cell = report["cells"][0]
    assert report["status"] == "complete" and cell["train"]["epochs"] == 0
    used = tf.keras.models.load_model(tmp_path / "run" / "model.keras", compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, used))
    assert not (tmp_path / "run" / steps.TENSORBOARD).exists()  # nothing trained
    tuned = run(load(tmp_path, recipe_text(rest="[train]\nepochs = 2\nbatch_size = 32\n")), tmp_path / "tuned")
    weights = tf.keras.models.load_model(tmp_path / "tuned" / "model.keras", compile=False).get_weights()
    assert tuned["cells"][0]["train"]["epochs"] == 2
    assert not all(np.array_equal(a, b) for a, b in zip(saved, weights))
    assert sorted(scalars(tmp_path / "tuned" / steps.TENSORBOARD / "own")) == ["epoch_accuracy", "epoch_loss"]


def test_tensorboard_logs_adversarial_accuracy_and_change_no_weights(tmp_path, files, builder_module):
    rest = """
        [train]
        epochs = 2
        batch_size = 32
        [train.adversarial]
        method = "fgsm"
        eps = 0.1
        """
    text = recipe_text(model='builder = "my_models:small"', rest=rest)
    run(load(tmp_path, text, "on.toml"), tmp_path / "on")
    logged = scalars(tmp_path / "on" / steps.TENSORBOARD / "own")
    assert sorted(logged) == ["epoch_accuracy", "epoch_adversarial_accuracy", "epoch_loss"]
    assert all(len(v) == 2 for v in logged.values())
    assert all(0 <= a <= 1 for a in logged["epoch_adversarial_accuracy"])
    assert logged["epoch_adversarial_accuracy"] != logged["epoch_accuracy"]
    run(load(tmp_path, text.replace("[train]\n", "[train]\ntensorboard = false\n"), "off.toml"), tmp_path / "off")
    assert not (tmp_path / "off" / steps.TENSORBOARD).exists()
    on = tf.keras.models.load_model(tmp_path / "on" / "model.keras", compile=False).get_weights()
    off = tf.keras.models.load_model(tmp_path / "off" / "model.keras", compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(on, off))
