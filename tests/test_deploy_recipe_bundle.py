"""``deploy.bundle`` in a recipe: validated at load, and the run folder gets a device bundle."""

import io
import json
import textwrap

import numpy as np
import pytest

from edgebnn import data as data_lib
from edgebnn.deploy import device
from edgebnn.deploy.bundle import bundle, copy_bundle
from edgebnn.deploy.convert import convert
from edgebnn.recipes import config, runner
from edgebnn.recipes.config import RecipeError
from edgebnn.recipes.console import Console

import tensorflow as tf

RECIPE = textwrap.dedent(
    """
    name = "bundled"
    data = { dataset = "fashion_mnist", train_limit = 200, test_limit = 50 }
    model = { family = "panda_fcn2", precision = "binary", input_bits = 2 }
    train = { epochs = 1, batch_size = 50 }
    [deploy]
    target = "portable"
    verify = false
    bundle = true
    """
)


def _load(tmp_path, text, overrides=()):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return config.load(path, overrides=list(overrides))


@pytest.mark.parametrize(("override", "message"), [
    ("deploy.enabled=false", r"`deploy.bundle`: needs `deploy.enabled = true`"),
    ("deploy.bundle=1", r"`deploy.bundle`: input should be a valid boolean"),
])
def test_bundle_option_is_checked_at_load(tmp_path, override, message):
    with pytest.raises(RecipeError, match=message):
        _load(tmp_path, RECIPE, [override])


def test_bundle_is_off_by_default(tmp_path):
    assert _load(tmp_path, RECIPE.replace("bundle = true\n", "")).cells[0].recipe.deploy.bundle is False


def test_copy_bundle_publishes_a_checked_copy_only(tmp_path, rng):
    inputs = tf.keras.Input((4, 4, 1))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(tf.keras.layers.Flatten()(inputs)))
    x, y = rng.integers(0, 256, (6, 4, 4, 1)).astype(np.uint8), rng.integers(0, 3, 6)
    bundle(convert(model, target="portable"), x, y, tmp_path / "cache")
    copy_bundle(tmp_path / "cache", tmp_path / "run" / "bundle")
    for name in ("model.tflite", "eval.npz", "manifest.json"):
        assert (tmp_path / "run" / "bundle" / name).read_bytes() == (tmp_path / "cache" / name).read_bytes()
    with open(tmp_path / "cache" / "model.tflite", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(device.BundleError, match="sha256"):
        copy_bundle(tmp_path / "cache", tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.slow
def test_run_writes_a_bundle_the_device_runner_verifies(tmp_path, data_dir):
    study = _load(tmp_path, RECIPE, [f'data.data_dir="{data_dir}"'])
    out = tmp_path / "run"
    report = runner.run(study, out, console=Console(stream=io.StringIO()))
    manifest, model, arrays = device.read_bundle(out / "bundle")
    x_test, y_test = data_lib.load("fashion_mnist", "test", data_dir=data_dir, limit=50, seed=0)
    np.testing.assert_array_equal(arrays["x"], np.round(x_test * 255).astype(np.uint8))
    np.testing.assert_array_equal(arrays["y"], y_test)
    assert model == (out / "model.tflite").read_bytes()
    deployed = json.loads((out / "report.json").read_text())["deployed"]
    assert deployed["bundle"] == {"examples": 50, "accuracy": manifest["expected"]["accuracy"],
                                  "needs_lce_runtime": False}
    assert report["status"] == "complete"
    result = device.verify_bundle(out / "bundle")
    assert result["passed"]
