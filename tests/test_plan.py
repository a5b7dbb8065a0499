"""The planner: store keys of models, results and deployments change only on purpose
(so existing caches still hit), and the plan's work and pool checks."""

import pytest

from conftest import attack, mc_cell, probe, small_study, transfer_cell
from edgebnn.recipes import config, plan

#: A study with every evaluation kind, a transfer attack, grid and named cells, deployment.
STUDY = small_study(
    "golden",
    head=dict(description="Every evaluation kind, deploy, tables, figures and claims on a small budget",
              paper="panda"),
    model=dict(precision="binary", input_bits=2),
    evaluation=dict(limit=30, batch_size=30),
    attacks=[attack("fgsm", eps=[0.1, 0.2]), attack("pgd", eps=0.1, steps=3),
             attack("cw_l2", targets="random", max_iterations=3, binary_search_steps=1),
             attack("fgsm", eps=0.1, gradient="single")],
    rest=probe("dense_1", attack="fgsm", eps=0.1) + """[deploy]
enabled = true
verify = true
[grid]
"model.precision" = ["float", "binary"]
""" + mc_cell(passes=4, fit=40, attacks=[{"name": "fgsm", "eps": 0.1},
                                         {"name": "fgsm", "eps": 0.1, "gradient": "single"}]) + transfer_cell(
    "precision=float") + """
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
""",
)

#: The keys of this study's models, results and deployments. A changed key makes every
#: existing cache miss, so these change only on purpose: they were first read from the
#: report.json and store of a run made before the planner was split out of the runner, and
#: changed once since, when models gained the training scheme in their key (per-epoch seeded
#: shuffling and random ops, for exact resumes: :data:`edgebnn.recipes.store.TRAINING_SCHEME`).
MODEL_KEYS = {"precision=float": "0b124e512991ace91376", "precision=binary": "e3a6c3bfb26d0ebaef45",
              "mc": "c247a10c0a4c0af502b8", "transfer": "e3a6c3bfb26d0ebaef45", "strong": "e3a6c3bfb26d0ebaef45"}
RESULT_KEYS = {
    "precision=float": ["bbc07170a91d530c21cd", "9d74816a58d9dc7895e9", "fdbe61ef1e04a4acaf29",
                        "9e5c8a82eb49b8dbb410", "ad58b90512bac711730e", "a8aea474c496eec3e16e",
                        "a8b2d5383bac8093b88d"],
    "precision=binary": ["1a268728cbf195ee36e3", "13f46ac4241e567f8bc7", "613c44882121dbadb07b",
                         "30333dc69e4fa8570328", "722ee0f7c4b2575d3c2c", "2c79e9d24e4952e4c99f",
                         "a4817febd1e17a64058a"],
    "mc": ["a9182f296bff0e83e692", "d4cc1f5c1fc500e0095a", "5ef694a6cc26adcf65fc", "30bdd2c9903f8d45061e"],
    "transfer": ["1a268728cbf195ee36e3", "0191b910924321500e4c"],
    "strong": ["1a268728cbf195ee36e3", "022374799773c0d993e9", "e0f7f8433025523df952"],
}
DEPLOY_KEYS = {"8a614bb7883012354e6a", "cb41532c2dcad08101b1", "13cd0df46d61177c4ba9", "14211bede190a8eac5d2"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "golden.toml"
    path.write_text(STUDY)
    return config.load(path)


def test_keys_are_pinned(study):
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
