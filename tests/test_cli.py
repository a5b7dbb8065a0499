"""`python -m edgebnn.recipes`: end to end on a small real subset, and clear failures.

Every test calls ``main(argv)`` in-process but those about the process itself: the real
``python -m`` entry point (exit status and stderr), and which modules a failing run imported.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import attack, run_cli, small_study
from edgebnn.recipes.__main__ import DEBUG_ENV, EXIT_BAD_INPUT, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args, data_dir=None)`` -> ``(exit code, stdout, stderr lines)`` of ``main(args)``."""
    monkeypatch.delenv(DEBUG_ENV, raising=False)

    def call(*args, data_dir=None):
        if data_dir is not None:
            monkeypatch.setenv("EDGEBNN_DATA_DIR", str(data_dir))
        return run_cli(main, args, capsys)

    return call


def test_the_module_entry_point_exits_with_mains_status():
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(DEBUG_ENV, None)
    result = subprocess.run([sys.executable, "-m", "edgebnn.recipes", "run", "nope"], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=300)
    assert result.returncode == EXIT_BAD_INPUT and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown recipe 'nope'"), lines


#: Runs the CLI, then says on stderr whether TensorFlow was imported by the time the process exits.
_TENSORFLOW_AT_EXIT = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('tensorflow imported:', 'tensorflow' in sys.modules, file=sys.stderr))\n"
    "from edgebnn.recipes.__main__ import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)

_CLAIMED = small_study("claimed", attacks=[attack("fgsm", eps=[0.1])], rest="""
    [[claims]]
    id = "C1"
    claim = "FGSM lowers the accuracy"
    criterion = "accuracy under FGSM < clean accuracy"
    [[claims.compare]]
    left = { metric = "accuracy", match = { attack = "fgsm" } }
    op = "<"
    right = { metric = "accuracy", match = { attack = "clean" } }
""")


def _cli_process(*args, debug=False):
    """``(exit status, stderr lines)`` of the CLI run in a fresh Python process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(DEBUG_ENV, None)
    if debug:
        env[DEBUG_ENV] = "1"
    result = subprocess.run([sys.executable, "-c", _TENSORFLOW_AT_EXIT, *map(str, args)], capture_output=True,
                            text=True, env=env, cwd=REPO, timeout=300)
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.parametrize("override, message", [
    ("train.epochs=0", "`train.epochs`: input should be greater than or equal to 1, got 0."),
    ("attacks.0.eps=-0.1", "`attacks.0.eps`: must be a number >= 0 or a list of numbers >= 0, got -0.1."),
    ("data.colour=1", "unknown key `data.colour`"),
    ("claims.0.compare.0.left.metric=acuracy", "`claims.0.compare.0.left.metric`: claim 'C1' names the metric "
                                               "'acuracy', which no record it matches will carry; they carry: "),
])
def test_a_recipe_error_is_one_line_without_importing_tensorflow(tmp_path, override, message):
    path = tmp_path / "claimed.toml"
    path.write_text(_CLAIMED)
    code, lines = _cli_process("run", path, "--out", tmp_path / "run", "--set", override)
    assert code == EXIT_BAD_INPUT, lines
    assert len(lines) == 2 and lines[0].startswith(f"error: claimed.toml: {message}"), lines
    assert lines[1] == "tensorflow imported: False"
    assert not (tmp_path / "run").exists()

    code, lines = _cli_process("run", path, "--set", override, debug=True)
    assert code == 1 and lines[0] == "Traceback (most recent call last):", lines
    assert lines[-2].startswith("edgebnn.recipes.schema.RecipeError: claimed.toml: ") and message in lines[-2], lines
    assert lines[-1] == "tensorflow imported: False"


def test_list_imports_no_tensorflow():
    code, lines = _cli_process("list")
    assert code == 0 and lines == ["tensorflow imported: False"]


def test_list_shows_quickstart(cli):
    code, out, err = cli("list")
    assert code == 0, err
    assert "quickstart" in out


def _quickstart(cli, out, data_dir, *options):
    """Run the quickstart recipe on a small subset into ``out``; returns its report."""
    code, _, err = cli(
        "run", "quickstart", "--out", str(out),
        "--set", "data.train_limit=400", "--set", "data.test_limit=100", "--set", "train.epochs=1",
        "--set", "evaluation.limit=50", "--set", "attacks.1.steps=5",
        *(f"--set=robustness.0.{key}" for key in (
            "limit=10", "steps=5", "pgd_steps=3", "restarts=1", "target_classes=2", "square_queries=50")),
        *options, data_dir=data_dir,
    )
    assert code == 0, err[-30:]
    return json.loads((out / "report.json").read_text())


def _check_quickstart(report, out):
    """The quickstart's outputs, training, attacks and deployment (everything but its strong evaluation)."""
    for name in ("model.keras", "model.tflite", "report.json", "report.md"):
        assert (out / name).is_file(), name
    assert report["recipe"] == "quickstart"
    assert report["dataset"] == {"name": "fashion_mnist", "train_size": 400, "test_size": 100, "attack_size": 50}
    assert 0.2 < report["clean_accuracy"] <= 1.0  # well above chance (0.1) after one epoch
    attacks = {(a["name"], a["eps"]): a["accuracy"] for a in report["attacks"]}
    assert set(attacks) == {(n, e) for n in ("fgsm", "pgd") for e in (0.05, 0.1, 0.2)}
    assert all(0.0 <= acc <= 1.0 for acc in attacks.values())
    assert attacks[("pgd", 0.2)] <= attacks[("fgsm", 0.05)]
    deployed = report["deployed"]
    assert deployed["tflite_bytes"] == (out / "model.tflite").stat().st_size
    assert deployed["float_tflite_bytes"] > 20 * deployed["tflite_bytes"]  # binary end to end (rewrites)
    assert deployed["layer_ops"] == {"binary": 5, "int8": 0, "float": 0}
    assert deployed["agreement_clean"] >= 0.99 and deployed["agreement_adversarial"] >= 0.98
    assert abs(deployed["accuracy_clean"] - report["clean_accuracy"]) <= 0.01
    assert deployed["adversarial_examples"] == 6 * 50
    for path in ("default", "indirect_bgemm"):  # LCE kernel paths cross-checked once, on clean inputs
        assert deployed["kernels"][path]["agreement_with_reference"] == 1.0
    assert report["seconds"] > 0
    markdown = (out / "report.md").read_text()
    assert "| pgd | 0.2 |" in markdown and "agreement with Keras" in markdown
    assert "| weight layers: binary / int8 / float | 5 / 0 / 0 |" in markdown
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_quickstart_end_to_end_on_a_small_subset(tmp_path, data_dir, cli):
    """Everything of the quickstart but its strong evaluation, the longest part of the run: the
    whole recipe runs in test_quickstart_with_its_strong_evaluation (slow)."""
    out = tmp_path / "run"
    report = _quickstart(cli, out, data_dir, "--set", "robustness=[]")
    _check_quickstart(report, out)
    assert not [r for r in report["cells"][0]["results"] if r["evaluation"] == "robustness"]


