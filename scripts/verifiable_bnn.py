"""Measurements for verifiable binary networks: solver comparison and training ablation.

``solvers``: every backend of :mod:`edgebnn.certify.solvers` on the same examples of a
saved model (one process, one example at a time; the examples that bounds and hill
climbing leave to the solver are the same for every backend). ``ablation``: train the
binary FCN with each training ingredient of :mod:`edgebnn.training.verifiable` switched
on in turn and certify a few hundred test images of the MNIST carve.

Example:
    python scripts/verifiable_bnn.py solvers --model runs/fcn.keras --n 100 --eps 0.1 \
        --time-limit 2 --out /work/notes/verifiable/solvers.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import edgebnn
from edgebnn import _io, data
from edgebnn.certify import exact, solvers

#: The MNIST carve of the recipes: 9,000 training and 1,000 test images out of the official test set.
MNIST_CARVE = {"train_size": 9000, "test_size": 1000, "seed": 0}


def _quantile(values, q):
    return None if not values else float(np.quantile(values, q))


#: The comparison's name for branch and bound over pixel ranges alone (:mod:`edgebnn.certify.branch`).
BRANCH = "branch"


def compare(net, x, y, *, eps, time_limit, names):
    """Per backend: answers, solver-reached examples, decided count, median / p95 seconds (TensorFlow-free).

    ``names`` are backends of :mod:`edgebnn.certify.solvers` (each run with branch and
    bound off) or :data:`BRANCH` (branch and bound with the whole time limit, no solver).
    """
    out = {"eps": eps, "time_limit": time_limit, "n": int(len(x)), "solvers": {}}
    for name in names:
        alone = name == BRANCH
        records = exact.certify_net(net, x, y, eps=eps, time_limit=time_limit, solver="minicard" if alone else name,
                                    branch_share=1.0 if alone else 0.0)
        reached = [r for r in records if r["source"] in ("branch", "solver")]
        seconds = [r["seconds"] for r in reached]
        out["solvers"][name] = {
            "version": f"edgebnn {edgebnn.__version__}" if alone else solvers.version(name),
            "statuses": [r["status"] for r in records],
            "sources": [r["source"] for r in records],
            "solver_examples": len(reached),
            "decided": sum(r["status"] != "unknown" for r in reached),
            "robust": sum(r["status"] == "robust" for r in reached),
            "refuted": sum(r["status"] == "not_robust" for r in reached),
            "unknown": sum(r["status"] == "unknown" for r in reached),
            "seconds_median": _quantile(seconds, 0.5),
            "seconds_p95": _quantile(seconds, 0.95),
            "seconds_mean": None if not seconds else float(np.mean(seconds)),
        }
    decided = [{out["solvers"][s]["statuses"][i] for s in names} - {"unknown"} for i in range(len(x))]
    out["disagreements"] = sum(len(d) > 1 for d in decided)
    return out


def solvers_markdown(result):
    lines = [f"eps {result['eps']:g}, {result['n']} images, time limit {result['time_limit']} s; "
             f"disagreements on decided examples: {result['disagreements']}", "",
             "| solver | version | reached the solver | decided | robust | refuted | unknown | median s | p95 s | mean s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for name, r in result["solvers"].items():
        lines.append(f"| {name} | {r['version']} | {r['solver_examples']} | {r['decided']} | {r['robust']} "
                     f"| {r['refuted']} | {r['unknown']} | {fmt(r['seconds_median'])} | {fmt(r['seconds_p95'])} "
                     f"| {fmt(r['seconds_mean'])} |")
    return "\n".join(lines)


def cmd_solvers(args):
    import tensorflow as tf  # noqa: PLC0415

    import edgebnn.zoo  # noqa: F401, PLC0415 (registers VerifiableModel for loading)
    from edgebnn.certify.network import extract  # noqa: PLC0415

    _, _, xt, yt, _ = data.carve("mnist", "test", **MNIST_CARVE)
    model = tf.keras.models.load_model(args.model, compile=False)
    net = extract(model)
    x, y = xt[: args.n], yt[: args.n]
    results = [compare(net, x, y, eps=eps, time_limit=args.time_limit, names=args.solvers) for eps in args.eps]
    _io.write_json(args.out, {"model": str(args.model), "results": results})
    text = "\n\n".join(solvers_markdown(r) for r in results)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)


#: The training ingredients, switched on cumulatively in this order by ``ablation``.
INGREDIENTS = ("one_bit_input", "ternary", "adversarial", "stability")
#: Cumulative ablation rows: name -> ingredients on.
ABLATION = {
    "baseline (binary, 2-bit input)": (),
    "+ 1-bit input": ("one_bit_input",),
    "+ ternary weights": ("one_bit_input", "ternary"),
    "+ PGD adversarial training": ("one_bit_input", "ternary", "adversarial"),
    "+ stability loss (all)": ("one_bit_input", "ternary", "adversarial", "stability"),
    "all but adversarial": ("one_bit_input", "ternary", "stability"),
}


def train_model(ingredients, *, architecture, x, y, epochs, train_eps, stability_weight, adv_steps, seed=0):
    """Build and train the ``eev_bnn`` network with the given ingredients; returns the (unwrapped) model."""
    from edgebnn.training import AdversarialModel, compile_for_classification, train  # noqa: PLC0415
    from edgebnn.zoo import eev  # noqa: PLC0415

    import tensorflow as tf  # noqa: PLC0415

    tf.keras.utils.set_random_seed(seed)
    model = eev.build_verifiable(
        architecture=architecture, precision="ternary" if "ternary" in ingredients else "binary",
        input_bits=1 if "one_bit_input" in ingredients else 2,
        stability_eps=train_eps, stability_weight=stability_weight if "stability" in ingredients else 0.0)
    fit_model = model
    if "adversarial" in ingredients:
        fit_model = AdversarialModel(model, method="pgd", eps=train_eps, steps=adv_steps, fraction=0.5)
    compile_for_classification(fit_model)
    train(fit_model, x, y, epochs=epochs, batch_size=128, seed=seed, verbose=0)
    return model


def certify_summary(net, x, y, *, eps, time_limit, solver):
    records = exact.certify_net(net, x, y, eps=eps, time_limit=time_limit, solver=solver)
    status = [r["status"] for r in records]
    seconds = [r["seconds"] for r in records]
    unstable = [sum(r["unstable"]) for r in records if r["unstable"] is not None]
    return {"eps": eps, "n": len(records), "certified": status.count("robust") / len(records),
            "unknown": status.count("unknown") / len(records), "not_robust": status.count("not_robust") / len(records),
            "seconds_mean": float(np.mean(seconds)), "seconds_median": _quantile(seconds, 0.5),
            "seconds_p95": _quantile(seconds, 0.95), "unstable_mean": float(np.mean(unstable)) if unstable else 0.0,
            "sources": {s: [r["source"] for r in records].count(s) for s in exact.SOURCES}}


def cmd_ablation(args):
    import tensorflow as tf  # noqa: PLC0415

    from edgebnn.certify.network import extract  # noqa: PLC0415

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    x, y, xt, yt, _ = data.carve("mnist", "test", **MNIST_CARVE)
    path = args.out / "ablation.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    for name, ingredients in ABLATION.items():
        if args.only and name not in args.only:
            continue
        if name in rows:
            continue
        start = time.perf_counter()
        model = train_model(ingredients, architecture=args.architecture, x=x, y=y, epochs=args.epochs,
                            train_eps=args.train_eps, stability_weight=args.stability_weight,
                            adv_steps=args.adv_steps)
        train_seconds = time.perf_counter() - start
        model.save(args.out / f"model_{len(rows)}.keras")  # for the solver comparison (not committed)
        clean = float(np.mean(model.predict(xt, verbose=0).argmax(-1) == yt))
        net = extract(model)
        results = [certify_summary(net, xt[: args.n], yt[: args.n], eps=eps, time_limit=args.time_limit,
                                   solver=args.solver) for eps in args.eps]
        rows[name] = {"ingredients": list(ingredients), "clean_accuracy": clean, "train_seconds": train_seconds,
                      "solver": args.solver, "solver_version": solvers.version(args.solver),
                      "time_limit": args.time_limit, "results": results}
        _io.write_json(path, rows)
        print(f"{name}: clean {clean:.4f}; " + "; ".join(
            f"eps {r['eps']:g} certified {r['certified']:.3f} unknown {r['unknown']:.3f} "
            f"mean {r['seconds_mean']:.3f}s" for r in results), flush=True)
    (args.out / "ablation.md").write_text(ablation_markdown(rows) + "\n")
    print(ablation_markdown(rows))


def ablation_markdown(rows):
    eps_list = sorted({r["eps"] for row in rows.values() for r in row["results"]})
    head = "| training | clean | " + " | ".join(
        f"eps {e:g} certified / unknown / unstable neurons / mean s" for e in eps_list) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(eps_list)]
    for name, row in rows.items():
        cells = []
        for e in eps_list:
            r = next((r for r in row["results"] if r["eps"] == e), None)
            cells.append("n/a" if r is None else f"{100 * r['certified']:.1f}% / {100 * r['unknown']:.1f}% / "
                         f"{r['unstable_mean']:.1f} / {r['seconds_mean']:.3f}")
        lines.append(f"| {name} | {100 * row['clean_accuracy']:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solvers", help="compare the solver backends on the same examples")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--eps", type=float, nargs="+", default=[0.1])
    p.add_argument("--time-limit", type=float, default=2.0)
    p.add_argument("--solvers", nargs="+", default=["milp", "minicard", "gluecard4", "cpsat", "sat", BRANCH])
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("ablation", help="train with each ingredient and certify")
    p.add_argument("--architecture", choices=["mlp", "conv_small"], default="mlp")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--train-eps", type=float, default=0.1)
    p.add_argument("--adv-steps", type=int, default=10)
    p.add_argument("--stability-weight", type=float, default=1.0)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.3])
    p.add_argument("--time-limit", type=float, default=1.0)
    p.add_argument("--solver", default="minicard")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="ablation rows to run (default: all)")
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "ablation":
        args.out.mkdir(parents=True, exist_ok=True)
    {"solvers": cmd_solvers, "ablation": cmd_ablation}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
