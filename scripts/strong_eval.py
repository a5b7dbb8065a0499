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
import os
import time
from pathlib import Path

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import _io, data, zoo
from edgebnn.evaluation import masking
from edgebnn.recipes.store import Store
from edgebnn.training import train

MODELS = (("float", 2), ("float", 8), ("binary", 2), ("binary", 8))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("EDGEBNN_DATA_DIR", "../shared/data"))
    parser.add_argument("--cache-dir", default="runs/strong_eval")
    parser.add_argument("--out-dir", default="runs/strong_eval")
    parser.add_argument("--train-limit", type=int, default=None, help="training images (default: all 60,000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000)
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
    parser.add_argument("--models", default="all", help="comma list like float-2,binary-8, or all")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def trained_model(precision, bits, args, *, seed=None):
    seed = args.seed if seed is None else seed
    model = zoo.get("panda_fcn2")(precision=precision, input_bits=bits)
    payload = {"family": "panda_fcn2", "precision": precision, "input_bits": bits, "data": "fashion_mnist/train",
               "train_limit": args.train_limit, "data_seed": args.seed, "epochs": args.epochs, "batch_size": 64,
               "seed": seed}

    def train_fn(m):
        x, y = data.load("fashion_mnist", "train", data_dir=args.data_dir, limit=args.train_limit, seed=args.seed)
        train(m, x, y, epochs=args.epochs, batch_size=64, seed=seed, verbose=0)

    Store(None, cache=args.cache_dir).trained_weights(model, payload, train_fn)
    return model


def main(argv=None):
    args = parse_args(argv)
    eps_list = [float(e) for e in args.eps.split(",")]
    surrogates = args.surrogates.split(",")
    selected = MODELS if args.models == "all" else tuple(
        (p, int(b)) for p, b in (item.split("-") for item in args.models.split(","))
    )
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
    for precision, bits in selected:
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
            log=lambda m, name=name: log(f"{name}: {m}"),
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
