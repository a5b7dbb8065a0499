"""Claims in recipes: validation at load, verdicts on records, the results page, the shared cache."""

import copy
import json
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import attack, small_study
from edgebnn.recipes import claims, config, results, runner
from edgebnn.recipes.__main__ import main
from edgebnn.recipes.store import Store

BASE_TEXT = small_study(
    "claimed",
    head='paper = "guan"',
    attacks=[attack("fgsm", eps=0.1)],
    rest="""
        [deploy]
        enabled = false
        [[cells]]
        name = "bnn"
        [[cells]]
        name = "float"
        "model.precision" = "float"
        [[claims]]
        id = "C1"
        claim = "the float network is more accurate on clean inputs"
        criterion = "clean accuracy of float >= that of bnn"
        [[claims.compare]]
        left = { metric = "accuracy", match = { cell = "float", attack = "clean" } }
        op = ">="
        right = { metric = "accuracy", match = { cell = "bnn", attack = "clean" } }
    """,
)
BASE = tomllib.loads(BASE_TEXT)


def _expand(mutate=None):
    table = copy.deepcopy(BASE)
    if mutate is not None:
        mutate(table)
    return config.expand(table, name="claimed")


def _compare(table):
    return table["claims"][0]["compare"][0]


# --- validation at load ------------------------------------------------------------------


def test_a_valid_claim_loads_with_its_paper():
    study = _expand()
    assert study.paper == "guan" and [c.id for c in study.claims] == ["C1"]
    assert study.claims[0].required == 1 and study.to_dict()["claims"][0]["compare"][0]["op"] == ">="


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.update(paper="smith"), r"`paper`: input should be 'guan', 'galloway' or 'panda', got 'smith'"),
    (lambda t: t["claims"][0].update(verdict="holds"), r"unknown key `claims\.0\.verdict`; valid keys in \[claims\.0\]"),
    (lambda t: _compare(t).update(operator=">="), r"unknown key `claims\.0\.compare\.0\.operator`"),
    (lambda t: _compare(t)["left"].update(metrics="accuracy"), r"unknown key `claims\.0\.compare\.0\.left\.metrics`"),
    (lambda t: _compare(t).update(op="=>"), r"`claims\.0\.compare\.0\.op`: input should be '>=', '>', '<=' or '<'"),
    (lambda t: _compare(t).update(value=0.5), r"`claims\.0\.compare\.0\.right`: give exactly one of `right`"),
    (lambda t: _compare(t).pop("right"), r"`claims\.0\.compare\.0\.right`: give exactly one of `right`"),
    (lambda t: t["claims"][0].update(require=2), r"`claims\.0\.require`: 2 comparisons required, but the claim has only 1"),
    (lambda t: t["claims"][0].update(require="most"), r"`claims\.0\.require"),
    (lambda t: t["claims"][0].update(compare=[]), r"`claims\.0\.compare`: list should have at least 1 item"),
    (lambda t: t["claims"][0].pop("criterion"), r"`claims\.0\.criterion` is required"),
    (lambda t: t["claims"].append(copy.deepcopy(t["claims"][0])), r"`claims\.1\.id`: 'C1' is used by an earlier claim"),
    (lambda t: _compare(t)["left"]["match"].update(atack="fgsm"),
     r"unknown key `claims\.0\.compare\.0\.left\.match\.atack`; records carry"),
    (lambda t: _compare(t)["right"]["match"].update(cell="4bit"),
     r"`claims\.0\.compare\.0\.right\.match\.cell`: no cell named '4bit'"),
])
def test_bad_claims_fail_at_load_with_one_line_naming_the_key(mutate, message):
    with pytest.raises(config.RecipeError, match=message) as info:
        _expand(mutate)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: _compare(t)["left"].update(metric="acuracy"),
     r"^`claims\.0\.compare\.0\.left\.metric`: claim 'C1' names the metric 'acuracy', which no record it matches "
     r"will carry; they carry: accuracy, accuracy_eval, attempted, eot_samples, images, images_eval, l2_mean, "
     r"l2_mean_all, l2_median, linf_max, linf_mean, linf_median, success_rate, successes\.$"),
    # the Monte-Carlo vote's accuracy needs evaluation.mc_passes
    (lambda t: _compare(t)["right"].update(metric="accuracy_mc"), r"`claims\.0\.compare\.0\.right\.metric`: .*'accuracy_mc'"),
    # the clean result carries no success rate, the attack's does: `evaluation` narrows what a reference may match
    (lambda t: _compare(t)["left"].update(metric="success_rate", match={"evaluation": "clean"}),
     r"'success_rate', which no record it matches will carry; they carry: accuracy, accuracy_eval, images, images_eval\.$"),
    (lambda t: _compare(t)["left"].update(metric="accuracy", match={"model.precision": "xnor"}),
     r"'accuracy', which no record it matches will carry; no evaluation of the study matches it\.$"),
    (lambda t: t.update(tables=[{"title": "Norms", "metric": "l2_mean_al"}]),
     r"^`tables\.0\.metric`: table 'Norms' names the metric 'l2_mean_al', which no record it shows will carry; they "
     r"carry: accuracy, .*, l2_mean_all, .*\.$"),
    (lambda t: t.update(tables=[{"title": "Norms", "metric": "l2_mean", "evaluation": "attack"}]),
     r"^`tables\.0\.evaluation` must be one of \['clean', 'attacks', .*\], got 'attack'\.$"),
])
def test_claims_and_tables_naming_a_metric_no_record_will_carry_fail_at_load(mutate, message):
    with pytest.raises(config.RecipeError, match=message):
        _expand(mutate)


