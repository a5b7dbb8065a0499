"""A self-healing store: every entry carries checksums; a corrupt one is named in one line,
set aside in ``quarantine/`` and computed again, and never costs a complete report."""

import json

import numpy as np
import pytest

from conftest import attack, lines_console, small_study
from edgebnn.recipes import config, runner, steps
from edgebnn.recipes.store import CHECKSUMS, Store


@pytest.fixture
def store(tmp_path):
    warnings = []
    store = Store(None, cache=tmp_path / "store", warn=warnings.append)
    store.warnings = warnings
    return store


def _result():
    return {"key": "k", "metrics": {"accuracy": 0.5}, "arrays": ["x_adv"]}


def test_a_result_round_trips_with_its_checksums(store):
    store.save_result("k", _result(), {"x_adv": np.ones((2, 3), np.float32)})
    stored = json.loads(store.result_path("k").read_text())
    assert {"sha256", "arrays_sha256"} <= set(stored)
    assert store.load_result("k") == _result()
    np.testing.assert_array_equal(store.load_arrays("k")["x_adv"], np.ones((2, 3)))
    assert store.warnings == []


@pytest.mark.parametrize("damage, reason", [
    (lambda s: s.result_path("k").write_text(s.result_path("k").read_text()[:40]), "unreadable JSON"),
    (lambda s: s.result_path("k").write_text(s.result_path("k").read_text().replace("0.5", "0.7")),
     "does not match its checksum"),
    (lambda s: s.arrays_path("k").write_bytes(b"garbage"), "its arrays k.npz do not match their checksum"),
    (lambda s: s.arrays_path("k").unlink(), "its arrays k.npz are missing"),
])
def test_a_corrupt_result_is_named_set_aside_and_reported_absent(store, damage, reason):
    store.save_result("k", _result(), {"x_adv": np.ones((2, 3), np.float32)})
    damage(store)
    assert store.load_result("k") is None
    [line] = store.warnings
    assert line.startswith("store: corrupt entry results/k.json") and reason in line and "quarantine" in line
    assert not store.result_path("k").exists() and not store.arrays_path("k").exists()
    [folder] = (store.root / "quarantine").iterdir()
    assert "k.json" in {p.name for p in folder.iterdir()}
    assert store.load_result("k") is None and len(store.warnings) == 1  # set aside once, then simply absent


def test_results_stored_before_checksums_are_checked_by_loading(store):
    store.result_path("k").parent.mkdir(parents=True)
    store.result_path("k").write_text(json.dumps(_result()))
    np.savez_compressed(store.arrays_path("k"), x_adv=np.zeros(3))
    assert store.load_result("k") == _result()
    store.arrays_path("k").write_bytes(b"PK\x03\x04 not a zip")
    assert store.load_result("k") is None
    assert "its arrays k.npz cannot be loaded" in store.warnings[0]


def test_a_sealed_folder_is_checked_file_by_file(store, tmp_path):
    folder = store.model_dir("m")
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"weights")
    (folder / "train.json").write_text("{}")
    assert store.check_folder(folder, ["model.keras", "train.json"])  # unsealed: the files are there
    store.seal(folder, ["model.keras", "train.json"])
    assert (folder / CHECKSUMS).is_file() and store.check_folder(folder, ["model.keras", "train.json"])
    (folder / "model.keras").write_bytes(b"weight")  # truncated
    assert not store.check_folder(folder, ["model.keras", "train.json"])
    assert "models/m (model.keras does not match its checksum)" in store.warnings[0]
    assert not folder.exists()


def test_an_unsealed_folder_is_checked_by_loading(store):
    folder = store.model_dir("m")
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"not a zip")

    def load():
        raise OSError("Unable to synchronously open file (file signature not found)")

    assert store.check_folder(folder, ["model.keras"], load=lambda: None)
    assert not store.check_folder(folder, ["model.keras"], load=load)
    assert "models/m (cannot be loaded: Unable to synchronously open file" in store.warnings[0]


#: FCN2's layout narrowed to 64 hidden units: healing the store (checksums, quarantine, retraining to the
#: same records, keeping the complete report) does not depend on the model's width.
STUDY = small_study("healing", model=dict(precision="binary", options={"hidden_units": 64}),
                    evaluation="limit = 60\nbatch_size = 30", attacks=[attack("fgsm", eps=[0.1])],
                    rest="[deploy]\nenabled = false")


def _run(recipe, out):
    console = lines_console()
    report = runner.run(config.load(recipe), out, console=console)
    return report, console.lines


def _records(report):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in report["records"]]


def test_corrupt_entries_are_recomputed_and_a_failed_rerun_keeps_the_complete_report(tmp_path, data_dir,
                                                                                    monkeypatch):
    monkeypatch.setenv("EDGEBNN_DATA_DIR", str(data_dir))
    recipe, out = tmp_path / "healing.toml", tmp_path / "run"
    recipe.write_text(STUDY)
    first, _ = _run(recipe, out)
    store = out / "store"
    [model_dir] = (store / "models").iterdir()
    results = sorted((store / "results").glob("*.json"))
    assert len(results) == 2 and (model_dir / CHECKSUMS).is_file()

    results[0].write_text(results[0].read_text()[:50])  # truncated
    model = model_dir / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    again, lines = _run(recipe, out)
    corrupt = [line for line in lines if line.startswith("store: corrupt entry")]
    assert len(corrupt) == 2
    assert any(f"models/{model_dir.name} (model.keras does not match its checksum)" in line for line in corrupt)
    assert any(f"results/{results[0].name}" in line and "(unreadable JSON" in line for line in corrupt), corrupt
    assert again["status"] == "complete" and _records(again) == _records(first)  # retrained to the same weights
    assert len(list((store / "quarantine").iterdir())) == 2

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(steps, "evaluate", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _run(recipe, out)
    kept = json.loads((out / "report.json").read_text())
    assert kept["status"] == "complete" and _records(kept) == _records(first)
    failed = json.loads((out / runner.INCOMPLETE / "report.json").read_text())
    assert failed["status"] == "failed" and "disk on fire" in failed["error"]
    assert not (out / runner.PREVIOUS).exists()
