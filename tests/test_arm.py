"""ARM (aarch64) re-verification under qemu user-mode emulation (``pytest -m arm``).

Runs ``scripts/arm64_verify.sh`` (cached arm64 Debian rootfs, aarch64 numpy and
ai-edge-litert wheels) on a portable bundle and compares the emulated ARM run with the
x86 run of the same bundle. Needs root (first build), debootstrap and qemu-user-static.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgebnn.deploy import convert as cv
from edgebnn.deploy import device
from edgebnn.deploy.bundle import bundle

pytestmark = pytest.mark.arm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "arm64_verify.sh"


@pytest.fixture(scope="module")
def emulator():
    missing = [tool for tool in ("qemu-aarch64-static", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"ARM emulation needs {missing}: apt-get install qemu-user-static debootstrap")


@pytest.fixture(scope="module")
def trained(fcn_in2, fashion_small):
    _, _, xt, yt = fashion_small
    return fcn_in2, xt, yt


def _arm(bundle_dir, report):
    return subprocess.run([os.fspath(SCRIPT), os.fspath(bundle_dir), "--report", os.fspath(report)],
                          capture_output=True, text=True, timeout=1800)


@pytest.mark.parametrize("weights", ["exact", "float16", "packed"])
def test_portable_bundle_agrees_on_arm(emulator, trained, tmp_path, weights):
    model, xt, yt = trained
    fb = cv.convert(model, target="portable", input_dtype="uint8", weights=weights)
    bundle(fb, xt, yt, tmp_path / "bundle", keras_model=model)
    x86 = device.verify_bundle(tmp_path / "bundle")
    proc = _arm(tmp_path / "bundle", tmp_path / "arm.json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    arm = json.loads((tmp_path / "arm.json").read_text())
    assert arm["machine"] == "aarch64" and arm["runtime"] == "ai_edge_litert"
    assert arm["passed"] and x86["passed"]
    assert arm["agreement_with_host"] >= 0.999
    assert abs(arm["accuracy"] - x86["accuracy"]) <= 0.002
    assert arm["max_abs_logit_diff_vs_host"] < 1e-2


def test_lce_bundle_is_refused_by_stock_runtime_on_arm(emulator, trained, tmp_path):
    model, xt, yt = trained
    bundle(cv.convert(model, target="lce"), xt[:20], yt[:20], tmp_path / "bundle")
    proc = _arm(tmp_path / "bundle", tmp_path / "arm.json")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Larq Compute Engine" in errors[0]
