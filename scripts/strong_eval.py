"""Strong robustness numbers for Panda et al.'s FCN2 on Fashion-MNIST, with every masking check.

Four models (float / binary x 2-bit / 8-bit input), trained ``--epochs`` on Fashion-MNIST
(weights cached in ``--cache-dir``), evaluated on the first ``--n`` seeded test images at
every ``--eps`` with :func:`edgebnn.evaluation.masking.robustness_report`: FGSM, PGD-40,
PGD-``--steps`` x ``--restarts``, APGD-CE and APGD-T per gradient surrogate, Square
(``--square-queries``), optionally SPSA, a substitute model and transfer from a separately
trained float model, the AutoAttack ensemble per surrogate and over all of them, and the
masking checks. Then :func:`~edgebnn.evaluation.masking.discretization_claims`: which
gains of 2-bit over 8-bit input survive the ensemble.

Usage:
    PYTHONPATH=. python scripts/strong_eval.py [--n 1000] [--square-queries 5000] --out-dir DIR
"""

import argparse
import json
import time
from pathlib import Path

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import _io, data
from edgebnn.evaluation import masking

import _fcn2  # scripts/ is on sys.path when a script runs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _fcn2.add_options(parser, cache_dir="runs/strong_eval", train_limit=None, n=1000,
                      train_limit_help="training images (default: all 60,000)")
    parser.add_argument("--out-dir", default="runs/strong_eval")
    parser.add_argument("--eps", default="0.05,0.1,0.2")
    parser.add_argument("--surrogates", default=",".join(masking.DEFAULT_SURROGATES))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pgd-steps", type=int, default=40)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--target-classes", type=int, default=9)
    parser.add_argument("--square-queries", type=int, default=5000)
    parser.add_argument("--spsa", action="store_true", help="add SPSA (L-inf) to the black-box attacks")
    parser.add_argument("--spsa-steps", type=int, default=50)
    parser.add_argument("--spsa-samples", type=int, default=32)
    parser.add_argument("--spsa-delta", type=float, default=0.05)
    parser.add_argument("--substitute", action="store_true",
                        help="add a substitute-model transfer attack (trained on --holdout test images after the attacked ones)")
    parser.add_argument("--holdout", type=int, default=150)
    parser.add_argument("--transfer", action="store_true",
                        help="add transfer from a separately trained float FCN2 (8-bit input, seed --seed + 1)")
    parser.add_argument("--batch-size", type=int, default=500)
    return parser.parse_args(argv)


def trained_model(precision, bits, args, *, seed=None):
    """FCN2 trained (or loaded) on the ``--train-limit`` seeded training images; the data seed is part of the key."""

    def train_data():
        return data.load("fashion_mnist", "train", data_dir=args.data_dir, limit=args.train_limit, seed=args.seed)

    return _fcn2.trained_model(precision, bits, args, train_data, seed=seed, key={"data_seed": args.seed})


def main(argv=None):
    args = parse_args(argv)
    eps_list = [float(e) for e in args.eps.split(",")]
    surrogates = args.surrogates.split(",")
    holdout = args.holdout if args.substitute else 0
    xt, yt = data.load("fashion_mnist", "test", data_dir=args.data_dir, limit=args.n + holdout, seed=args.seed)
    x_holdout, xt, yt = xt[args.n :], xt[: args.n], yt[: args.n]  # the attacker's own images are disjoint
    spsa = dict(steps=args.spsa_steps, num_samples=args.spsa_samples, delta=args.spsa_delta) if args.spsa else None
    substitute = dict(x_holdout=x_holdout, seed=args.seed) if args.substitute else None
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    transfer = {f"float-8-seed{args.seed + 1}": trained_model("float", 8, args, seed=args.seed + 1)} if args.transfer else None

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    reports = {}
    for precision, bits in args.models:
        name = f"{precision}-{bits}"
        path = out / f"report_{name}.json"
        if path.exists():
            reports[name] = json.loads(path.read_text())
            log(f"{name}: cached report {path}")
            print(masking.to_markdown(reports[name], title=f"FCN2 {precision}, {bits}-bit input"), flush=True)
            continue
        start = time.perf_counter()
        model = trained_model(precision, bits, args)
        log(f"{name}: model ready")
        report = masking.robustness_report(
            model, xt, yt, eps_list=eps_list, surrogates=surrogates, steps=args.steps, pgd_steps=args.pgd_steps,
            restarts=args.restarts, target_classes=args.target_classes, square_queries=args.square_queries,
            spsa_options=spsa, substitute_options=substitute, transfer_sources=transfer, batch_size=args.batch_size,
            progress=lambda label, done, total, name=name: log(f"{name}: {label} {done}/{total}"),
        )
        report["model"] = {"family": "panda_fcn2", "precision": precision, "input_bits": bits, "epochs": args.epochs}
        report["seconds"] = time.perf_counter() - start
        _io.write_json(path, report)
        reports[name] = report
        print(masking.to_markdown(report, title=f"FCN2 {precision}, {bits}-bit input"), flush=True)

    weak = f"pgd-{args.pgd_steps}/{surrogates[0]}"
    print(f"\n## Claims of input discretization (2-bit vs 8-bit input) under {weak} and under the ensemble\n")
    print("| model | eps | gain under " + weak + " | gain under ensemble | claimed | survives |")
    print("|---|---:|---:|---:|---|---|")
    for precision in ("float", "binary"):
        coarse, fine = reports.get(f"{precision}-2"), reports.get(f"{precision}-8")
        if coarse is None or fine is None:
            continue
        for row in masking.discretization_claims(coarse, fine, weak_attack=weak):
            print(f"| {precision} | {row['eps']:g} | {100 * row['weak_gain']:+.1f} | {100 * row['ensemble_gain']:+.1f} | "
                  f"{'yes' if row['claimed'] else 'no'} | {'yes' if row['survives'] else 'no'} |")


if __name__ == "__main__":
    main()
