"""Gradient-masking checks: each fires on a model built to fail it and stays quiet on a plain float model."""

import json

import numpy as np
import pytest

from edgebnn.evaluation import masking

import tensorflow as tf

#: Small but complete report settings (one surrogate, short attacks) for the tests.
SMALL = dict(surrogates=["ste"], steps=10, pgd_steps=5, restarts=2, target_classes=2, square_queries=300)


pytestmark = pytest.mark.usefixtures("seed")  # conftest: every test starts from the same seed


def zero_gradient_model(model):
    """Rounds its input with no gradient surrogate: every input gradient is exactly zero."""
    return lambda inputs: model(tf.stop_gradient(tf.round(inputs * 16.0) / 16.0))


def shattered_gradient_model(model):
    """Correct gradient on the 1/255 pixel grid (clean images), reversed everywhere else.

    One FGSM step from a clean image uses the true gradient; iterative attacks leave the
    grid after their random start and are steered back toward the true class.
    """

    @tf.custom_gradient
    def shatter(inputs):
        axes = list(range(1, inputs.shape.rank))
        on_grid = tf.reduce_all(tf.abs(inputs * 255.0 - tf.round(inputs * 255.0)) < 1e-3, axis=axes)
        sign = tf.reshape(tf.where(on_grid, 1.0, -1.0), [-1] + [1] * (inputs.shape.rank - 1))

        def grad(dy):
            return dy * sign

        return tf.identity(inputs), grad

    return lambda inputs: model(shatter(tf.convert_to_tensor(inputs, tf.float32)))


def randomized_model(model):
    """A randomized defence: heavy input dropout, a fresh mask on every call."""
    return lambda inputs: model(tf.nn.dropout(inputs, rate=0.5) * 0.5)


@pytest.fixture(scope="module")
def float_report(float_model):
    model, x, y = float_model
    # Converged settings: PGD-10 and PGD-20 x 2 agree within a point at this eps.
    return masking.robustness_report(model, x, y, eps_list=[0.15], **{**SMALL, "pgd_steps": 10, "steps": 20})


@pytest.fixture(scope="module")
def masked_report(float_model, fashion_small):
    model, x, y = float_model
    holdout = fashion_small[2][len(x) : len(x) + 60]  # the attacker's own images, disjoint from x
    return masking.robustness_report(
        zero_gradient_model(model), x, y, eps_list=[0.1], spsa_options=dict(steps=10, num_samples=16, delta=0.05),
        substitute_options=dict(x_holdout=holdout, rounds=1, epochs=2),
        transfer_sources={"float": model},  # the same weights with their gradient intact
        **SMALL,
    )


def result_transfer(report):
    return report["results"][0]["accuracy"]["transfer/float"]


def statuses(report):
    return {c["check"]: c["status"] for c in [*report["checks"], *report["results"][0]["checks"]]}


# --- pure checks -------------------------------------------------------------------------


def test_checks_from_numbers():
    assert masking.check_iterative_vs_single(single_step=0.3, iterative={"pgd": 0.2})["status"] == "pass"
    fired = masking.check_iterative_vs_single(single_step=0.3, iterative={"pgd": 0.5, "apgd": 0.1})
    assert fired["status"] == "warning" and fired["numbers"]["pgd"] == 0.5
    assert masking.check_whitebox_vs_blackbox(whitebox={"apgd": 0.2}, blackbox={"square": 0.4})["status"] == "pass"
    assert masking.check_whitebox_vs_blackbox(whitebox={"apgd": 0.5}, blackbox={"square": 0.1})["status"] == "warning"
    assert masking.check_large_eps(accuracy=0.0)["status"] == "pass"
    assert masking.check_large_eps(accuracy=0.4)["status"] == "warning"
    assert masking.check_convergence(base=0.30, stronger=0.295)["status"] == "pass"
    assert masking.check_convergence(base=0.30, stronger=0.25)["status"] == "warning"
    assert masking.check_zero_gradients(fraction=0.0)["status"] == "pass"
    assert masking.check_zero_gradients(fraction=0.5)["status"] == "warning"
    assert masking.check_randomness_eot(randomized=False, eot_samples=1)["status"] == "pass"
    assert masking.check_randomness_eot(randomized=True, eot_samples=1)["status"] == "warning"
    assert masking.check_randomness_eot(randomized=True, eot_samples=8, accuracy_eot=0.2, accuracy_plain=0.3)["status"] == "pass"
    assert masking.check_randomness_eot(randomized=True, eot_samples=8, accuracy_eot=0.5, accuracy_plain=0.3)["status"] == "warning"


