"""Recipes with a ``tf.distribute`` strategy: names and TF_CONFIG checked, and two workers on
localhost training adversarially match one worker."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgebnn.training import distribute

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, "strategy 'multi_worker' needs the TF_CONFIG environment variable"),
        ("{", "TF_CONFIG is not valid JSON"),
        (json.dumps({"cluster": {"worker": []}}), "`cluster.worker` must be a non-empty list"),
        (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}),
         r"`task` must be \{\"type\": \"worker\", \"index\": 0..1\}"),
        (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}), "`task` must be"),
    ],
)
def test_bad_tf_config_is_one_clear_error(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv(distribute.TF_CONFIG_ENV, raising=False)
    else:
        monkeypatch.setenv(distribute.TF_CONFIG_ENV, tf_config)
    with pytest.raises(ValueError, match=message):
        distribute.make_strategy("multi_worker")


def test_strategy_names():
    with pytest.raises(ValueError, match=r"`strategy` must be one of \['default', 'mirrored', 'multi_worker'\]"):
        distribute.make_strategy("tpu")
    assert distribute.is_chief(distribute.make_strategy("default"))


def test_recipe_strategy_is_validated(tmp_path):
    from edgebnn.recipes import config

    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n[train]\nstrategy = "horovod"\n')
    with pytest.raises(config.RecipeError, match=r"`train.strategy`: input should be 'default', 'mirrored' or"):
        config.load(path)


STUDY = """
name = "distributed"
[data]
dataset = "fashion_mnist"
train_limit = 512
test_limit = 200
[model]
family = "panda_fcn2"
precision = "binary"
input_bits = 2
options = { hidden_layers = 2 }
[train]
epochs = 1
batch_size = 64
seed = 3
adversarial = { method = "fgsm", eps = 0.1, fraction = 0.5 }
[evaluation]
limit = 200
[deploy]
enabled = false
"""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _command(recipe, out, *overrides):
    return [sys.executable, "-m", "edgebnn.recipes", "run", str(recipe), "--out", str(out),
            *(a for o in overrides for a in ("--set", o))]


def _env(data_dir, **extra):
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "EDGEBNN_DATA_DIR": str(data_dir),
            **extra}


@pytest.mark.slow
def test_two_workers_on_localhost_match_one_worker(tmp_path, data_dir):
    import edgebnn

    recipe = tmp_path / "distributed.toml"
    recipe.write_text(STUDY)
    single = subprocess.run(_command(recipe, tmp_path / "single"), capture_output=True, text=True,
                            env=_env(data_dir), timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]

    workers = [f"localhost:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(_command(recipe, tmp_path / f"worker{index}", 'train.strategy="multi_worker"'),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=_env(data_dir, TF_CONFIG=tf_config)))
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]

    chief = json.loads((tmp_path / "worker0" / "report.json").read_text())
    other = json.loads((tmp_path / "worker1" / "report.json").read_text())
    reference = json.loads((tmp_path / "single" / "report.json").read_text())
    assert chief["status"] == other["status"] == "complete"
    assert other["records"] == []  # worker 1 trains only; the chief evaluates and reports
    trained = [report["cells"][0]["train"] for report in (chief, other, reference)]
    assert [t["replicas"] for t in trained] == [2, 2, 1]
    # all-reduced gradients: both workers end with the same weights
    w0 = edgebnn.load_model(tmp_path / "worker0" / "model.keras").get_weights()
    w1 = edgebnn.load_model(tmp_path / "worker1" / "model.keras").get_weights()
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # one worker with the same global batch: BatchNorm statistics are per worker (half a batch), so the
    # models differ slightly; their clean accuracies agree within a few points
    summary = {"single": reference["clean_accuracy"], "two_workers": chief["clean_accuracy"],
               "single_loss": trained[2]["history"]["loss"][-1], "two_workers_loss": trained[0]["history"]["loss"][-1]}
    print(json.dumps(summary))
    assert abs(summary["single"] - summary["two_workers"]) <= 0.05, summary
    assert abs(summary["single_loss"] - summary["two_workers_loss"]) <= 0.1, summary
