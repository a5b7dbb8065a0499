"""Guan et al.'s MC-dropout uncertainty detector: scikit-learn logistic regression / AUC against the
former NumPy implementation, real-data experiment."""

import itertools

import numpy as np
import pytest

from edgebnn.evaluation.detection import (
    DEFAULT_L2, UncertaintyDetector, detection_experiment, fit_logistic_regression, uncertainty_stats,
)
from edgebnn.training import train

import tensorflow as tf


pytestmark = pytest.mark.usefixtures("seed")  # conftest: every test starts from the same seed


def pairwise_auc(scores, labels):
    """Reference: fraction of (positive, negative) pairs ranked correctly, ties 1/2."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def numpy_detector_reference(clean_fit, adv_fit, clean_eval, adv_eval, *, l2=DEFAULT_L2):
    """The detector as edgebnn computed it before scikit-learn: ridge logistic regression on
    standardized features by Newton's method (penalty ``l2 * n / 2 * |w|^2``, intercept free),
    accuracy at log-odds 0, ROC AUC from tie-averaged ranks."""
    x = np.r_[clean_fit, adv_fit][:, None]
    y = np.r_[np.zeros(len(clean_fit)), np.ones(len(adv_fit))]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    design = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    penalty = np.r_[0.0, np.full(design.shape[1] - 1, l2 * len(y))]
    w = np.zeros(design.shape[1])
    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * design @ w))
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-12 * np.eye(len(w))
        step = np.linalg.solve(hessian, design.T @ (p - y) + penalty * w)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    xe = np.r_[clean_eval, adv_eval][:, None]
    ye = np.r_[np.zeros(len(clean_eval)), np.ones(len(adv_eval))]
    scores = ((xe - mean) / scale) @ w[1:] + w[0]
    return float(np.mean((scores > 0) == ye)), pairwise_auc(scores, ye)


def test_sklearn_detector_matches_former_numpy_detector(rng):
    """Fixed, overlapping uncertainty sets (Guan-like magnitudes): same accuracy within one
    example's rounding, same AUC."""
    for clean_mu, adv_mu, n in [(3e-3, 1.3e-2, 200), (1e-2, 1.1e-2, 150), (1e-3, 1e-2, 500)]:
        sets = [np.abs(rng.normal(mu, mu / 2, n)) for mu in (clean_mu, adv_mu, clean_mu, adv_mu)]
        accuracy, auc = numpy_detector_reference(*sets)
        report = UncertaintyDetector.fit(sets[0], sets[1]).evaluate(sets[2], sets[3])
        assert report["accuracy"] == pytest.approx(accuracy, abs=1.0 / (2 * n) + 1e-12)
        assert report["auc"] == pytest.approx(auc, abs=1e-9)


def test_auc_matches_pairwise_reference_with_ties(rng):
    for _ in range(5):
        clean, adversarial = rng.integers(0, 8, size=(2, 30)).astype(float)  # many ties
        detector = UncertaintyDetector.fit(rng.normal(0, 1, 20), rng.normal(1, 1, 20))
        report = detector.evaluate(clean, adversarial)
        scores = detector.classifier.decision_function(np.r_[clean, adversarial][:, None])
        assert report["auc"] == pytest.approx(pairwise_auc(scores, np.r_[np.zeros(30), np.ones(30)]))


def test_logistic_regression_classifies_and_validates(rng):
    n = 400
    labels = rng.integers(0, 2, size=n)
    features = rng.normal(loc=labels[:, None] * [2.0, -1.0], scale=1.0, size=(n, 2))
    clf = fit_logistic_regression(features, labels)
    assert np.mean(clf.predict(features) == labels) > 0.85
    coef = clf[-1].coef_[0]
    assert coef[0] > 0 > coef[1]
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic_regression(features, np.zeros(n))
    with pytest.raises(ValueError, match="l2"):
        fit_logistic_regression(features, labels, l2=0.0)


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
