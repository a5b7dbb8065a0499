"""Gradient-masking checks and the strong robustness report.

Discretized inputs and sign activations are exactly where weak attacks overstate
robustness (Athalye et al. 2018, obfuscated gradients). This module runs the attacks
Carlini et al. 2019 ("On evaluating adversarial robustness") ask for and turns their
numbers into checks, each ``"pass"`` or ``"warning"`` with the numbers behind it:

=========================  =====================================================================
check                      warns when
=========================  =====================================================================
``iterative_vs_single``    FGSM beats the iterative attacks (PGD, APGD) by more than ``margin``
``whitebox_vs_blackbox``   a black-box or transfer attack (Square, SPSA, substitute, transfer) beats the
                           best white-box attack by more than ``margin``
``large_eps``              an unbounded-ish attack (eps 0.5 on ``[0, 1]`` pixels) leaves more than
                           ``max_accuracy`` of the examples correct
``convergence``            more steps and restarts move robust accuracy by ``tolerance`` or more
``zero_gradients``         more than ``max_fraction`` of the examples have an input gradient that
                           is exactly zero everywhere
``randomness_eot``         the model is randomized and was attacked without EOT, or EOT was weaker
``eps_monotone``           FGSM accuracy rises with eps by more than ``margin`` (label leaking or masking)
``gradient_free_probe``    a gradient-free attack's accuracy depends on its finite-difference
                           probe size by more than ``margin`` (a too-small probe sees a flat model)
=========================  =====================================================================

Each check is a pure function of numbers (``check_*``, in the TensorFlow-free
:mod:`edgebnn.evaluation.checks`, with :func:`to_markdown`), so a caller holding the
numbers (a study, a recipe) gets the same verdict. :func:`robustness_report` measures
the numbers: its attack plan is data (:func:`attack_plan`, a list of
:class:`AttackSpec`) run by one loop, its budget one :class:`StrongSettings`, and the
AutoAttack ensemble per eps and gradient surrogate is combined by the
:class:`~edgebnn.attacks.ensemble.Ensemble` that :func:`edgebnn.attacks.run_autoattack` uses.

Every attack run is crafted batch by batch and reduced at once to its per-example outcome
(still correct or not). Given a store of finished work (``kept``), each batch's outcome is
saved as it finishes and its attack seeded by its position, so that a report stopped in the
middle and started again crafts only the batches left and combines the same outcomes.
"""

import contextlib
import dataclasses
from dataclasses import dataclass

import numpy as np

from edgebnn import attacks, ops, randomness
from edgebnn.attacks.common import check_inputs, cross_entropy, loss_gradient, validate_norm, validate_positive_int
from edgebnn.attacks.ensemble import DEFAULT_SURROGATES, Ensemble, stage_names
from edgebnn.evaluation.budget import StrongSettings
from edgebnn.evaluation.checks import (
    CONVERGENCE_TOLERANCE, LARGE_EPS, LARGE_EPS_MAX_ACCURACY, MARGIN, PASS, WARNING, ZERO_GRADIENT_MAX_FRACTION,
    check_convergence, check_gradient_free_probe, check_iterative_vs_single, check_large_eps, check_randomness_eot,
    check_eps_monotone, check_whitebox_vs_blackbox, check_zero_gradients, checks_for_eps, discretization_claims,
    global_checks, pct,
    to_markdown,
)
from edgebnn.evaluation.robustness import CRAFT_STREAM, craft, predict_labels

import tensorflow as tf

#: Forward passes compared to decide whether a model is randomized.
_RANDOMNESS_TRIALS = 3
#: Index of the key a seeded batch's outcome is predicted with (:func:`edgebnn.randomness.key`
#: ``(seed, PREDICTION_STREAM)``): a randomized model's passes there are not the attack's draws.
PREDICTION_STREAM = CRAFT_STREAM + 1


@dataclass(frozen=True)
class AttackSpec:
    """One run of the strong evaluation at each eps.

    Attributes:
        name: its accuracy key in the report (``"pgd-40/clipped"``, ``"square"``).
        attack: the registry name of the attack.
        options: its keyword options (budget, surrogate, EOT).
        blackbox: needs no gradient of the attacked model (black-box or transfer).
        source: name of the model in ``transfer_sources`` that crafts the examples, else ``None``.
    """

    name: str
    attack: str
    options: dict
    blackbox: bool = False
    source: str | None = None


def run_names(settings):
    """``(short PGD, long PGD)`` run names of ``settings``: ``"pgd-40"``, ``"pgd-100x5"``."""
    return f"pgd-{settings.pgd_steps}", f"pgd-{settings.steps}x{settings.restarts}"


