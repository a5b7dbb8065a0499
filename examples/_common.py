"""What the examples share: your model and data, from the files of ``own_model.py`` or made here."""

from pathlib import Path

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 for Larq: import before TensorFlow)
import edgebnn.data

import tensorflow as tf

from own_model import build_bnn, generated


def add_arguments(parser):
    """``--model``, ``--data`` (the files ``own_model.py`` writes), ``--tiny``, ``--seed``."""
    parser.add_argument("--model", type=Path, help="your saved model (.keras); default: train a small BNN here")
    parser.add_argument("--data", type=Path, help="your .npz data (x_train, y_train, x_test, y_test)")
    parser.add_argument("--tiny", action="store_true", help="a few seconds' budget (what the tests run)")
    parser.add_argument("--seed", type=int, default=0)


def model_and_data(args, *, epochs=5):
    """``(model, x_test, y_test)``: the files given, or a small Larq BNN trained here on generated images."""
    if (args.model is None) != (args.data is None):
        raise SystemExit("error: give both --model and --data, or neither")
    if args.model is not None:
        x_train, y_train, x_test, y_test, _ = edgebnn.data.load_npz(args.data)
        return edgebnn.load_model(args.model), x_test, y_test
    tf.keras.utils.set_random_seed(args.seed)
    n_train, n_test = (300, 60) if args.tiny else (3000, 500)
    x_train, y_train, x_test, y_test = generated(train=n_train, test=n_test, seed=args.seed)
    model = build_bnn(input_shape=x_train.shape[1:], num_classes=int(y_train.max()) + 1,
                      hidden=(32, 32) if args.tiny else (128, 128))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=2 if args.tiny else epochs, batch_size=64, verbose=0)
    return model, x_test.astype(np.float32), y_test
