"""APGD-CE throughput against edgebnn's PGD at equal iterations, and Square's query rate.

Same model (Panda FCN2, float by default, trained briefly on a seeded Fashion-MNIST
subset), same test images and labels, both attacks compiled through ``craft`` with the
same batch size and ``steps`` iterations (APGD spends one more gradient on its starting
point). The paths are timed interleaved after one warm-up (tracing) each; the ratio uses
the median runs of this one process.

Square's rate counts the queries it reports spending per example (an example stops
spending once it is adversarial), divided by wall time.

Usage (alone; ``python -m benchmarks`` runs it with the defaults of :func:`run`):
    PYTHONPATH=. python -m benchmarks.apgd [--n 500] [--steps 100] [--repeats 3]
"""

import argparse
import time
import types

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from benchmarks.common import DATA_DIR, Figure, Result, trained_fcn2
from edgebnn import attacks
from edgebnn.deploy.latency import interleaved
from edgebnn.evaluation.robustness import craft, predict_labels

#: APGD-CE should keep at least this fraction of PGD's throughput at equal iterations.
TARGET_RATIO = 1.0


def _square_once(model, xt, yt, args):
    """``(example-queries spent, seconds)`` of one Square run over the test images, batch by batch."""
    used, start = 0.0, time.perf_counter()
    for i in range(0, len(xt), args.batch_size):
        _, spent = attacks.square_with_queries(model, xt[i : i + args.batch_size], eps=args.eps,
                                               steps=args.square_queries, y=yt[i : i + args.batch_size])
        used += float(np.asarray(spent).sum())
    return used, time.perf_counter() - start


def measure(args):
    """Markdown details and ``(apgd / pgd ratio, apgd images/s, pgd images/s, square queries/s)``."""
    model, xt, yt, clean = trained_fcn2(args, precision=args.precision, input_bits=args.input_bits)
    paths = {f"PGD-{args.steps}": dict(attack="pgd", steps=args.steps),
             f"APGD-CE-{args.steps}": dict(attack="apgd", steps=args.steps, loss="ce")}
    outputs = {}

    def path(name, options):
        return lambda: outputs.__setitem__(
            name, craft(model, xt, yt, eps=args.eps, batch_size=args.batch_size, **options))

    for options in paths.values():  # warm-up: tracing
        craft(model, xt[: args.batch_size], yt[: args.batch_size], eps=args.eps, batch_size=args.batch_size, **options)
    seconds = interleaved({name: path(name, options) for name, options in paths.items()}, args.repeats)
    speed = {name: len(xt) / float(np.median(s)) for name, s in seconds.items()}
    _square_once(model, xt[: args.batch_size], yt[: args.batch_size], args)  # warm-up
    square = [_square_once(model, xt, yt, args) for _ in range(args.repeats)]
    square_rate = float(np.median([used / s for used, s in square]))
    pgd_name, apgd_name = paths
    ratio = speed[apgd_name] / speed[pgd_name]
    lines = [
        f"L-inf eps={args.eps}, {args.precision} FCN2 (input bits {args.input_bits}) trained {args.epochs} epochs on "
        f"{args.train_limit} Fashion-MNIST images; {args.n} test images (clean accuracy {clean:.3f}), batch "
        f"{args.batch_size}, median of {args.repeats} interleaved timed runs per path after a warm-up.", "",
        "| attack | images/s (median) | adversarial accuracy |", "|---|---:|---:|",
        *(f"| {name} | {speed[name]:.1f} | {100 * np.mean(predict_labels(model, outputs[name]) == yt):.1f}% |"
          for name in paths), "",
        f"APGD-CE / PGD throughput at {args.steps} iterations: {ratio:.2f}x; target >= {TARGET_RATIO}x: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}. Square (budget {args.square_queries} queries): "
        f"{square_rate:.0f} example-queries/s (median of {args.repeats}).",
    ]
    return "\n".join(lines), (ratio, speed[apgd_name], speed[pgd_name], square_rate)


def _defaults(quick=False):
    return types.SimpleNamespace(
        data_dir=DATA_DIR, train_limit=500 if quick else 5000, epochs=1 if quick else 2, precision="float",
        input_bits=None, n=20 if quick else 500, batch_size=20 if quick else 250, eps=0.1,
        steps=5 if quick else 100, square_queries=50 if quick else 1000, repeats=1 if quick else 3, seed=0,
    )


def run(*, quick=False):
    """The benchmark at its defaults (tiny sizes with ``quick``)."""
    details, (ratio, apgd_speed, pgd_speed, _) = measure(_defaults(quick))
    figure = Figure("APGD-CE / PGD throughput at equal iterations", ratio, apgd_speed, pgd_speed, "images/s (median)",
                    f"same model, images and batch; target >= {TARGET_RATIO}x")
    return Result("APGD-CE against PGD, and Square's query rate", [figure], details)


def main():
    defaults = vars(_defaults())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=defaults["data_dir"])
    for name in ("train_limit", "epochs", "n", "batch_size", "steps", "square_queries", "repeats", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=defaults[name])
    parser.add_argument("--input-bits", type=int, default=None)
    parser.add_argument("--eps", type=float, default=defaults["eps"])
    parser.add_argument("--precision", default="float", choices=["float", "binary"])
    print(measure(parser.parse_args())[0])


if __name__ == "__main__":
    main()