def attack_plan(settings, *, norm, surrogates, eot_samples=1, spsa_options=None, substitute_options=None,
                transfer_sources=()):
    """The strong evaluation's runs at one eps, in order, as :class:`AttackSpec` data: per surrogate
    FGSM, the short and the long PGD, APGD-CE and APGD-T; then Square, SPSA (L-inf only), the
    substitute attack and the transfers from ``transfer_sources`` (names), when asked for."""
    short_pgd, long_pgd = run_names(settings)
    plan = []
    for s in surrogates:
        gradient = {"norm": norm, "surrogate": s, "eot_samples": eot_samples}
        plan += [
            AttackSpec(f"fgsm/{s}", "fgsm", gradient),
            AttackSpec(f"{short_pgd}/{s}", "pgd", {**gradient, "steps": settings.pgd_steps}),
            AttackSpec(f"{long_pgd}/{s}", "pgd", {**gradient, "steps": settings.steps, "restarts": settings.restarts}),
            AttackSpec(f"apgd-ce/{s}", "apgd", {**gradient, "steps": settings.steps, "loss": "ce"}),
            AttackSpec(f"apgd-t/{s}", "apgd_t", {**gradient, "steps": settings.steps,
                                                 "target_classes": settings.target_classes}),
        ]
    plan.append(AttackSpec("square", "square", {"norm": norm, "steps": settings.square_queries}, blackbox=True))
    if spsa_options is not None and norm == np.inf:  # SPSA is L-inf only
        plan.append(AttackSpec("spsa", "spsa", dict(spsa_options), blackbox=True))
    if substitute_options is not None:
        plan.append(AttackSpec("substitute", "substitute", {"norm": norm, **substitute_options}, blackbox=True))
    for source in transfer_sources:
        plan.append(AttackSpec(f"transfer/{source}", "pgd", {"norm": norm, "steps": settings.pgd_steps,
                                                             "surrogate": surrogates[0]}, blackbox=True, source=source))
    return plan


def plan_cost(settings, *, surrogates, eot_samples=1):
    """Rough forward/backward passes per image and eps of :func:`attack_plan` (time estimates),
    from each attack's :meth:`~edgebnn.attacks.info.AttackInfo.cost`."""
    return sum(attacks.info(spec.attack).cost(spec.options, eot_samples=eot_samples)
               for spec in attack_plan(settings, norm=np.inf, surrogates=surrogates))


def zero_gradient_mask(model_fn, x, y, *, surrogate="ste", eot_samples=1, batch_size=500):
    """Per example: True when the cross-entropy gradient w.r.t. the input is exactly zero everywhere."""
    masks = []
    for i in range(0, len(x), batch_size):
        xb, yb = tf.constant(x[i : i + batch_size]), tf.constant(y[i : i + batch_size], tf.int64)
        grad, _ = loss_gradient(model_fn, xb, yb, targeted=False, eot_samples=eot_samples, loss_fn=cross_entropy,
                                surrogate=surrogate)
        masks.append(np.all(np.asarray(grad).reshape(len(xb), -1) == 0.0, axis=1))
    return np.concatenate(masks)


def is_randomized(model_fn, x, *, trials=_RANDOMNESS_TRIALS):
    """True when repeated forward passes on the same inputs give different logits."""
    first = np.asarray(model_fn(tf.constant(x)))
    return any(not np.array_equal(first, np.asarray(model_fn(tf.constant(x)))) for _ in range(trials - 1))


def _correct(model_fn, x_adv, y, batch_size):
    return predict_labels(model_fn, np.asarray(x_adv), batch_size=batch_size) == y


def _validate_report(*, eps_list, surrogates, norm, eot_samples, batch_size, substitute_options, transfer_sources):
    norm = validate_norm(norm)
    if isinstance(eps_list, (int, float)) or not len(eps_list):
        raise ValueError(f"`eps_list` must be a non-empty list of eps values, got {eps_list!r}.")
    for eps in eps_list:
        attacks.common.validate_nonnegative(eps, "eps_list")
    if isinstance(surrogates, str) or not surrogates:
        raise ValueError(f"`surrogates` must be a non-empty list of names from {sorted(ops.SURROGATES)}, got {surrogates!r}.")
    for name in surrogates:
        ops.validate_surrogate(name)
    validate_positive_int(eot_samples, "eot_samples")
    validate_positive_int(batch_size, "batch_size")
    if substitute_options is not None and "x_holdout" not in substitute_options:
        raise ValueError("`substitute_options` must include `x_holdout`, the attacker's own images (disjoint from `x`).")
    for name, source in transfer_sources.items():
        if not isinstance(name, str) or not name or not callable(source):
            raise ValueError(f"`transfer_sources` must map names to models; got {name!r}: {type(source).__name__}.")
    return norm


