"""Killing a study with SIGKILL and rerunning it: nothing finished is recomputed.

These tests are about the process (a SIGKILL cannot be simulated in-process), so
they run the CLI in a subprocess and read its console lines. Each trains and
attacks a small study several times over, hence ``slow``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import attack, small_study

REPO = Path(__file__).resolve().parents[1]

STUDY = small_study(
    "resume",
    model=dict(input_bits=2),
    train=dict(epochs=2, batch_size=64),
    attacks=[attack("fgsm", eps=[0.1]), attack("pgd", eps=[0.1, 0.2], steps=20)],
    rest="""
        [deploy]
        enabled = false
        [grid]
        "model.precision" = ["float", "binary"]
    """,
)


def _command(recipe, out, *overrides):
    return [sys.executable, "-m", "edgebnn.recipes", "run", str(recipe), "--out", str(out),
            *(a for o in overrides for a in ("--set", o))]


def _env(data_dir):
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "EDGEBNN_DATA_DIR": str(data_dir)}


def _run(recipe, out, data_dir, *overrides):
    result = subprocess.run(_command(recipe, out, *overrides), capture_output=True, text=True, env=_env(data_dir),
                            cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()


def _run_and_kill(recipe, out, data_dir, marker, *overrides, signal_name="SIGKILL"):
    """Start a run, send it ``signal_name`` as soon as a console line contains ``marker``; return the lines read."""
    import signal

    number = getattr(signal, signal_name)
    proc = subprocess.Popen(_command(recipe, out, *overrides), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=_env(data_dir), cwd=REPO)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if marker in line:
                proc.send_signal(number)
                break
        lines += [line.rstrip("\n") for line in proc.stdout]
        proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    expected = -9 if number == signal.SIGKILL else 128 + number
    assert proc.returncode == expected, f"the run ended before {marker!r}: {lines[-5:]}"
    return lines


def _metrics(out):
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete"
    return [{k: v for k, v in r.items()} for r in report["records"]]


def _count(lines, text):
    return sum(text in line for line in lines)


pytestmark = pytest.mark.slow


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "resume.toml"
    path.write_text(STUDY)
    return path


def test_sigkill_after_a_cell_and_mid_attack_recomputes_nothing_finished(recipe, tmp_path, data_dir):
    reference = tmp_path / "uninterrupted"
    _run(recipe, reference, data_dir)

    out = tmp_path / "killed"
    first = _run_and_kill(recipe, out, data_dir, "cell 2/2")
    assert _count(first, "'precision=float': epoch") == 2
    second = _run_and_kill(recipe, out, data_dir, "'precision=binary': pgd eps=0.1 ...")
    assert _count(second, "'precision=float': epoch") == 0  # the finished cell is not retrained
    assert _count(second, "'precision=float': training") == 0
    assert _count(second, "(cached)") == 4  # float: clean, fgsm, pgd 0.1, pgd 0.2
    assert _count(second, "'precision=binary': epoch") == 2  # killed before its first epoch ended
    third = _run(recipe, out, data_dir)
    assert _count(third, "training") == 0 and _count(third, ": epoch") == 0
    computed = [line for line in third if line.endswith(" s)") and "(cached)" not in line]
    assert [line.split("': ", 1)[1].split(":")[0] for line in computed] == ["pgd eps=0.1", "pgd eps=0.2"]
    assert _count(third, "(cached)") == 6
    assert _metrics(out) == _metrics(reference)


def test_a_changed_configuration_reuses_no_checkpoint(recipe, tmp_path, data_dir):
    out = tmp_path / "run"
    only_float = ['grid.model.precision=["float"]', "train.epochs=3"]
    # the epoch line is printed before Keras backs the epoch up: kill after the second
    # epoch's line, when the first epoch's state is surely saved
    _run_and_kill(recipe, out, data_dir, "'precision=float': epoch 2/3", *only_float)
    [old_key] = os.listdir(out / "store" / "models")
    assert (out / "store" / "models" / old_key / "checkpoints" / "resume").is_dir()  # resumable state was left
    lines = _run(recipe, out, data_dir, *only_float, "model.input_bits=4")
    assert _count(lines, "resuming") == 0
    assert [_count(lines, f"'precision=float': epoch {e}/3") for e in (1, 2, 3)] == [1, 1, 1]
    keys = set(os.listdir(out / "store" / "models"))
    assert old_key in keys and len(keys) == 2
    assert not (out / "store" / "models" / old_key / "model.keras").exists()  # the old run's state is untouched
    report = json.loads((out / "report.json").read_text())
    assert report["cells"][0]["config"]["model"]["input_bits"] == 4
    assert report["cells"][0]["model_key"] != old_key
    # and the old configuration, rerun, resumes its own state instead of starting over
    lines = _run(recipe, out, data_dir, *only_float)
    assert _count(lines, "resuming") == 1 and _count(lines, ": epoch 1/3") == 0 and _count(lines, ": epoch 3/3") == 1


def test_a_second_run_into_the_same_folder_refuses(recipe, tmp_path, data_dir):
    out = tmp_path / "run"
    proc = subprocess.Popen(_command(recipe, out), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=_env(data_dir), cwd=REPO)
    try:
        for line in proc.stdout:
            if "cell 1/2" in line:
                break
        second = subprocess.run(_command(recipe, out), capture_output=True, text=True, env=_env(data_dir), cwd=REPO,
                                timeout=300)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert second.returncode == 2
    assert f"another run (pid {proc.pid}) is using {out}" in second.stderr.strip().splitlines()[-1]


def _stored_model(out):
    """``(weights, train.json)`` of the one model stored in run folder ``out``."""
    import edgebnn

    [folder] = (out / "store" / "models").iterdir()
    model = edgebnn.load_model(folder / "model.keras")  # registers edgebnn's and Larq's layers first
    return model.get_weights(), json.loads((folder / "train.json").read_text())


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_training_killed_at_epoch_2_resumes_to_the_same_weights_bit_for_bit(recipe, tmp_path, data_dir,
                                                                               signal_name):
    import numpy as np

    only_binary = ['grid.model.precision=["binary"]', "train.epochs=4"]
    reference = tmp_path / "uninterrupted"
    _run(recipe, reference, data_dir, *only_binary)
    out = tmp_path / "killed"
    # the epoch line is printed after the epoch's state is saved
    _run_and_kill(recipe, out, data_dir, "'precision=binary': epoch 2/4", *only_binary, signal_name=signal_name)
    lines = _run(recipe, out, data_dir, *only_binary)
    assert _count(lines, "resuming after epoch 2") == 1 and _count(lines, ": epoch 3/4") == 1
    assert _count(lines, ": epoch 2/4") == 0
    (weights, info), (reference_weights, reference_info) = _stored_model(out), _stored_model(reference)
    for a, b in zip(weights, reference_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert info["history"] == reference_info["history"] and len(info["history"]["loss"]) == 4
    assert info["epochs_run_last"] == 2
    assert _metrics(out) == _metrics(reference)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_signal_during_an_attack_keeps_its_finished_batches_and_the_rerun_gives_the_same_numbers(
        recipe, tmp_path, data_dir, signal_name):
    import signal
    import time

    only_binary = ['grid.model.precision=["binary"]', "evaluation.limit=120"]  # 4 batches of 30 per eps
    reference = tmp_path / "uninterrupted"
    _run(recipe, reference, data_dir, *only_binary)
    out = tmp_path / "stopped"
    proc = subprocess.Popen(_command(recipe, out, *only_binary), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(data_dir), cwd=REPO)
    try:
        for line in proc.stdout:
            if "pgd eps=0.1 ..." in line:
                break
        partial = out / "store" / "partial"
        while not list(partial.glob("*/*.npy")):  # at least one batch of the attack finished
            assert proc.poll() is None, "the run ended before a batch was stored"
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(getattr(signal, signal_name))
        _, stderr = proc.communicate(timeout=120)
        stopped_after = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait(timeout=60)
    kept = len(list(partial.glob("*/*.npy")))
    assert kept >= 1
    if signal_name == "SIGKILL":
        assert proc.returncode == -9
    else:
        assert proc.returncode == 128 + getattr(signal, signal_name)
        assert stopped_after < 30  # one batch of the attack at most, then the report
        [line] = stderr.strip().splitlines()
        assert line.startswith("interrupted") and "rerun the same command to resume" in line
        report = json.loads((out / "report.json").read_text())
        cause = "Ctrl-C" if signal_name == "SIGINT" else signal_name
        assert report["status"] == "interrupted" and report["error"] == f"interrupted ({cause})"
    lines = _run(recipe, out, data_dir, *only_binary)
    assert _count(lines, "pgd eps=0.1 ... (resuming:") == 1
    assert _count(lines, ": epoch") == 0
    assert not list(partial.glob("*/*.npy"))  # the finished result replaced its batches
    assert _metrics(out) == _metrics(reference)
