"""The AutoAttack ensemble's first call in a fresh process against a warm call of the same work.

A child process trains the binary Panda FCN2 briefly, then times ``run_autoattack`` on the
same images several times: the first call traces and optimizes the graph of every stage it
runs (one per stage and surrogate). A stage runs only while examples survive the stages
before it, and each call draws fresh random starts, so a later call may run a stage the
first did not and trace it then. The warm call is therefore the first later call that runs
no stage which no earlier call ran (every graph it needs was traced before it); when none of
the later calls is such a call, the comparison is reported as not made.

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
#: Calls after the first, at most, to find a warm one (see the module docstring).
LATER_CALLS = 3


def _settings(quick):
    return types.SimpleNamespace(data_dir=DATA_DIR, train_limit=500 if quick else 3000, epochs=1, n=20 if quick else 100,
                                 seed=0, eps=0.1, steps=5 if quick else 100, square_queries=20 if quick else 1000)


def measure(quick):
    """In this (fresh) process: ``{first_s, warm_s, robust_first, robust_warm, ...}``."""
    from benchmarks.common import trained_fcn2  # noqa: PLC0415
    from edgebnn.attacks import run_autoattack  # noqa: PLC0415

    s = _settings(quick)
    model, xt, yt, clean = trained_fcn2(s, precision="binary")
    calls, traced = [], set()
    for _ in range(1 + LATER_CALLS):
        start = time.perf_counter()
        result = run_autoattack(model, xt, yt, eps=s.eps, steps=s.steps, square_queries=s.square_queries)
        seconds = time.perf_counter() - start
        ran = [f"{row['attack']}/{row['surrogate']}" if row["surrogate"] else row["attack"]
               for row in result.breakdown if row["attacked"]]
        calls.append(dict(seconds=seconds, robust=result.robust_accuracy, stages=ran, warm=len(calls) > 0
                          and set(ran) <= traced))
        traced |= set(ran)
        if calls[-1]["warm"]:
            break
    return dict(calls=calls, clean=clean, **{k: v for k, v in vars(s).items() if k != "data_dir"})


def run(*, quick=False):
    """The benchmark at its defaults (tiny sizes with ``quick``), measured in a child process."""
    r = child("benchmarks.ensemble", "--child", *(["--quick"] if quick else []))
    first, warm = r["calls"][0], next((c for c in r["calls"] if c["warm"]), None)
    ratio = first["seconds"] / warm["seconds"] if warm else None
    figures = [Figure("AutoAttack ensemble, first call / warm call", ratio, first["seconds"], warm["seconds"], "s",
                      f"fresh process, binary FCN2, {r['n']} images; target <= {TARGET_RATIO}x")] if warm else []
    verdict = (f"First / warm: {ratio:.2f}x; target <= {TARGET_RATIO}x: {'met' if ratio <= TARGET_RATIO else 'NOT met'}."
               if warm else f"No later call ran only stages traced before it: first / warm not measured "
                            f"(target <= {TARGET_RATIO}x).")
    details = "\n".join([
        f"`run_autoattack` (APGD-CE and APGD-T with 3 surrogates each, then Square; a stage runs only on the "
        f"examples the stages before it left correct) on {r['n']} Fashion-MNIST test images, L-inf eps={r['eps']}, "
        f"{r['steps']} APGD steps, {r['square_queries']} Square queries, binary Panda FCN2 trained {r['epochs']} "
        f"epoch on {r['train_limit']} images (clean accuracy {r['clean']:.3f}), in a fresh child process. The first "
        "call traces the graph of every stage it runs; the warm call is the first later call that runs no stage "
        "no earlier call ran (each call draws its own random starts, so the stages that run can differ).", "",
        "| call | seconds | robust accuracy | stages run | warm |", "|---|---:|---:|---|---|",
        *(f"| {i + 1} | {c['seconds']:.1f} | {c['robust']:.1%} | {', '.join(c['stages']) or '-'} | "
          f"{'yes' if c['warm'] else 'no'} |" for i, c in enumerate(r["calls"])), "",
        verdict,
    ])
    return Result("AutoAttack ensemble: first call against a warm call", figures, details)


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