def test_gradient_free_probe_check():
    warned = masking.check_gradient_free_probe(accuracy_by_probe={0.01: 0.62, 0.05: 0.31})
    assert warned["status"] == masking.WARNING and "delta=0.05" in warned["message"].rsplit("report", 1)[1]
    assert warned["numbers"] == {"delta=0.01": 0.62, "delta=0.05": 0.31, "margin": masking.MARGIN}
    assert masking.check_gradient_free_probe(accuracy_by_probe={0.01: 0.30, 0.05: 0.31})["status"] == masking.PASS


def test_combine_ensemble_is_per_example_worst_case():
    clean = np.array([True, True, True, True, False])
    correct = {  # "still correct" after each attack
        "apgd-ce/a": np.array([False, True, True, True, False]),
        "apgd-ce/b": np.array([True, False, True, True, False]),
        "apgd-t/a": np.array([False, False, True, True, False]),
        "apgd-t/b": np.array([True, True, False, True, False]),
        "square": np.array([True, True, True, True, False]),
    }
    both = masking.combine_ensemble(correct, clean, ["a", "b"])
    assert both["robust_accuracy"] == pytest.approx(1 / 5)  # only example 3 survives every stage
    assert [row["broken"] for row in both["breakdown"]] == [1, 1, 0, 1, 0]
    assert [row["attacked"] for row in both["breakdown"]] == [4, 3, 2, 2, 1]
    only_a = masking.combine_ensemble(correct, clean, ["a"])
    assert only_a["robust_accuracy"] == pytest.approx(2 / 5)  # examples 2 and 3


def test_discretization_claims():
    def report(weak, strong):
        return {"results": [{"eps": 0.1, "accuracy": {"pgd": weak}, "autoattack": {"all": {"robust_accuracy": strong}}}]}

    rows = masking.discretization_claims(report(0.6, 0.2), report(0.3, 0.19), weak_attack="pgd")
    assert rows[0]["claimed"] and not rows[0]["survives"]
    with pytest.raises(ValueError, match="weak_attack"):
        masking.discretization_claims(report(0.6, 0.2), report(0.3, 0.19), weak_attack="fgsm")


# --- measured on models ----------------------------------------------------------------


@pytest.mark.slow
def test_plain_float_model_passes_every_check(float_report):
    assert float_report["clean_accuracy"] > 0.6
    messages = [c["message"] for c in [*float_report["checks"], *float_report["results"][0]["checks"]]]
    assert set(statuses(float_report).values()) == {"pass"}, messages
    assert float_report["warnings"] == 0
    json.dumps(float_report)  # JSON-able for the recipe report
    text = masking.to_markdown(float_report)
    assert "AutoAttack ensemble, all surrogates" in text and "whitebox_vs_blackbox" in text


@pytest.mark.slow
def test_zero_gradient_model_fires_masking_checks(masked_report):
    found = statuses(masked_report)
    assert found["zero_gradients"] == "warning"
    assert found["whitebox_vs_blackbox"] == "warning"  # Square breaks what PGD cannot
    assert found["large_eps"] == "warning"
    assert masked_report["zero_gradient_fraction"]["ste"] == 1.0
    numbers = {c["check"]: c for c in masked_report["results"][0]["checks"]}["whitebox_vs_blackbox"]["numbers"]
    assert {"square", "spsa", "substitute", "transfer/float"} <= set(numbers)
    # PGD crafted on the unmasked twin transfers: the masked model's own gradient is what fails.
    assert result_transfer(masked_report) < masked_report["results"][0]["accuracy"]["pgd-5/ste"] - 0.2
    result = masked_report["results"][0]
    # The ensemble's Square stage breaks what the gradient stages could not.
    assert result["autoattack"]["all"]["robust_accuracy"] < result["accuracy"]["apgd-ce/ste"] - 0.2


