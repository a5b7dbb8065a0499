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

import edgebnn  # noqa: F401
from edgebnn import _io, data
from edgebnn.certify import exact, solvers

#: The MNIST carve of the recipes: 9,000 training and 1,000 test images out of the official test set.
MNIST_CARVE = {"train_size": 9000, "test_size": 1000, "seed": 0}


def _quantile(values, q):
    return None if not values else float(np.quantile(values, q))


def compare(net, x, y, *, eps, time_limit, names):
    """Per backend: answers, solver-reached examples, decided count, median / p95 seconds (TensorFlow-free)."""
    out = {"eps": eps, "time_limit": time_limit, "n": int(len(x)), "solvers": {}}
    for name in names:
        records = exact.certify_net(net, x, y, eps=eps, time_limit=time_limit, solver=name)
        reached = [r for r in records if r["source"] == "solver"]
        seconds = [r["seconds"] for r in reached]
        out["solvers"][name] = {
            "version": solvers.version(name),
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solvers", help="compare the solver backends on the same examples")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--eps", type=float, nargs="+", default=[0.1])
    p.add_argument("--time-limit", type=float, default=2.0)
    p.add_argument("--solvers", nargs="+", default=["milp", "minicard", "gluecard4", "cpsat", "sat"])
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    {"solvers": cmd_solvers}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