def test_a_metric_an_override_turns_off_leaves_its_claim_to_the_run(tmp_path):
    """A claim on a metric of the recipe at its defaults (the Monte-Carlo vote) still loads when ``--set``
    turns that metric off, like a claim on a cell a budget leaves out: it is not evaluated at the end."""
    text = BASE_TEXT.replace("batch_size = 30\n", "batch_size = 30\nmc_passes = 4\n", 1).replace(
        'left = { metric = "accuracy",', 'left = { metric = "accuracy_mc",', 1)
    path = tmp_path / "mc.toml"
    path.write_text(text)
    assert config.load(path).cells[0].recipe.evaluation.mc_passes == 4
    off = config.load(path, overrides=["evaluation.mc_passes=0"])
    assert off.cells[0].recipe.evaluation.mc_passes == 0 and off.claims[0].compare[0].left.metric == "accuracy_mc"
    with pytest.raises(config.RecipeError, match=r"^mc\.toml: `claims\.0\.compare\.0\.left\.metric`: .*'accuracy_mcc'"):
        config.load(path, overrides=["evaluation.mc_passes=0", "claims.0.compare.0.left.metric=accuracy_mcc"])


def test_match_accepts_dotted_configuration_keys():
    def mutate(t):
        _compare(t)["left"]["match"] = {"model.precision": "float", "attack": "clean"}

    assert _expand(mutate).claims[0].compare[0].left.match == {"model.precision": "float", "attack": "clean"}


# --- verdicts ------------------------------------------------------------------------------

RECORDS = [
    {"cell": "bnn", "repeat": 0, "evaluation": "clean", "attack": "clean", "eps": 0.0, "accuracy": 0.90},
    {"cell": "bnn", "repeat": 0, "evaluation": "attacks", "attack": "fgsm", "eps": 0.3, "gradient": "single",
     "accuracy": 0.452, "accuracy_mc": 0.56},
    {"cell": "bnn", "repeat": 0, "evaluation": "attacks", "attack": "fgsm", "eps": 0.3, "gradient": "eot",
     "accuracy": 0.30, "accuracy_mc": 0.31},
    {"cell": "2bit", "repeat": 0, "evaluation": "attacks", "attack": "fgsm", "eps": 0.3, "gradient": "single",
     "accuracy": 0.60, "accuracy_mc": 0.61},
    {"cell": "2bit", "repeat": 1, "evaluation": "attacks", "attack": "fgsm", "eps": 0.3, "gradient": "single",
     "accuracy": 0.50, "accuracy_mc": 0.53},
    {"cell": "float", "repeat": 0, "evaluation": "detection", "attack": "fgsm", "eps": 0.3, "gradient": "single",
     "detection_accuracy": 0.80, "detection_auc": 0.88},
]
CONFIGS = {"bnn": {"model.precision": "binary"}, "2bit": {"model.precision": "2bit"},
           "float": {"model.precision": "float"}}


