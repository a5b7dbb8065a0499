"""The strong evaluation's gradient-masking checks and its Markdown, without TensorFlow.

Each check is a pure function of numbers, ``"pass"`` or ``"warning"`` with the numbers
behind it, so a caller holding the numbers (a study, a recipe, the results page) gets
the same verdict as :func:`edgebnn.evaluation.masking.robustness_report`, which
measures them; :func:`to_markdown` renders that report. See
:mod:`edgebnn.evaluation.masking` for the table of checks.
"""

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


def _check(name, passed, numbers, message):
    return {"check": name, "status": PASS if passed else WARNING, "numbers": numbers, "message": message}


def pct(value):
    """A fraction as a percentage with one decimal."""
    return f"{100 * value:.1f}%"


def check_iterative_vs_single(*, single_step, iterative, margin=MARGIN):
    """Iterative attacks (``{name: accuracy}``) must be at least as strong as the single-step one."""
    worst = max(iterative, key=iterative.get)
    passed = iterative[worst] <= single_step + margin
    message = (f"iterative attacks at least as strong as FGSM ({worst} {pct(iterative[worst])} vs FGSM {pct(single_step)})"
               if passed else f"{worst} ({pct(iterative[worst])}) is weaker than one FGSM step ({pct(single_step)}): "
               "the gradient steers iterative attacks wrong (shattered or noisy gradients)")
    return _check("iterative_vs_single", passed, {"single_step": single_step, **iterative, "margin": margin}, message)


def check_whitebox_vs_blackbox(*, whitebox, blackbox, margin=MARGIN):
    """The best white-box attack (``{name: accuracy}``) must beat every black-box / transfer one."""
    best_white = min(whitebox, key=whitebox.get)
    best_black = min(blackbox, key=blackbox.get)
    passed = blackbox[best_black] >= whitebox[best_white] - margin
    message = (f"white-box attacks the strongest ({best_white} {pct(whitebox[best_white])} vs {best_black} "
               f"{pct(blackbox[best_black])})" if passed else
               f"{best_black} ({pct(blackbox[best_black])}) beats every white-box attack (best {best_white} "
               f"{pct(whitebox[best_white])}): gradients are masked, white-box numbers overstate robustness")
    return _check("whitebox_vs_blackbox", passed, {**whitebox, **blackbox, "margin": margin}, message)


def check_eps_monotone(*, accuracy_by_eps, attack="fgsm", margin=MARGIN):
    """Accuracy under one attack (``{eps: accuracy}``) must not rise with eps by more than ``margin``.

    A larger budget contains every smaller one, so a sound attack's accuracy can only
    fall; a rise is the signature of label leaking or of a gradient that points the
    wrong way at large steps (masking).
    """
    ordered = sorted(accuracy_by_eps.items())
    rises = [(small, large) for small, large in zip(ordered, ordered[1:]) if large[1] > small[1] + margin]
    numbers = {**{f"eps={e:g}": a for e, a in ordered}, "margin": margin}
    if not rises:
        return _check("eps_monotone", True, numbers, f"{attack} accuracy does not rise with eps"
                      + ("" if len(ordered) > 1 else " (one eps: nothing to compare)"))
    (e0, a0), (e1, a1) = rises[0]
    return _check("eps_monotone", False, numbers,
                  f"{attack} accuracy rises from {pct(a0)} at eps {e0:g} to {pct(a1)} at eps {e1:g}: label leaking "
                  "or masked gradients; the small-eps numbers overstate robustness too")


def check_large_eps(*, accuracy, eps=LARGE_EPS, max_accuracy=LARGE_EPS_MAX_ACCURACY):
    """Accuracy under a white-box attack with a very large budget must be near zero."""
    passed = accuracy <= max_accuracy
    message = (f"accuracy falls to {pct(accuracy)} at eps {eps:g}" if passed else
               f"{pct(accuracy)} still correct at eps {eps:g} (expected <= {pct(max_accuracy)}): the attack cannot "
               "find adversarial examples even when it may erase the image, so its gradient is broken")
    return _check("large_eps", passed, {"eps": eps, "accuracy": accuracy, "max_accuracy": max_accuracy}, message)