def _settings(settings, budget):
    """``settings`` (default :class:`StrongSettings`) with the keyword overrides ``budget``, validated."""
    unknown = sorted(set(budget) - {f.name for f in dataclasses.fields(StrongSettings)})
    if unknown:
        raise TypeError(f"robustness_report() got an unexpected keyword argument {unknown[0]!r}.")
    return dataclasses.replace(settings or StrongSettings(), **budget).validate()


def robustness_report(
    model_fn,
    x,
    y,
    *,
    eps_list,
    norm=np.inf,
    surrogates=DEFAULT_SURROGATES,
    settings=None,
    spsa_options=None,
    substitute_options=None,
    transfer_sources=None,
    eot_samples=1,
    batch_size=500,
    progress=None,
    kept=None,
    keep_outcomes=False,
    **budget,
):
    """Strong robustness numbers with every masking check, per eps and gradient surrogate.

    For every eps the runs of :func:`attack_plan`: FGSM, PGD-``pgd_steps``, PGD-``steps``
    with ``restarts`` restarts, APGD-CE and APGD-T (``steps`` each), per surrogate; Square
    (``square_queries``); optionally SPSA, a substitute-model attack and transfers. The
    AutoAttack ensemble (APGD-CE -> APGD-T -> Square) is combined per example from these
    runs, per surrogate and over all surrogates (the per-example worst case), with the
    breakdown of which attack broke how many in ensemble order. Then the masking checks
    of :mod:`edgebnn.evaluation.checks`.

    Args:
        model_fn: model mapping ``[0, 1]`` images to logits (a Keras model, so that Larq
            sign quantizers can take every surrogate).
        x, y: test images and true labels.
        eps_list: L-inf (or L2) budgets.
        norm: ``np.inf`` or ``2``.
        surrogates: gradient surrogates to try (keys of :data:`edgebnn.ops.SURROGATES`).
        settings: the budget, a :class:`StrongSettings` (default: its defaults).
        spsa_options: SPSA keyword arguments (e.g. ``{"steps": 100, "num_samples": 64}``),
            or None to skip SPSA.
        substitute_options: :func:`edgebnn.attacks.substitute` keyword arguments, which must
            include ``x_holdout`` (images disjoint from ``x``), or None to skip it.
        transfer_sources: ``{name: model}`` of separately trained models; for each, the
            short PGD crafted white-box on that model (first surrogate) is replayed on
            ``model_fn`` as ``transfer/<name>``, a black-box attack that needs no gradient
            of the attacked model. None or empty to skip.
        eot_samples: EOT passes for the gradient attacks (randomized models).
        batch_size: examples per compiled attack call.
        progress: optional ``(label, done, total) -> None`` called after every batch of every
            attack run (``done`` and ``total`` count images over all runs).
        kept: optional store of finished work, e.g. :class:`edgebnn.recipes.store.Batches`: an
            object with ``load(run, batch)`` (the saved array or ``None``), ``save(run, batch,
            array)`` and ``seed(run, batch)`` (a 31-bit int). Batch ``batch`` of the report's
            ``run``-th attack run (in the order they run) saves its per-example outcome; it is
            crafted with ``seed=seed(run, batch)`` (:func:`edgebnn.evaluation.robustness.craft`)
            and its outcome predicted with draws from the same seed (a randomized model's
            passes), so that it depends on its seed alone; a saved outcome is used instead of
            crafting the batch again. ``None``: nothing saved, the attacks' random state is the
            process's.
        keep_outcomes: also keep every run's per-example outcome in its eps's result, as
            ``outcomes``: ``{run name: [bool per example]}`` (``True``: correct clean and still
            correct after the run; the ``accuracy`` keys name the runs).
        **budget: fields of :class:`StrongSettings` overriding ``settings`` (``steps=20``).

    Returns:
        JSON-able dict::

            {"n", "norm", "clean_accuracy", "surrogates", "randomized", "eot_samples",
             "zero_gradient_fraction": {surrogate: fraction},
             "large_eps": {"eps", "accuracy": {surrogate: acc}},
             "settings": {...}, "checks": [eps-independent checks: large_eps, zero_gradients,
             randomness_eot],
             "results": [{"eps",
                          "accuracy": {"fgsm/<s>", "pgd-40/<s>", "pgd-100x5/<s>", "apgd-ce/<s>",
                                       "apgd-t/<s>", "square", "spsa"?, "substitute"?,
                                       "transfer/<name>"?},
                          "autoattack": {"<s>": {"robust_accuracy", "breakdown"}, "all": {...}},
                          "checks": [{"check", "status", "numbers", "message"}],
                          "warnings": int}],
             "warnings": int}

        Each check is ``{"check", "status": "pass" | "warning", "numbers": {...}, "message"}``;
        accuracies count an example as correct only if it is also correct clean.

    Raises:
        ValueError: bad arguments, before any attack runs.
    """
    transfer_sources = dict(transfer_sources or {})
    settings = _settings(settings, budget)
    norm = _validate_report(eps_list=eps_list, surrogates=surrogates, norm=norm, eot_samples=eot_samples,
                            batch_size=batch_size, substitute_options=substitute_options,
                            transfer_sources=transfer_sources)
    x = np.asarray(check_inputs(x, clip_min=0.0, clip_max=1.0))
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(y) != len(x):
        raise ValueError(f"`y` has {len(y)} labels for {len(x)} inputs.")
    clean = _correct(model_fn, x, y, batch_size)
    randomized = is_randomized(model_fn, x[:min(len(x), 64)])
    classes = int(np.asarray(model_fn(tf.constant(x[:1]))).shape[-1])
    settings = dataclasses.replace(settings, target_classes=min(settings.target_classes, classes - 1))
    surrogates = list(surrogates)
    plan = attack_plan(settings, norm=norm, surrogates=surrogates, eot_samples=eot_samples, spsa_options=spsa_options,
                       substitute_options=substitute_options, transfer_sources=list(transfer_sources))
    eot_check = randomized and eot_samples > 1
    runs = _Runs(model_fn, x, y, batch_size=batch_size, kept=kept, progress=progress,
                 runs=len(surrogates) + len(eps_list) * len(plan) + int(eot_check))
    report = {
        "n": int(len(x)), "norm": "inf" if norm == np.inf else "l2", "clean_accuracy": float(clean.mean()),
        "surrogates": surrogates, "randomized": bool(randomized), "eot_samples": eot_samples,
        "settings": {"steps": settings.steps, "pgd_steps": settings.pgd_steps, "restarts": settings.restarts,
                     "target_classes": settings.target_classes, "square_queries": settings.square_queries,
                     "spsa": spsa_options is not None, "substitute": substitute_options is not None,
                     "transfer": sorted(transfer_sources)},
    }
    report.update(_gradient_health(model_fn, x, y, runs, settings, norm=norm, surrogates=surrogates,
                                   eot_samples=eot_samples, batch_size=batch_size))
    results = []
    for eps in map(float, eps_list):
        correct = {}  # run name -> per-example "still correct" (and clean-correct)
        for spec in plan:
            source = model_fn if spec.source is None else transfer_sources[spec.source]
            correct[spec.name] = runs.correct(source, attack=spec.attack, eps=eps, **spec.options) & clean
        results.append(_eps_result(eps, correct, clean, plan, settings, surrogates))
        if keep_outcomes:
            results[-1]["outcomes"] = {name: mask.tolist() for name, mask in correct.items()}
    checks = global_checks(report)
    checks += [check_eps_monotone(accuracy_by_eps={r["eps"]: r["accuracy"][f"fgsm/{s}"] for r in results},
                                  attack=f"fgsm/{s}") for s in surrogates]
    eot_numbers = {}
    if eot_check:
        # The same short PGD at the first eps, with single-sample gradients, for comparison.
        eps0, s0 = float(eps_list[0]), surrogates[0]
        plain = runs.correct(model_fn, attack="pgd", eps=eps0, norm=norm, steps=settings.pgd_steps, surrogate=s0)
        eot_numbers = {"accuracy_plain": float(plain.mean()),
                       "accuracy_eot": results[0]["accuracy"][f"{run_names(settings)[0]}/{s0}"]}
    checks.append(check_randomness_eot(randomized=randomized, eot_samples=eot_samples, **eot_numbers))
    report["checks"] = checks
    report["results"] = results
    report["warnings"] = sum(c["status"] == WARNING for c in checks) + sum(r["warnings"] for r in results)
    return report