def _mc_gain(cell, margin=0.02):
    match = {"cell": cell, "attack": "fgsm", "gradient": "single"}
    return {"left": {"metric": "accuracy_mc", "match": match}, "op": ">=",
            "right": {"metric": "accuracy", "match": match}, "margin": margin}


def _claim(compare, require="all"):
    return claims.ClaimSpec.model_validate({"id": "C", "claim": "c", "criterion": "k", "require": require,
                                            "compare": compare})


def test_a_comparison_shows_its_numbers_in_points():
    result = claims.evaluate(_claim([_mc_gain("bnn")]), RECORDS, CONFIGS)
    assert result["verdict"] == "holds" and result["held"] == 1
    assert result["comparisons"][0]["text"] == "bnn fgsm single: accuracy_mc 56.0% >= accuracy 45.2% + 2.0 (no interval) -> yes"
    assert result["comparisons"][0]["left"] == pytest.approx(0.56)


ONE_REPEAT = [r for r in RECORDS if r["repeat"] == 0]  # no interval: the verdict counts point comparisons


@pytest.mark.parametrize("require, compare, verdict", [
    ("all", [_mc_gain("bnn"), _mc_gain("2bit", margin=0.01)], "holds"),  # 2bit: 61.0 >= 60.0 + 1.0, a tie
    ("all", [_mc_gain("bnn"), _mc_gain("2bit", margin=0.011)], "does not hold (1 of 2, 2 required)"),
    (1, [_mc_gain("bnn"), _mc_gain("2bit", margin=0.011)], "holds"),
    ("any", [_mc_gain("bnn", margin=0.2), _mc_gain("2bit", margin=0.011)], "does not hold (0 of 2, 1 required)"),
    ("all", [_mc_gain("bnn"), _mc_gain("2bit", margin=0.009)], "holds"),
])
def test_verdict_counts_the_comparisons_that_hold(require, compare, verdict):
    assert claims.evaluate(_claim(compare, require), ONE_REPEAT, CONFIGS)["verdict"] == verdict


def test_repeats_are_averaged_and_constants_and_other_metrics_work():
    mean_2bit = {"left": {"metric": "accuracy", "match": {"cell": "2bit", "attack": "fgsm"}}, "op": "<", "value": 0.56}
    detect = {"left": {"metric": "detection_accuracy", "match": {"model.precision": "float"}}, "op": ">=", "value": 0.75}
    auc = {"left": {"metric": "detection_auc", "match": {"cell": "float"}}, "op": "<=", "value": 0.9, "margin": -0.01}
    result = claims.evaluate(_claim([mean_2bit, detect, auc]), RECORDS, CONFIGS)
    # two repeats 10 points apart give a wide Student-t interval: the 1-point gap is undecided
    assert result["verdict"] == "inconclusive (2 of 3, 3 required, 1 undecided)", result
    first, _, third = result["comparisons"]
    assert first["left"] == pytest.approx(0.55) and first["left_n"] == 2  # mean of the two repeats
    assert first["text"] == "2bit fgsm: 55.0% < 56.0% (95% CI of the difference -64.5 to +62.5 points, repeats) -> undecided"
    assert third["text"] == "float: 0.88 <= 0.9 - 0.01 (no interval) -> yes"
    versus = {"left": {"metric": "accuracy", "match": {"cell": "2bit", "attack": "fgsm", "gradient": "single"}},
              "op": ">=", "right": {"metric": "accuracy", "match": {"cell": "bnn", "attack": "fgsm", "gradient": "single"}},
              "margin": 0.05}
    assert claims.evaluate(_claim([versus]), RECORDS, CONFIGS)["comparisons"][0]["text"] == \
        "2bit fgsm single vs bnn: 55.0% >= 45.2% + 5.0 (no interval) -> yes"


