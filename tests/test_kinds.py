"""Extension points end to end: a new evaluation kind and a new attack, each added in the
test (a class and one registry entry) and shown in the recipe, the cache, the console, the
report, the results page and the deployment's verification without touching any of them."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import lines_console, small_study
from edgebnn import attacks
from edgebnn import data as data_lib
from edgebnn.attacks.info import AttackInfo
from edgebnn.recipes import config, results, runner
from edgebnn.recipes.evaluations import KINDS
from edgebnn.recipes.evaluations.base import Kind, Result
from edgebnn.recipes.schema import RecipeError
from edgebnn.recipes.schema import Section
from edgebnn.recipes.store import Store


class MarginSpec(Section):
    scale: float = 1.0


class Margins(Kind):
    """Mean logit margin (top-1 minus top-2 logit) of the evaluated images, times ``scale``."""

    Spec = MarginSpec
    summary_metrics = ("margin_mean",)

    def metrics(self, spec, *, recipe):
        return ("margin_mean", "accuracy")

    def units(self, spec, *, recipe):
        return [{"scale": spec.scale}]

    def label(self, unit):
        return f"margin x{unit['scale']:g}"

    def cost(self, unit, *, recipe, n_eval):
        return n_eval

    def run(self, unit, ctx):
        logits = np.asarray(ctx.model(ctx.x_eval, training=False))
        top = np.sort(logits, axis=1)
        correct = logits.argmax(axis=1) == ctx.y_eval
        return Result(labels={"attack": "margin", "eps": None},
                      metrics={"margin_mean": float(unit["scale"] * (top[:, -1] - top[:, -2]).mean()),
                               "accuracy": float(correct.mean())},
                      outcomes={"correct": correct})

    def markdown(self, record):
        return [f"- logit margin: {record['margin_mean']:.4f}"]

    def page_section(self, records):
        return ["#### Logit margins", "", *(f"- {r['cell']}: {r['margin_mean']:.4f}" for r in records), ""]


def flip(model_fn, x, *, eps, y=None, targeted=False, clip_min=0.0, clip_max=1.0):
    """Move every pixel by ``eps`` away from its nearer end of ``[clip_min, clip_max]`` (model-free)."""
    middle = (clip_min + clip_max) / 2
    return tf.clip_by_value(x + eps * tf.where(x > middle, -1.0, 1.0), clip_min, clip_max)


#: FCN2's layout narrowed to 64 hidden units: what is checked (the kind's and the attack's numbers
#: against the cell's model, their places in the outputs, the deployment's verification) needs no width.
STUDY = small_study(
    "extended", data=dict(train_limit=200, test_limit=60), model=dict(precision="binary", options={"hidden_units": 64}),
    evaluation=dict(limit=20, batch_size=20),
    rest="""
        [[margins]]
        scale = 2.0
        [[attacks]]
        name = "flip"
        eps = [0.2]
        [deploy]
        enabled = true
        verify = true
    """,
)


def test_a_kind_and_an_attack_added_here_run_and_render_everywhere(tmp_path, monkeypatch, data_dir):
    monkeypatch.setitem(KINDS, "margins", Margins())
    monkeypatch.setitem(attacks.ATTACKS, "flip", AttackInfo(flip))
    path = tmp_path / "extended.toml"
    path.write_text(STUDY)
    study = config.load(path, overrides=[f'data.data_dir="{data_dir}"'])
    console = lines_console()
    report = runner.run(study, tmp_path / "run", console=console)
    assert report["status"] == "complete"
    records = {r["evaluation"]: r for r in report["records"]}

    # the kind: computed on the cell's model, in the console, report.md and the results page
    model = tf.keras.models.load_model(tmp_path / "run" / "model.keras", compile=False)
    x, y = data_lib.load("fashion_mnist", "test", data_dir=data_dir, limit=60, seed=0)
    logits = np.sort(np.asarray(model(x[:20], training=False)), axis=1)
    margin = records["margins"]
    assert margin["margin_mean"] == pytest.approx(2 * (logits[:, -1] - logits[:, -2]).mean(), rel=1e-5)
    assert any(f"margin x2: margin_mean {margin['margin_mean']:.4f} (" in line for line in console.lines)
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert f"- logit margin: {margin['margin_mean']:.4f}" in markdown
    page = results.render([(tmp_path / "run", report)], command="test")
    assert f"#### Logit margins\n\n- extended: {margin['margin_mean']:.4f}" in page

    # its per-example outcomes are stored compactly with the result
    store = Store(tmp_path / "run")
    outcomes = store.load_outcomes(margin["key"])
    expected = np.asarray(model(x[:20], training=False)).argmax(axis=1) == y[:20]
    np.testing.assert_array_equal(outcomes["correct"], expected)
    assert outcomes["correct"].mean() == pytest.approx(margin["accuracy"])

    # the attack: checked, crafted, in the cell's accuracy table, verifying the deployment
    flipped = records["attacks"]
    x_adv = np.clip(x[:20] + 0.2 * np.where(x[:20] > 0.5, -1.0, 1.0), 0, 1)
    assert flipped["attack"] == "flip" and flipped["iterations"] is None
    assert flipped["accuracy"] == pytest.approx(np.mean(np.asarray(model(x_adv)).argmax(axis=1) == y[:20]))
    assert "| flip | 0.2 |" in markdown
    assert report["cells"][0]["deployed"]["adversarial_examples"] == 20
    np.testing.assert_array_equal(store.load_outcomes(flipped["key"])["correct"],
                                  np.asarray(model(x_adv)).argmax(axis=1) == y[:20])

    # a second run finds both results in the cache
    again = lines_console()
    runner.run(study, tmp_path / "run", console=again)
    assert any("margin x2:" in line and line.endswith("(cached)") for line in again.lines)
    assert any("flip eps=0.2:" in line and line.endswith("(cached)") for line in again.lines)


MARGIN_CLAIM = """
    [[claims]]
    id = "M1"
    claim = "the doubled margin is positive"
    criterion = "margin_mean > 0"
    [[claims.compare]]
    left = {{ metric = "{metric}", match = {{ evaluation = "margins" }} }}
    op = ">"
    value = 0.0