@pytest.mark.slow
def test_shattered_gradient_fires_iterative_vs_single(float_model):
    model, x, y = float_model
    report = masking.robustness_report(shattered_gradient_model(model), x, y, eps_list=[0.1], **SMALL)
    checks = {c["check"]: c for c in report["results"][0]["checks"]}
    assert checks["iterative_vs_single"]["status"] == "warning", checks["iterative_vs_single"]["message"]


@pytest.mark.slow
def test_convergence_fires_on_unconverged_attack(float_model):
    model, x, y = float_model
    report = masking.robustness_report(model, x, y, eps_list=[0.02], **{**SMALL, "pgd_steps": 1, "steps": 20, "restarts": 3})
    checks = {c["check"]: c for c in report["results"][0]["checks"]}
    assert checks["convergence"]["status"] == "warning", checks["convergence"]["message"]


@pytest.mark.slow
def test_randomized_model_needs_eot(float_model):
    model, x, y = float_model
    noisy = randomized_model(model)
    assert masking.is_randomized(noisy, x[:16]) and not masking.is_randomized(model, x[:16])
    plain = masking.robustness_report(noisy, x, y, eps_list=[0.05], **SMALL)
    assert {c["check"]: c["status"] for c in plain["checks"]}["randomness_eot"] == "warning"
    eot = masking.robustness_report(noisy, x, y, eps_list=[0.05], eot_samples=4, **SMALL)
    check = {c["check"]: c for c in eot["checks"]}["randomness_eot"]
    assert check["numbers"]["randomized"] and check["numbers"]["accuracy_plain"] is not None


class _Kept:
    """Finished batches kept in memory (the ``kept`` store of :func:`masking.robustness_report`);
    Ctrl-C right after the ``stop_after``-th batch is saved."""

    def __init__(self, stop_after=None):
        self.saved, self.stop_after = {}, stop_after

    def seed(self, run, batch):
        return 1000 * run + batch

    def load(self, run, batch):
        return self.saved.get((run, batch))

    def save(self, run, batch, array):
        self.saved[run, batch] = array
        if len(self.saved) == self.stop_after:
            raise KeyboardInterrupt


def seeded_report(model, x, y, **settings):
    """The strong report on a ``kept`` store, seeded as the recipe runner seeds every result."""

    def report(kept):
        tf.keras.utils.set_random_seed(0)
        return masking.robustness_report(model, x, y, kept=kept, **settings)

    return report


def whole_and_stopped(report):
    """``report`` run whole, then run again and stopped by Ctrl-C after its fifth kept batch (the
    large-eps run, FGSM, and the first batch of the short PGD).

    Returns:
        ``(whole, kept)``: the uninterrupted report and the stopped run's store, ready to resume.
    """
    whole = report(_Kept())
    kept = _Kept(stop_after=5)
    with pytest.raises(KeyboardInterrupt):
        report(kept)
    kept.stop_after = None
    return whole, kept


@pytest.mark.slow
def test_a_stopped_report_resumes_from_its_kept_batches_to_the_same_numbers(float_model):
    model, x, y = float_model
    x, y = x[:20], y[:20]
    report = seeded_report(model, x, y, eps_list=[0.05], batch_size=10, **{**SMALL, "square_queries": 30})
    whole, kept = whole_and_stopped(report)
    crafted = []
    craft = masking.craft
    masking.craft = lambda *a, **k: crafted.append(len(a[1])) or craft(*a, **k)
    try:
        resumed = report(kept)
    finally:
        masking.craft = craft
    # Runs: large eps, fgsm, pgd-5, pgd-10x2, apgd-ce, apgd-t, square: 2 batches each.
    assert crafted == [10] * (7 * 2 - 5)
    assert resumed == whole  # every accuracy, ensemble breakdown and check


def test_zero_gradient_mask_matches_definition(float_model):
    model, x, y = float_model
    assert not masking.zero_gradient_mask(model, x, y).any()
    assert masking.zero_gradient_mask(zero_gradient_model(model), x, y).all()


