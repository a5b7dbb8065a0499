"""The Raspberry Pi guide followed on x86: the copied runner in venvs holding only numpy and ai-edge-litert.

For the pinned pair the guide installs and for the newest releases, a venv is created
once (``pip install``) in a cache folder (``EDGEBNN_RUNTIME_VENVS``, default
``~/.cache/edgebnn/runtime-venvs``); the files the guide names are copied into an empty
folder, and every shipped bundle without LCE ops must pass there, exactness included.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_device import copy_runner

pytestmark = pytest.mark.slow  # creates two venvs with pip the first time

REPO = Path(__file__).resolve().parents[1]
#: name -> pip requirements: the pair the guide pins, and the newest releases.
RUNTIMES = {
    "pinned": ("numpy==1.26.4", "ai-edge-litert==1.4.0"),
    "newest": ("numpy>=2", "ai-edge-litert"),
}
SHIPPED = sorted(p.parent for p in (REPO / "tflite_models").glob("*/manifest.json")
                 if not json.loads(p.read_text())["model"]["needs_lce_runtime"])


def _venv(name):
    """The cached venv ``name`` of :data:`RUNTIMES`, created on first use."""
    cache = Path(os.environ.get("EDGEBNN_RUNTIME_VENVS", Path.home() / ".cache" / "edgebnn" / "runtime-venvs"))
    folder = cache / name
    python = folder / "bin" / "python"
    done = folder / ".complete"
    if not done.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", os.fspath(folder)], check=True, timeout=300)
        subprocess.run([os.fspath(python), "-m", "pip", "install", "--quiet", *RUNTIMES[name]], check=True,
                       timeout=1200)
        done.write_text("\n".join(RUNTIMES[name]) + "\n")
    return python


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return copy_runner(tmp_path_factory.mktemp("runner"))


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_copied_runner_verifies_every_shipped_portable_bundle(name, runner, tmp_path):
    python = _venv(name)
    assert len(SHIPPED) >= 5
    for bundle_dir in SHIPPED:
        report_path = tmp_path / f"{bundle_dir.name}.json"
        proc = subprocess.run([os.fspath(python), "-m", "edgebnn.deploy.device", "verify", os.fspath(bundle_dir),
                               "--report", os.fspath(report_path)], capture_output=True, text=True, cwd=runner,
                              env={"PATH": os.environ.get("PATH", "")}, timeout=600)
        assert proc.returncode == 0, (bundle_dir.name, proc.stderr)
        report = json.loads(report_path.read_text())
        assert report["runtime"] == "ai_edge_litert" and report["kernels"] == "builtin"
        assert report["exactness"]["promised"] and report["exactness"]["met"], report
        assert report["agreement_with_host"] == 1.0
        print(f"{name} {report['runtime_version']} numpy {report['numpy']} {bundle_dir.name}: exit "
              f"{proc.returncode}, max |logit diff| {report['max_abs_logit_diff_vs_host']:.3g}")
