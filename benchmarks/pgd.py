"""PGD throughput: edgebnn's compiled attack path versus CleverHans' eager PGD.

Same model (float Panda FCN2 trained briefly on a seeded Fashion-MNIST subset), same
test images and labels, same PGD settings. Without random start (the default) both
attacks start from the clean input, so they are deterministic and must reach the same
adversarial accuracy; ``--rand-init`` compares the random-start (Madry) setting.

Usage (alone; ``python -m benchmarks`` runs it with the defaults of :func:`run`):
    PYTHONPATH=. python -m benchmarks.pgd [--n 500] [--batch-size 100] [--repeats 5]
"""

import argparse
import types

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from benchmarks.common import DATA_DIR, Figure, Result, trained_fcn2
from edgebnn.deploy.latency import interleaved
from edgebnn.evaluation.robustness import craft, predict_labels

from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
import tensorflow as tf


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


PATHS = {
    "edgebnn `craft(attack=\"pgd\")` (tf.function)": ours,
    "edgebnn `craft(attack=\"pgd\", jit_compile=True)` (XLA)": ours_xla,
    "CleverHans `projected_gradient_descent` (eager)": cleverhans_eager,
}


def measure(args):
    """Markdown table and ``{path: (best images/s, median images/s, adversarial accuracy)}``."""
    model, xt, yt, clean = trained_fcn2(args)
    for fn in PATHS.values():  # warm-up: tracing
        fn(model, xt[: args.batch_size], yt[: args.batch_size], args)
    outputs = {}

    def path(name, fn):
        return lambda: outputs.__setitem__(name, fn(model, xt, yt, args))

    seconds = interleaved({name: path(name, fn) for name, fn in PATHS.items()}, args.repeats)
    rows = {}
    for name in PATHS:
        speeds = [len(xt) / s for s in seconds[name]]
        acc = float(np.mean(predict_labels(model, outputs[name]) == yt))
        rows[name] = (max(speeds), float(np.median(speeds)), acc, float(np.abs(outputs[name] - xt).max()))
    lines = [
        f"PGD-{args.steps}, L-inf eps={args.eps}, step={args.step_size}, rand_init={args.rand_init}, float FCN2 "
        f"trained {args.epochs} epochs on {args.train_limit} Fashion-MNIST images; {args.n} test images (clean "
        f"accuracy {clean:.3f}), batch {args.batch_size}, {args.repeats} interleaved timed runs per path after a "
        "warm-up.", "",
        "| attack path | images/s (best) | images/s (median) | adversarial accuracy | max L-inf |",
        "|---|---:|---:|---:|---:|",
        *(f"| {name} | {b:.1f} | {m:.1f} | {100 * a:.1f}% | {li:.4f} |" for name, (b, m, a, li) in rows.items()),
    ]
    return "\n".join(lines), rows


def run(*, quick=False):
    """The benchmark at :func:`main`'s defaults (tiny sizes with ``quick``)."""
    args = types.SimpleNamespace(
        data_dir=DATA_DIR, train_limit=500 if quick else 5000, epochs=1 if quick else 2, n=20 if quick else 300,
        batch_size=20 if quick else 100, eps=0.1, steps=5 if quick else 40, step_size=0.01,
        repeats=1 if quick else 3, rand_init=False, seed=0,
    )
    table, rows = measure(args)
    ch = rows["CleverHans `projected_gradient_descent` (eager)"]
    figures = []
    for name, label in list(zip(PATHS, ("tf.function", "XLA")))[:2]:
        ours_row = rows[name]
        figures.append(Figure(
            f"PGD-{args.steps} throughput, edgebnn ({label}) / CleverHans", ours_row[1] / ch[1], ours_row[1], ch[1],
            "images/s (median)", f"same model and images; adversarial accuracy {100 * ours_row[2]:.1f}% vs "
                                 f"{100 * ch[2]:.1f}% (CleverHans)"))
    return Result("PGD throughput against CleverHans", figures, table)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=DATA_DIR)
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
    table, rows = measure(parser.parse_args())
    print(table)
    reference = rows["CleverHans `projected_gradient_descent` (eager)"]
    for name, (best, median, acc, _) in list(rows.items())[:-1]:
        print(f"\n{name} vs CleverHans: speed-up {best / reference[0]:.2f}x (best runs; median "
              f"{median / reference[1]:.2f}x), adversarial-accuracy gap {abs(acc - reference[2]) * 100:.2f} points.")


if __name__ == "__main__":
    main()
