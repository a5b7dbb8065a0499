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
``gradient_free_probe``    a gradient-free attack's accuracy depends on its finite-difference
                           probe size by more than ``margin`` (a too-small probe sees a flat model)
=========================  =====================================================================

Each check is a pure function of numbers (``check_*``), so a caller holding the
numbers (a study, a recipe) gets the same verdict; :func:`masking_checks` measures the
numbers and runs them all, and :func:`robustness_report` adds the AutoAttack ensemble
per eps and gradient surrogate. :func:`to_markdown` renders the report.
"""

import numpy as np

from edgebnn import attacks, ops
from edgebnn.attacks.apgd import DEFAULT_TARGET_CLASSES
from edgebnn.attacks.autoattack import DEFAULT_SURROGATES, STAGES
from edgebnn.attacks.common import check_inputs, cross_entropy, loss_gradient, validate_norm, validate_positive_int
from edgebnn.evaluation.robustness import craft, predict_labels

import tensorflow as tf

PASS, WARNING = "pass", "warning"
#: Accuracy gap (fraction) that counts as one attack beating another: above the
#: sampling noise of a few hundred examples.
MARGIN = 0.03
#: More steps / restarts must move robust accuracy by less than one point.
CONVERGENCE_TOLERANCE = 0.01
#: Budget of the large-eps check (Carlini et al. 2019: accuracy must reach ~0 when the
#: perturbation can erase the image) and the accuracy still counted as "near zero".
LARGE_EPS, LARGE_EPS_MAX_ACCURACY = 0.5, 0.05
#: Fraction of examples with an exactly-zero input gradient above which the check warns.
ZERO_GRADIENT_MAX_FRACTION = 0.01
#: Forward passes compared to decide whether a model is randomized.
_RANDOMNESS_TRIALS = 3


def _check(name, passed, numbers, message):
    return {"check": name, "status": PASS if passed else WARNING, "numbers": numbers, "message": message}


def _pct(value):
    return f"{100 * value:.1f}%"


def check_iterative_vs_single(*, single_step, iterative, margin=MARGIN):
    """Iterative attacks (``{name: accuracy}``) must be at least as strong as the single-step one."""
    worst = max(iterative, key=iterative.get)
    passed = iterative[worst] <= single_step + margin
    message = (f"iterative attacks at least as strong as FGSM ({worst} {_pct(iterative[worst])} vs FGSM {_pct(single_step)})"
               if passed else f"{worst} ({_pct(iterative[worst])}) is weaker than one FGSM step ({_pct(single_step)}): "
               "the gradient steers iterative attacks wrong (shattered or noisy gradients)")
    return _check("iterative_vs_single", passed, {"single_step": single_step, **iterative, "margin": margin}, message)


def check_whitebox_vs_blackbox(*, whitebox, blackbox, margin=MARGIN):
    """The best white-box attack (``{name: accuracy}``) must beat every black-box / transfer one."""
    best_white = min(whitebox, key=whitebox.get)
    best_black = min(blackbox, key=blackbox.get)
    passed = blackbox[best_black] >= whitebox[best_white] - margin
    message = (f"white-box attacks the strongest ({best_white} {_pct(whitebox[best_white])} vs {best_black} "
               f"{_pct(blackbox[best_black])})" if passed else
               f"{best_black} ({_pct(blackbox[best_black])}) beats every white-box attack (best {best_white} "
               f"{_pct(whitebox[best_white])}): gradients are masked, white-box numbers overstate robustness")
    return _check("whitebox_vs_blackbox", passed, {**whitebox, **blackbox, "margin": margin}, message)


def check_large_eps(*, accuracy, eps=LARGE_EPS, max_accuracy=LARGE_EPS_MAX_ACCURACY):
    """Accuracy under a white-box attack with a very large budget must be near zero."""
    passed = accuracy <= max_accuracy
    message = (f"accuracy falls to {_pct(accuracy)} at eps {eps:g}" if passed else
               f"{_pct(accuracy)} still correct at eps {eps:g} (expected <= {_pct(max_accuracy)}): the attack cannot "
               "find adversarial examples even when it may erase the image, so its gradient is broken")
    return _check("large_eps", passed, {"eps": eps, "accuracy": accuracy, "max_accuracy": max_accuracy}, message)


def check_convergence(*, base, stronger, tolerance=CONVERGENCE_TOLERANCE, base_name="base", stronger_name="stronger"):
    """More steps / restarts must change robust accuracy by less than ``tolerance``."""
    change = abs(base - stronger)
    passed = change < tolerance
    message = (f"{stronger_name} moves accuracy by {100 * change:.1f} points from {base_name} (< {100 * tolerance:.0f})"
               if passed else f"{stronger_name} ({_pct(stronger)}) differs from {base_name} ({_pct(base)}) by "
               f"{100 * change:.1f} points: the attack has not converged, report the stronger number")
    return _check("convergence", passed, {base_name: base, stronger_name: stronger, "tolerance": tolerance}, message)


def check_zero_gradients(*, fraction, max_fraction=ZERO_GRADIENT_MAX_FRACTION, surrogate="ste"):
    """At most ``max_fraction`` of the examples may have an input gradient that is exactly zero."""
    passed = fraction <= max_fraction
    message = (f"{_pct(fraction)} of examples have an all-zero input gradient ({surrogate})" if passed else
               f"{_pct(fraction)} of examples have an all-zero input gradient ({surrogate}): gradient attacks cannot "
               "move them (saturated softmax or a non-differentiable step without a surrogate)")
    return _check("zero_gradients", passed, {"fraction": fraction, "max_fraction": max_fraction}, message)


def check_randomness_eot(*, randomized, eot_samples, accuracy_eot=None, accuracy_plain=None, margin=MARGIN):
    """A randomized model must be attacked with EOT, and EOT must not be weaker than single samples."""
    numbers = {"randomized": randomized, "eot_samples": eot_samples, "accuracy_eot": accuracy_eot,
               "accuracy_plain": accuracy_plain}
    if not randomized:
        return _check("randomness_eot", True, numbers, "deterministic model: EOT not needed")
    if eot_samples < 2:
        return _check("randomness_eot", False, numbers, "randomized model attacked without EOT (eot_samples=1): "
                      "single-sample gradients understate the attack; set eot_samples")
    if accuracy_eot is not None and accuracy_plain is not None and accuracy_eot > accuracy_plain + margin:
        return _check("randomness_eot", False, numbers, f"EOT ({_pct(accuracy_eot)}) weaker than single-sample "
                      f"gradients ({_pct(accuracy_plain)}): too few EOT samples")
    return _check("randomness_eot", True, numbers, f"randomized model attacked with EOT over {eot_samples} samples")


def check_gradient_free_probe(*, accuracy_by_probe, margin=MARGIN, attack="SPSA"):
    """A gradient-free attack (``{probe size: accuracy}``) must not depend on its probe size.

    Small finite differences rarely cross a discretization bin or flip a sign, so on a
    discretized or binary model a gradient-free attack with a too-small probe sees a
    flat loss and would itself overestimate robustness; report the strongest probe.
    """
    strongest = min(accuracy_by_probe, key=accuracy_by_probe.get)
    weakest = max(accuracy_by_probe, key=accuracy_by_probe.get)
    spread = accuracy_by_probe[weakest] - accuracy_by_probe[strongest]
    passed = spread <= margin
    listing = ", ".join(f"delta={d:g}: {_pct(v)}" for d, v in accuracy_by_probe.items())
    message = (f"{attack} does not depend on its probe size ({listing})" if passed else
               f"{attack} depends on its probe size ({listing}): small finite differences rarely cross a "
               "discretization bin or flip a sign, so a too-small probe overestimates robustness; report "
               f"delta={strongest:g}")
    numbers = {**{f"delta={d:g}": v for d, v in accuracy_by_probe.items()}, "margin": margin}
    return _check("gradient_free_probe", passed, numbers, message)


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


def _accuracy(model_fn, x_adv, y, batch_size):
    return float(np.mean(predict_labels(model_fn, np.asarray(x_adv), batch_size=batch_size) == y))


def _correct(model_fn, x_adv, y, batch_size):
    return predict_labels(model_fn, np.asarray(x_adv), batch_size=batch_size) == y


def _validate_report(*, eps_list, surrogates, norm, steps, square_queries, restarts, eot_samples, batch_size,
                     target_classes):
    norm = validate_norm(norm)
    if isinstance(eps_list, (int, float)) or not len(eps_list):
        raise ValueError(f"`eps_list` must be a non-empty list of eps values, got {eps_list!r}.")
    for eps in eps_list:
        attacks.common.validate_nonnegative(eps, "eps_list")
    if isinstance(surrogates, str) or not surrogates:
        raise ValueError(f"`surrogates` must be a non-empty list of names from {sorted(ops.SURROGATES)}, got {surrogates!r}.")
    for name in surrogates:
        ops.validate_surrogate(name)
    for value, name in ((steps, "steps"), (square_queries, "square_queries"), (restarts, "restarts"),
                        (eot_samples, "eot_samples"), (batch_size, "batch_size"), (target_classes, "target_classes")):
        validate_positive_int(value, name)
    return norm


def robustness_report(
    model_fn,
    x,
    y,
    *,
    eps_list,
    norm=np.inf,
    surrogates=DEFAULT_SURROGATES,
    steps=100,
    pgd_steps=40,
    restarts=5,
    target_classes=DEFAULT_TARGET_CLASSES,
    square_queries=5000,
    spsa_options=None,
    substitute_options=None,
    transfer_sources=None,
    eot_samples=1,
    large_eps=LARGE_EPS,
    batch_size=500,
    log=None,
):
    """Strong robustness numbers with every masking check, per eps and gradient surrogate.

    For every eps: FGSM, PGD-``pgd_steps``, PGD-``steps`` with ``restarts`` restarts,
    APGD-CE and APGD-T (``steps`` each), per surrogate; Square (``square_queries``);
    optionally SPSA and a substitute-model transfer attack. The AutoAttack ensemble
    (APGD-CE -> APGD-T -> Square) is combined per example from these runs, per surrogate
    and over all surrogates (the per-example worst case), with the breakdown of which
    attack broke how many in ensemble order. Then the masking checks of this module.

    Args:
        model_fn: model mapping ``[0, 1]`` images to logits (a Keras model, so that Larq
            sign quantizers can take every surrogate).
        x, y: test images and true labels.
        eps_list: L-inf (or L2) budgets.
        norm: ``np.inf`` or ``2``.
        surrogates: gradient surrogates to try (keys of :data:`edgebnn.ops.SURROGATES`).
        steps: iterations of APGD and of the long PGD (100 in AutoAttack).
        pgd_steps: iterations of the short PGD.
        restarts: restarts of the long PGD.
        target_classes: APGD-T target classes (capped at classes - 1).
        square_queries: Square's budget per example.
        spsa_options: SPSA keyword arguments (e.g. ``{"steps": 100, "num_samples": 64}``),
            or None to skip SPSA.
        substitute_options: :func:`edgebnn.attacks.substitute` keyword arguments, which must
            include ``x_holdout`` (images disjoint from ``x``), or None to skip it.
        transfer_sources: ``{name: model}`` of separately trained models; for each, the
            short PGD crafted white-box on that model (first surrogate) is replayed on
            ``model_fn`` as ``transfer/<name>``, a black-box attack that needs no gradient
            of the attacked model. None or empty to skip.
        eot_samples: EOT passes for the gradient attacks (randomized models).
        large_eps: budget of the large-eps check.
        batch_size: examples per compiled attack call.
        log: optional ``str -> None`` progress callback.

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
    norm = _validate_report(eps_list=eps_list, surrogates=surrogates, norm=norm, steps=steps,
                            square_queries=square_queries, restarts=restarts, eot_samples=eot_samples,
                            batch_size=batch_size, target_classes=target_classes)
    validate_positive_int(pgd_steps, "pgd_steps")
    if substitute_options is not None and "x_holdout" not in substitute_options:
        raise ValueError("`substitute_options` must include `x_holdout`, the attacker's own images (disjoint from `x`).")
    transfer_sources = dict(transfer_sources or {})
    for name, source in transfer_sources.items():
        if not isinstance(name, str) or not name or not callable(source):
            raise ValueError(f"`transfer_sources` must map names to models; got {name!r}: {type(source).__name__}.")
    x = np.asarray(check_inputs(x, clip_min=0.0, clip_max=1.0))
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(y) != len(x):
        raise ValueError(f"`y` has {len(y)} labels for {len(x)} inputs.")
    log = log or (lambda message: None)
    clean = _correct(model_fn, x, y, batch_size)
    randomized = is_randomized(model_fn, x[:min(len(x), 64)])
    classes = int(np.asarray(model_fn(tf.constant(x[:1]))).shape[-1])
    target_classes = min(target_classes, classes - 1)
    surrogates = list(surrogates)
    grad_opts = dict(eot_samples=eot_samples)
    long_pgd = f"pgd-{steps}x{restarts}"
    short_pgd = f"pgd-{pgd_steps}"

    report = {
        "n": int(len(x)), "norm": "inf" if norm == np.inf else "l2", "clean_accuracy": float(clean.mean()),
        "surrogates": surrogates, "randomized": bool(randomized), "eot_samples": eot_samples,
        "settings": {"steps": steps, "pgd_steps": pgd_steps, "restarts": restarts, "target_classes": target_classes,
                     "square_queries": square_queries, "spsa": spsa_options is not None,
                     "substitute": substitute_options is not None, "transfer": sorted(transfer_sources)},
    }
    report["zero_gradient_fraction"] = {
        s: float(zero_gradient_mask(model_fn, x, y, surrogate=s, eot_samples=eot_samples, batch_size=batch_size).mean())
        for s in surrogates
    }
    report["large_eps"] = {"eps": large_eps, "accuracy": {
        # From the clean point (no random start): at this budget a random start alone can
        # fool the model, which would hide a dead gradient.
        s: _accuracy(model_fn, craft(model_fn, x, y, attack="pgd", eps=large_eps, steps=pgd_steps, rand_init=False,
                                     norm=norm, surrogate=s, batch_size=batch_size, **grad_opts), y, batch_size)
        for s in surrogates
    }}
    log(f"large eps {large_eps}: {report['large_eps']['accuracy']}")

    results = []
    for eps in eps_list:
        eps = float(eps)
        correct = {}  # attack name -> per-example "still correct" (and clean-correct)

        def run(name, attack, source=model_fn, **options):
            """Craft ``attack`` on ``source`` (the attacked model unless transferring) and score it on ``model_fn``."""
            x_adv = craft(source, x, y, attack=attack, eps=eps, batch_size=batch_size, **options)
            correct[name] = _correct(model_fn, x_adv, y, batch_size) & clean
            log(f"eps {eps:g} {name}: {_pct(correct[name].mean())}")
            return x_adv

        for s in surrogates:
            run(f"fgsm/{s}", "fgsm", norm=norm, surrogate=s, **grad_opts)
            run(f"{short_pgd}/{s}", "pgd", norm=norm, steps=pgd_steps, surrogate=s, **grad_opts)
            run(f"{long_pgd}/{s}", "pgd", norm=norm, steps=steps, restarts=restarts, surrogate=s, **grad_opts)
            run(f"apgd-ce/{s}", "apgd", norm=norm, steps=steps, loss="ce", surrogate=s, **grad_opts)
            run(f"apgd-t/{s}", "apgd_t", norm=norm, steps=steps, target_classes=target_classes, surrogate=s, **grad_opts)
        run("square", "square", norm=norm, queries=square_queries)
        if spsa_options is not None and norm == np.inf:  # SPSA is L-inf only
            run("spsa", "spsa", **spsa_options)
        if substitute_options is not None:
            run("substitute", "substitute", norm=norm, **substitute_options)
        for source_name, source in transfer_sources.items():
            run(f"transfer/{source_name}", "pgd", source=source, norm=norm, steps=pgd_steps, surrogate=surrogates[0])

        ensemble = {s: combine_ensemble(correct, clean, [s]) for s in surrogates}
        ensemble["all"] = combine_ensemble(correct, clean, surrogates)
        accuracy = {name: float(mask.mean()) for name, mask in correct.items()}
        checks = _checks_for_eps(accuracy, surrogates, short_pgd, long_pgd)
        results.append({
            "eps": eps, "accuracy": accuracy, "autoattack": ensemble, "checks": checks,
            "warnings": sum(c["status"] == WARNING for c in checks),
        })

    checks = _global_checks(report)
    eot_numbers = {}
    if randomized and eot_samples > 1:
        # The same short PGD at the first eps, with single-sample gradients, for comparison.
        eps0, s0 = float(eps_list[0]), surrogates[0]
        x_plain = craft(model_fn, x, y, attack="pgd", eps=eps0, norm=norm, steps=pgd_steps, surrogate=s0,
                        batch_size=batch_size)
        eot_numbers = {"accuracy_plain": _accuracy(model_fn, x_plain, y, batch_size),
                       "accuracy_eot": results[0]["accuracy"][f"{short_pgd}/{s0}"]}
    checks.append(check_randomness_eot(randomized=randomized, eot_samples=eot_samples, **eot_numbers))
    report["checks"] = checks
    report["results"] = results
    report["warnings"] = sum(c["status"] == WARNING for c in checks) + sum(r["warnings"] for r in results)
    return report


