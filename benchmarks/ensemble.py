"""The AutoAttack ensemble's first call in a fresh process against a warm call of the same work.

A child process trains the binary Panda FCN2 briefly, then times ``run_autoattack`` twice
on the same images: the first call traces and optimizes every attack graph (one per
stage and surrogate), the second reuses them. Both calls draw fresh random starts, so
their robust accuracies may differ by a few images.

Usage (alone; ``python -m benchmarks`` runs it with the defaults of :func:`run`):
    PYTHONPATH=. python -m benchmarks.ensemble [--quick]
"""

import argparse
import json
import time
import types

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from benchmarks.common import DATA_DIR, Figure, Result, child

#: The first call should take at most this multiple of a warm one.
TARGET_RATIO = 1.5


def _settings(quick):
    return types.SimpleNamespace(data_dir=DATA_DIR, train_limit=500 if quick else 3000, epochs=1, n=20 if quick else 100,
                                 seed=0, eps=0.1, steps=5 if quick else 100, square_queries=20 if quick else 1000)


def measure(quick):
    """In this (fresh) process: ``{first_s, warm_s, robust_first, robust_warm, ...}``."""
    from benchmarks.common import trained_fcn2  # noqa: PLC0415
    from edgebnn.attacks import run_autoattack  # noqa: PLC0415

    s = _settings(quick)
    model, xt, yt, clean = trained_fcn2(s, precision="binary")
    times, robust = [], []
    for _ in range(2):
        start = time.perf_counter()
        result = run_autoattack(model, xt, yt, eps=s.eps, steps=s.steps, square_queries=s.square_queries)
        times.append(time.perf_counter() - start)
        robust.append(result.robust_accuracy)
    return dict(first_s=times[0], warm_s=times[1], robust_first=robust[0], robust_warm=robust[1], clean=clean,
                **{k: v for k, v in vars(s).items() if k != "data_dir"})


def run(*, quick=False):
    """The benchmark at its defaults (tiny sizes with ``quick``), measured in a child process."""
    r = child("benchmarks.ensemble", "--child", *(["--quick"] if quick else []))
    ratio = r["first_s"] / r["warm_s"]
    figure = Figure("AutoAttack ensemble, first call / warm call", ratio, r["first_s"], r["warm_s"], "s",
                    f"fresh process, binary FCN2, {r['n']} images; target <= {TARGET_RATIO}x")
    details = "\n".join([
        f"`run_autoattack` (APGD-CE and APGD-T with 3 surrogates each, then Square) on {r['n']} Fashion-MNIST test "
        f"images, L-inf eps={r['eps']}, {r['steps']} APGD steps, {r['square_queries']} Square queries, binary Panda "
        f"FCN2 trained {r['epochs']} epoch on {r['train_limit']} images (clean accuracy {r['clean']:.3f}), in a fresh "
        "child process: the first call traces every attack graph, the second reuses them.", "",
        "| call | seconds | robust accuracy |", "|---|---:|---:|",
        f"| first | {r['first_s']:.1f} | {r['robust_first']:.1%} |",
        f"| warm | {r['warm_s']:.1f} | {r['robust_warm']:.1%} |", "",
        f"First / warm: {ratio:.2f}x; target <= {TARGET_RATIO}x: {'met' if ratio <= TARGET_RATIO else 'NOT met'}.",
    ])
    return Result("AutoAttack ensemble: first call against a warm call", [figure], details)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help="measure in this process and print JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.quick)))
    else:
        print(run(quick=args.quick).details)


if __name__ == "__main__":
    main()
