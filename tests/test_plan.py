"""The planner: store keys of models, results and deployments stay those of earlier runs
(so existing caches still hit), and the plan's work and pool checks."""

import pytest

from edgebnn.recipes import config, plan

#: A study with every evaluation kind, a transfer attack, grid and named cells, deployment.
STUDY = """
name = "golden"
description = "Every evaluation kind, deploy, tables, figures and claims on a small budget"
paper = "panda"
[data]
dataset = "fashion_mnist"
train_limit = 300
test_limit = 120
[model]
family = "panda_fcn2"
precision = "binary"
input_bits = 2

[train]
epochs = 1
batch_size = 64
[evaluation]
limit = 30
batch_size = 30
[[attacks]]
name = "fgsm"
eps = [0.1, 0.2]
[[attacks]]
name = "pgd"
eps = 0.1
steps = 3
[[attacks]]
name = "cw_l2"
targets = "random"
max_iterations = 3
binary_search_steps = 1
[[attacks]]
name = "fgsm"
eps = 0.1
gradient = "single"
[[probes]]
layer = "dense_1"
attack = "fgsm"
eps = 0.1
[deploy]
enabled = true
verify = true
[grid]
"model.precision" = ["float", "binary"]
[[cells]]
name = "mc"
grid = false
model = { family = "guan_lenet", precision = "float", options = { mc_dropout = true } }
evaluation.mc_passes = 4
attacks = [{ name = "fgsm", eps = 0.1 }, { name = "fgsm", eps = 0.1, gradient = "single" }]
probes = []
detection = [{ attack = "fgsm", eps = 0.1, fit = 40, samples = 4 }]
[[cells]]
name = "transfer"
grid = false
attacks = [{ name = "fgsm", eps = 0.1, source = "precision=float" }]
probes = []
[[cells]]
name = "strong"
grid = false
attacks = []
probes = []
robustness = [{ eps = [0.1], limit = 8, steps = 2, pgd_steps = 2, restarts = 1, target_classes = 1, square_queries = 20, surrogates = ["identity"] }]
certify = [{ eps = [0.02], limit = 3, time_limit = 10, attack_steps = 3, attack_restarts = 1 }]
[[tables]]
title = "Accuracy"
metric = "accuracy"
rows = ["cell"]
columns = ["attack", "eps"]
[[tables.paper]]
match = { cell = "precision=binary", attack = "fgsm", eps = 0.1 }
value = 50.0
[[figures]]
kind = "accuracy_vs_eps"
name = "fgsm_curve"
attack = "fgsm"
series = ["model.precision"]
[[figures]]
kind = "uncertainty_histogram"
name = "mc_uncertainty"
cell = "mc"
[[claims]]
id = "C1"
claim = "binary beats float under FGSM"
criterion = "accuracy binary >= float"
[[claims.compare]]
left = { metric = "accuracy", match = { cell = "precision=binary", attack = "fgsm", eps = 0.1, gradient = "eot" } }
op = ">="
right = { metric = "accuracy", match = { cell = "precision=float", attack = "fgsm", eps = 0.1, gradient = "eot" } }
"""

#: The keys the runner gave this study before the planner was split out of it (read from
#: that run's report.json and store): a changed key would make every existing cache miss.
MODEL_KEYS = {"precision=float": "95a7858497a36a58f67e", "precision=binary": "860302f03dbbffc50916",
              "mc": "04cc16e9f0ab155b0266", "transfer": "860302f03dbbffc50916", "strong": "860302f03dbbffc50916"}
RESULT_KEYS = {
    "precision=float": ["ffd8932d953958224019", "8e595a9476542d433833", "707f4e56162c62a1791a",
                        "316c7dffc14b14e8a502", "533bb526e178ae2d5e77", "de817fa6e1cf43c9d8d3",
                        "0952219ff5f9542edd77"],
    "precision=binary": ["a2213f142795a76e53ce", "1b8ef1c4db681945cd00", "c480464a44d9ad46a220",
                         "1d05e76399c75ce55c6d", "98495bdcdce1fc3ef5f2", "982c5459c99f2d8ef6c6",
                         "89df75f9ad67759849aa"],
    "mc": ["cd6de0c5ec2bfca7d01e", "715fa365bd46d7d6560a", "c446ab5be31129b61aac", "26103294e74b4f36e8d8"],
    "transfer": ["a2213f142795a76e53ce", "1faf4f26fae4f81db309"],
    "strong": ["a2213f142795a76e53ce", "e85cce349466915adce8", "f0009632d918a1d8a20d"],
}
DEPLOY_KEYS = {"37a01c0c5c28adb5bb73", "84accbbd52dbda2aab16", "af1969b4df89cdf46f98", "ccb592aa8c3eeaffb7be"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "golden.toml"
    path.write_text(STUDY)
    return config.load(path)


def test_keys_are_those_of_earlier_runs(study):
    plans = plan.plan(study, lambda recipe: (300, 120))
    assert {cell.id: plans[cell.id].model_key for cell in study.cells} == MODEL_KEYS
    assert {cell.id: [u.key for u in plans[cell.id].units] for cell in study.cells} == RESULT_KEYS
    assert {plans[c.id].deploy_key(c.recipe.deploy) for c in study.cells} == DEPLOY_KEYS


def test_plan_is_pure_and_ordered(study):
    first, second = plan.plan(study, lambda r: (300, 120)), plan.plan(study, lambda r: (300, 120))
    assert first == second
    binary = first["precision=binary"]
    assert [u.kind for u in binary.units] == ["clean", "attacks", "attacks", "attacks", "attacks", "attacks", "probes"]
    assert (binary.n_eval, binary.n_pool) == (30, 90)
    assert binary.train_work == 300  # one epoch of 300 images, no adversary
    transfer = first["transfer"].units[1]
    assert transfer.source == "precision=float" and not plan.exports_examples(transfer)
    assert plan.exports_examples(binary.units[1]) and not plan.exports_examples(binary.units[0])


def test_epoch_work_counts_the_adversary(study):
    train = study.cells[0].recipe.train
    assert plan.epoch_work(train) == 1.0
    pgd = train.model_copy(update={"adversarial": config.AdversarialConfig(method="pgd", eps=0.1, steps=7,
                                                                           fraction=0.5)})
    assert plan.epoch_work(pgd) == pytest.approx(1 + 7 * 0.5)


def test_pool_size_is_checked_before_any_work(study):
    with pytest.raises(config.RecipeError, match=r"cell 'mc': `detection.0` needs 40 test images apart from the 30"):
        plan.plan(study, lambda r: (300, 60))


def test_eval_split():
    assert plan.eval_split(120, 30) == (30, 90)
    assert plan.eval_split(20, 30) == (20, 0)
    assert plan.eval_split(20, None) == (20, 0)