def test_a_reference_matching_nothing_is_not_evaluated_never_a_pass():
    missing = {"left": {"metric": "accuracy", "match": {"cell": "bnn", "attack": "pgd"}}, "op": "<=", "value": 1.0}
    result = claims.evaluate(_claim([_mc_gain("bnn"), missing], require=1), RECORDS, CONFIGS)
    assert result["verdict"] == "not evaluated: accuracy[cell=bnn, attack=pgd] matched no record"
    assert result["comparisons"][0]["holds"] is True and result["comparisons"][1]["holds"] is None
    no_metric = {"left": {"metric": "accuracy_mc", "match": {"cell": "bnn", "attack": "clean"}}, "op": ">=", "value": 0}
    assert claims.evaluate(_claim([no_metric]), RECORDS, CONFIGS)["verdict"].startswith("not evaluated: accuracy_mc[")


def test_a_reference_matching_several_results_is_not_evaluated():
    both = {"left": {"metric": "accuracy", "match": {"cell": "bnn", "attack": "fgsm"}}, "op": ">=", "value": 0.0}
    verdict = claims.evaluate(_claim([both]), RECORDS, CONFIGS)["verdict"]
    assert verdict == ("not evaluated: accuracy[cell=bnn, attack=fgsm] matched 2 different results "
                       "(differing in gradient); add those keys to `match`")


# --- the results page ---------------------------------------------------------------------------


def _report(recipe, paper, claim_results, *, records=(), figures=(), caption="mnist: a split"):
    return {"recipe": recipe, "description": f"{recipe} description", "paper": paper, "status": "complete",
            "error": None, "data_caption": caption, "records": list(records), "seconds": 12.5,
            "computed_seconds": 10.0, "claims": claim_results, "figures": list(figures),
            "study": {"base": {"data": {"dataset": "mnist"}, "train": {"epochs": 15, "batch_size": 128, "optimizer": "adam", "learning_rate": 0.001},
                               "evaluation": {"limit": 500, "mc_passes": 50, "eot_samples": 10,
                                              "labels": "predicted"}}},
            "tables": [{"title": "T", "markdown": ["### T", "", "| cell | fgsm |", "|---|---:|",
                                                   "| bnn | 45.20 (paper 46.2) |", ""]}]}


ROBUST = {"surrogates": ["ste"], "n": 50, "clean_accuracy": 0.9, "norm": "inf", "randomized": False,
          "eot_samples": 1, "warnings": 1,
          "results": [{"eps": 0.1, "accuracy": {"pgd": 0.4}, "checks": [],
                       "autoattack": {"ste": {"robust_accuracy": 0.3},
                                      "all": {"robust_accuracy": 0.3, "breakdown": [
                                          {"attack": "apgd-ce", "broken": 30, "attacked": 45}]}}}],
          "checks": [{"check": "zero_gradients", "status": "warning", "message": "60% of gradients are zero"}]}


def _write_runs(root):
    holds = claims.evaluate(_claim([_mc_gain("bnn")]), RECORDS, CONFIGS)
    holds["id"], holds["claim"] = "C1", "MC dropout raises FGSM accuracy"
    missing = claims.evaluate(_claim([{"left": {"metric": "accuracy", "match": {"cell": "x"}}, "op": ">",
                                       "value": 0}]), RECORDS, CONFIGS)
    missing["id"], missing["claim"] = "C2", "something unmeasured"
    runs = {
        root / "guan" / "table1": _report("guan_table1", "guan", [holds, missing], records=RECORDS,
                                          figures=[{"title": "Hist", "path": "figures/hist.png"}]),
        root / "galloway" / "t": _report("galloway_t", "galloway", [], records=[
            {"cell": "bnn", "repeat": 0, "evaluation": "robustness", "report": ROBUST, "images": 50}]),
        root / "other": _report("quickstart", None, []),
    }
    for folder, report in runs.items():
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(report))
    (root / "guan" / "table1" / "store" / "x").mkdir(parents=True)
    (root / "guan" / "table1" / "store" / "x" / "report.json").write_text("{}")  # not a run: skipped
    return runs


