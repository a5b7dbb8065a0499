"""The examples in examples/ run end to end on a tiny budget (one test each)."""

import io
import json
import sys

import pytest

from conftest import REPO

from edgebnn.recipes import config, runner
from edgebnn.recipes.console import Console

sys.path.insert(0, str(REPO / "examples"))

import certify_bnn  # noqa: E402
import own_model  # noqa: E402
import raspberry_pi_bundle  # noqa: E402
import strong_evaluation  # noqa: E402


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """The user script's outputs: a small Larq BNN trained outside the package, and its data."""
    out = tmp_path_factory.mktemp("own_model_files")
    assert own_model.main(["--generated", "--train", "300", "--test", "60", "--epochs", "3", "--hidden", "32", "32",
                           "--out", str(out)]) == 0
    return out / "my.keras", out / "data.npz"


def _own_model_run(user_files, out, *extra):
    study = config.load(REPO / "examples" / "own_model.toml", budget="tiny",
                        overrides=[f"model.file={user_files[0]}", f"data.files={user_files[1]}", *extra])
    return runner.run(study, out, console=Console(stream=io.StringIO()))


def _check_deployed(report, out, cells):
    for cell in report["cells"]:
        deployed = cell["deployed"]
        assert deployed["deployed"] and deployed["agreement_clean"] == 1.0 and deployed["adversarial_examples"] > 0
        assert (out / "bundles" / cell["id"] / "manifest.json").is_file()
    assert sorted(c["id"] for c in report["cells"]) == sorted(cells)
    assert {c["deployed"]["target"] for c in report["cells"]} == {"lce", "portable"}


def test_own_model_example_attacks_certifies_converts_verifies_and_bundles(user_files, tmp_path, monkeypatch):
    from edgebnn.deploy import convert  # noqa: PLC0415

    float_conversions = []
    monkeypatch.setattr(convert, "float_reference",
                        lambda model, real=convert.float_reference: float_conversions.append(model) or real(model))
    out = tmp_path / "run"
    report = _own_model_run(user_files, out, "robustness=[]")  # the strong evaluation: its own example
    assert report["status"] == "complete"
    kinds = {r["evaluation"] for c in report["cells"] for r in c["results"]}
    assert kinds == {"clean", "attacks", "certify"}
    assert report["cells"][0]["train"]["epochs"] == 0  # the saved model, not retrained
    _check_deployed(report, out, ["lce", "portable"])
    # both cells deploy the one saved model: its float TFLite reference is converted once for both
    assert len(float_conversions) == 1
    assert len({c["deployed"]["float_tflite_bytes"] for c in report["cells"]}) == 1


@pytest.mark.slow
def test_own_model_example_with_the_strong_evaluation(user_files, tmp_path):
    out = tmp_path / "run"
    report = _own_model_run(user_files, out)
    assert {r["evaluation"] for c in report["cells"] for r in c["results"]} == {"clean", "attacks", "certify",
                                                                                 "robustness"}
    _check_deployed(report, out, ["lce", "portable"])


def test_strong_evaluation_example(user_files, tmp_path, capsys):
    assert strong_evaluation.main(["--tiny", "--model", str(user_files[0]), "--data", str(user_files[1]),
                                   "--eps", "0.1", "--out", str(tmp_path / "report.json")]) == 0
    printed = capsys.readouterr().out
    assert "Strong evaluation of `my_bnn` on 20 images" in printed and "iterative_vs_single" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n"] == 20 and report["checks"] and report["results"]


def test_certify_example(tmp_path, capsys):
    assert certify_bnn.main(["--tiny", "--eps", "0.02"]) == 0
    printed = capsys.readouterr().out
    assert "# Exact robustness" in printed and "| 0.02 |" in printed


def test_raspberry_pi_bundle_example(user_files, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert raspberry_pi_bundle.main(["--tiny", "--model", str(user_files[0]), "--data", str(user_files[1]),
                                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "agreement with Keras 1.0000" in printed and '"passed": true' in printed
    assert json.loads((out / "manifest.json").read_text())["eval_set"]["n"] == 60
