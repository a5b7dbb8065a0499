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


@pytest.fixture
def rng():
    return np.random.default_rng(0)
