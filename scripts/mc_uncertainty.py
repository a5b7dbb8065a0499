"""Stochastic sign check and Monte-Carlo uncertainty on clean vs FGSM inputs (Guan Table 3).

1. The stochastic sign's statistical test: for a grid of latent weights ``w``, the
   mean of ``n`` samples of :func:`edgebnn.ops.stochastic_sign` against its
   expectation ``2 * hard_sigmoid(w) - 1``, with the binomial standard error.
2. Guan's LeNet (float, MC dropout 0.5 at inference; and the randomized BNN,
   stochastic binary weights with dropout 0.05) trained on a seeded Fashion-MNIST
   subset; FGSM examples crafted against the twin of each model with dropout off
   (same weights; the randomized BNN's twin still samples its weights once per pass);
   :func:`~edgebnn.evaluation.uncertainty.predict_mc` with 50 passes gives accuracy
   and Guan's Eq. 12 uncertainty on the clean and on the adversarial batch.

Usage:
    PYTHONPATH=. nice -n 10 python scripts/mc_uncertainty.py --train-limit 20000 --epochs 10
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import edgebnn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import data, testing, zoo  # noqa: E402
from edgebnn.evaluation import craft, predict_mc  # noqa: E402
from edgebnn.evaluation.uncertainty import SUMMARY_PERCENTILE, deterministic_twin, uncertainty_summary  # noqa: E402
from edgebnn.training import fit  # noqa: E402

import tensorflow as tf  # noqa: E402

#: Latent weights of the stochastic sign check.
SIGN_CHECK_WEIGHTS = np.array([-1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5], np.float32)


def print_stochastic_sign_check(*, samples, seed):
    check = testing.stochastic_sign_check(SIGN_CHECK_WEIGHTS, samples=samples, seed=seed)
    k = testing.SIGN_CHECK_STD_ERRORS
    print(f"### Stochastic sign: mean of {samples:,} samples vs 2*hard_sigmoid(w)-1\n")
    print(f"| w | expected mean | sample mean | abs diff | {k} x std. error | within |")
    print("|---:|---:|---:|---:|---:|:-:|")
    for wi, e, m, se, within in zip(check["w"], check["expected"], check["mean"], check["std_err"], check["within"]):
        print(f"| {wi:+.2f} | {e:+.4f} | {m:+.4f} | {abs(m - e):.4f} | {k * se:.4f} | {'yes' if within else 'NO'} |")
    print(f"\nAll within {k} standard errors: {check['all_within']}\n")


def uncertainty_experiment(train, test, *, precision, dropout_rate, learning_rate, epochs, eps_list, n_eval,
                           samples, seed):
    tf.keras.utils.set_random_seed(seed)
    model = zoo.get("guan_lenet")(precision=precision, dropout_rate=dropout_rate, mc_dropout=True)
    fit.train(model, *train, epochs=epochs, batch_size=128, learning_rate=learning_rate, seed=seed, verbose=0)
    x, y = test[0][:n_eval], test[1][:n_eval]
    twin = deterministic_twin(model)  # dropout off; stochastic weights still sample once per pass
    rows = [("clean", 0.0, x)]
    for eps in eps_list:
        rows.append(("FGSM", eps, craft(twin, x, y, attack="fgsm", eps=eps, batch_size=500)))
    print(f"### Guan LeNet `{precision}`, MC dropout {dropout_rate}, Adam lr {learning_rate:g}, {samples} passes, "
          f"{n_eval} Fashion-MNIST test images\n")
    pct = SUMMARY_PERCENTILE
    print(f"| input | eps | MC accuracy | mean uncertainty (Eq. 12) | median | {pct}th percentile "
          f"| share above clean {pct}th pct. |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    clean = None
    for label, eps, inputs in rows:
        pred = predict_mc(model, inputs, samples=samples, batch_size=500)
        row = uncertainty_summary(pred, y, threshold=None if clean is None else clean["percentile"])
        clean = clean or row
        print(f"| {label} | {eps:.2f} | {row['accuracy']:.4f} | {row['mean']:.3e} | {row['median']:.3e} | "
              f"{row['percentile']:.3e} | {row['above']:.3f} |", flush=True)
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EDGEBNN_DATA_DIR", "../shared/data"))
    parser.add_argument("--train-limit", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-eval", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--sign-samples", type=int, default=20_000)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print_stochastic_sign_check(samples=args.sign_samples, seed=args.seed)
    train = data.load("fashion_mnist", "train", data_dir=args.data_dir, limit=args.train_limit, seed=args.seed)
    test = data.load("fashion_mnist", "test", data_dir=args.data_dir, limit=args.n_eval, seed=args.seed)
    print(f"Training: {args.epochs} epochs of Adam on a seeded {args.train_limit:,}-image Fashion-MNIST subset; "
          "FGSM (L-inf, true labels) crafted on the twin with dropout off (same weights).\n")
    # Guan et al.: MC dropout 0.5 for the float LeNet, 0.05 for the randomized BNN. Quantized
    # latent weights train with Adam 1e-2 (Larq's BinaryNet tutorial), float with 1e-3.
    for precision, rate, lr in (("float", 0.5, 1e-3), ("stochastic_binary", 0.05, 1e-2)):
        uncertainty_experiment(train, test, precision=precision, dropout_rate=rate, learning_rate=lr, epochs=args.epochs,
                               eps_list=args.eps, n_eval=args.n_eval, samples=args.samples, seed=args.seed)


if __name__ == "__main__":
    main()
