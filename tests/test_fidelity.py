"""The training-fidelity page: made from the run reports, paper values read from the runs' tables, the claims' gate."""

import copy
from pathlib import Path

import pytest

from edgebnn import fidelity
from edgebnn.recipes import claims
from edgebnn.recipes.results import find_reports

ROOT = Path(__file__).resolve().parents[1]


def _cell(name, precision, key, *, epochs=15, adversarial=None, history=(0.5, 0.9), seconds=30.0):
    return {"name": name, "repeat": 0, "model_key": key,
            "config": {"data": {"dataset": "mnist", "split": {"source": "test", "train": 9000, "test": 1000, "seed": 0},
                                "train_limit": None},
                       "model": {"family": "galloway_cnn", "precision": precision},
                       "train": {"epochs": epochs, "adversarial": adversarial}},
            "train": {"epochs_run_last": len(history), "seconds_last": seconds, "history": {"accuracy": list(history)}}}


def _report(recipe, cells, clean, *, paper):
    """A report as a run writes it: cells, clean records, and one table whose paper values match by precision."""
    return {"recipe": recipe, "paper": "galloway", "cells": cells,
            "records": [{"cell": c, "repeat": 0, "evaluation": "clean", "accuracy": a} for c, a in clean.items()],
            "study": {"tables": [{"title": "t", "metric": "accuracy", "rows": ["cell"], "columns": ["attack"],
                                  "paper": [{"match": {"model.precision": p, "attack": "clean"}, "value": v}
                                            for p, v in paper.items()]}]}}


def test_rows_read_ours_and_the_papers_clean_accuracy_and_the_training_from_the_reports():
    a = _report("t1", [_cell("A", "A", "k1"), _cell("B", "B", "k2", adversarial={"method": "pgd", "start_epoch": 66})],
                {"A": 0.978, "B": 0.903}, paper={"A": "98.8±0.2", "B": 97.7})
    b = _report("t6", [_cell("A", "A", "k1"), _cell("C", "C", "k3")], {"A": 0.978, "C": 0.12}, paper={})
    table = fidelity.rows([(Path("runs/t1"), a), (Path("runs/t6"), b)])
    by_cell = {r["cell"]: r for r in table}
    assert [r["cell"] for r in table] == ["A", "B", "C"]  # A of both runs is one model (one store key)
    assert by_cell["A"]["runs"] == ["runs/t1", "runs/t6"]
    assert (by_cell["A"]["ours"], by_cell["A"]["paper_value"], by_cell["A"]["gap"]) == (97.8, 98.8, -1.0)
    assert by_cell["A"]["verdict"] == "ok"
    assert by_cell["B"]["verdict"] == "under-trained" and by_cell["B"]["gap"] == pytest.approx(-7.4)
    assert by_cell["B"]["adversarial"] == "pgd from epoch 66"
    assert (by_cell["B"]["train_accuracy"], by_cell["B"]["seconds_per_epoch"], by_cell["B"]["epochs"]) == (90.0, 15.0, 15)
    assert by_cell["C"]["paper_value"] is None and by_cell["C"]["verdict"] == "under-trained"  # 12%: near chance


def test_the_verdict_is_the_claims_gate():
    paper = 97.7
    limit = 100 * claims.UNDERTRAINED_POINTS
    row = {"cell": "B", "paper_value": paper}
    assert fidelity.verdict({**row, "ours": paper - limit + 0.01}, chance=0.1) == "ok"
    assert fidelity.verdict({**row, "ours": paper - limit - 0.01}, chance=0.1) == "under-trained"
    assert fidelity.verdict({**row, "ours": 99.9}, chance=0.1) == "ok"
    assert fidelity.verdict({"cell": "B", "paper_value": None, "ours": 90.0}, chance=0.1) == "no paper value"
    assert fidelity.verdict({"cell": "B", "paper_value": None, "ours": 15.0}, chance=0.1) == "under-trained"


def test_a_model_of_several_repeats_is_their_mean():
    report = _report("t1", [_cell("A", "A", "k1"), {**copy.deepcopy(_cell("A", "A", "k1")), "repeat": 1}],
                     {"A": 0.97}, paper={"A": 98.8})
    report["records"].append({"cell": "A", "repeat": 1, "evaluation": "clean", "accuracy": 0.99})
    (row,) = fidelity.rows([(Path("r"), report)])
    assert (row["ours"], row["repeats"]) == (98.0, 2)
    assert "98.0 (2 runs)" in fidelity.to_markdown([row], command="x")


def test_the_committed_page_is_what_the_committed_reports_generate(monkeypatch):
    monkeypatch.chdir(ROOT)  # the page names its run folders relative to the repository
    reports = find_reports(["results"])
    page = fidelity.page(reports, command="python scripts/training_fidelity.py")
    assert page == (ROOT / "docs" / "training-fidelity.md").read_text(encoding="utf-8")
    assert "galloway/table5" in page.split("no published run yet:")[1]  # needs CIFAR-10: never run offline
