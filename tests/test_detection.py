"""Guan et al.'s MC-dropout uncertainty detector: NumPy logistic regression / AUC, real-data experiment."""

import itertools

import numpy as np
import pytest

from edgebnn.evaluation.detection import (
    LogisticRegression, UncertaintyDetector, detection_experiment, roc_auc, uncertainty_stats,
)
from edgebnn.training import train

import tensorflow as tf


@pytest.fixture(autouse=True)
def _seed():
    """Seed TensorFlow / NumPy before each test, so random starts and masks repeat."""
    tf.keras.utils.set_random_seed(1234)


def pairwise_auc(scores, labels):
    """Reference: fraction of (positive, negative) pairs ranked correctly, ties 1/2."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_roc_auc_matches_pairwise_reference(rng):
    for _ in range(5):
        scores = rng.integers(0, 8, size=60).astype(float)  # many ties
        labels = rng.integers(0, 2, size=60)
        assert roc_auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels))
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0.1, 0.2], [1, 1])


def test_logistic_regression_is_a_stationary_point_and_classifies(rng):
    n = 400
    labels = rng.integers(0, 2, size=n)
    features = rng.normal(loc=labels[:, None] * [2.0, -1.0], scale=1.0, size=(n, 2))
    clf = LogisticRegression.fit(features, labels, l2=0.0)
    # First-order optimality of the unpenalized log-likelihood: X^T (p - y) = 0.
    p = clf.predict_proba(features)
    design = np.hstack([np.ones((n, 1)), (features - clf.mean) / clf.scale])
    np.testing.assert_allclose(design.T @ (p - labels), 0.0, atol=1e-6)
    assert np.mean(clf.predict(features) == labels) > 0.85
    assert clf.coef[0] > 0 > clf.coef[1]
    with pytest.raises(ValueError, match="both classes"):
        LogisticRegression.fit(features, np.zeros(n))


def test_detector_on_separable_uncertainties(rng):
    detector = UncertaintyDetector.fit(rng.normal(0.2, 0.05, 100), rng.normal(0.6, 0.05, 100))
    report = detector.evaluate(rng.normal(0.2, 0.05, 50), rng.normal(0.6, 0.05, 80))
    assert report["accuracy"] > 0.99 and report["auc"] > 0.99
    assert report["n_clean"] == 50 and report["n_adversarial"] == 80
    stats = uncertainty_stats([1.0, 3.0])
    assert stats == {"mean": 2.0, "std": 1.0}


def entropy_uncertainty(model, samples):
    """An alternative uncertainty (entropy of the MC-averaged softmax), to exercise ``uncertainty_fn``."""

    def fn(x):
        probs = np.mean([tf.nn.softmax(model(x)).numpy() for _ in range(samples)], axis=0)
        return -np.sum(probs * np.log(probs + 1e-12), axis=-1)

    return fn


@pytest.fixture(scope="module")
def mc_model(data_dir):
    """A float MLP with MC dropout 0.5 after both hidden layers, trained 3 epochs on 2000 images.

    (Guan et al.'s LeNet, briefly trained on this little data, separates clean from FGSM
    inputs only weakly, AUC ~0.57 at eps 0.1; the MLP gives a clearer test signal.)
    """
    from edgebnn import data
    from edgebnn.layers import MCDropout

    x, y = data.load("fashion_mnist", "train", data_dir=data_dir, limit=2000, seed=3)
    xt, yt = data.load("fashion_mnist", "test", data_dir=data_dir, limit=400, seed=3)
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((28, 28, 1))
    h = tf.keras.layers.Flatten()(inputs)
    for _ in range(2):
        h = MCDropout(0.5)(tf.keras.layers.Dense(256, activation="relu")(h))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(h))
    train(model, x, y, epochs=3, batch_size=64, seed=0, verbose=0)
    return model, xt, yt


def test_detector_separates_fgsm_from_clean_better_than_chance(mc_model):
    model, xt, yt = mc_model
    report = detection_experiment(model, xt[:200], yt[:200], xt[200:], yt[200:], attack="fgsm", eps=0.2, samples=20)
    u = report["uncertainty"]  # Guan Eq. 12 from predict_mc
    assert set(u) == {"fit_clean", "fit_adversarial", "eval_clean", "eval_adversarial"}
    assert u["eval_adversarial"]["mean"] > u["eval_clean"]["mean"]
    assert report["detection"]["n_clean"] == report["detection"]["n_adversarial"] == 200
    assert report["detection"]["accuracy"] > 0.55, report
    assert report["detection"]["auc"] > 0.6, report


def test_detection_experiment_with_custom_uncertainty(mc_model):
    model, xt, yt = mc_model
    report = detection_experiment(
        model, xt[:100], yt[:100], xt[100:200], yt[100:200], attack="pgd", eps=0.1, steps=5,
        uncertainty_fn=entropy_uncertainty(model, samples=10),
    )
    assert report["detection"]["auc"] > 0.5, report
