"""Bundles and the TF-free device runner (run in a subprocess where TensorFlow cannot be imported)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgebnn.deploy import convert as cv
from edgebnn.deploy import device
from edgebnn.deploy.bundle import bundle

REPO = Path(__file__).resolve().parents[1]

#: Runs the device CLI with TensorFlow, Keras and Larq made unimportable, then checks
#: that LCE's Python package (whose __init__ imports TensorFlow) was never imported.
_POISONED_RUN = """
import importlib.abc, json, runpy, sys
BLOCKED = ("tensorflow", "tf_keras", "keras", "larq")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["device"] + sys.argv[1:]
try:
    runpy.run_module("edgebnn.deploy.device", run_name="__main__")
except SystemExit as e:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "larq",
                                                                 "larq_compute_engine") and sys.modules[m])
    print("LOADED=" + json.dumps(loaded), file=sys.stderr)
    raise
"""


def _run_device(*args):
    env = {**os.environ, "PYTHONPATH": os.fspath(REPO)}
    return subprocess.run([sys.executable, "-c", _POISONED_RUN, *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def model_and_data(fcn_in2, fashion_small):
    _, _, xt, yt = fashion_small
    return fcn_in2, xt, yt


#: Bundled variants: name -> convert() options (``packed``: portable with 1-bit weight storage).
VARIANTS = {
    "lce": dict(target="lce", input_dtype="float32"),
    "portable": dict(target="portable", input_dtype="uint8"),
    "packed": dict(target="portable", input_dtype="uint8", weights="packed"),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def bundle_dir(request, model_and_data, tmp_path_factory):
    model, xt, yt = model_and_data
    input_dtype = VARIANTS[request.param]["input_dtype"]
    fb = cv.convert(model, **VARIANTS[request.param])
    out = tmp_path_factory.mktemp(request.param) / "bundle"
    manifest = bundle(fb, xt, yt, out, keras_model=model, name=f"fcn64-{request.param}")
    assert manifest["keras"]["agreement"] == 1.0
    assert manifest["input"]["dtype"] == input_dtype
    return out


def test_bundle_contents(bundle_dir, model_and_data):
    _, xt, yt = model_and_data
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    fb = (bundle_dir / "model.tflite").read_bytes()
    assert manifest["model"]["sha256"] == device.sha256(fb)
    with np.load(bundle_dir / "eval.npz", allow_pickle=False) as npz:
        assert npz["x"].dtype == np.uint8 and npz["x"].shape == xt.shape
        np.testing.assert_array_equal(npz["y"], yt)
        accuracy = float(np.mean(npz["host_predictions"] == yt))
    assert manifest["expected"]["accuracy"] == pytest.approx(accuracy)
    assert manifest["edgebnn_version"] and manifest["tolerance"]["min_agreement_with_host"] == 0.999
    assert not any(p.name.startswith(".") for p in bundle_dir.parent.iterdir())  # no temporary leftovers


def test_device_verify_passes_without_tensorflow(bundle_dir, tmp_path):
    out = tmp_path / "report.json"
    proc = _run_device("verify", os.fspath(bundle_dir), "--report", os.fspath(out))
    assert proc.returncode == 0, proc.stderr
    assert 'LOADED=[]' in proc.stderr  # neither TensorFlow, Keras, Larq nor LCE's package was imported
    report = json.loads(out.read_text())
    assert report["passed"] and report["agreement_with_host"] == 1.0
    assert report["accuracy"] == pytest.approx(report["expected_accuracy"])
    assert report["max_abs_logit_diff_vs_host"] < 1e-4


def test_device_refuses_tampered_model(bundle_dir, tmp_path):
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("manifest.json", "eval.npz", "model.tflite"):
        (tampered / name).write_bytes((bundle_dir / name).read_bytes())
    data = bytearray((tampered / "model.tflite").read_bytes())
    data[-100] ^= 0xFF
    (tampered / "model.tflite").write_bytes(bytes(data))
    proc = _run_device("verify", os.fspath(tampered))
    assert proc.returncode == 2
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "sha256" in error[0] and "refusing" in error[0]


def test_device_fails_outside_tolerance(bundle_dir, tmp_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("eval.npz", "model.tflite"):
        (moved / name).write_bytes((bundle_dir / name).read_bytes())
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["expected"]["accuracy"] += 0.05  # the device result is now 5 points off
    (moved / "manifest.json").write_text(json.dumps(manifest))
    proc = _run_device("verify", os.fspath(moved))
    assert proc.returncode == 1 and "FAILED" in proc.stderr


def test_device_errors_are_one_line(tmp_path):
    proc = _run_device("verify", os.fspath(tmp_path / "missing"))
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        f"error: no manifest.json in {tmp_path / 'missing'}"
    ]


def test_load_interpreter_validates():
    with pytest.raises(ValueError, match="`runtime` must be one of"):
        device.load_interpreter(b"", runtime="coral")
    with pytest.raises(ValueError, match="`kernel` must be one of"):
        device.load_interpreter(b"", kernel="fast")
