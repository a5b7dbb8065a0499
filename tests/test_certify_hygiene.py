"""Proof hygiene per image: an image certified robust must survive every attack of its cell at the same
eps (the certification's own attacks and every run of the strong evaluation); one that an attack broke
is named in the report and fails the run."""

import json
import re
import textwrap

import numpy as np
import pytest

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from conftest import TINY_CERTIFY, lines_console
from edgebnn.certify import hygiene
from edgebnn.recipes import assemble, config, runner
from edgebnn.recipes.evaluations import KINDS
from edgebnn.recipes.evaluations.base import CHECK
from edgebnn.recipes.store import Store, pack_outcomes


def _rows(statuses, broke=None):
    """Certification rows: ``statuses[i]`` the answer on image ``i``, ``broke[i]`` its own attacks that broke it."""
    broke = broke or {}
    return [{"index": i, "status": s, "attacks_broke": broke.get(i, [])} for i, s in enumerate(statuses)]


# --- the check itself --------------------------------------------------------------------------


def test_an_honest_certification_passes():
    rows = _rows(["robust", "not_robust", "robust", "unknown"], broke={1: ["pgd"]})
    attacks = {**hygiene.own_attacks(rows, ["pgd"]), "square": np.array([True, False, True, False])}
    check = hygiene.check_certified(rows, attacks)
    assert check["status"] == hygiene.PASS and check["broken"] == [] and check["broken_indices"] == []
    assert check["certified"] == 2 and check["checked_images"] == 2 and check["checked_pairs"] == 4
    assert check["attacks"] == ["pgd", "square"] and check["unchecked"] == []
    assert hygiene.to_markdown(check)[0].endswith("broken 0.")


def test_a_certified_image_an_attack_broke_fails_and_is_named():
    rows = _rows(["robust", "robust", "robust", "not_robust"])
    attacks = {"pgd": np.array([True, True, True, False]), "square": np.array([True, False, True, True]),
               "apgd": np.array([True, False, True, True])}
    check = hygiene.check_certified(rows, attacks)
    assert check["status"] == hygiene.FAIL
    assert check["broken"] == [{"index": 1, "attacks": ["square", "apgd"]}] and check["broken_indices"] == [1]
    assert "1 of 3 images certified robust broken" in check["message"] and "images 1" in check["message"]
    assert any("1: square, apgd" in line for line in hygiene.to_markdown(check))


def test_an_attack_covers_the_images_it_ran_on_and_unstored_outcomes_are_named():
    rows = _rows(["robust", "robust", "robust"])
    check = hygiene.check_certified(rows, {"short": np.array([True]), "old": None})
    assert check["status"] == hygiene.PASS and check["checked_images"] == 1 and check["checked_pairs"] == 1
    assert check["unchecked"] == ["old"] and check["attacks"] == ["short"]
    assert any("old" in line for line in hygiene.to_markdown(check))


def test_a_failed_check_has_the_status_that_fails_a_run():
    from edgebnn.recipes.evaluations.base import FAILED  # noqa: PLC0415

    assert hygiene.FAIL == FAILED


def test_own_attacks_come_from_the_rows_and_must_be_named():
    rows = _rows(["robust", "not_robust", "not_robust"], broke={1: ["pgd"], 2: ["pgd", "square"]})
    own = hygiene.own_attacks(rows, ["pgd", "square"])
    assert own["pgd"].tolist() == [True, False, False] and own["square"].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="names the attack 'square'"):
        hygiene.own_attacks(rows, ["pgd"])


# --- the kinds and the report -----------------------------------------------------------------


class _Outcomes:
    """A store's ``load_outcomes`` over ``{key: outcomes}``."""

    def __init__(self, by_key):
        self.by_key = by_key

    def load_outcomes(self, key):
        return self.by_key.get(key)


def _records(strong_correct, *, stored=True):
    """A cell's certify record (images 0 and 2 certified robust, image 1 broken by its PGD) and a strong
    evaluation at the same eps whose ``pgd-40/ste`` run left ``strong_correct``; and their store."""
    rows = _rows(["robust", "not_robust", "robust"], broke={1: ["pgd"]})
    certify = {"cell": "c", "repeat": 0, "evaluation": "certify", "eps": 0.1, "key": "k1",
               "report": {"attack": {"attack": "pgd", "steps": 10}, "extra_attacks": [],
                          "results": [{"eps": 0.1, "examples": rows}]}}
    strong = {"cell": "c", "repeat": 0, "evaluation": "robustness", "eps": None, "key": "k2",
              "report": {"results": [{"eps": 0.1, "accuracy": {"pgd-40/ste": 0.5, "square": 0.6}},
                                     {"eps": 0.3, "accuracy": {"pgd-40/ste": 0.1, "square": 0.2}}]}}
    other_cell = {**certify, "cell": "d", "key": "k3"}
    outcomes = {"0.1/pgd-40/ste": np.array(strong_correct), "0.1/square": np.ones(3, bool),
                "0.3/pgd-40/ste": np.zeros(3, bool), "0.3/square": np.zeros(3, bool)}
    return [certify, strong, other_cell], _Outcomes({"k2": outcomes} if stored else {})


