"""Shared fixtures: real data from ``$EDGEBNN_DATA_DIR`` (default ``../shared/data``)."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import edgebnn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir():
    """Folder holding the offline IDX datasets; tests needing real data skip loudly without it."""
    path = Path(os.environ.get("EDGEBNN_DATA_DIR", DEFAULT_DATA_DIR))
    if not (path / "fashion_mnist").is_dir():
        pytest.skip(f"real data not found in {path}; set EDGEBNN_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def fashion_small(data_dir):
    """A seeded real Fashion-MNIST subset: 600 train and 300 test images."""
    from edgebnn import data

    x, y = data.load("fashion_mnist", "train", data_dir=data_dir, limit=600, seed=1)
    xt, yt = data.load("fashion_mnist", "test", data_dir=data_dir, limit=300, seed=1)
    return x, y, xt, yt


@pytest.fixture(scope="session")
def fcn_in2(fashion_small):
    """A small binary FCN with 2-bit input, trained briefly on real data (realistic BatchNorm).

    Shared by the deployment, device and ARM tests; none of them changes it.
    """
    from edgebnn.training import train
    from edgebnn.zoo.panda_fcn import build_fcn

    x, y, _, _ = fashion_small
    model = build_fcn(hidden_units=64, hidden_layers=2, precision="binary", input_bits=2)
    train(model, x, y, epochs=3, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def fcn2_float(fashion_small):
    """Float Panda FCN2 trained 3 epochs on the 600 training images (seeded).

    Shared by the attack and masking tests; none of them changes it.
    """
    import tensorflow as tf

    from edgebnn import zoo
    from edgebnn.training import train

    x, y, _, _ = fashion_small
    tf.keras.utils.set_random_seed(0)
    model = zoo.get("panda_fcn2")(precision="float")
    train(model, x, y, epochs=3, batch_size=32, seed=0, verbose=0)
    return model


@pytest.fixture(scope="session")
def float_model(fcn2_float, fashion_small):
    """``(fcn2_float, x, y)`` with the first 100 test images and their labels (the strong-attack
    and masking tests)."""
    _, _, xt, yt = fashion_small
    return fcn2_float, xt[:100], yt[:100]


@pytest.fixture
def rng():
    return np.random.default_rng(0)
