"""PGD-40 throughput: edgebnn's compiled attack path versus CleverHans' eager PGD.

Same model (float Panda FCN2 trained briefly on a seeded Fashion-MNIST subset), same
test images and labels, same PGD settings. With ``--no-rand-init`` (the default) both
attacks start from the clean input, so they are deterministic and must reach the same
adversarial accuracy; ``--rand-init`` compares the random-start (Madry) setting.

Usage:
    PYTHONPATH=. python scripts/bench_pgd.py [--n 500] [--batch-size 100] [--repeats 3]

Prints a markdown table: images/s over ``--repeats`` timed runs per path, interleaved
between the paths, after one warm-up run (tracing) each; the speed-up uses the best runs.
"""

import argparse
import os
import time

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import data, zoo
from edgebnn.evaluation.robustness import craft, predict_labels
from edgebnn.training import train

from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
import tensorflow as tf


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("EDGEBNN_DATA_DIR", "../shared/data"))
    parser.add_argument("--train-limit", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n", type=int, default=500, help="test images attacked")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--step-size", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rand-init", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def ours(model, x, y, args, *, jit_compile=False):
    return craft(
        model, x, y, attack="pgd", eps=args.eps, steps=args.steps, step_size=args.step_size,
        rand_init=args.rand_init, batch_size=args.batch_size, jit_compile=jit_compile,
    )


def ours_xla(model, x, y, args):
    return ours(model, x, y, args, jit_compile=True)


def cleverhans_eager(model, x, y, args):
    out = []
    for i in range(0, len(x), args.batch_size):
        out.append(projected_gradient_descent(
            model, tf.constant(x[i : i + args.batch_size]), args.eps, args.step_size, args.steps, np.inf,
            clip_min=0.0, clip_max=1.0, y=tf.constant(y[i : i + args.batch_size]), rand_init=args.rand_init,
        ).numpy())
    return np.concatenate(out)


def timed(paths, model, x, y, args):
    """Throughputs (images/s) of every path: warm-up (tracing) first, then runs interleaved
    path by path so that load from other processes hits both paths alike."""
    for fn in paths.values():
        fn(model, x[: args.batch_size], y[: args.batch_size], args)
    speeds, outputs = {name: [] for name in paths}, {}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            outputs[name] = fn(model, x, y, args)
            speeds[name].append(len(x) / (time.perf_counter() - start))
    return speeds, outputs


def main():
    args = parse_args()
    x, y = data.load("fashion_mnist", "train", data_dir=args.data_dir, limit=args.train_limit, seed=args.seed)
    xt, yt = data.load("fashion_mnist", "test", data_dir=args.data_dir, limit=args.n, seed=args.seed)
    model = zoo.get("panda_fcn2")(precision="float")
    train(model, x, y, epochs=args.epochs, seed=args.seed, verbose=0)
    clean = float(np.mean(predict_labels(model, xt) == yt))
    paths = {
        "edgebnn `craft(attack=\"pgd\")` (tf.function)": ours,
        "edgebnn `craft(attack=\"pgd\", jit_compile=True)` (XLA)": ours_xla,
        "CleverHans `projected_gradient_descent` (eager)": cleverhans_eager,
    }
    speeds, outputs = timed(paths, model, xt, yt, args)
    rows = []
    for name in paths:
        acc = float(np.mean(predict_labels(model, outputs[name]) == yt))
        linf = float(np.abs(outputs[name] - xt).max())
        rows.append((name, max(speeds[name]), float(np.median(speeds[name])), acc, linf))
    print(f"PGD-{args.steps}, L-inf eps={args.eps}, step={args.step_size}, rand_init={args.rand_init}, "
          f"float FCN2 trained {args.epochs} epochs on {args.train_limit} Fashion-MNIST images; "
          f"{args.n} test images (clean accuracy {clean:.3f}), batch {args.batch_size}, {args.repeats} interleaved timed runs per path after a warm-up.\n")
    print("| attack path | images/s (best) | images/s (median) | adversarial accuracy | max L-inf |")
    print("|---|---:|---:|---:|---:|")
    for name, best, median, acc, linf in rows:
        print(f"| {name} | {best:.1f} | {median:.1f} | {100 * acc:.1f}% | {linf:.4f} |")
    reference = rows[-1]
    for name, best, median, acc, _ in rows[:-1]:
        speedup, gap = best / reference[1], abs(acc - reference[3]) * 100
        print(f"\n{name} vs CleverHans: speed-up {speedup:.2f}x (best runs; median {median / reference[2]:.2f}x), "
              f"adversarial-accuracy gap {gap:.2f} points ({'within' if gap <= 0.5 else 'NOT within'} 0.5; "
              f"{'no slower' if speedup >= 1 else 'SLOWER'}).")


if __name__ == "__main__":
    main()
