"""Compare solving strategies of the exact certifier on the same examples, one after the other in one process.

Thin driver over :func:`edgebnn.certify.exact.certify_net`: the model is loaded, PGD
runs once per eps (its outputs are the hints, as in :func:`edgebnn.certify.certify_report`),
and every strategy decides the examples the attack did not break.

Example:
    python scripts/certify_strategies.py --model /work/notes/certify/fashion_mnist/model.keras \
        --dataset fashion_mnist --n 100 --eps 0.05 --time-limit 10 --out /work/notes/certify2/strategies.json
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import edgebnn  # noqa: F401
from edgebnn import _io
from edgebnn.certify import exact
from edgebnn.certify.network import extract
from edgebnn.certify.report import DEFAULT_ATTACK
from edgebnn.evaluation.robustness import craft, predict_labels

import tensorflow as tf

#: name -> certify_net options.
STRATEGIES = {
    "baseline": {"search_steps": 0, "split_rivals": False},
    "split": {"search_steps": 0, "split_rivals": True},
    "search": {"search_steps": exact.SEARCH_STEPS, "split_rivals": False},
    "search+split": {"search_steps": exact.SEARCH_STEPS, "split_rivals": True},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dataset", choices=["fashion_mnist", "mnist_split"], required=True)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.05])
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from certify_fcn import load  # noqa: PLC0415

    _, _, xt, yt = load(args.dataset, args.seed)
    subset = np.sort(np.random.default_rng(args.seed).permutation(len(xt))[: args.n])
    x, y = xt[subset], yt[subset].astype(np.int64)
    model = tf.keras.models.load_model(args.model)
    net = extract(model)
    out = {"model": str(args.model), "dataset": args.dataset, "n": args.n, "time_limit": args.time_limit, "eps": {}}
    for eps in args.eps:
        x_adv = craft(model, x, y, eps=eps, **DEFAULT_ATTACK)
        keep = np.flatnonzero(predict_labels(model, x_adv) == y)
        runs = {}
        for name in args.strategies:
            start = time.perf_counter()
            records = exact.certify_net(net, x[keep], y[keep], eps=eps, time_limit=args.time_limit,
                                        hints=x_adv[keep], **STRATEGIES[name])
            statuses = [r["status"] for r in records]
            runs[name] = {
                "counts": {s: statuses.count(s) for s in exact.STATUSES},
                "sources": {s: sum(r["source"] == s for r in records) for s in exact.SOURCES},
                "statuses": statuses,
                "seconds": [r["seconds"] for r in records],
                "wall": time.perf_counter() - start,
            }
            print(f"eps={eps:g} {name}: {runs[name]['counts']} sources {runs[name]['sources']} "
                  f"wall {runs[name]['wall']:.0f}s", flush=True)
        decided = [{runs[n]["statuses"][i] for n in runs} - {"unknown"} for i in range(len(keep))]
        out["eps"][str(eps)] = {"attack_survivors": len(keep), "indices": subset[keep].tolist(), "runs": runs,
                                "disagreements": sum(len(d) > 1 for d in decided)}
        print(f"eps={eps:g}: {len(keep)} attack survivors, disagreements {out['eps'][str(eps)]['disagreements']}")
    _io.write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
