"""Executors: a study run serially, in worker processes (``--workers``) and as Ray tasks gives the same report.

The reports are compared minus their timings and the command line. The Ray test starts
a local cluster (a head and two worker nodes on loopback) and runs the CLI against it. The
worker-process test is test_studies.py::test_workers_give_the_serial_report: its serial
reference is the small study that file runs anyway (the same two cells).
"""

import json
import os
import subprocess
import secrets
import sys
from pathlib import Path

import pytest

from conftest import run_cli, two_cell_study
from edgebnn.recipes import executors
from edgebnn.recipes.__main__ import main
from edgebnn.recipes.assemble import without_timings

REPO = Path(__file__).resolve().parents[1]

#: Two cells (float and binary), each trained and attacked: the smallest study with independent cells.
#: (The Ray test turns the deployment on: its store entries travel back from the cluster too.)
STUDY = two_cell_study("two_cells")

#: Seconds one CLI run of the study may take on a loaded machine.
_RUN_TIMEOUT = 600


def _env(data_dir, **extra):
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "EDGEBNN_DATA_DIR": str(data_dir),
            **extra}


def _run(recipe, out, data_dir, *options, env=None):
    command = [sys.executable, "-m", "edgebnn.recipes", "run", str(recipe), "--out", str(out), *options]
    result = subprocess.run(command, capture_output=True, text=True, env=env or _env(data_dir), cwd=REPO,
                            timeout=_RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete"
    return report, result.stdout.splitlines()


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("executors") / "two_cells.toml"
    path.write_text(STUDY)
    return path


def test_without_timings_drops_the_volatile_keys_at_every_depth():
    report = {"seconds": 3.0, "command": "x", "cells": [{"train": {"seconds_last": 1.0, "epochs": 2}, "key": "k"}],
              "records": [{"accuracy": 0.5, "seconds": 0.1}], "work_seconds": 2, "computed_seconds": 1}
    assert without_timings(report) == {"cells": [{"train": {"epochs": 2}, "key": "k"}], "records": [{"accuracy": 0.5}]}


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers must be a positive integer, got 0"),
    (["--workers", "two"], "--workers must be a positive integer, got 'two'"),
    (["--workers", "2", "--threads", "-1"], "--threads must be a positive integer, got -1"),
    (["--executor", "dask"], "--executor must be one of ['serial', 'processes', 'ray'], got 'dask'"),
    (["--executor", "ray", "--workers", "2"], "--workers is for local processes"),
    (["--address", "10.0.0.1:6379"], "--address is the Ray cluster's address; it needs --executor ray"),
    (["--executor", "serial", "--workers", "3"], "--workers 3 needs --executor processes"),
])
def test_bad_executor_options_are_one_line_errors(tmp_path, capsys, argv, message):
    code, _, err = run_cli(main, ["run", "quickstart", "--out", tmp_path / "out", *argv], capsys)
    assert code == 2
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()  # refused before anything loads


def test_entries_round_trip_with_markers_last(tmp_path, monkeypatch):
    files = {"models/k/model.keras": b"m", "models/k/train.json": b"{}", "results/r.json": b"{}",
             "results/r.npz": b"z", "deploy/d/deploy.json": b"{}", "deploy/d/model.tflite": b"t"}
    written = []
    monkeypatch.setattr(executors._io, "write_bytes", lambda path, data: written.append(
        (path.relative_to(tmp_path).as_posix(), data)) or (path.parent.mkdir(parents=True, exist_ok=True),
                                                           path.write_bytes(data)))
    executors.write_entries(tmp_path, files)
    order = [name for name, _ in written]
    for marker, rest in [("models/k/model.keras", "models/k/train.json"), ("results/r.json", "results/r.npz"),
                         ("deploy/d/deploy.json", "deploy/d/model.tflite")]:
        assert order.index(rest) < order.index(marker)
    read = executors.read_entries(tmp_path, [Path("models/k"), Path("results/r.json"), Path("results/x.json"),
                                             Path("deploy/d")])
    assert read == {k: v for k, v in files.items() if k != "results/r.npz"}


# --- Ray ---------------------------------------------------------------------------------

#: Seconds the local Ray cluster may take to start or stop.
_RAY_START_TIMEOUT = 120
#: The head's port: the base plus the test process's id modulo the spread (parallel test runs differ).
_RAY_PORT_BASE, _RAY_PORT_SPREAD = 6400, 500


def _ray(*args, env, check=True):
    """The ``ray`` command beside this Python."""
    result = subprocess.run([str(Path(sys.executable).with_name("ray")), *args], capture_output=True, text=True,
                            timeout=_RAY_START_TIMEOUT, env=env)
    assert result.returncode == 0 or not check, result.stdout[-2000:] + result.stderr[-3000:]


@pytest.fixture
def ray_cluster(data_dir):
    """A Ray head and two worker nodes on loopback (one CPU each), with a token of this test's own,
    stopped afterwards; yields ``(address, environment of a driver)``."""
    pytest.importorskip("ray")
    if not Path(sys.executable).with_name("ray").is_file():
        pytest.skip("the ray command is not installed beside this Python")
    port = _RAY_PORT_BASE + os.getpid() % _RAY_PORT_SPREAD
    address = f"127.0.0.1:{port}"
    # the nodes load the data as a user's would (EDGEBNN_DATA_DIR); every process presents the token
    env = _env(data_dir, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), RAY_USAGE_STATS_ENABLED="0")
    try:
        # the head schedules no tasks (0 CPUs): every cell runs on one of the two worker nodes
        _ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "0",
             "--include-dashboard", "false", "--disable-usage-stats", env=env)
        for _ in range(2):
            _ray("start", "--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                 "--disable-usage-stats", env=env)
        yield address, env
    finally:
        _ray("stop", "--force", env=env, check=False)


@pytest.mark.slow
def test_ray_cluster_gives_the_serial_report(recipe, ray_cluster, tmp_path, data_dir):
    address, env = ray_cluster
    deploy = ("--set", "deploy.enabled=true", "--threads", "1")  # a Ray task runs on 1 thread
    expected, _ = _run(recipe, tmp_path / "serial", data_dir, *deploy)
    report, lines = _run(recipe, tmp_path / "ray", data_dir, *deploy, "--executor", "ray", "--address", address,
                         env=env)
    assert without_timings(report) == without_timings(expected)
    assert all(cell["deployed"]["deployed"] for cell in report["cells"])
    assert sum("done on the cluster" in line for line in lines) == 2
    # a rerun finds both cells in the driver's store: nothing is sent to the cluster
    report, lines = _run(recipe, tmp_path / "ray", data_dir, *deploy, "--executor", "ray", "--address", address,
                         env=env)
    assert without_timings(report) == without_timings(expected)
    assert sum("found in the cache" in line for line in lines) == 2
