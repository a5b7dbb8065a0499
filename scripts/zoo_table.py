"""Markdown table of every model family x precision: parameter counts, deployability, clean accuracy.

A thin driver over the library: the families and precisions come from
:mod:`edgebnn.zoo`, whether a model samples at inference (and so cannot be converted)
from :func:`edgebnn.introspect.random_inference_layers`, the weights at each bit
width from Larq's summary (``lq.models.ModelProfile``; BatchNorm's fused pairs count
once), and, for the 28x28 families (:data:`edgebnn.zoo.MNIST_SHAPED`), the clean
Fashion-MNIST test accuracy after one epoch of Adam on a seeded training subset. The
parameter counts against the papers' architecture descriptions are pinned by
``tests/test_zoo.py`` (``EXPECTED_PARAMS``), not re-derived here.

Usage:
    PYTHONPATH=. nice -n 10 python scripts/zoo_table.py --train-limit 10000 --fcn1-limit 3000
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import edgebnn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import data, zoo  # noqa: E402
from edgebnn.introspect import random_inference_layers  # noqa: E402
from edgebnn.evaluation.uncertainty import predict_mc  # noqa: E402
from edgebnn.training import fit  # noqa: E402

import larq as lq  # noqa: E402
import tensorflow as tf  # noqa: E402

#: Adam learning rates: 1e-3 for float models, 1e-2 for quantized ones (Larq's BinaryNet
#: tutorial): latent weights must travel far enough to flip signs / cross k-bit grid steps.
FLOAT_LR, QUANTIZED_LR = 1e-3, 1e-2
FLOAT_PRECISIONS = ("float", "A")
#: Forward passes whose softmax outputs are summed for a model that samples at inference.
STOCHASTIC_PASSES = 10


def _rows():
    for name in zoo.names():
        for precision in zoo.precisions(name):
            if name == "galloway_cnn":
                for kernels in zoo.galloway_cnn.KERNELS:
                    yield name, precision, {"kernels": kernels}
            else:
                yield name, precision, {}


def _bits(profile):
    counts = {bits: profile.weight_count(bitwidth=bits) for bits in profile.unique_param_bidtwidths}
    low = {b: c for b, c in counts.items() if b != 32 and b != 1}
    return counts.get(1, 0), "; ".join(f"{c:,} ({b}-bit)" for b, c in sorted(low.items())) or "-", counts.get(32, 0)


def _accuracy(model, train, test, *, limit, seed, learning_rate, stochastic):
    x, y = train[0][:limit], train[1][:limit]
    tf.keras.utils.set_random_seed(seed)
    fit.train(model, x, y, epochs=1, batch_size=128, learning_rate=learning_rate, seed=seed, verbose=0)
    pred = predict_mc(model, test[0], samples=STOCHASTIC_PASSES if stochastic else 1, batch_size=500)
    return float(np.mean(pred.classes == test[1])), len(x)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EDGEBNN_DATA_DIR", "../shared/data"))
    parser.add_argument("--train-limit", type=int, default=10_000, help="seeded Fashion-MNIST training subset")
    parser.add_argument("--fcn1-limit", type=int, default=3_000, help="training subset for the 118M-parameter FCN1")
    parser.add_argument("--no-train", action="store_true", help="parameter counts only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not args.no_train:
        train = data.load("fashion_mnist", "train", data_dir=args.data_dir, limit=args.train_limit, seed=args.seed)
        test = data.load("fashion_mnist", "test", data_dir=args.data_dir)
        print(f"One epoch of Adam (lr {FLOAT_LR:g} float, {QUANTIZED_LR:g} quantized; batch 128) on a seeded "
              f"{args.train_limit:,}-image Fashion-MNIST training subset ({args.fcn1_limit:,} for FCN1), accuracy "
              f"on the full 10,000-image test set; models random at inference: class of the softmax summed over "
              f"{STOCHASTIC_PASSES} passes. Galloway CNN trained at K=64 only.")
    else:
        print("Parameter counts only (--no-train).")
    print()
    print("| family | precision | Keras params | Larq # 1-bit | Larq # k-bit | Larq # 32-bit | deployable "
          "| 1-epoch Fashion-MNIST acc |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for name, precision, kwargs in _rows():
        model = zoo.get(name)(precision=precision, **kwargs)
        one, low, full = _bits(lq.models.ModelProfile(model))
        random_layers = random_inference_layers(model)
        deployable = "no: random at inference" if random_layers else "yes"
        accuracy = "n/a (no data offline)" if name not in zoo.MNIST_SHAPED else "-"
        if not args.no_train and name in zoo.MNIST_SHAPED and kwargs.get("kernels", 64) == 64:
            limit = args.fcn1_limit if name == "panda_fcn1" else args.train_limit
            lr = FLOAT_LR if precision in FLOAT_PRECISIONS else QUANTIZED_LR
            acc, n = _accuracy(model, train, test, limit=limit, seed=args.seed, learning_rate=lr,
                               stochastic=bool(random_layers))
            accuracy = f"{acc:.4f}" + (f" (n={n})" if n != args.train_limit else "")
        label = precision + (f", K={kwargs['kernels']}" if kwargs else "")
        print(f"| {name} | {label} | {model.count_params():,} | {one:,} | {low} | {full:,} | {deployable} "
              f"| {accuracy} |", flush=True)
        del model
        tf.keras.backend.clear_session()


if __name__ == "__main__":
    main()
