"""``python -m benchmarks [--quick] [--only NAME ...] [--out BENCHMARKS.md]``: run every
benchmark of :data:`BENCHMARKS` in this process (memory figures in child processes) and
write the markdown page."""

import argparse
import importlib
import os
import sys
import time

from benchmarks.common import REPO, load_average, machine, render

#: name -> module of ``benchmarks`` with ``run(*, quick) -> Result``, in page order.
BENCHMARKS = {"peak": "benchmarks.peak", "pgd": "benchmarks.pgd", "apgd": "benchmarks.apgd",
              "ensemble": "benchmarks.ensemble", "training": "benchmarks.training", "deploy": "benchmarks.deploy",
              "memory": "benchmarks.memory"}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not figures to quote")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--out", default=os.fspath(REPO / "BENCHMARKS.md"), help="page to write")
    args = parser.parse_args(argv)
    import edgebnn  # noqa: F401, PLC0415  (Keras 2 before TensorFlow)
    from edgebnn import _io  # noqa: PLC0415

    start, load_before = time.perf_counter(), load_average()
    results = []
    for name in args.only or BENCHMARKS:
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        results.append(importlib.import_module(BENCHMARKS[name]).run(quick=args.quick))
    command = "python -m benchmarks" + (" --quick" if args.quick else "") + (
        f" --only {' '.join(args.only)}" if args.only else "")
    text = render(results, machine_info=machine(), load_before=load_before, load_after=load_average(),
                  command=command, seconds=time.perf_counter() - start)
    _io.write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