def check_convergence(*, base, stronger, tolerance=CONVERGENCE_TOLERANCE, base_name="base", stronger_name="stronger"):
    """More steps / restarts must change robust accuracy by less than ``tolerance``."""
    change = abs(base - stronger)
    passed = change < tolerance
    message = (f"{stronger_name} moves accuracy by {100 * change:.1f} points from {base_name} (< {100 * tolerance:.0f})"
               if passed else f"{stronger_name} ({pct(stronger)}) differs from {base_name} ({pct(base)}) by "
               f"{100 * change:.1f} points: the attack has not converged, report the stronger number")
    return _check("convergence", passed, {base_name: base, stronger_name: stronger, "tolerance": tolerance}, message)


def check_zero_gradients(*, fraction, max_fraction=ZERO_GRADIENT_MAX_FRACTION, surrogate="ste"):
    """At most ``max_fraction`` of the examples may have an input gradient that is exactly zero."""
    passed = fraction <= max_fraction
    message = (f"{pct(fraction)} of examples have an all-zero input gradient ({surrogate})" if passed else
               f"{pct(fraction)} of examples have an all-zero input gradient ({surrogate}): gradient attacks cannot "
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
        return _check("randomness_eot", False, numbers, f"EOT ({pct(accuracy_eot)}) weaker than single-sample "
                      f"gradients ({pct(accuracy_plain)}): too few EOT samples")
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
    listing = ", ".join(f"delta={d:g}: {pct(v)}" for d, v in accuracy_by_probe.items())
    message = (f"{attack} does not depend on its probe size ({listing})" if passed else
               f"{attack} depends on its probe size ({listing}): small finite differences rarely cross a "
               "discretization bin or flip a sign, so a too-small probe overestimates robustness; report "
               f"delta={strongest:g}")
    numbers = {**{f"delta={d:g}": v for d, v in accuracy_by_probe.items()}, "margin": margin}
    return _check("gradient_free_probe", passed, numbers, message)


def global_checks(report):
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


def checks_for_eps(acc, surrogates, short_pgd, long_pgd, *, blackbox):
    """The checks at one eps from its accuracies ``acc`` (``{"<attack>/<surrogate>": accuracy}``);
    ``blackbox`` names the runs that need no gradient of the attacked model."""
    best = {s: min(acc[f"{a}/{s}"] for a in (short_pgd, long_pgd, "apgd-ce", "apgd-t")) for s in surrogates}
    checks = [
        check_iterative_vs_single(
            single_step=acc[f"fgsm/{s}"], iterative={f"{a}/{s}": acc[f"{a}/{s}"] for a in (short_pgd, long_pgd, "apgd-ce")},
        )
        for s in surrogates
    ]
    whitebox = {f"white-box/{s}": best[s] for s in surrogates}
    checks.append(check_whitebox_vs_blackbox(whitebox=whitebox,
                                             blackbox={name: acc[name] for name in acc if name in blackbox}))
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
             f"{report['n']} examples, clean accuracy {pct(report['clean_accuracy'])}, norm L{report['norm']}, "
             f"surrogates {', '.join(surrogates)}; {'randomized' if report['randomized'] else 'deterministic'} model, "
             f"EOT samples {report['eot_samples']}.", ""]
    names = list(report["results"][0]["accuracy"]) if report["results"] else []
    lines += ["| attack | " + " | ".join(f"eps {r['eps']:g}" for r in report["results"]) + " |",
              "|---|" + "---:|" * len(report["results"])]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(pct(r["accuracy"][name]) for r in report["results"]) + " |")
    for key in [*surrogates, "all"]:
        label = "**AutoAttack ensemble, all surrogates**" if key == "all" else f"AutoAttack ensemble ({key})"
        lines.append(f"| {label} | " + " | ".join(
            (f"**{pct(r['autoattack'][key]['robust_accuracy'])}**" if key == "all" else pct(r["autoattack"][key]["robust_accuracy"]))
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