def test_results_page_groups_papers_and_shows_verdicts_tables_figures_and_masking(tmp_path):
    _write_runs(tmp_path / "runs")
    out = tmp_path / "docs" / "results.md"
    assert main(["results", str(tmp_path / "runs"), "--out", str(out)]) == 0
    page = out.read_text()
    assert f"Generated by `python -m edgebnn.recipes results {tmp_path / 'runs'} --out {out}`" in page
    order = [page.index(h) for h in ("## Guan", "## Galloway et al.", "## Other recipes")]
    assert order == sorted(order)
    assert ("| Guan | guan_table1 | mnist | all / all of mnist, 15 epochs, 500 evaluated, 1 run | "
            "C1: MC dropout raises FGSM accuracy | holds |") in page
    # every table and figure of the paper is listed, run or not, with the reason
    assert "| Table 1 | clean and FGSM accuracy, single pass vs MC vote | `guan/table1` | mnist: all / all" in page
    assert "| Table 2 | JSMA and PGD accuracy, single pass vs MC vote | `guan/table2` | not run yet |" in page
    # a paper without any run still has its section, listing what it reports and why nothing ran
    assert "## Panda et al." in page and "| Table 5 | BNN vs full precision with 2 / 4 / 8-bit input (MNIST FCN1) | " \
        "`panda/table5` | not run yet |" in page
    assert ("| Table 5 | black-box substitute attack on CIFAR-10 | `galloway/table5` | needs CIFAR-10, which "
            "tensorflow-datasets must download (not available offline) |") in page
    assert "- **C2** something unmeasured" in page and "verdict: **not evaluated: accuracy[cell=x] matched no record**" in page
    assert "    - bnn fgsm single: accuracy_mc 56.0% >= accuracy 45.2% + 2.0 (no interval) -> yes" in page
    assert "2 claims of the paper: 1 holds, 1 not evaluated." in page
    assert "| bnn | 45.20 (paper 46.2) |" in page and "#### T" in page
    assert "[Hist](../runs/guan/table1/figures/hist.png)" in page
    assert "##### Masking checks, cell bnn (50 images)" in page and "zero_gradients: **WARNING**" in page
    assert "15 training epoch(s)" in page and "50 Monte-Carlo passes" in page and "EOT 10 samples" in page
    assert page.count("### guan_table1") == 1  # the store's report.json is not a run
    assert "| bnn | fgsm eps 0.3 | 45.2 / 30.0 (-15.2) | 56.0 / 31.0 (-25.0) |" in page
    assert "| 2bit |" not in page.split("EOT against the single-sample attack")[1].split("####")[0]  # no EOT run


