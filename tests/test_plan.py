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
#: changed twice since: when models gained the training scheme in their key (per-epoch seeded
#: shuffling and random ops, for exact resumes: :data:`edgebnn.recipes.store.TRAINING_SCHEME`),
#: and when the results of kinds that draw from their batches' seeds gained the draw scheme
#: (stateless draws, one traced graph per attack: :data:`edgebnn.recipes.store.DRAW_SCHEME`).
MODEL_KEYS = {"precision=float": "0b124e512991ace91376", "precision=binary": "e3a6c3bfb26d0ebaef45",
              "mc": "c247a10c0a4c0af502b8", "transfer": "e3a6c3bfb26d0ebaef45", "strong": "e3a6c3bfb26d0ebaef45"}
RESULT_KEYS = {
    "precision=float": ["bbc07170a91d530c21cd", "a1b27b6a566caf237afe", "a7e6157188f0fecda532",
                        "6186a26c659a5d4dfe34", "8628df05ed7fca776288", "58674452b8013ac53ac1",
                        "3f0387af84a8286ff0b8"],
    "precision=binary": ["1a268728cbf195ee36e3", "84d9a8c275192cc9ddc1", "cff300af26bfe4ccb958",
                         "9c233776f692ff90b4fe", "2e4adc080b97ab1c0f3f", "bcd184a23800295dc0ed",
                         "b8ce0363de896aa6c30f"],
    "mc": ["a9182f296bff0e83e692", "1d3fc5da6539672d5474", "0dcfd3e561a6cb33654b", "68590a712c4a1f19baa8"],
    "transfer": ["1a268728cbf195ee36e3", "873ad5c9f314e60b4873"],
    "strong": ["1a268728cbf195ee36e3", "7dc8446ba6d5dc3c9986", "bab9fdef5abe510bc74c"],
}
#: (A deployment's key names the results whose adversarial examples verify it, so those moved too.)
DEPLOY_KEYS = {"3a20f1e37fc4b1f401a6", "82c659a928ab0ba5cdcf", "13cd0df46d61177c4ba9", "e2a365d23e45d5fc0890"}


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