def test_report_validates_before_attacking(float_model):
    model, x, y = float_model
    with pytest.raises(ValueError, match="eps_list"):
        masking.robustness_report(model, x, y, eps_list=[])
    with pytest.raises(ValueError, match="surrogates"):
        masking.robustness_report(model, x, y, eps_list=[0.1], surrogates="ste")
    with pytest.raises(ValueError, match="surrogate"):
        masking.robustness_report(model, x, y, eps_list=[0.1], surrogates=["magic"])
    with pytest.raises(ValueError, match="x_holdout"):
        masking.robustness_report(model, x, y, eps_list=[0.1], substitute_options={"rounds": 1})


# --- the plan as data, the shared ensemble, the TensorFlow-free checks -----------------


def test_checks_and_markdown_import_without_tensorflow():
    import subprocess
    import sys

    code = ("import sys, edgebnn.evaluation.checks as c; assert 'tensorflow' not in sys.modules; "
            "print(c.check_large_eps(accuracy=0.0)['status'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pass"


def test_ensemble_credits_the_first_stage_that_breaks_an_example():
    from edgebnn.attacks.ensemble import Ensemble

    rng = np.random.default_rng(0)
    clean = rng.random(200) < 0.9
    masks = [rng.random(200) < 0.7 for _ in range(4)]
    ensemble = Ensemble(clean)
    for i, mask in enumerate(masks):
        ensemble.add(f"stage{i}", mask)
    robust = clean & np.logical_and.reduce(masks)
    assert np.array_equal(ensemble.robust, robust) and ensemble.robust_accuracy == robust.mean()
    still = clean.copy()
    for i, (row, mask) in enumerate(zip(ensemble.breakdown, masks)):
        assert row == {"attack": f"stage{i}", "attacked": int(still.sum()), "broken": int((still & ~mask).sum())}
        assert np.all(ensemble.broken_by[still & ~mask] == f"stage{i}")
        still &= mask
    assert np.all(ensemble.broken_by[~clean] == "clean") and np.all(ensemble.broken_by[robust] == "")


def test_attack_plan_is_data_with_one_set_of_defaults():
    from edgebnn.recipes.evaluations.robustness import Spec

    settings = masking.StrongSettings()
    plan = masking.attack_plan(settings, norm=np.inf, surrogates=["clipped", "smooth"], spsa_options={"steps": 2},
                               transfer_sources=["float"])
    assert [spec.name for spec in plan] == [
        "fgsm/clipped", "pgd-40/clipped", "pgd-100x5/clipped", "apgd-ce/clipped", "apgd-t/clipped",
        "fgsm/smooth", "pgd-40/smooth", "pgd-100x5/smooth", "apgd-ce/smooth", "apgd-t/smooth",
        "square", "spsa", "transfer/float"]
    assert {spec.name for spec in plan if spec.blackbox} == {"square", "spsa", "transfer/float"}
    assert masking.attack_plan(settings, norm=2, surrogates=["clipped"], spsa_options={})[-1].name == "square"
    spec = Spec(eps=[0.1])  # the recipe entry's defaults are the settings' defaults
    assert {name: getattr(spec, name) for name in vars(settings)} == vars(settings)
    # FGSM, PGD-40, PGD-100 x 5, APGD-CE 100, APGD-T 100 x 9 per surrogate, then Square's queries
    assert masking.plan_cost(settings, surrogates=["clipped"]) == 1 + 40 + 500 + 100 + 900 + 5000


def test_report_names_an_unknown_budget_key(float_model):
    model, x, y = float_model
    with pytest.raises(TypeError, match="unexpected keyword argument 'step'"):
        masking.robustness_report(model, x, y, eps_list=[0.1], step=3)
    with pytest.raises(ValueError, match="pgd_steps"):
        masking.robustness_report(model, x, y, eps_list=[0.1], pgd_steps=0)


def test_fgsm_accuracy_rising_with_eps_is_a_warning():
    from edgebnn.evaluation import checks

    rising = checks.check_eps_monotone(accuracy_by_eps={0.1: 0.40, 0.2: 0.30, 0.3: 0.60})
    assert rising["status"] == "warning" and rising["check"] == "eps_monotone"
    assert "rises from 30.0% at eps 0.2 to 60.0% at eps 0.3" in rising["message"]
    assert checks.check_eps_monotone(accuracy_by_eps={0.1: 0.40, 0.2: 0.42, 0.3: 0.10})["status"] == "pass"  # noise
    assert checks.check_eps_monotone(accuracy_by_eps={0.1: 0.4})["status"] == "pass"
