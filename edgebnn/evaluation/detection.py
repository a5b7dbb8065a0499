"""Adversarial-input detection from MC-dropout uncertainty (Guan et al.).

The detector is Guan et al.'s: a model with MC dropout is sampled many times per input
(:func:`edgebnn.evaluation.uncertainty.predict_mc`); adversarial inputs tend to have a
higher predictive uncertainty than clean ones, so a logistic regression on the
uncertainty, trained on one set of clean / adversarial inputs, flags adversarial
inputs. It is evaluated on adversarial examples generated afresh from other images.
Reported as in Guan et al.'s Tables 3-4: detection accuracy, ROC AUC, and the mean and
standard deviation of the uncertainty of every set.

The logistic regression and the ROC AUC are scikit-learn's (``LogisticRegression`` on
standardized features, ``roc_auc_score``), imported when a detector is fitted or
evaluated, so that importing this module (as every test collection and every run
without detection does) does not load scikit-learn.
"""

from dataclasses import dataclass

import numpy as np

from edgebnn.evaluation.robustness import craft
from edgebnn.evaluation.uncertainty import predict_mc

#: Ridge penalty per training example of the logistic regression (on standardized
#: features): the objective is ``mean log-loss + l2 / 2 * |w|^2``, which keeps the
#: coefficients finite when clean and adversarial uncertainties separate perfectly.
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


def fit_logistic_regression(features, labels, *, l2=DEFAULT_L2):
    """scikit-learn's logistic regression on standardized ``features``, fitted to 0/1 ``labels``.

    Args:
        features: ``(n,)`` or ``(n, features)`` array.
        labels: ``(n,)`` 0/1 labels with both classes.
        l2: ridge penalty per example (scikit-learn's ``C = 1 / (l2 * n)``); the
            intercept is not penalized.

    Returns:
        A fitted ``sklearn.pipeline.Pipeline`` (``StandardScaler``, ``LogisticRegression``).

    Raises:
        ValueError: bad ``features``, ``labels`` or ``l2``.
    """
    features = _as_features(features, "features")
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(labels) != len(features):
        raise ValueError(f"`features` and `labels` differ in length: {len(features)} vs {len(labels)}.")
    if not np.all((labels == 0) | (labels == 1)) or labels.min() == labels.max():
        raise ValueError("`labels` must be 0/1 and contain both classes.")
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 > 0:
        raise ValueError(f"`l2` must be a number > 0, got {l2!r}.")
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 (module docstring)
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    classifier = LogisticRegression(C=1.0 / (l2 * len(labels)), solver="lbfgs", tol=1e-10, max_iter=1000)
    return make_pipeline(StandardScaler(), classifier).fit(features, labels.astype(np.int64))


def uncertainty_stats(uncertainty):
    """``{"mean", "std"}`` of an uncertainty array (as in Guan et al.'s tables)."""
    u = np.asarray(uncertainty, dtype=np.float64)
    return {"mean": float(u.mean()), "std": float(u.std())}


@dataclass
class UncertaintyDetector:
    """Logistic regression on uncertainty: clean (0) versus adversarial (1)."""

    classifier: "sklearn.pipeline.Pipeline"  # noqa: F821 (imported when fitted)

    @classmethod
    def fit(cls, clean_uncertainty, adversarial_uncertainty, *, l2=DEFAULT_L2):
        """Train on the uncertainty of clean inputs and of adversarial inputs."""
        features, labels = _stack(clean_uncertainty, adversarial_uncertainty)
        return cls(fit_logistic_regression(features, labels, l2=l2))

    def evaluate(self, clean_uncertainty, adversarial_uncertainty):
        """Detection accuracy and ROC AUC on clean (negative) and adversarial (positive) inputs."""
        from sklearn.metrics import roc_auc_score  # noqa: PLC0415 (module docstring)

        features, labels = _stack(clean_uncertainty, adversarial_uncertainty)
        scores = self.classifier.decision_function(features)
        return {
            "accuracy": float(np.mean((scores > 0) == labels)),
            "auc": float(roc_auc_score(labels, scores)),
            "n_clean": int(np.sum(labels == 0)),
            "n_adversarial": int(np.sum(labels == 1)),
        }


def _stack(clean_uncertainty, adversarial_uncertainty):
    clean = _as_features(clean_uncertainty, "clean_uncertainty")
    adversarial = _as_features(adversarial_uncertainty, "adversarial_uncertainty")
    return np.vstack([clean, adversarial]), np.r_[np.zeros(len(clean)), np.ones(len(adversarial))]


def mc_uncertainty(model, *, samples=50):
    """``x -> uncertainty`` from :func:`edgebnn.evaluation.uncertainty.predict_mc` (Guan Eq. 12)."""
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
    return detection_summary(
        fit_clean=uncertainty_fn(x_fit), fit_adversarial=uncertainty_fn(x_fit_adv),
        eval_clean=uncertainty_fn(x_eval), eval_adversarial=uncertainty_fn(x_eval_adv),
    )


def detection_summary(*, fit_clean, fit_adversarial, eval_clean, eval_adversarial):
    """:func:`detection_experiment`'s numbers from the uncertainty of its four image sets: the
    detector fitted on the fit sets' uncertainty and tested on the evaluation sets'.

    Args:
        fit_clean, fit_adversarial: ``(n,)`` uncertainty of the clean and adversarial fit images.
        eval_clean, eval_adversarial: ``(m,)`` uncertainty of the clean and adversarial evaluated images.

    Returns:
        dict with ``detection``, ``fit_detection``, ``uncertainty`` and ``detector``, as
        :func:`detection_experiment` describes.

    Raises:
        ValueError: empty, non-finite or badly shaped uncertainty.
    """
    u = {"fit_clean": fit_clean, "fit_adversarial": fit_adversarial, "eval_clean": eval_clean,
         "eval_adversarial": eval_adversarial}
    detector = UncertaintyDetector.fit(u["fit_clean"], u["fit_adversarial"])
    return {
        "detection": detector.evaluate(u["eval_clean"], u["eval_adversarial"]),
        "fit_detection": detector.evaluate(u["fit_clean"], u["fit_adversarial"]),
        "uncertainty": {name: uncertainty_stats(values) for name, values in u.items()},
        "detector": detector,
    }
