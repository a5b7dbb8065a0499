"""The training-fidelity table: paper values read from the recipes, training through the store, the page."""

import pytest

from edgebnn import fidelity
from edgebnn.recipes import config


def test_every_entry_names_a_recipe_cell_and_a_paper_value():
    for entry in fidelity.MODELS:
        recipe = fidelity.cell_recipe(entry)
        assert recipe.model.family in ("guan_lenet", "galloway_cnn", "panda_fcn1", "panda_fcn2"), entry
        value = fidelity.paper_value(entry)
        assert value is None if entry.paper_match is None else 0 < value <= 100, entry
    labels = [e.label for e in fidelity.MODELS]
    assert len(labels) == len(set(labels))


def test_paper_values_are_the_recipes():
    """Read, not typed: Guan's BNN Clean-S and Galloway's Table 6 B64 (100 - 2.3 error, "97.7±0.1")."""
    by_cell = {e.cell: e for e in fidelity.MODELS}
    table1 = config.load(fidelity.recipes.find("guan/table1"))
    bnn = [v.value for t in table1.tables if t.metric == "accuracy" for v in t.paper
           if v.match == {"cell": "bnn", "attack": "clean"}]
    assert fidelity.paper_value(by_cell["bnn"]) == bnn[0]
    assert fidelity.paper_value(by_cell["B,kernels=64"]) == pytest.approx(97.7)
    with pytest.raises(ValueError, match="paper_match"):
        fidelity.paper_value(fidelity.Entry("guan", "x", "guan/table1", "bnn", {"cell": "none", "attack": "clean"}))
    with pytest.raises(ValueError, match="cell"):
        fidelity.cell_recipe(fidelity.Entry("guan", "x", "guan/table1", "no_such_cell", None))
    with pytest.raises(ValueError, match="recipe"):
        fidelity.cell_recipe(fidelity.Entry("guan", "x", "no/such", "bnn", None))


def test_measure_trains_once_through_the_store_and_writes_the_page(tmp_path, data_dir):
    entry = fidelity.Entry("panda", "FCN2 BNN (test)", "panda/fig5b", "FCN2-BNN", {"cell": "BNN-8b", "attack": "clean"},
                           paper_recipe="panda/table5")
    overrides = (f'data.data_dir="{data_dir}"', 'data.split={source="test", train=200, test=100, seed=0}',
                 "train.epochs=1")
    row = fidelity.measure(entry, store_dir=tmp_path / "store", overrides=overrides)
    assert (row["train_images"], row["test_images"], row["epochs"]) == (200, 100, 1)
    assert 0 <= row["ours"] <= 100 and row["paper_value"] == pytest.approx(97.1)
    assert row["gap"] == pytest.approx(row["ours"] - 97.1, abs=0.01)
    assert row["train_seconds_per_epoch"] > 0 and len(row["train_accuracy_per_epoch"]) == 1
    weights = tmp_path / "store" / "models" / row["key"] / "model.weights.h5"
    written = weights.stat().st_mtime_ns
    again = fidelity.measure(entry, store_dir=tmp_path / "store", overrides=overrides)
    assert weights.stat().st_mtime_ns == written  # loaded from the store, not retrained
    assert again == row
    other = fidelity.MODELS[0]
    table = fidelity.to_json([row], entries=(entry, other))
    assert table["rows"][0]["verdict"] == fidelity.verdict(row)
    assert [e["model"] for e in table["not_run"]] == [other.label]
    page = fidelity.to_markdown(table, command="python scripts/training_fidelity.py")
    assert "| panda | FCN2 BNN (test) |" in page and "Not run yet" in page and "`train.epochs=1`" in page
    assert f"| 1 | {row['train_accuracy_per_epoch'][-1]:.1f} | {row['ours']:.1f} |" in page  # epochs, train acc, ours
    assert "| - | 50.0 |" in fidelity.to_markdown(fidelity.to_json([{**row, "train_accuracy_per_epoch": [],
                                                                         "ours": 50.0}], entries=(entry,)),
                                                  command="x")


def test_verdict_thresholds():
    assert fidelity.verdict({"gap": -fidelity.GAP_LIMIT}) == "ok"
    assert fidelity.verdict({"gap": 25.0}) == "ok"
    assert fidelity.verdict({"gap": -fidelity.GAP_LIMIT - 0.1}) == "under-trained"
    assert fidelity.verdict({"gap": None}) == "no paper value"
