"""Guan et al.'s tables and figure as recipes: every one validates, with the paper's setup, and one
runs end to end on a tiny budget."""

import json

import pytest

from edgebnn import recipes
from edgebnn.recipes import config, runner
from edgebnn.recipes.console import Console

GUAN = sorted(name for name in recipes.available() if name.startswith("guan/"))
#: The paper's seven topologies: (precision, dropout rate at training and inference).
TOPOLOGIES = {
    "rand_bnn_0.05": ("stochastic_binary", 0.05), "rand_bnn_0": ("stochastic_binary", 0.0),
    "bnn": ("binary", 0.5), "2bit": ("2bit", 0.5), "3bit": ("3bit", 0.5), "4bit": ("4bit", 0.5),
    "float": ("float", 0.5),
}


def test_every_table_and_figure_has_a_recipe():
    assert GUAN == ["guan/fig2", "guan/table1", "guan/table2", "guan/table3", "guan/table4"]


#: Claim ids per recipe (``-EOT``: the EOT half of a criterion, stated as its own claim).
CLAIM_IDS = {"guan/table1": ["C1", "C1-EOT", "C2", "C3"], "guan/table2": ["C4", "C4-EOT", "C5"],
             "guan/table3": ["C6", "C7", "C8"], "guan/table4": ["C9", "C10"], "guan/fig2": ["C11", "C12"]}


@pytest.mark.parametrize("name", GUAN)
def test_guan_recipe_validates_with_the_papers_setup(name):
    path = recipes.find(name)
    study = config.load(path)
    assert "Claims and the criteria" in path.read_text()  # fixed before the numbers
    assert study.paper == "guan" and [c.id for c in study.claims] == CLAIM_IDS[name]
    assert {c.name: (c.recipe.model.precision, c.recipe.model.options["dropout_rate"]) for c in study.cells} == TOPOLOGIES
    for cell in study.cells:
        recipe = cell.recipe
        assert recipe.model.family == "guan_lenet" and recipe.model.options["mc_dropout"] is True
        assert "kbit_activations" not in recipe.model.options  # the paper's k-bit nets: BNN activations
        assert recipe.train.epochs == 15 and recipe.train.optimizer == "adam"
        assert recipe.evaluation.limit == 500 and recipe.evaluation.mc_passes == 50
        assert recipe.evaluation.labels == "predicted"
        assert recipe.data.dataset == "mnist" and recipe.data.split.test >= 1000
        for attack in recipe.attacks:
            options = {"fgsm": {}, "jsma": {"gamma": 0.1, "theta": 1.0},
                       "pgd": {"steps": 40, "step_size": 0.01, "rand_init": True}}[attack.name]
            assert attack.options == options
            assert attack.eps_list == ([None] if attack.name == "jsma" else [0.3])
        gradients = {(a.name, a.gradient) for a in recipe.attacks}
        assert gradients == {(a.name, g) for a in recipe.attacks for g in ("single", "eot")}
        for detection in recipe.detection:
            assert detection.fit == 500
    assert all(table.paper for table in study.tables if table.paper_source.startswith("Guan"))


TINY = [
    'data.split={source="test", train=300, test=40, seed=0}', "train.epochs=1", "train.batch_size=64",
    "evaluation.limit=20", "evaluation.batch_size=20", "evaluation.mc_passes=3", "evaluation.eot_samples=2",
    "detection.0.fit=20", "detection.1.fit=20",
]


class _Quiet(Console):
    def line(self, message):
        pass

    def note(self, message):
        pass


@pytest.mark.slow
def test_table3_end_to_end_on_a_tiny_budget(tmp_path, data_dir):
    study = config.load(recipes.find("guan/table3"), overrides=[f'data.data_dir="{data_dir}"', *TINY])
    out = tmp_path / "run"
    report = runner.run(study, out, console=_Quiet())
    assert report["status"] == "complete"
    records = json.loads((out / "report.json").read_text())["records"]
    for cell in TOPOLOGIES:
        mine = [r for r in records if r["cell"] == cell]
        assert {(r["evaluation"], r.get("gradient")) for r in mine} == {
            ("clean", None), ("attacks", "single"), ("attacks", "eot"), ("detection", "single"), ("detection", "eot")}
        for r in mine:
            if r["evaluation"] == "attacks":
                assert r["eot_samples"] == (2 if r["gradient"] == "eot" else 1)
                assert 0 <= r["accuracy_mc"] <= 1 and r["uncertainty_mean"] >= 0
            if r["evaluation"] == "detection":
                assert 0 <= r["detection_accuracy"] <= 1 and 0 <= r["detection_auc"] <= 1
    markdown = (out / "report.md").read_text()
    assert "Table 3: logistic-regression detector on uncertainty, ROC AUC" in markdown
    assert "82.4" in markdown  # the paper's value beside ours
