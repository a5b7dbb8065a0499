"""Accuracy of float and binary Panda FCN2 (2- and 8-bit input) under every attack.

Trains four models on a seeded Fashion-MNIST subset (weights cached in ``--cache-dir``,
not committed) and prints a markdown table of test accuracy under FGSM, R-FGSM, PGD-40,
MIM, CW-L2, SPSA, JSMA and the black-box substitute attack, followed by a gradient-masking
check: a model that looks robust to the white-box gradient attacks but not to the
gradient-free SPSA or the black-box substitute is masking its gradients.

Protocol (defaults): L-inf eps = 0.1 for every eps attack; labels are the true labels.
FGSM / R-FGSM / PGD-40 / MIM / substitute on ``--n`` test images; CW-L2, SPSA (one column per
probe size ``--spsa-deltas``; the masking check uses the strongest) and JSMA
(and PGD again, for the masking comparison) on the first ``--n-small`` of them. CW-L2 is
unbounded (minimal distortion); the table gives accuracy when only perturbations with
L2 <= ``--cw-budget`` count, and the median L2 of CW's successful examples. JSMA is
targeted at a random wrong class (seeded), gamma = 0.1, theta = +1. The substitute is a
2 x 200 MLP trained on 150 held-out test images (not among the attacked ones) labelled
by the target, 6 Jacobian-augmentation rounds of 10 epochs, lambda = 0.1 (Papernot et
al. 2017 as in Galloway et al. 2018), then FGSM at eps transferred to the target.

Usage:
    PYTHONPATH=. python scripts/attack_table.py [--train-limit 10000] [--epochs 3] [--n 500]
"""

import argparse
import time

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import attacks, data
from edgebnn.evaluation import masking
from edgebnn.evaluation.metrics import accuracy_within_l2, median_l2_of_successes, targets_for
from edgebnn.evaluation.robustness import craft, predict_labels

import _fcn2  # scripts/ is on sys.path when a script runs

#: Accuracy gap (points) beyond which a gradient-free / black-box attack beating the
#: white-box attacks is reported as gradient masking.
MASKING_MARGIN = 100 * masking.MARGIN


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _fcn2.add_options(parser, cache_dir="runs/attack_table", train_limit=10000, n=500)
    parser.add_argument("--n-small", type=int, default=100)
    parser.add_argument("--holdout", type=int, default=150)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--cw-budget", type=float, default=1.5)
    parser.add_argument("--cw-iterations", type=int, default=100)
    parser.add_argument("--spsa-steps", type=int, default=100)
    parser.add_argument("--spsa-samples", type=int, default=64)
    parser.add_argument("--spsa-deltas", default="0.01,0.05",
                        help="finite-difference probe sizes; one SPSA column each (0.01: Uesato et al.)")
    return parser.parse_args()


def spsa_deltas(args):
    return [float(d) for d in args.spsa_deltas.split(",")]


def accuracy(model, x, y):
    return 100.0 * float(np.mean(predict_labels(model, x) == y))


def evaluate(model, xt, yt, holdout, args, log):
    n_small = args.n_small
    xs, ys = xt[:n_small], yt[:n_small]
    eps = args.eps
    row = {"clean": accuracy(model, xt, yt), "clean_small": accuracy(model, xs, ys)}

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        log(f"    {name}: {time.perf_counter() - start:.0f}s")
        return value

    row["fgsm"] = timed("fgsm", lambda: accuracy(model, craft(model, xt, yt, attack="fgsm", eps=eps), yt))
    row["rfgsm"] = timed("rfgsm", lambda: accuracy(model, craft(model, xt, yt, attack="rfgsm", eps=eps), yt))
    x_pgd = timed("pgd", lambda: craft(model, xt, yt, attack="pgd", eps=eps, steps=40))
    row["pgd"], row["pgd_small"] = accuracy(model, x_pgd, yt), accuracy(model, x_pgd[:n_small], ys)
    row["mim"] = timed("mim", lambda: accuracy(model, craft(model, xt, yt, attack="mim", eps=eps, steps=10), yt))

    x_cw = timed("cw", lambda: craft(model, xs, ys, attack="cw_l2", eps=None, steps=args.cw_iterations, binary_search_steps=5))
    pred_cw, pred_clean = predict_labels(model, x_cw), predict_labels(model, xs)
    row["cw"] = 100.0 * accuracy_within_l2(x=xs, x_adv=x_cw, y=ys, clean_pred=pred_clean, adv_pred=pred_cw,
                                           budget=args.cw_budget)
    row["cw_median_l2"] = median_l2_of_successes(x=xs, x_adv=x_cw, y=ys, adv_pred=pred_cw)

    for delta in spsa_deltas(args):
        row[f"spsa_{delta}"] = timed(f"spsa delta={delta}", lambda: accuracy(model, craft(
            model, xs, ys, attack="spsa", eps=eps, steps=args.spsa_steps, num_samples=args.spsa_samples,
            delta=delta, batch_size=50), ys))
    row["spsa"] = min(row[f"spsa_{delta}"] for delta in spsa_deltas(args))

    rng = np.random.default_rng(args.seed)
    _, targets = targets_for(ys, mode="random", num_classes=10, rng=rng)
    x_jsma = timed("jsma", lambda: np.concatenate([
        np.asarray(attacks.jsma(model, xs[i : i + 20], y=targets[i : i + 20], targeted=True, gamma=0.1))
        for i in range(0, len(xs), 20)
    ]))
    pred_jsma = predict_labels(model, x_jsma)
    row["jsma"] = 100.0 * float(np.mean(pred_jsma == ys))
    row["jsma_success"] = 100.0 * float(np.mean(pred_jsma == targets))

    x_sub = timed("substitute", lambda: attacks.substitute(model, xt, eps=eps, x_holdout=holdout, y=yt, seed=args.seed))
    row["substitute"] = accuracy(model, x_sub, yt)
    return row


