"""What attack_table.py and strong_eval.py share: the four Panda FCN2 models they compare,
their common command-line options, and their settings of :func:`edgebnn.recipes.store.trained_model`.

Not a script: the two scripts import it (``scripts/`` is on ``sys.path`` when a script runs).
"""

import argparse
import os

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn.recipes import store

#: (precision, input_bits) of the four models.
MODELS = (("float", 2), ("float", 8), ("binary", 2), ("binary", 8))
#: Training batch size of every model.
BATCH_SIZE = 64


def selected_models(text):
    """``--models``: ``"all"`` or a comma list like ``float-2,binary-8`` -> ``((precision, bits), ...)``."""
    if text == "all":
        return MODELS
    names = {f"{p}-{b}": (p, b) for p, b in MODELS}
    items = text.split(",")
    unknown = [item for item in items if item not in names]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {list(names)} or 'all'")
    return tuple(names[item] for item in items)


def add_options(parser, *, cache_dir, train_limit, n, train_limit_help=None):
    """Add the options both scripts take (data, weight store, training size, test images, models, seed)."""
    parser.add_argument("--data-dir", default=os.environ.get("EDGEBNN_DATA_DIR", "../shared/data"))
    parser.add_argument("--cache-dir", default=cache_dir, help="studies store holding the trained weights")
    parser.add_argument("--train-limit", type=int, default=train_limit, help=train_limit_help)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n", type=int, default=n, help="test images attacked")
    parser.add_argument("--models", type=selected_models, default="all",
                        help="comma list like float-2,binary-8, or all")
    parser.add_argument("--seed", type=int, default=0)


def trained_model(precision, bits, args, train_data, *, seed=None, key=None):
    """The FCN2 ``(precision, bits)`` trained on ``train_data()`` (an ``(x, y)`` callable), or loaded from the store.

    Args:
        args: parsed options of :func:`add_options`.
        seed: training seed (default ``args.seed``).
        key: more entries of the store payload (what else decides the weights).
    """
    return store.trained_model(
        "panda_fcn2", options={"precision": precision, "input_bits": bits}, data="fashion_mnist/train",
        train_data=train_data, key={"train_limit": args.train_limit, **(key or {})}, epochs=args.epochs,
        batch_size=BATCH_SIZE, seed=args.seed if seed is None else seed, cache=args.cache_dir).model