def _gradient_health(model_fn, x, y, runs, settings, *, norm, surrogates, eot_samples, batch_size):
    """The eps-independent numbers per surrogate: the fraction of all-zero input gradients and
    the accuracy under PGD at the large eps (runs of ``runs``, a :class:`_Runs`)."""
    zero = {s: float(zero_gradient_mask(model_fn, x, y, surrogate=s, eot_samples=eot_samples,
                                        batch_size=batch_size).mean()) for s in surrogates}
    large = {
        # From the clean point (no random start): at this budget a random start alone can
        # fool the model, which would hide a dead gradient.
        s: float(runs.correct(model_fn, attack="pgd", eps=settings.large_eps, steps=settings.pgd_steps,
                              rand_init=False, norm=norm, surrogate=s, eot_samples=eot_samples).mean())
        for s in surrogates
    }
    return {"zero_gradient_fraction": zero, "large_eps": {"eps": settings.large_eps, "accuracy": large}}


class _Runs:
    """The attack runs of one report, in the order they run, each crafted batch by batch and
    reduced to its per-example outcome: ``True`` where the model still predicts the label.

    Args:
        model_fn, x, y: the attacked model, its images and labels.
        batch_size: examples per batch (an eager-only attack runs on all of ``x`` at once).
        kept: the store of finished batches (see :func:`robustness_report`), or ``None``.
        progress: ``(label, done, total) -> None`` after every batch, or ``None``.
        runs: how many runs the report makes (``total`` counts their images).
    """

    label = "strong evaluation"

    def __init__(self, model_fn, x, y, *, batch_size, kept, progress, runs):
        self.model_fn, self.x, self.y = model_fn, x, y
        self.batch_size, self.kept, self.progress = batch_size, kept, progress
        self.run, self.done, self.total = 0, 0, runs * len(x)

    def correct(self, source, *, attack, eps, **options):
        """Per example, whether the model still predicts its label under ``attack`` crafted on ``source``."""
        run, self.run = self.run, self.run + 1
        size = len(self.x) if attacks.eager_only(attacks.get(attack)) else self.batch_size
        outcomes = []
        for batch, start in enumerate(range(0, len(self.x), size)):
            xb, yb = self.x[start : start + size], self.y[start : start + size]
            outcome = None if self.kept is None else self.kept.load(run, batch)
            if outcome is None or outcome.shape != (len(xb),) or outcome.dtype != bool:
                seed = None if self.kept is None else self.kept.seed(run, batch)
                x_adv = craft(source, xb, yb, attack=attack, eps=eps, batch_size=self.batch_size, seed=seed, **options)
                with (contextlib.nullcontext() if seed is None
                      else randomness.seeded(randomness.key(seed, PREDICTION_STREAM))):
                    outcome = _correct(self.model_fn, x_adv, yb, self.batch_size)
                if self.kept is not None:
                    self.kept.save(run, batch, outcome)
            outcomes.append(outcome)
            self.done += len(xb)
            if self.progress is not None:
                self.progress(self.label, self.done, self.total)
        return np.concatenate(outcomes)


