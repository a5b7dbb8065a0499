"""Adversarial-input detection from MC-dropout uncertainty (Guan et al.).

The detector is Guan et al.'s: a model with MC dropout is sampled many times per input
(:func:`edgebnn.evaluation.uncertainty.predict_mc`); adversarial inputs tend to have a
higher predictive uncertainty than clean ones, so a logistic regression on the
uncertainty, trained on one set of clean / adversarial inputs, flags adversarial
inputs. It is evaluated on adversarial examples generated afresh from other images.
Reported as in Guan et al.'s Tables 3-4: detection accuracy, ROC AUC, and the mean and
standard deviation of the uncertainty of every set.

Logistic regression and ROC AUC are implemented here in NumPy (no scikit-learn).
"""

from dataclasses import dataclass

import numpy as np

from edgebnn.evaluation.robustness import craft

#: Ridge penalty of the logistic regression (on standardized features): keeps the
#: Newton steps finite when clean and adversarial uncertainties separate perfectly.
DEFAULT_L2 = 1e-3


def _as_features(values, name):
    features = np.asarray(values, dtype=np.float64)
    if features.ndim == 1:
        features = features[:, None]
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"`{name}` must be a non-empty (n,) or (n, features) array, got shape {features.shape}.")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return features


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


@dataclass
class LogisticRegression:
    """Binary logistic regression fitted by Newton's method (IRLS) with a small ridge.

    Features are standardized with the training mean / std; ``coef`` and ``intercept``
    apply to the standardized features.
    """

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features, labels, *, l2=DEFAULT_L2, max_iterations=100, tol=1e-10):
        """Maximise the penalized log-likelihood of ``labels`` (0/1) given ``features``."""
        features = _as_features(features, "features")
        labels = np.asarray(labels, dtype=np.float64).reshape(-1)
        if len(labels) != len(features):
            raise ValueError(f"`features` and `labels` differ in length: {len(features)} vs {len(labels)}.")
        if not np.all((labels == 0) | (labels == 1)) or labels.min() == labels.max():
            raise ValueError("`labels` must be 0/1 and contain both classes.")
        mean, scale = features.mean(axis=0), features.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        design = np.hstack([np.ones((len(features), 1)), (features - mean) / scale])
        penalty = np.full(design.shape[1], l2 * len(labels))
        penalty[0] = 0.0  # the intercept is not penalized
        w = np.zeros(design.shape[1])
        for _ in range(max_iterations):
            p = _sigmoid(design @ w)
            gradient = design.T @ (p - labels) + penalty * w
            hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-12 * np.eye(len(w))
            step = np.linalg.solve(hessian, gradient)
            w -= step
            if np.max(np.abs(step)) < tol:
                break
        return cls(coef=w[1:], intercept=float(w[0]), mean=mean, scale=scale)

    def decision_function(self, features):
        """Log-odds of class 1."""
        return ((_as_features(features, "features") - self.mean) / self.scale) @ self.coef + self.intercept

    def predict_proba(self, features):
        """Probability of class 1."""
        return _sigmoid(self.decision_function(features))

    def predict(self, features):
        """0/1 predictions at probability 0.5."""
        return (self.decision_function(features) > 0).astype(np.int64)


def roc_auc(scores, labels):
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2.

    Computed from tie-averaged ranks (Mann-Whitney U).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    if len(scores) != len(labels):
        raise ValueError(f"`scores` and `labels` differ in length: {len(scores)} vs {len(labels)}.")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("`labels` must contain both classes for a ROC AUC.")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # Average the ranks of tied scores.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first[counts > 1], counts[counts > 1]):
        ranks[order[start : start + count]] = start + (count + 1) / 2.0
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def uncertainty_stats(uncertainty):
    """``{"mean", "std"}`` of an uncertainty array (as in Guan et al.'s tables)."""
    u = np.asarray(uncertainty, dtype=np.float64)
    return {"mean": float(u.mean()), "std": float(u.std())}