@pytest.mark.slow
def test_quickstart_with_its_strong_evaluation(tmp_path, data_dir, cli):
    """The whole quickstart recipe. Its strong evaluation's parts run in the default suite too: the
    recipe's robustness kind in test_studies.py::test_strong_evaluation_kind_reports_the_ensemble_and_the_checks,
    the three default gradient surrogates in test_examples.py::test_strong_evaluation_example and
    test_strong_attacks.py."""
    out = tmp_path / "run"
    report = _quickstart(cli, out, data_dir)
    _check_quickstart(report, out)
    [strong] = [r for r in report["cells"][0]["results"] if r["evaluation"] == "robustness"]
    assert strong["images"] == 10 and set(strong["robust_accuracy"]) == {"0.1"}
    ensemble_members = {name: acc for name, acc in strong["report"]["results"][0]["accuracy"].items()
                        if name.startswith(("apgd", "square"))}
    assert len(ensemble_members) == 7  # APGD-CE and APGD-T for each of the three surrogates, and Square
    assert strong["robust_accuracy"]["0.1"] <= min(ensemble_members.values())
    assert "Gradient-masking checks" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (("run", "nope"), "unknown recipe 'nope'"),
        (("run", "quickstart", "--set", "train.epochz=1"), "unknown key `train.epochz`"),
        (("run", "quickstart", "--set", "model.input_bits=12"), "input_bits"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(cli, args, message):
    code, out, err = cli(*args)
    assert code == EXIT_BAD_INPUT and out == ""
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_debug_env_shows_the_traceback(cli, monkeypatch):
    from edgebnn.recipes.config import RecipeError

    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(RecipeError, match="unknown recipe 'nope'"):
        main(["run", "nope"])


def test_missing_dataset_is_one_line_and_nonzero(tmp_path, cli, monkeypatch):
    from edgebnn import data

    # MNIST train is not in an empty folder, and tensorflow-datasets is made to look offline
    # (no prepared copy, download host unreachable), whether or not this machine is online.
    monkeypatch.setattr(data, "_host_reachable", lambda address: False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no-tfds-here"))
    code, out, err = cli("run", "quickstart", "--out", tmp_path / "run", "--set", 'data.dataset="mnist"',
                         "--set", "train.epochs=1", data_dir=tmp_path / "empty")
    assert code == EXIT_BAD_INPUT
    assert len(err) == 1 and err[0].startswith("error: Dataset 'mnist' split 'train' not found"), err


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


def test_a_stopped_run_ends_without_the_interpreters_teardown(monkeypatch):
    from edgebnn.recipes import __main__ as cli_main

    def ended_at_once(code):
        raise SystemExit(f"os._exit({code})")

    monkeypatch.setattr(cli_main.os, "_exit", ended_at_once)
    # Ctrl-C, SIGTERM: everything kept is written before main returns; other statuses end as usual.
    for code, how in [(130, "os._exit(130)"), (143, "os._exit(143)"), (0, 0), (2, 2)]:
        with pytest.raises(SystemExit) as done:
            cli_main.exit_with(code)
        assert done.value.code == how


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
    assert captured.err.splitlines() == ["interrupted: rerun the same command to resume; finished epochs, "
                                         "results and attack batches are kept"]
    assert "epoch 1/2" in captured.out and "epoch 2/2" not in captured.out
    assert json.loads((out / "report.json").read_text())["status"] == "interrupted"

    monkeypatch.setattr(training, "train", real_train)
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    resumed = capsys.readouterr().out
    assert "resuming after epoch 1, the last finished one" in resumed
    assert "epoch 1/2" not in resumed and "epoch 2/2" in resumed
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete"
    assert report["command"] == f"python -m edgebnn.recipes run {recipe} --out {out}"  # as typed, to rerun it
