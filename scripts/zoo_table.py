"""Markdown table of every model family x precision: parameter counts and clean accuracy.

For every registry entry it prints the Keras parameter count (trainable weights plus
BatchNorm moving statistics) next to the count derived from the paper's architecture
description, the weights at each bit width as Larq's summary counts them
(``lq.models.ModelProfile``; BatchNorm's fused pairs count once), and, for the
28x28 families, the clean Fashion-MNIST test accuracy after one epoch of Adam on a
seeded training subset.

Usage:
    PYTHONPATH=. nice -n 10 python scripts/zoo_table.py --train-limit 10000 --fcn1-limit 3000
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import edgebnn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import data, zoo  # noqa: E402
from edgebnn.evaluation.uncertainty import predict_mc  # noqa: E402
from edgebnn.training import fit  # noqa: E402

import larq as lq  # noqa: E402
import tensorflow as tf  # noqa: E402

_FCN = lambda w: 784 * w + 3 * w * w + w * 10  # noqa: E731  (weights of 784-w-w-w-w-10)
_LENET = 5 * 5 * 6 + 5 * 5 * 6 * 16 + 400 * 120 + 120 * 84 + 84 * 10  # LeNet-5 weights
_ALEXNET_CIFAR10 = (5 * 5 * 3 * 192 + 5 * 5 * 192 * 576 + 3 * 3 * 576 * 1152 + 3 * 3 * 1152 * 768 + 3 * 3 * 768 * 256
                    + 2304 * 4096 + 4096 * 4096 + 4096 * 10)  # alexnet_binary weights on 32x32
_GALLOWAY = lambda k: 8 * 8 * k + 6 * 6 * k * 2 * k + 5 * 5 * 2 * k * 2 * k + 2 * k * 10  # noqa: E731

#: (family, precision, builder kwargs) -> (reference count, where it comes from). Counts include
#: BatchNorm moving statistics, as Keras' count_params does.
REFERENCE = {
    "panda_fcn1": lambda p, kw: (_FCN(6144) + 12 * 6144 + (10 if p == "float" else 30),
                                 "Panda: 784-6144x4-10 + BN"),
    "panda_fcn2": lambda p, kw: (_FCN(600) + 12 * 600 + (10 if p == "float" else 30),
                                 "Panda: 784-600x4-10 + BN"),
    "binarynet_vgg_cifar10": lambda p, kw: (10_352_000 + 3 * 3_850, "BinaryNet, Larq tutorial summary"),
    "panda_alexnet_cifar10": lambda p, kw: (_ALEXNET_CIFAR10 + 3 * (11_146 if p == "binary" else 11_136)
                                            + (0 if p == "binary" else 10),
                                            "BinaryNet.pytorch alexnet_binary, 32x32 + BN"),
    "panda_resnet20_cifar100": lambda p, kw: (267_696 + 4 * 688 + 6_500, "He et al. ResNet-20 (0.27M)"),
    "panda_alexnet_imagenet": lambda p, kw: (62_396_768, "Larq Zoo XNORNet"),
    "galloway_cnn": lambda p, kw: (_GALLOWAY(kw["kernels"]) + (0 if p == "A" else 9 * kw["kernels"])
                                   + (2 if p in "CS" else 0), "CleverHans base CNN, no bias"),
    "guan_lenet": lambda p, kw: (_LENET + 3 * 236 + 10, "LeNet-5 weights (61,470) + BN"),
}


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


#: Adam learning rates: 1e-3 for float models, 1e-2 for quantized ones (Larq's BinaryNet
#: tutorial): latent weights must travel far enough to flip signs / cross k-bit grid steps.
FLOAT_LR, QUANTIZED_LR = 1e-3, 1e-2
FLOAT_PRECISIONS = ("float", "A")


def _accuracy(model, train, test, *, limit, seed, learning_rate):
    x, y = train
    x, y = x[:limit], y[:limit]
    tf.keras.utils.set_random_seed(seed)
    fit.train(model, x, y, epochs=1, batch_size=128, learning_rate=learning_rate, seed=seed, verbose=0)
    stochastic = any(layer.__class__.__name__ == "MCDropout" and layer.always_on for layer in model.layers) or any(
        type(getattr(layer, "kernel_quantizer", None)).__name__ == "StochasticSign" for layer in model.layers)
    pred = predict_mc(model, test[0], samples=10 if stochastic else 1, batch_size=500)
    return float(np.mean(pred.classes == test[1])), len(x), stochastic


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EDGEBNN_DATA_DIR", "../shared/data"))
    parser.add_argument("--train-limit", type=int, default=10_000, help="seeded Fashion-MNIST training subset")
    parser.add_argument("--fcn1-limit", type=int, default=3_000, help="training subset for the 118M-parameter FCN1")
    parser.add_argument("--no-train", action="store_true", help="parameter counts only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if not args.no_train:
        train = data.load("fashion_mnist", "train", data_dir=args.data_dir, limit=args.train_limit, seed=args.seed)
        test = data.load("fashion_mnist", "test", data_dir=args.data_dir)
    header = (f"One epoch of Adam (lr {FLOAT_LR:g} float, {QUANTIZED_LR:g} quantized; batch 128) on a seeded {args.train_limit:,}-image Fashion-MNIST "
              f"training subset ({args.fcn1_limit:,} for FCN1), accuracy on the full 10,000-image test set; "
              "stochastic models: class of the softmax summed over 10 passes. Galloway CNN trained at K=64 only.")
    print(header if not args.no_train else "Parameter counts only (--no-train).")
    print()
    print("| family | precision | Keras params | paper reference | reference source | match | Larq # 1-bit "
          "| Larq # k-bit | Larq # 32-bit | 1-epoch Fashion-MNIST acc |")
    print("|---|---|---:|---:|---|:-:|---:|---:|---:|---:|")
    for name, precision, kwargs in _rows():
        start = time.time()
        model = zoo.get(name)(precision=precision, **kwargs)
        params = model.count_params()
        reference, source = REFERENCE[name](precision, kwargs)
        one, low, full = _bits(lq.models.ModelProfile(model))
        accuracy = "n/a (no data offline)" if name not in zoo.MNIST_SHAPED else "-"
        if not args.no_train and name in zoo.MNIST_SHAPED and kwargs.get("kernels", 64) == 64:
            limit = args.fcn1_limit if name == "panda_fcn1" else args.train_limit
            lr = FLOAT_LR if precision in FLOAT_PRECISIONS else QUANTIZED_LR
            acc, n, stochastic = _accuracy(model, train, test, limit=limit, seed=args.seed, learning_rate=lr)
            accuracy = f"{acc:.4f}" + (" (n=%d)" % n if n != args.train_limit else "")
        label = precision + (f", K={kwargs['kernels']}" if kwargs else "")
        print(f"| {name} | {label} | {params:,} | {reference:,} | {source} | {'yes' if params == reference else 'NO'} "
              f"| {one:,} | {low} | {full:,} | {accuracy} |", flush=True)
        del model
        tf.keras.backend.clear_session()
        print(f"<!-- {name} {label}: {time.time() - start:.0f}s -->", flush=True)


if __name__ == "__main__":
    main()