def combine_ensemble(correct, clean, surrogates):
    """The AutoAttack ensemble from per-attack "still correct" masks: an example is robust
    when no stage (APGD-CE, APGD-T per surrogate, then Square) broke it; the breakdown
    credits each broken example to the first stage, in ensemble order, that broke it."""
    robust = clean.copy()
    breakdown = []
    for stage in STAGES:
        names = ["square"] if stage == "square" else [f"{stage}/{s}" for s in surrogates]
        for name in names:
            broken = robust & ~correct[name]
            breakdown.append({"attack": name, "attacked": int(robust.sum()), "broken": int(broken.sum())})
            robust &= correct[name]
    return {"robust_accuracy": float(robust.mean()), "breakdown": breakdown}


def _global_checks(report):
    """Checks that do not depend on eps: large-eps accuracy and zero gradients, each over the best surrogate."""
    large = report["large_eps"]["accuracy"]
    best_large = min(large, key=large.get)
    large_check = check_large_eps(accuracy=large[best_large], eps=report["large_eps"]["eps"])
    large_check["numbers"]["by_surrogate"] = dict(large)
    zero = report["zero_gradient_fraction"]
    best_zero = min(zero, key=zero.get)
    zero_check = check_zero_gradients(fraction=zero[best_zero], surrogate=best_zero)
    zero_check["numbers"]["by_surrogate"] = dict(zero)
    return [large_check, zero_check]