def main():
    args = parse_args()
    x, y = data.load("fashion_mnist", "train", data_dir=args.data_dir, limit=args.train_limit, seed=args.seed)
    xt_all, yt_all = data.load("fashion_mnist", "test", data_dir=args.data_dir, limit=args.n + args.holdout, seed=args.seed)
    xt, yt = xt_all[: args.n], yt_all[: args.n]
    holdout = xt_all[args.n : args.n + args.holdout]  # the attacker's own images, disjoint from xt

    def log(message):
        print(message, flush=True)

    rows = {}
    for precision, bits in args.models:
        start = time.perf_counter()
        model = _fcn2.trained_model(precision, bits, args, lambda: (x, y))
        log(f"{precision} FCN2, {bits}-bit input: ready in {time.perf_counter() - start:.0f}s")
        rows[(precision, bits)] = evaluate(model, xt, yt, holdout, args, log)

    n, ns = args.n, args.n_small
    print(
        f"\nPanda FCN2 on Fashion-MNIST: trained {args.epochs} epochs on {args.train_limit} training images "
        f"(seed {args.seed}); test accuracy in %, L-inf eps = {args.eps}, true labels.\n"
        f"Columns marked [{ns}] use the first {ns} of the {n} test images; the others use all {n}.\n"
    )
    header = [
        "model", f"clean [{n}]", "FGSM", "R-FGSM", "PGD-40", "MIM-10", f"PGD-40 [{ns}]",
        f"CW-L2, L2<={args.cw_budget} [{ns}]", f"CW median L2 [{ns}]",
        *[f"SPSA δ={d} [{ns}]" for d in spsa_deltas(args)],
        f"JSMA [{ns}] (target hit)", "substitute",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (precision, bits), r in rows.items():
        cells = [
            f"{precision}, {bits}-bit input", f"{r['clean']:.1f}", f"{r['fgsm']:.1f}", f"{r['rfgsm']:.1f}",
            f"{r['pgd']:.1f}", f"{r['mim']:.1f}", f"{r['pgd_small']:.1f}", f"{r['cw']:.1f}",
            f"{r['cw_median_l2']:.2f}", *[f"{r[f'spsa_{d}']:.1f}" for d in spsa_deltas(args)], f"{r['jsma']:.1f} ({r['jsma_success']:.0f})",
            f"{r['substitute']:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")

    print("\nGradient-masking check (edgebnn.evaluation.masking.check_whitebox_vs_blackbox: white-box PGD-40 vs the "
          f"best gradient-free SPSA on the same {ns} images, and vs the black-box substitute on all {n}; "
          f"margin {MASKING_MARGIN} points):")
    for (precision, bits), r in rows.items():
        small = masking.check_whitebox_vs_blackbox(
            whitebox={"PGD-40": r["pgd_small"] / 100}, blackbox={"SPSA": r["spsa"] / 100}, margin=MASKING_MARGIN / 100,
        )
        full = masking.check_whitebox_vs_blackbox(
            whitebox={"PGD-40": r["pgd"] / 100}, blackbox={"substitute": r["substitute"] / 100},
            margin=MASKING_MARGIN / 100,
        )
        print(f"- {precision}, {bits}-bit input: SPSA {small['status']}: {small['message']}; "
              f"substitute {full['status']}: {full['message']}.")
        probe = masking.check_gradient_free_probe(
            accuracy_by_probe={d: r[f"spsa_{d}"] / 100 for d in spsa_deltas(args)}, margin=MASKING_MARGIN / 100,
        )
        if probe["status"] == masking.WARNING:
            print(f"  Note: {probe['message']}.")


if __name__ == "__main__":
    main()