"""


def test_claims_and_tables_on_a_kind_added_here_are_checked_against_its_metrics_at_load(tmp_path, monkeypatch):
    monkeypatch.setitem(KINDS, "margins", Margins())
    monkeypatch.setitem(attacks.ATTACKS, "flip", AttackInfo(flip))
    path = tmp_path / "extended.toml"
    path.write_text(STUDY + MARGIN_CLAIM.format(metric="margin_mean")
                    + '[[tables]]\ntitle = "Margins"\nmetric = "margin_mean"\nevaluation = "margins"\n')
    study = config.load(path)
    assert study.claims[0].compare[0].left.metric == "margin_mean"

    path.write_text(STUDY + MARGIN_CLAIM.format(metric="margin_max"))
    with pytest.raises(RecipeError, match=r"^extended\.toml: `claims\.0\.compare\.0\.left\.metric`: claim 'M1' names "
                                          r"the metric 'margin_max', which no record it matches will carry; they "
                                          r"carry: accuracy, margin_mean\.$"):
        config.load(path)
    path.write_text(STUDY + '[[tables]]\ntitle = "Margins"\nmetric = "margin_max"\nevaluation = "margins"\n')
    with pytest.raises(RecipeError, match=r"`tables\.0\.metric`: table 'Margins' names the metric 'margin_max', .*"
                                          r"they carry: accuracy, accuracy_eval, images, images_eval, margin_mean\.$"):
        config.load(path)


def test_a_kind_must_implement_the_whole_protocol():
    class Partial(Kind):
        def units(self, spec, *, recipe):
            return []

    with pytest.raises(TypeError, match="abstract"):
        Partial()


def test_attack_info_reads_the_signature_and_checks_its_budget():
    pgd = attacks.info("pgd")
    assert pgd.takes_eps and pgd.takes_eot and pgd.takes_surrogate and pgd.budget == "steps"
    assert not attacks.info("jsma").takes_eps and attacks.info("substitute").eager_only
    assert pgd.cost({"steps": 10, "restarts": 2}, eot_samples=5) == 10 * 2 * 5
    assert attacks.info("fgsm").cost({}) == 1
    assert attacks.info("cw_l2").cost({"max_iterations": 10, "binary_search_steps": 3}) == 30
    assert attacks.info("square").iterations({"queries": 50}) is None
    with pytest.raises(ValueError, match="`budget`: flip has no keyword option 'steps'"):
        AttackInfo(flip, budget="steps")
    with pytest.raises(ValueError, match="Unknown attack 'nope'; valid names"):
        attacks.info("nope")


def test_the_iteration_budget_has_one_spelling_and_stored_spellings_keep_working():
    from edgebnn.attacks.info import BUDGET  # noqa: PLC0415
    from edgebnn.recipes.evaluations.attack import check_options  # noqa: PLC0415

    assert {entry.budget for entry in attacks.ATTACKS.values()} == {BUDGET, None}
    cw = attacks.info("cw_l2")
    assert cw.canonical({"max_iterations": 10, "confidence": 0.0}) == {"steps": 10, "confidence": 0.0}
    assert cw.cost({"steps": 10, "binary_search_steps": 3}) == cw.cost({"max_iterations": 10, "binary_search_steps": 3})
    assert cw.iterations({"max_iterations": 7}) == cw.iterations({"steps": 7}) == 7
    with pytest.raises(ValueError, match="`max_iterations` is the earlier name of `steps`; give one of them"):
        cw.canonical({"max_iterations": 10, "steps": 10})
    check_options("cw_l2", cw.fn, {"max_iterations": 10}, where="attacks[0]")  # a stored recipe's spelling
    with pytest.raises(RecipeError, match="`attacks.0`: `max_iterations` is the earlier name"):
        check_options("cw_l2", cw.fn, {"max_iterations": 10, "steps": 10}, where="attacks.0")
    with pytest.raises(RecipeError, match=r"`attacks.0.max_iterations`: attack 'cw_l2' expects an int"):
        check_options("cw_l2", cw.fn, {"max_iterations": "ten"}, where="attacks.0")
    with pytest.raises(ValueError, match="`renamed`: flip must take 'steps'"):
        AttackInfo(flip, renamed=(("max_iterations", "steps"),))