def _checks_for_eps(acc, surrogates, short_pgd, long_pgd):
    best = {s: min(acc[f"{a}/{s}"] for a in (short_pgd, long_pgd, "apgd-ce", "apgd-t")) for s in surrogates}
    checks = [
        check_iterative_vs_single(
            single_step=acc[f"fgsm/{s}"], iterative={f"{a}/{s}": acc[f"{a}/{s}"] for a in (short_pgd, long_pgd, "apgd-ce")},
        )
        for s in surrogates
    ]
    whitebox = {f"white-box/{s}": best[s] for s in surrogates}
    blackbox = {name: value for name, value in acc.items()
                if name in ("square", "spsa", "substitute") or name.startswith("transfer/")}
    checks.append(check_whitebox_vs_blackbox(whitebox=whitebox, blackbox=blackbox))
    checks += [
        check_convergence(base=acc[f"{short_pgd}/{s}"], stronger=acc[f"{long_pgd}/{s}"],
                          base_name=f"{short_pgd}/{s}", stronger_name=f"{long_pgd}/{s}")
        for s in surrogates
    ]
    return checks


def discretization_claims(coarse, fine, *, weak_attack, margin=MARGIN):
    """Does coarser input discretization still buy robustness under the ensemble?

    Compares two :func:`robustness_report` results of the same model with coarse and
    fine input discretization (same eps list). The claim "coarse inputs are more
    robust" is made from ``weak_attack`` (an accuracy key such as ``"pgd-40/clipped"``);
    it survives at an eps when the all-surrogate ensemble still shows a gain above
    ``margin``.

    Returns:
        ``[{"eps", "weak_gain", "ensemble_gain", "claimed", "survives"}]`` (gains in accuracy fractions).
    """
    fine_by_eps = {r["eps"]: r for r in fine["results"]}
    rows = []
    for r in coarse["results"]:
        other = fine_by_eps.get(r["eps"])
        if other is None:
            raise ValueError(f"`fine` has no result at eps {r['eps']}; both reports need the same eps list.")
        if weak_attack not in r["accuracy"]:
            raise ValueError(f"`weak_attack` must be one of {sorted(r['accuracy'])}, got {weak_attack!r}.")
        weak_gain = r["accuracy"][weak_attack] - other["accuracy"][weak_attack]
        strong_gain = r["autoattack"]["all"]["robust_accuracy"] - other["autoattack"]["all"]["robust_accuracy"]
        rows.append({"eps": r["eps"], "weak_gain": weak_gain, "ensemble_gain": strong_gain,
                     "claimed": weak_gain > margin, "survives": strong_gain > margin})
    return rows


