"""Exact robustness next to the strongest attack: a JSON-able report and its Markdown rendering."""

import hashlib
import time

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.certify import encode, solvers
from edgebnn.certify.network import extract
from edgebnn.certify.run import certify
from edgebnn.evaluation.robustness import craft, predict_labels

#: The attack whose accuracy is the upper bound: PGD with random restarts (straight-through gradients).
DEFAULT_ATTACK = {"attack": "pgd", "steps": 100, "restarts": 5}


def _quantile(values, q):
    return None if not values else float(np.quantile(values, q))


def model_sha256(model):
    """SHA-256 (hex) of a Keras model's weights: names, shapes, dtypes and bytes, in order."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(repr((weight.name, value.dtype.str, value.shape)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _attack_name(attack):
    return attack["attack"] if isinstance(attack["attack"], str) else getattr(attack["attack"], "__name__", "attack")


def _summarize(result, broken, clean_correct, broken_by=None):
    broken_by = broken_by or {}
    rows = [
        {k: r[k] for k in ("index", "label", "status", "source", "solver", "solver_version", "seconds",
                           "free_pixels", "unstable", "predicted", "replay_keras", "replay_tflite")}
        | {"eps": result.eps, "clean_correct": bool(clean_correct[r["index"]]),
           "attack_broke": bool(broken[r["index"]]),
           "attacks_broke": [name for name, b in broken_by.items() if b[r["index"]]],
           "attack_missed": r["status"] == "not_robust" and not broken[r["index"]]}
        for r in result.records
    ]
    return summarize_examples(rows, eps=result.eps)


def summarize_examples(rows, *, eps):
    """The per-eps summary of :func:`certify_report` from its per-example rows (``examples``).

    Also merges runs over disjoint batches of images: concatenate their ``examples``
    (with distinct ``index`` values) and summarize again.
    """
    n = len(rows)
    status = np.array([r["status"] for r in rows])
    source = np.array([r["source"] for r in rows])
    broken = np.array([r["attack_broke"] for r in rows], bool)
    exact_sources = ("solver", "enumeration", "branch")
    solved = [r["seconds"] for r in rows if r["source"] in ("solver", "bounds", "enumeration", "search", "branch")]
    seconds = [r["seconds"] for r in rows]
    attack_names = sorted({name for r in rows for name in r.get("attacks_broke", [])})
    missed = [r["index"] for r in rows if r["attack_missed"]]
    unsound = [r["index"] for r in rows if r["status"] == "robust" and r["attack_broke"]]
    with_cx = [r for r in rows if r["replay_keras"] is not None]
    return {
        "eps": eps,
        "n": n,
        "clean_accuracy": float(np.mean([r["clean_correct"] for r in rows])),
        "certified_robust_accuracy": float(np.mean(status == "robust")),
        "attack_robust_accuracy": float(np.mean(~broken)),
        "attack_robust_accuracy_by_attack": {
            name: float(np.mean([r["clean_correct"] and name not in r.get("attacks_broke", []) for r in rows]))
            for name in attack_names},
        "robust": int(np.sum(status == "robust")),
        "not_robust": int(np.sum(status == "not_robust")),
        "unknown": int(np.sum(status == "unknown")),
        "robust_by_bounds": int(np.sum((status == "robust") & (source == "bounds"))),
        "refuted_by_solver": int(np.sum((status == "not_robust") & np.isin(source, exact_sources))),
        "decided_by_enumeration": int(np.sum(source == "enumeration")),
        "decided_by_branch": int(np.sum(source == "branch")),
        "refuted_by_search": int(np.sum((status == "not_robust") & (source == "search"))),
        "refuted_by_attack": int(np.sum(source == "hint")),
        "attack_missed": len(missed),
        "attack_missed_indices": missed,
        "attack_broke_certified": len(unsound),
        "seconds_median": _quantile(seconds, 0.5),
        "seconds_p95": _quantile(seconds, 0.95),
        "seconds_mean": None if not seconds else float(np.mean(seconds)),
        "solver_examples": len(solved),
        "solver_seconds_median": _quantile(solved, 0.5),
        "solver_seconds_p95": _quantile(solved, 0.95),
        "counterexamples": len(with_cx),
        "replayed_keras": sum(bool(r["replay_keras"]) for r in with_cx),
        "replayed_tflite": sum(bool(r["replay_tflite"]) for r in with_cx),
        "examples": list(rows),
    }


def certify_report(model, x, y, *, eps_list, time_limit=60.0, solver="milp", processes=1, attack=None,
                   extra_attacks=(), deployed=None, progress=None, keep_counterexamples=False):
    """Certified (lower bound) and attacked (upper bound) robust accuracy of ``model`` for each eps.

    For every eps the attack runs first (on the Keras model, against the true labels);
    its outputs are handed to :func:`~edgebnn.certify.run.certify` as hints, so an
    example the attack broke is refuted without the solver (after checking that the
    attack's input is in the ball and misclassified by the exact forward pass), and
    every other example is decided by the solver. Examples the attack failed on and
    the solver refuted are the attack's misses.

    Args:
        model: a supported binary network (see :mod:`edgebnn.certify.network`).
        x, y: inputs in ``[0, 1]`` and true labels.
        eps_list: L-infinity radii.
        time_limit: solver seconds per example.
        solver: ``"milp"`` or ``"sat"``.
        processes: worker processes for the solver.
        attack: keyword arguments of :func:`edgebnn.evaluation.robustness.craft`
            (``attack`` name and its options; default :data:`DEFAULT_ATTACK`).
        extra_attacks: more such dicts (e.g. ``{"attack": "autoattack"}``), run after
            ``attack`` on every image; an image counts as broken when any attack breaks
            it (``attacks_broke`` names which), the first attack that broke it gives the
            hint, and a ``robust`` answer on an image any attack broke is reported as an
            inconsistency (``attack_broke_certified``).
        deployed: ``None``, or the deployed model's predictions to replay
            counterexamples through (see :func:`edgebnn.certify.run.replay`).
        progress: ``None`` or ``progress(label, done, total)``, ``done`` of ``total`` examples certified.
        keep_counterexamples: also keep every counterexample in its eps's summary, as
            ``counterexample_inputs``: ``[[example index, flat list of its pixels], ...]``.

    Returns:
        A JSON-able dict: ``model``, ``model_sha256`` (weights, :func:`model_sha256`),
        ``net_sha256`` (the exact integer model, :func:`edgebnn.certify.encode.fingerprint`),
        ``n``, ``solver``, ``solver_version``, ``time_limit``, ``attack``, ``extra_attacks``
        and ``results``, one summary per eps with its per-example rows (each with its
        index, eps, answer, solver and solver version: enough to re-decide it).
    """
    attack = dict(DEFAULT_ATTACK if attack is None else attack)
    extra_attacks = [dict(a) for a in extra_attacks]
    all_attacks = [attack, *extra_attacks]
    names = [_attack_name(a) for a in all_attacks]
    if len(set(names)) != len(names):
        raise ValueError(f"`extra_attacks` must name attacks different from each other and from `attack`, got {names}.")
    x, y = np.asarray(x, np.float32), np.asarray(y).astype(np.int64)
    clean_correct = predict_labels(model, x) == y
    results = []
    for eps in eps_list:
        start = time.perf_counter()
        broken_by, hints, already = {}, None, np.zeros(len(x), bool)
        for name, options in zip(names, all_attacks):
            x_adv = craft(model, x, y, eps=eps, **options)
            broken_by[name] = (predict_labels(model, x_adv) != y) & clean_correct
            first = broken_by[name] & ~already  # the hint of an image is the first attack's that broke it
            hints = x_adv if hints is None else np.where(first.reshape((-1,) + (1,) * (x.ndim - 1)), x_adv, hints)
            already |= broken_by[name]
            if progress is not None:  # no example certified yet
                progress(f"attack {name} eps={eps:g}: robust accuracy {np.mean(clean_correct & ~broken_by[name]):.4f} "
                         f"({time.perf_counter() - start:.0f}s)", 0, len(x))
        broken = np.any(list(broken_by.values()), axis=0) | ~clean_correct
        attack_seconds = time.perf_counter() - start
        result = certify(model, x, y, eps=eps, time_limit=time_limit, solver=solver, processes=processes,
                         hints=hints, deployed=deployed, progress=progress)
        summary = _summarize(result, broken, clean_correct, broken_by)
        if keep_counterexamples:
            summary["counterexample_inputs"] = [[int(i), np.asarray(cx, np.float32).ravel().tolist()]
                                                for i, cx in sorted(result.counterexamples.items())]
        summary["attack_seconds"] = attack_seconds
        summary["certify_seconds"] = time.perf_counter() - start - attack_seconds
        results.append(summary)
    return {
        "model": model.name,
        "model_sha256": model_sha256(model),
        "net_sha256": encode.fingerprint(extract(model)),
        "n": int(len(x)),
        "solver": solver,
        "solver_version": solvers.version(solver),
        "time_limit": time_limit,
        "attack": attack,
        "extra_attacks": extra_attacks,
        "results": results,
    }


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _sec(value):
    return "n/a" if value is None else f"{value:.2f}"


def to_markdown(report):
    """Render :func:`certify_report`'s dict as Markdown."""
    attack = "; ".join(", ".join(f"{k}={v}" for k, v in a.items())
                       for a in [report["attack"], *report.get("extra_attacks", [])])
    lines = [
        f"# Exact robustness: `{report['model']}`",
        "",
        f"{report['n']} examples; solver `{report['solver']}` ({report.get('solver_version', 'version not recorded')}), "
        f"time limit {report['time_limit']} s per example; attacks: {attack}.",
        "",
        f"Model weights sha256 `{report.get('model_sha256', 'n/a')}`; exact integer model sha256 "
        f"`{report.get('net_sha256', 'n/a')}`.",
        "",
        "| eps | clean | certified robust (lower bound) | attack robust (upper bound) | robust | refuted "
        "(solver / search / attack / clean) | unknown | attack missed | s/example mean / median / p95 | solver s median / p95 "
        "| replayed Keras / TFLite |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        clean_wrong = r["not_robust"] - r["refuted_by_solver"] - r["refuted_by_search"] - r["refuted_by_attack"]
        lines.append(
            f"| {r['eps']:g} | {_pct(r['clean_accuracy'])} | {_pct(r['certified_robust_accuracy'])} "
            f"| {_pct(r['attack_robust_accuracy'])} | {r['robust']} | {r['not_robust']} "
            f"({r['refuted_by_solver']} / {r['refuted_by_search']} / {r['refuted_by_attack']} / {clean_wrong}) "
            f"| {r['unknown']} "
            f"| {r['attack_missed']} | {_sec(r.get('seconds_mean'))} / {_sec(r['seconds_median'])} / {_sec(r['seconds_p95'])} "
            f"| {_sec(r['solver_seconds_median'])} / {_sec(r['solver_seconds_p95'])} "
            f"| {r['replayed_keras']} / {r['replayed_tflite']} of {r['counterexamples']} |"
        )
    lines += [
        "",
        "Certified robust: proved that no input in the L-infinity ball changes the prediction. The true robust "
        "accuracy lies between the certified and the attack accuracy; unknowns (time limit) are the gap that is "
        "left. *Attack missed*: examples the attack did not break but that were refuted with a counterexample, by "
        "the solver or by hill climbing on the exact integer model (*search*). Balls with few discretized inputs "
        "are searched exhaustively (counted with the solver).",
        "",
    ]
    unsound = sum(r["attack_broke_certified"] for r in report["results"])
    if unsound:
        lines += [f"**Inconsistent: {unsound} examples broken by the attack were certified robust.**", ""]
    return "\n".join(lines)


def compare_solvers(model, x, y, *, eps, time_limit, solvers=("milp", "sat")):
    """Run each solver backend on the same examples, one process, one example at a time (no enumeration).

    Returns:
        A JSON-able dict: per solver, the statuses, per-example seconds and their median,
        plus whether the backends ever disagreed on a decided example.
    """
    from edgebnn.certify.exact import certify_net  # noqa: PLC0415
    from edgebnn.certify.network import extract  # noqa: PLC0415

    net = extract(model)
    out = {"eps": eps, "time_limit": time_limit, "n": int(len(x)), "solvers": {}}
    for name in solvers:
        records = certify_net(net, x, y, eps=eps, time_limit=time_limit, solver=name, enumeration_limit=0,
                              branch_share=0)
        seconds = [r["seconds"] for r in records]
        out["solvers"][name] = {
            "statuses": [r["status"] for r in records],
            "seconds": seconds,
            "seconds_median": _quantile(seconds, 0.5),
            "unknown": sum(r["status"] == "unknown" for r in records),
        }
    decided = [
        {out["solvers"][s]["statuses"][i] for s in solvers} - {"unknown"} for i in range(len(x))
    ]
    out["disagreements"] = sum(len(d) > 1 for d in decided)
    return out