@dataclass
class UncertaintyDetector:
    """Logistic regression on uncertainty: clean (0) versus adversarial (1)."""

    classifier: LogisticRegression

    @classmethod
    def fit(cls, clean_uncertainty, adversarial_uncertainty, *, l2=DEFAULT_L2):
        """Train on the uncertainty of clean inputs and of adversarial inputs."""
        clean = _as_features(clean_uncertainty, "clean_uncertainty")
        adversarial = _as_features(adversarial_uncertainty, "adversarial_uncertainty")
        features = np.vstack([clean, adversarial])
        labels = np.r_[np.zeros(len(clean)), np.ones(len(adversarial))]
        return cls(LogisticRegression.fit(features, labels, l2=l2))

    def evaluate(self, clean_uncertainty, adversarial_uncertainty):
        """Detection accuracy and ROC AUC on clean (negative) and adversarial (positive) inputs."""
        clean = _as_features(clean_uncertainty, "clean_uncertainty")
        adversarial = _as_features(adversarial_uncertainty, "adversarial_uncertainty")
        features = np.vstack([clean, adversarial])
        labels = np.r_[np.zeros(len(clean)), np.ones(len(adversarial))]
        scores = self.classifier.decision_function(features)
        return {
            "accuracy": float(np.mean((scores > 0) == labels)),
            "auc": roc_auc(scores, labels),
            "n_clean": int(len(clean)),
            "n_adversarial": int(len(adversarial)),
        }


def mc_uncertainty(model, *, samples=50):
    """``x -> uncertainty`` from :func:`edgebnn.evaluation.uncertainty.predict_mc` (Guan Eq. 12)."""
    from edgebnn.evaluation.uncertainty import predict_mc  # noqa: PLC0415 (sibling module, zoo issue)

    return lambda x: np.asarray(predict_mc(model, x, samples=samples).uncertainty)


def detection_experiment(
    model,
    x_fit,
    y_fit,
    x_eval,
    y_eval,
    *,
    attack="fgsm",
    eps,
    samples=50,
    uncertainty_fn=None,
    batch_size=500,
    **attack_options,
):
    """Guan et al.'s protocol: fit the detector on one set, test it on fresh adversarial examples.

    Args:
        model: Keras model with MC dropout (stochastic at inference), returning logits.
        x_fit, y_fit: images (and labels) whose clean and adversarial versions train the detector.
        x_eval, y_eval: other images; their adversarial versions are generated afresh.
        attack: attack name or function (see :mod:`edgebnn.attacks`).
        eps: attack strength.
        samples: MC-dropout forward passes per input.
        uncertainty_fn: ``x -> (n,)`` uncertainty; default :func:`mc_uncertainty`.
        batch_size: crafting batch size.
        **attack_options: passed to the attack (e.g. ``eot_samples``).

    Returns:
        dict with ``detection`` (``accuracy``, ``auc``, counts, on the evaluation sets),
        ``fit_detection`` (same on the training sets), ``uncertainty`` (mean / std of
        ``fit_clean``, ``fit_adversarial``, ``eval_clean``, ``eval_adversarial``) and
        ``detector`` (the fitted :class:`UncertaintyDetector`).
    """
    if uncertainty_fn is None:
        uncertainty_fn = mc_uncertainty(model, samples=samples)
    x_fit_adv = craft(model, x_fit, y_fit, attack=attack, eps=eps, batch_size=batch_size, **attack_options)
    x_eval_adv = craft(model, x_eval, y_eval, attack=attack, eps=eps, batch_size=batch_size, **attack_options)
    u = {
        "fit_clean": uncertainty_fn(x_fit),
        "fit_adversarial": uncertainty_fn(x_fit_adv),
        "eval_clean": uncertainty_fn(x_eval),
        "eval_adversarial": uncertainty_fn(x_eval_adv),
    }
    detector = UncertaintyDetector.fit(u["fit_clean"], u["fit_adversarial"])
    return {
        "detection": detector.evaluate(u["eval_clean"], u["eval_adversarial"]),
        "fit_detection": detector.evaluate(u["fit_clean"], u["fit_adversarial"]),
        "uncertainty": {name: uncertainty_stats(values) for name, values in u.items()},
        "detector": detector,
    }