def to_markdown(report, *, title="Robustness under strong attacks"):
    """Render :func:`robustness_report`'s dict as Markdown: accuracy table, ensemble breakdown, checks."""
    surrogates = report["surrogates"]
    lines = [f"## {title}", "",
             f"{report['n']} examples, clean accuracy {_pct(report['clean_accuracy'])}, norm L{report['norm']}, "
             f"surrogates {', '.join(surrogates)}; {'randomized' if report['randomized'] else 'deterministic'} model, "
             f"EOT samples {report['eot_samples']}.", ""]
    names = list(report["results"][0]["accuracy"]) if report["results"] else []
    lines += ["| attack | " + " | ".join(f"eps {r['eps']:g}" for r in report["results"]) + " |",
              "|---|" + "---:|" * len(report["results"])]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(_pct(r["accuracy"][name]) for r in report["results"]) + " |")
    for key in [*surrogates, "all"]:
        label = "**AutoAttack ensemble, all surrogates**" if key == "all" else f"AutoAttack ensemble ({key})"
        lines.append(f"| {label} | " + " | ".join(
            (f"**{_pct(r['autoattack'][key]['robust_accuracy'])}**" if key == "all" else _pct(r["autoattack"][key]["robust_accuracy"]))
            for r in report["results"]) + " |")
    lines += ["", "Ensemble breakdown (all surrogates; examples broken by each stage, in order):", ""]
    for r in report["results"]:
        parts = [f"{row['attack']} {row['broken']}/{row['attacked']}" for row in r["autoattack"]["all"]["breakdown"]]
        lines.append(f"- eps {r['eps']:g}: " + ", ".join(parts))
    lines += ["", f"Gradient-masking checks ({report['warnings']} warnings):", ""]
    for c in report["checks"]:
        mark = "pass" if c["status"] == PASS else "**WARNING**"
        lines.append(f"- {c['check']}: {mark}: {c['message']}")
    for r in report["results"]:
        for c in r["checks"]:
            mark = "pass" if c["status"] == PASS else "**WARNING**"
            lines.append(f"- eps {r['eps']:g}, {c['check']}: {mark}: {c['message']}")
    return "\n".join(lines) + "\n"


__all__ = [
    "check_convergence", "check_iterative_vs_single", "check_large_eps", "check_randomness_eot",
    "check_whitebox_vs_blackbox", "check_zero_gradients", "combine_ensemble", "discretization_claims", "is_randomized",
    "robustness_report", "to_markdown", "zero_gradient_mask",
]
