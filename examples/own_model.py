"""Your own Larq model and your own data through one edgebnn recipe.

This script stands for a user's code, outside the edgebnn package: it builds a small
binary fully connected network with Larq (input reduced to 2 bits, binary weights and
activations), trains it with plain Keras, saves it as ``my.keras``, and writes the data
it was trained on as ``data.npz``. The recipe ``own_model.toml`` beside it then attacks
the saved model (FGSM, PGD), runs the strong evaluation (PGD per gradient surrogate,
APGD, Square, AutoAttack) and the exact certification, converts it for Larq Compute Engine
and for stock TFLite, verifies both against Keras, and writes both device bundles:

    python examples/own_model.py --out runs/own_model_files
    python -m edgebnn.recipes run examples/own_model.toml --out runs/own_model \\
        --set model.file=runs/own_model_files/my.keras --set data.files=runs/own_model_files/data.npz

The data is a seeded subset of Fashion-MNIST read from ``$EDGEBNN_DATA_DIR`` (or MNIST with
``--dataset mnist``); ``--generated`` writes a generated data set instead (no files needed).
"""

import argparse
from pathlib import Path

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 for Larq: import before TensorFlow)
from edgebnn.layers import InputDiscretization

import larq as lq
import tensorflow as tf

#: Pixel levels of the input: 2 bits.
INPUT_BITS = 2
#: Classes of the generated data set.
GENERATED_CLASSES = 4
#: Side of the generated images (pixels).
GENERATED_SIDE = 12


def build_bnn(*, input_shape, num_classes, hidden=(256, 256)):
    """A Larq binary FCN: 2-bit input, sign activations, binary weights, BatchNorm, logits out.

    The form ``edgebnn.certify`` decides exactly: InputDiscretization, Flatten, then
    bias-free QuantDense layers each followed by BatchNormalization.
    """
    binary = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    layers = [tf.keras.Input(input_shape), InputDiscretization(INPUT_BITS), tf.keras.layers.Flatten()]
    for i, width in enumerate(hidden):
        layers += [lq.layers.QuantDense(width, input_quantizer=None if i == 0 else "ste_sign", **binary),
                   tf.keras.layers.BatchNormalization(momentum=0.9, scale=False)]
    layers += [lq.layers.QuantDense(num_classes, input_quantizer="ste_sign", **binary),
               tf.keras.layers.BatchNormalization(momentum=0.9, scale=False)]
    return tf.keras.Sequential(layers, name="my_bnn")


def fashion_subset(dataset, *, train, test, seed):
    """Seeded subsets of a dataset's images, as uint8 (what a user's own images usually are)."""
    from edgebnn import data  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    if dataset == "mnist":  # offline MNIST is its test split only: carve it
        x_tr, y_tr, x_te, y_te, _ = data.carve("mnist", "test", train_size=train, test_size=test, seed=seed)
    else:
        x_tr, y_tr = data.load(dataset, "train", limit=train, seed=seed)
        x_te, y_te = data.load(dataset, "test", limit=test, seed=seed)
    order = rng.permutation(len(x_tr))
    to_uint8 = lambda x: np.round(x * 255).astype(np.uint8)  # noqa: E731
    return to_uint8(x_tr[order]), y_tr[order], to_uint8(x_te), y_te


def generated(*, train, test, seed):
    """A generated data set: each class a bright square in its own quadrant, on noise (float pixels)."""
    rng = np.random.default_rng(seed)
    n = train + test
    y = rng.integers(0, GENERATED_CLASSES, n)
    x = rng.uniform(0, 0.3, (n, GENERATED_SIDE, GENERATED_SIDE, 1)).astype(np.float32)
    half = GENERATED_SIDE // 2
    for i, label in enumerate(y):
        top, left = (label // 2) * half, (label % 2) * half
        x[i, top + 1:top + half - 1, left + 1:left + half - 1] = rng.uniform(0.7, 1.0)
    x = np.round(x * 255) / 255  # on the uint8 grid: a device bundle stores its test images as uint8
    return x[:train], y[:train], x[train:], y[train:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/own_model_files"))
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "mnist"])
    parser.add_argument("--generated", action="store_true", help="generated images instead of a dataset")
    parser.add_argument("--train", type=int, default=6000, help="training images")
    parser.add_argument("--test", type=int, default=1000, help="test images")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="widths of the hidden layers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    tf.keras.utils.set_random_seed(args.seed)
    if args.generated:
        x_train, y_train, x_test, y_test = generated(train=args.train, test=args.test, seed=args.seed)
    else:
        x_train, y_train, x_test, y_test = fashion_subset(args.dataset, train=args.train, test=args.test,
                                                          seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    num_classes = int(y_train.max()) + 1
    model = build_bnn(input_shape=x_train.shape[1:] + ((1,) if x_train.ndim == 3 else ()),
                      num_classes=num_classes, hidden=tuple(args.hidden))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    scale = 255.0 if x_train.dtype == np.uint8 else 1.0
    model.fit(x_train / scale, y_train, epochs=args.epochs, batch_size=64, verbose=2)
    _, accuracy = model.evaluate(x_test / scale, y_test, verbose=0)
    model.save(args.out / "my.keras")
    print(f"saved {args.out / 'my.keras'} (test accuracy {accuracy:.4f}) and {args.out / 'data.npz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
