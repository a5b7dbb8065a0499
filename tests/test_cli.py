"""`python -m edgebnn.recipes`: end to end on a small real subset, and clear failures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cli(*args, data_dir=None, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if data_dir is not None:
        env["EDGEBNN_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "edgebnn.recipes", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=900,
    )


def test_list_shows_quickstart():
    result = _cli("list")
    assert result.returncode == 0, result.stderr
    assert "quickstart" in result.stdout


def test_quickstart_end_to_end_on_a_small_subset(tmp_path, data_dir):
    out = tmp_path / "run"
    result = _cli(
        "run", "quickstart", "--out", str(out),
        "--set", "data.train_limit=400", "--set", "data.test_limit=200", "--set", "train.epochs=1",
        "--set", "evaluation.limit=100", "--set", "attacks.1.steps=5",
        *(f"--set=robustness.0.{key}" for key in (
            "limit=30", "steps=5", "pgd_steps=3", "restarts=1", "target_classes=2", "square_queries=50")),
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("model.keras", "model.tflite", "report.json", "report.md"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"] == "quickstart"
    assert report["dataset"] == {"name": "fashion_mnist", "train_size": 400, "test_size": 200, "attack_size": 100}
    assert 0.2 < report["clean_accuracy"] <= 1.0  # well above chance (0.1) after one epoch
    attacks = {(a["name"], a["eps"]): a["accuracy"] for a in report["attacks"]}
    assert set(attacks) == {(n, e) for n in ("fgsm", "pgd") for e in (0.05, 0.1, 0.2)}
    assert all(0.0 <= acc <= 1.0 for acc in attacks.values())
    assert attacks[("pgd", 0.2)] <= attacks[("fgsm", 0.05)]
    [strong] = [r for r in report["cells"][0]["results"] if r["evaluation"] == "robustness"]
    assert strong["images"] == 30 and set(strong["robust_accuracy"]) == {"0.1"}
    ensemble_members = {name: acc for name, acc in strong["report"]["results"][0]["accuracy"].items()
                        if name.startswith(("apgd", "square"))}
    assert len(ensemble_members) == 7  # APGD-CE and APGD-T for each of the three surrogates, and Square
    assert strong["robust_accuracy"]["0.1"] <= min(ensemble_members.values())
    assert "Gradient-masking checks" in (out / "report.md").read_text()
    deployed = report["deployed"]
    assert deployed["tflite_bytes"] == (out / "model.tflite").stat().st_size
    assert deployed["float_tflite_bytes"] > 20 * deployed["tflite_bytes"]  # binary end to end (rewrites)
    assert deployed["layer_ops"] == {"binary": 5, "int8": 0, "float": 0}
    assert deployed["agreement_clean"] >= 0.99 and deployed["agreement_adversarial"] >= 0.98
    assert abs(deployed["accuracy_clean"] - report["clean_accuracy"]) <= 0.01
    assert deployed["adversarial_examples"] == 6 * 100
    for path in ("default", "indirect_bgemm"):  # LCE kernel paths cross-checked once, on clean inputs
        assert deployed["kernels"][path]["agreement_with_reference"] == 1.0
    assert report["seconds"] > 0
    markdown = (out / "report.md").read_text()
    assert "| pgd | 0.2 |" in markdown and "agreement with Keras" in markdown
    assert "| weight layers: binary / int8 / float | 5 / 0 / 0 |" in markdown
    assert not list(out.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize(
    "args, message",
    [
        (("run", "nope"), "unknown recipe 'nope'"),
        (("run", "quickstart", "--set", "train.epochz=1"), "unknown key `train.epochz`"),
        (("run", "quickstart", "--set", "model.input_bits=12"), "input_bits"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message):
    result = _cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]


def test_debug_env_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("EDGEBNN_DEBUG", "1")
    result = _cli("run", "nope")
    assert result.returncode == 1 and "Traceback" in result.stderr and "RecipeError" in result.stderr


def test_missing_dataset_is_one_line_and_nonzero(tmp_path):
    result = _cli("run", "quickstart", "--set", 'data.dataset="mnist"', "--set", "train.epochs=1",
                  data_dir=tmp_path / "empty", cwd=REPO)
    # MNIST train is not in an empty folder; offline tfds cannot download it.
    if result.returncode == 0:
        pytest.skip("tensorflow-datasets could provide MNIST here (online machine)")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: Dataset 'mnist' split 'train' not found")


INTERRUPTED = """
name = "interrupted"
[data]
dataset = "fashion_mnist"
train_limit = 256
test_limit = 64
[model]
family = "panda_fcn2"
precision = "float"
options = { hidden_layers = 1 }
[train]
epochs = 2
batch_size = 128
[evaluation]
limit = 32
[deploy]
enabled = false
"""


@pytest.mark.slow  # trains twice in-process
def test_ctrl_c_is_one_line_exit_130_and_the_run_resumes(tmp_path, data_dir, monkeypatch, capsys):
    import tensorflow as tf

    from edgebnn import training
    from edgebnn.recipes.__main__ import EXIT_INTERRUPTED, main

    monkeypatch.setenv("EDGEBNN_DATA_DIR", str(data_dir))
    recipe, out = tmp_path / "interrupted.toml", tmp_path / "run"
    recipe.write_text(INTERRUPTED)
    real_train = training.train

    class CtrlC(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    def train_interrupted_in_epoch_2(*args, callbacks=(), **kwargs):
        return real_train(*args, callbacks=[*callbacks, CtrlC()], **kwargs)

    monkeypatch.setattr(training, "train", train_interrupted_in_epoch_2)
    assert main(["run", str(recipe), "--out", str(out)]) == EXIT_INTERRUPTED
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["interrupted: rerun the same command to resume; finished epochs and "
                                         "results are kept"]
    assert "epoch 1/2" in captured.out and "epoch 2/2" not in captured.out
    assert json.loads((out / "report.json").read_text())["status"] == "interrupted"

    monkeypatch.setattr(training, "train", real_train)
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    resumed = capsys.readouterr().out
    assert "resuming from the last finished epoch" in resumed
    assert "epoch 1/2" not in resumed and "epoch 2/2" in resumed
    assert json.loads((out / "report.json").read_text())["status"] == "complete"
