"""APGD-CE throughput against edgebnn's PGD at equal iterations, and Square's queries per second.

Same model (Panda FCN2, ``--precision``, trained briefly on a seeded Fashion-MNIST subset),
same test images and labels, both attacks compiled through ``craft`` with the same batch
size and ``--steps`` iterations (APGD spends one more gradient on its starting point).
Runs are interleaved path by path after one warm-up (tracing) each, so that load from
other processes hits every path alike; the ratio uses the best runs, measured in this
one process.

Square's rate counts the queries it reports spending per example (an example stops
spending once it is adversarial), divided by wall time, and the forward passes of the
batch per second.

Usage:
    PYTHONPATH=. python scripts/bench_apgd.py [--n 500] [--steps 100] [--repeats 3]
"""

import argparse
import os
import time

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import attacks, data, zoo
from edgebnn.evaluation.robustness import craft, predict_labels
from edgebnn.training import train

#: APGD-CE must keep at least this fraction of PGD's throughput at equal iterations.
TARGET_RATIO = 0.9


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("EDGEBNN_DATA_DIR", "../shared/data"))
    parser.add_argument("--train-limit", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", default="float", choices=["float", "binary"])
    parser.add_argument("--input-bits", type=int, default=None)
    parser.add_argument("--n", type=int, default=500, help="test images attacked")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--square-queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    x, y = data.load("fashion_mnist", "train", data_dir=args.data_dir, limit=args.train_limit, seed=args.seed)
    xt, yt = data.load("fashion_mnist", "test", data_dir=args.data_dir, limit=args.n, seed=args.seed)
    model = zoo.get("panda_fcn2")(precision=args.precision, input_bits=args.input_bits)
    train(model, x, y, epochs=args.epochs, seed=args.seed, verbose=0)
    clean = float(np.mean(predict_labels(model, xt) == yt))

    paths = {
        f"PGD-{args.steps}": dict(attack="pgd", steps=args.steps),
        f"APGD-CE-{args.steps}": dict(attack="apgd", steps=args.steps, loss="ce"),
    }

    def run(options, xs, ys):
        return craft(model, xs, ys, eps=args.eps, batch_size=args.batch_size, **options)

    for options in paths.values():  # warm-up: trace once per path
        run(options, xt[: args.batch_size], yt[: args.batch_size])
    speeds, outputs = {name: [] for name in paths}, {}
    for _ in range(args.repeats):
        for name, options in paths.items():
            start = time.perf_counter()
            outputs[name] = run(options, xt, yt)
            speeds[name].append(len(xt) / (time.perf_counter() - start))

    # Square: per batch, the queries it reports spending.
    def square_once():
        used, passes = 0.0, 0
        start = time.perf_counter()
        for i in range(0, len(xt), args.batch_size):
            _, spent = attacks.square_with_queries(
                model, xt[i : i + args.batch_size], eps=args.eps, queries=args.square_queries, y=yt[i : i + args.batch_size],
            )
            spent = np.asarray(spent)
            used += float(spent.sum())
            passes += int(spent.max())  # the batch runs as long as its slowest example
        return used, passes, time.perf_counter() - start

    square_once()  # warm-up
    square_runs = [square_once() for _ in range(args.repeats)]

    print(f"L-inf eps={args.eps}, {args.precision} FCN2 (input bits {args.input_bits}) trained {args.epochs} epochs on "
          f"{args.train_limit} Fashion-MNIST images; {args.n} test images (clean accuracy {clean:.3f}), batch "
          f"{args.batch_size}, {args.repeats} interleaved timed runs per path after a warm-up.\n")
    print("| attack | images/s (best) | images/s (median) | adversarial accuracy |")
    print("|---|---:|---:|---:|")
    for name in paths:
        acc = float(np.mean(predict_labels(model, outputs[name]) == yt))
        print(f"| {name} | {max(speeds[name]):.1f} | {np.median(speeds[name]):.1f} | {100 * acc:.1f}% |")
    pgd_name, apgd_name = paths
    ratio = max(speeds[apgd_name]) / max(speeds[pgd_name])
    median_ratio = np.median(speeds[apgd_name]) / np.median(speeds[pgd_name])
    print(f"\nAPGD-CE / PGD throughput at {args.steps} iterations: {ratio:.2f}x (best runs; median {median_ratio:.2f}x); "
          f"target >= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}.")
    best = min(square_runs, key=lambda r: r[2])
    print(f"\nSquare (budget {args.square_queries} queries): {best[0]:.0f} example-queries in {best[2]:.1f} s = "
          f"{best[0] / best[2]:.0f} queries/s (best of {args.repeats}); {best[1] / best[2]:.1f} batch forward passes/s "
          f"(batch {args.batch_size}).")


if __name__ == "__main__":
    main()