def test_the_certify_record_is_checked_against_the_strong_evaluation_at_its_eps():
    records, store = _records([True, False, True])
    assemble.check_records(records, store)
    check = records[0][CHECK]
    assert check["status"] == hygiene.PASS
    assert check["attacks"] == ["certify/pgd", "strong/pgd-40/ste", "strong/square"]  # eps 0.3's runs are not
    assert check["checked_pairs"] == 2 * 3
    assert records[2][CHECK]["attacks"] == ["certify/pgd"]  # another cell's strong evaluation is not its own
    assert CHECK not in records[1]
    assert assemble.failed_checks({"records": records}) == []
    assert "Proof hygiene" in "\n".join(KINDS["certify"].markdown({**records[0], "report": _renderable(records[0])}))


def test_a_strong_run_that_breaks_a_certified_image_fails_the_report():
    records, store = _records([True, True, False])
    assemble.check_records(records, store)
    check = records[0][CHECK]
    assert check["status"] == hygiene.FAIL and check["broken"] == [{"index": 2, "attacks": ["strong/pgd-40/ste"]}]
    [failure] = assemble.failed_checks({"records": records})
    assert failure.startswith("cell 'c': proof hygiene: 1 of 2") and "images 2" in failure


def test_a_strong_evaluation_stored_without_outcomes_is_named_unchecked():
    records, store = _records([True, True, False], stored=False)
    assemble.check_records(records, store)
    check = records[0][CHECK]
    assert check["status"] == hygiene.PASS and check["attacks"] == ["certify/pgd"]
    assert check["unchecked"] == ["strong/pgd-40/ste", "strong/square"]


def _renderable(record):
    """A certify record's report with the keys :func:`edgebnn.certify.report.to_markdown` reads."""
    from edgebnn.certify.report import summarize_examples  # noqa: PLC0415 (TensorFlow)

    rows = [{**r, "label": 0, "source": "solver", "solver": "milp", "solver_version": "x", "seconds": 0.1,
             "free_pixels": 1, "unstable": 0, "predicted": 0, "replay_keras": None, "replay_tflite": None, "eps": 0.1,
             "clean_correct": True, "attack_broke": bool(r["attacks_broke"]), "attack_missed": False}
            for r in record["report"]["results"][0]["examples"]]
    return {**record["report"], "model": "m", "n": len(rows), "solver": "milp", "time_limit": 1.0,
            "results": [summarize_examples(rows, eps=0.1)]}


# --- the strong evaluation keeps its per-example outcomes ----------------------------------------


@pytest.mark.slow
def test_the_strong_evaluation_keeps_every_runs_outcome_per_example(float_model):
    from edgebnn.evaluation import masking  # noqa: PLC0415 (TensorFlow)

    model, x, y = float_model
    report = masking.robustness_report(model, x[:20], y[:20], eps_list=[0.05, 0.1], keep_outcomes=True,
                                       batch_size=20, surrogates=["ste"], steps=2, pgd_steps=2, restarts=1,
                                       target_classes=1, square_queries=10)
    for result in report["results"]:
        assert sorted(result["outcomes"]) == sorted(result["accuracy"])
        for name, outcome in result["outcomes"].items():
            assert len(outcome) == 20 and np.mean(outcome) == pytest.approx(result["accuracy"][name])
    json.dumps(report)  # still JSON-able


# --- end to end ---------------------------------------------------------------------------------

#: The smallest certify study at eps 0.05 with a short strong evaluation of the same images.
RECIPE = TINY_CERTIFY.replace('name = "certify"', 'name = "certify_hygiene"').replace(
    "eps = [0.02, 0.05]", "eps = [0.05]") + textwrap.dedent("""
    [[robustness]]
    eps = [0.05]
    limit = 6
    surrogates = ["ste"]
    steps = 2
    pgd_steps = 2
    restarts = 1
    target_classes = 1
    square_queries = 10
""")


@pytest.mark.slow
def test_a_run_checks_each_certified_image_and_fails_when_an_attack_broke_one(tmp_path, data_dir):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE)
    study = config.load(path, overrides=[f'data.data_dir="{data_dir}"'])
    out = tmp_path / "run"
    report = runner.run(study, out, console=lines_console())
    [record] = [r for r in report["records"] if r["evaluation"] == "certify"]
    check = record[CHECK]
    assert check["status"] == hygiene.PASS and check["unchecked"] == []
    assert "certify/pgd" in check["attacks"] and "strong/square" in check["attacks"]
    assert check["checked_pairs"] == check["certified"] * len(check["attacks"])
    assert "Proof hygiene (per image)" in (out / "report.md").read_text()
    # A fake certified set that an attack breaks: image 0 is made "robust" in the stored certification
    # and one run of the stored strong evaluation made to break it.
    store = Store(out)
    [strong] = [r for r in report["records"] if r["evaluation"] == "robustness"]
    stored = store.load_result(strong["key"])
    outcomes = store.load_outcomes(strong["key"])
    outcomes["0.05/square"][0] = False
    stored["outcomes"] = pack_outcomes(outcomes)
    store.save_result(strong["key"], stored)
    stored = store.load_result(record["key"])
    stored["metrics"]["report"]["results"][0]["examples"][0]["status"] = "robust"
    store.save_result(record["key"], stored)
    with pytest.raises(runner.FailedCheckError, match=r"images 0\b"):
        runner.run(study, out, console=lines_console())
    text = (out / "report.md").read_text()
    [line] = [line for line in text.split("\n") if "Certified robust but broken by an attack" in line]
    assert re.search(r"\b0: [^;]*strong/square", line)