def _eps_result(eps, correct, clean, plan, settings, surrogates):
    """One eps of the report from its runs' per-example masks: accuracies, ensembles, checks."""
    ensemble = {s: combine_ensemble(correct, clean, [s]) for s in surrogates}
    ensemble["all"] = combine_ensemble(correct, clean, surrogates)
    accuracy = {name: float(mask.mean()) for name, mask in correct.items()}
    checks = checks_for_eps(accuracy, surrogates, *run_names(settings),
                            blackbox={spec.name for spec in plan if spec.blackbox})
    return {"eps": eps, "accuracy": accuracy, "autoattack": ensemble, "checks": checks,
            "warnings": sum(c["status"] == WARNING for c in checks)}


def combine_ensemble(correct, clean, surrogates):
    """The AutoAttack ensemble from per-run "still correct" masks (``{run name: mask}``): an
    example is robust when no stage (APGD-CE, APGD-T per surrogate, then Square) broke it;
    the breakdown credits each broken example to the first stage, in ensemble order, that broke it."""
    ensemble = Ensemble(clean)
    for stage, surrogate in stage_names(surrogates):
        name = stage if surrogate is None else f"{stage}/{surrogate}"
        ensemble.add(name, correct[name])
    return {"robust_accuracy": ensemble.robust_accuracy, "breakdown": ensemble.breakdown}


__all__ = [
    "AttackSpec", "CONVERGENCE_TOLERANCE", "LARGE_EPS", "LARGE_EPS_MAX_ACCURACY", "MARGIN", "PASS", "StrongSettings",
    "WARNING", "ZERO_GRADIENT_MAX_FRACTION", "attack_plan", "check_convergence", "check_gradient_free_probe",
    "check_iterative_vs_single", "check_large_eps", "check_randomness_eot", "check_whitebox_vs_blackbox",
    "check_zero_gradients", "combine_ensemble", "discretization_claims", "is_randomized", "pct", "plan_cost",
    "robustness_report", "run_names", "to_markdown", "zero_gradient_mask",
]
