"""Numbers of an attacked set, from clean and adversarial images and predictions: NumPy only.

Accuracy, success rate and perturbation norms (:func:`attack_metrics`), the accuracy
within an L2 budget of a minimum-distortion attack (:func:`accuracy_within_l2`), and
which wrong class a targeted attack aims at (:func:`targets_for`).
"""

import numpy as np


def l2_distances(x, x_adv):
    """Per-row L2 distance of ``x_adv`` from ``x``."""
    return np.sqrt(np.sum((np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1) ** 2, axis=1))


def targets_for(y, *, mode, num_classes, rng):
    """``(index, targets)``: which images are attacked toward which wrong class.

    ``"random"``: every image once, toward a uniformly drawn wrong class; ``"all"``:
    every image once per wrong class (``num_classes - 1`` rows each).
    """
    y = np.asarray(y)
    if mode == "random":
        return np.arange(len(y)), (y + rng.integers(1, num_classes, size=len(y))) % num_classes
    index = np.repeat(np.arange(len(y)), num_classes - 1)
    offsets = np.tile(np.arange(1, num_classes), len(y))
    return index, (y[index] + offsets) % num_classes


def perturbation_metrics(x, x_adv, success):
    """Mean / median L2 and L-inf norms of the perturbations of the successful examples (``None`` if none)."""
    delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)[np.asarray(success, bool)]
    if len(delta) == 0:
        return dict.fromkeys(PERTURBATION_METRICS)
    l2, linf = np.sqrt(np.sum(delta**2, axis=1)), np.max(np.abs(delta), axis=1)
    return {"l2_mean": float(l2.mean()), "l2_median": float(np.median(l2)),
            "linf_mean": float(linf.mean()), "linf_median": float(np.median(linf))}


def linf_max(x, x_adv):
    """Largest L-inf distance of any adversarial example from its clean image (all rows, not only successes)."""
    if len(x) == 0:
        return None
    return float(np.max(np.abs(np.asarray(x_adv, np.float64) - np.asarray(x, np.float64))))


#: The metrics of :func:`perturbation_metrics`.
PERTURBATION_METRICS = ("l2_mean", "l2_median", "linf_mean", "linf_median")
#: The metrics of :func:`attack_metrics`, in its order.
ATTACK_METRICS = ("accuracy", "l2_mean_all", "success_rate", "attempted", "successes", "linf_max", *PERTURBATION_METRICS)


def attack_metrics(*, x, x_adv, y, clean_pred, adv_pred, targets=None):
    """Accuracy (true labels), success rate and perturbation norms of one attacked set.

    Args:
        x, x_adv: clean and adversarial images (same rows).
        y: true labels of the rows.
        clean_pred, adv_pred: the model's predictions on ``x`` and ``x_adv``.
        targets: target classes of a targeted attack, else ``None``.
    """
    y, clean_pred, adv_pred = np.asarray(y), np.asarray(clean_pred), np.asarray(adv_pred)
    if targets is None:
        attempted = clean_pred == y
        success = attempted & (adv_pred != y)
    else:
        attempted = np.ones(len(y), bool)
        success = adv_pred == np.asarray(targets)
    l2_all = l2_distances(x, x_adv)
    return {
        "accuracy": float(np.mean(adv_pred == y)),
        "l2_mean_all": float(l2_all.mean()) if len(l2_all) else None,
        "success_rate": float(success.sum() / attempted.sum()) if attempted.any() else None,
        "attempted": int(attempted.sum()),
        "successes": int(success.sum()),
        "linf_max": linf_max(x, x_adv),
        **perturbation_metrics(x, x_adv, success),
    }


def accuracy_within_l2(*, x, x_adv, y, clean_pred, adv_pred, budget):
    """Accuracy when an adversarial example counts only within L2 distance ``budget`` of its image.

    A minimum-distortion attack (CW-L2) returns an example for every image, some far
    away; within a budget, a row farther than ``budget`` keeps its clean prediction
    (Carlini and Wagner's accuracy at a distortion bound).

    Args:
        x, x_adv: clean and adversarial images (same rows).
        y: true labels.
        clean_pred, adv_pred: the model's predictions on ``x`` and ``x_adv``.
        budget: largest L2 distance that counts (>= 0).

    Raises:
        ValueError: negative ``budget``.
    """
    if not budget >= 0:
        raise ValueError(f"`budget` must be >= 0, got {budget!r}.")
    within = np.where(l2_distances(x, x_adv) <= budget, np.asarray(adv_pred), np.asarray(clean_pred))
    return float(np.mean(within == np.asarray(y)))


def median_l2_of_successes(*, x, x_adv, y, adv_pred):
    """Median L2 distance of the rows the attack moved to a wrong class (NaN if none)."""
    l2 = l2_distances(x, x_adv)
    fooled = (np.asarray(adv_pred) != np.asarray(y)) & (l2 > 0)
    return float(np.median(l2[fooled])) if fooled.any() else float("nan")