def test_results_command_errors_are_one_line(tmp_path, capsys):
    assert main(["results", str(tmp_path / "nope"), "--out", str(tmp_path / "r.md")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["results", str(tmp_path / "empty"), "--out", str(tmp_path / "r.md")]) == 2
    assert "no report.json in or below RUN_DIR" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text("{}")
    with pytest.raises(config.RecipeError, match="is not a recipe run's report"):
        results.find_reports([tmp_path / "bad"])
    assert not (tmp_path / "r.md").exists()


# --- the shared cache ----------------------------------------------------------------------------


def test_store_lock_makes_a_second_holder_wait(tmp_path):
    store = Store(tmp_path / "run", cache=tmp_path / "cache")
    assert store.root == tmp_path / "cache" and store.model_dir("k") == tmp_path / "cache" / "models" / "k"
    events = []

    def second():
        with store.lock("k", on_wait=lambda: events.append("waited")):
            events.append("second holds")

    with store.lock("k"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        events.append("first releases")
    thread.join(timeout=10)
    assert events == ["waited", "first releases", "second holds"]
    with store.lock("other"):  # another key is not blocked
        pass


@pytest.mark.slow
def test_two_runs_sharing_a_cache_train_once_and_report_claims(tmp_path, data_dir):
    def mutate(t):
        t["data"]["data_dir"] = str(data_dir)
        t["cells"] = [t["cells"][1]]  # the float cell only
        t["claims"][0]["compare"][0]["right"]["match"]["cell"] = "float"

    study = _expand(mutate)
    cache = tmp_path / "cache"
    lines_first, lines_second = [], []

    class Quiet(runner.Console):
        def __init__(self, lines):
            super().__init__()
            self.lines = lines

        def line(self, message):
            self.lines.append(message)

        note = line

    first = runner.run(study, tmp_path / "a", console=Quiet(lines_first), cache=cache)
    second = runner.run(study, tmp_path / "b", console=Quiet(lines_second), cache=cache)
    assert any("training" in line for line in lines_first)
    assert not any("training" in line for line in lines_second) and second["computed_seconds"] == 0
    assert second["records"] == first["records"]
    assert second["work_seconds"] == pytest.approx(first["work_seconds"]) and first["work_seconds"] > 0
    assert not (tmp_path / "a" / "store").exists() and (cache / "models").is_dir()
    assert (tmp_path / "b" / "report.json").is_file()
    [claim] = second["claims"]
    assert claim["verdict"] == "holds" and claim["comparisons"][0]["text"].startswith("float clean: ")
    assert "## Claims" in (tmp_path / "b" / "report.md").read_text()


# --- intervals, gates and the paper's own values -------------------------------------------------


def _accuracy(cell, value, *, images, attack="fgsm", repeat=0, evaluation="attacks"):
    return {"cell": cell, "repeat": repeat, "evaluation": evaluation, "attack": attack, "accuracy": value,
            "images": images}


def _versus(left, right, margin=0.0, op=">="):
    return {"left": {"metric": "accuracy", "match": {"cell": left, "attack": "fgsm"}}, "op": op,
            "right": {"metric": "accuracy", "match": {"cell": right, "attack": "fgsm"}}, "margin": margin}


@pytest.mark.parametrize("images, verdict", [
    (50, "inconclusive (0 of 1, 1 required, 1 undecided)"),  # 8 points on 50 images is noise
    (5000, "holds"),
])
def test_a_margin_must_hold_over_the_binomial_interval_of_the_images(images, verdict):
    records = [_accuracy("a", 0.60, images=images), _accuracy("b", 0.52, images=images)]
    result = claims.evaluate(_claim([_versus("a", "b", margin=0.02)]), records, CONFIGS)
    assert result["verdict"] == verdict
    low, high = result["comparisons"][0]["low"], result["comparisons"][0]["high"]
    assert low < 0.08 < high and result["comparisons"][0]["method"] == "binomial"


def test_a_comparison_failing_over_its_whole_interval_fails():
    records = [_accuracy("a", 0.30, images=1000), _accuracy("b", 0.60, images=1000)]
    result = claims.evaluate(_claim([_versus("a", "b")]), records, CONFIGS)
    assert result["verdict"] == "does not hold (0 of 1, 1 required)" and result["failed"] == 1


def test_paired_bootstrap_uses_per_image_outcomes_and_is_narrower_than_the_unpaired_interval():
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.6
    better = base | (rng.random(400) < 0.08)  # the same images, a few more correct
    records = [_accuracy("a", better.mean(), images=400), _accuracy("b", base.mean(), images=400)]
    vectors = {"a": better, "b": base}
    paired = claims.evaluate(_claim([_versus("a", "b")]), records, CONFIGS,
                             outcomes=lambda record, metric: vectors[record["cell"]])["comparisons"][0]
    unpaired = claims.evaluate(_claim([_versus("a", "b")]), records, CONFIGS)["comparisons"][0]
    assert paired["method"] == "bootstrap" and unpaired["method"] == "binomial"
    assert paired["high"] - paired["low"] < (unpaired["high"] - unpaired["low"]) / 2
    assert paired["low"] <= better.mean() - base.mean() <= paired["high"] and paired["holds"] is True


def test_repeats_give_a_student_t_interval():
    records = [_accuracy("a", v, images=100, repeat=i) for i, v in enumerate((0.70, 0.72, 0.71, 0.69))]
    records += [_accuracy("b", v, images=100, repeat=i) for i, v in enumerate((0.60, 0.61, 0.59, 0.62))]
    comparison = claims.evaluate(_claim([_versus("a", "b", margin=0.05)]), records, CONFIGS)["comparisons"][0]
    assert comparison["method"] == "repeats" and comparison["holds"] is True
    assert comparison["left_n"] == comparison["right_n"] == 4


def test_a_difference_of_differences_is_one_reference():
    records = [{"cell": c, "repeat": 0, "evaluation": e, "attack": a, "uncertainty_mean": v}
               for c, e, a, v in [("float", "clean", "clean", 0.001), ("float", "attacks", "fgsm", 0.0107),
                                  ("bnn", "clean", "clean", 0.006), ("bnn", "attacks", "fgsm", 0.0112)]]

    def gap(cell):
        return {"metric": "uncertainty_mean", "match": {"cell": cell, "attack": "fgsm"},
                "minus": {"metric": "uncertainty_mean", "match": {"cell": cell, "attack": "clean"}}}

    result = claims.evaluate(_claim([{"left": gap("float"), "op": ">", "right": gap("bnn")}]), records, CONFIGS)
    assert result["verdict"] == "holds"
    assert result["comparisons"][0]["left"] == pytest.approx(0.0097)
    assert result["comparisons"][0]["text"].startswith("float fgsm vs bnn: 0.0097 > 0.0052")


def test_under_trained_or_near_chance_models_do_not_decide_a_claim():
    records = [_accuracy("a", 0.60, images=5000), _accuracy("b", 0.40, images=5000),
               _accuracy("a", 0.90, images=5000, attack="clean", evaluation="clean"),
               _accuracy("b", 0.12, images=5000, attack="clean", evaluation="clean")]
    result = claims.evaluate(_claim([_versus("a", "b")]), records, CONFIGS, paper_clean={"a": 0.98})
    assert result["outcome"] == "not evaluated"
    assert result["verdict"] == ("not evaluated: under-trained (a: clean 90.0% vs paper 98.0%; "
                                 "b: clean 12.0%, near chance (10%))")
    assert result["comparisons"][0]["holds"] is True  # the numbers are still shown
    fine = claims.evaluate(_claim([_versus("a", "b")]), records[:3], CONFIGS, paper_clean={"a": 0.93})
    assert fine["verdict"] == "holds"


def test_paper_clean_accuracies_come_from_the_tables_clean_paper_values():
    study = config.load("recipes/guan/table1.toml")
    configs = {c.name: config.flatten(c.recipe.model_dump(mode="json")) for c in study.cells}
    clean = claims.paper_clean(study.tables, configs)
    assert clean["float"] == pytest.approx(0.982) and clean["rand_bnn_0.05"] == pytest.approx(0.624)


def _paper_verdicts():
    verdicts = []
    for path in sorted(Path("recipes").rglob("*.toml")):
        study = config.load(path)
        configs = {c.name: config.flatten(c.recipe.model_dump(mode="json")) for c in study.cells if c.repeat == 0}
        records = claims.paper_records(study.tables, configs)
        verdicts += [(f"{path.parent.name}/{path.stem} {r['id']}", r)
                     for r in claims.evaluate_all(study.claims, records, configs)]
    return verdicts


def test_every_criterion_holds_on_the_papers_own_values():
    """A criterion that fails on the numbers the paper reports misreads the paper.

    Claims whose numbers the paper gives only in figures or text cannot be checked here;
    at least the 43 claims with table values must be, and every one of them must hold.
    """
    verdicts = _paper_verdicts()
    checked = {name: r for name, r in verdicts if r["outcome"] != claims.NOT_EVALUATED}
    wrong = {name: r["verdict"] for name, r in checked.items() if r["outcome"] != claims.HOLDS}
    assert not wrong, wrong
    assert len(checked) >= 43, sorted(checked)


def test_attack_accuracy_rising_with_eps_or_above_clean_is_an_anomaly():
    def fgsm(eps, accuracy, cell="b"):
        return {"cell": cell, "repeat": 0, "evaluation": "attacks", "attack": "fgsm", "eps": eps,
                "gradient": "single", "accuracy": accuracy, "images": 1000}

    clean = {"cell": "b", "repeat": 0, "evaluation": "clean", "attack": "clean", "eps": 0.0, "accuracy": 0.85,
             "accuracy_eval": 0.80, "images": 10000, "images_eval": 1000}
    records = [clean, fgsm(0.1, 0.40), fgsm(0.2, 0.41), fgsm(0.3, 0.90)]
    flags = claims.anomalies(records)
    assert [(f["eps"], f["message"].split(":")[0]) for f in flags] == [
        (0.3, "fgsm accuracy rises from 41.0% at eps 0.2 to 90.0% at eps 0.3"),
        (0.3, "fgsm accuracy at eps 0.3 (90.0%) is above clean accuracy on the same images (80.0%)")]
    assert claims.anomalies([clean, fgsm(0.1, 0.40), fgsm(0.2, 0.41)]) == []  # a 1-point rise is noise


def test_a_paper_recipe_on_other_data_is_a_substitute_without_the_papers_values():
    from edgebnn.recipes import assemble, report

    own = config.load("recipes/guan/table1.toml")
    swapped = config.load("recipes/guan/table1.toml", overrides=['data.dataset="fashion_mnist"'])
    assert own.recipe_dataset == swapped.recipe_dataset == "mnist"
    assert assemble.substitute(own) is None
    assert assemble.substitute(swapped) == {"dataset": "fashion_mnist", "paper_dataset": "mnist"}
    configs = {c.name: config.flatten(c.recipe.model_dump(mode="json")) for c in own.cells}
    records = [{"cell": "bnn", "repeat": 0, "evaluation": "clean", "attack": "clean", "eps": 0.0, "accuracy": 0.9}]
    spec = own.tables[0]
    with_paper, _ = report.render_table(spec, records, configs)
    without, data = report.render_table(spec, records, configs, paper_values=False)
    assert "(paper 92.0)" in "\n".join(with_paper) and "paper" not in "\n".join(without)
    assert all(cell["paper"] is None for cell in data["cells"])


def test_a_named_budget_is_a_table_of_overrides_and_a_missing_one_is_one_line(tmp_path):
    recipe = tmp_path / "budgeted.toml"
    recipe.write_text(BASE_TEXT + '\n[budgets.quick]\n"train.epochs" = 3\n"evaluation.limit" = 20\n')
    full = config.load(recipe)
    quick = config.load(recipe, budget="quick", overrides=["evaluation.limit=30"])
    assert full.budget is None and quick.budget == "quick"
    assert {c.recipe.train.epochs for c in quick.cells} == {3} != {c.recipe.train.epochs for c in full.cells}
    assert {c.recipe.evaluation.limit for c in quick.cells} == {30}  # --set comes after the budget
    with pytest.raises(config.RecipeError, match=r"budgeted\.toml: no budget named 'paper'; the recipe's budgets: "
                                                 r"\['quick'\]\.$"):
        config.load(recipe, budget="paper")


def test_every_paper_recipe_has_a_quick_budget_that_is_smaller():
    for path in sorted(Path("recipes").glob("*/*.toml")):  # the papers' recipes live in subfolders
        full, quick = config.load(path), config.load(path, budget="quick")
        assert full.paper is not None, path
        assert quick.budget == "quick" and len(quick.cells) <= len(full.cells), path
        assert max(c.recipe.train.epochs for c in quick.cells) < max(c.recipe.train.epochs for c in full.cells), path
        assert [c.id for c in quick.claims] == [c.id for c in full.claims], path


def test_eot_table_pairs_results_of_the_same_setting_only():
    """A single-sample result is compared with the EOT result of the same iterations (and eps, targets):
    averaging the 1-, 10- and 100-iteration single-sample CW results against a 100-iteration EOT one
    would report a gap that no attack setting has."""
    from edgebnn.recipes.evaluations.attack import eot_versus_single  # noqa: PLC0415

    def cw(iterations, gradient, accuracy, repeat=0):
        return {"cell": "S", "repeat": repeat, "attack": "cw_l2", "eps": None, "targets": "all", "source": None,
                "labels": None, "iterations": iterations, "gradient": gradient, "accuracy": accuracy}

    records = [cw(1, "single", 0.97), cw(10, "single", 0.96), cw(100, "single", 0.24), cw(100, "single", 0.26, 1),
               cw(100, "eot", 0.13), cw(100, "eot", 0.15, 1), cw(10, "eot", 0.90)]
    rows = [line for line in eot_versus_single(records) if line.startswith("| S |")]
    assert rows == ["| S | cw_l2 10 iterations targets all | 96.0 / 90.0 (-6.0) |",
                    "| S | cw_l2 100 iterations targets all | 25.0 / 14.0 (-11.0) |"]
