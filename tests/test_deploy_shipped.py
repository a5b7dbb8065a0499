"""Every shipped model under tflite_models/ re-verified against its manifest, on the real test set."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgebnn import data
from edgebnn.deploy import device

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "tflite_models").glob("*/manifest.json"))
#: Bundles the repository must ship (FCN2 BNN 2-bit input, both targets; a Galloway CNN; both also with
#: 1-bit packed portable storage).
REQUIRED = {"fcn2_bnn_in2-lce", "fcn2_bnn_in2-portable", "galloway_b64_in2-lce", "galloway_b64_in2-portable",
            "fcn2_bnn_in2-portable-packed", "galloway_b64_in2-portable-packed"}


def test_required_models_are_shipped():
    assert REQUIRED <= {path.parent.name for path in SHIPPED}


@pytest.mark.parametrize("manifest_path", SHIPPED, ids=lambda path: path.parent.name)
def test_shipped_model_matches_manifest(manifest_path):
    bundle_dir = manifest_path.parent
    report = device.verify_bundle(bundle_dir)  # structure, sha256, evaluation subset, tolerance, exactness
    assert report["passed"], report
    assert report["agreement_with_host"] == 1.0
    assert report["kernels"] == "builtin" and report["exactness"]["promised"] and report["exactness"]["met"], report
    manifest = json.loads(manifest_path.read_text())
    assert manifest["exactness"] == {"kernels": "builtin", "max_abs_logit_diff": 1e-4}
    full = manifest["full_test_set"]
    assert manifest["keras"]["agreement"] >= 0.999
    assert full["keras"]["agreement"] >= 0.999 and full["pgd"]["agreement"] >= 0.999
    if bundle_dir.name.endswith("-packed"):  # same numbers as the int8-storage model on builtin kernels
        identical = full["identical_to_exact_builtin"]
        assert identical["clean"]["identical"] and identical["adversarial"]["identical"]
        assert identical["clean"]["n"] == identical["adversarial"]["n"] == full["n"]


@pytest.mark.slow  # the whole real test set through every shipped model; the default run checks each bundle's subset
@pytest.mark.parametrize("manifest_path", SHIPPED, ids=lambda path: path.parent.name)
def test_shipped_model_accuracy_on_the_whole_test_set(manifest_path, data_dir):
    manifest = json.loads(manifest_path.read_text())
    full = manifest["full_test_set"]
    pixels, labels = data.load_uint8(full["dataset"], full["split"], data_dir=data_dir, use_tfds=False)
    assert len(labels) == full["n"]
    fb = (manifest_path.parent / manifest["model"]["file"]).read_bytes()
    runner = device.load_interpreter(fb, runtime="lce")  # runs builtin and LCE ops on this host
    pred = runner.predict(device.preprocess(pixels, manifest["input"])).argmax(-1)
    accuracy = float(np.mean(pred == labels))
    assert abs(accuracy - full["accuracy"]) <= manifest["tolerance"]["accuracy_abs"]
