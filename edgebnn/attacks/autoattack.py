"""AutoAttack-style ensemble (Croce and Hein 2020): APGD-CE, then APGD-T, then Square.

Each attack runs only on the examples every earlier one failed on, so the robust
accuracy is the fraction that survives all of them, and the breakdown says which
attack broke how many. Gradient attacks run once per gradient surrogate (see
:mod:`edgebnn.attacks.surrogates`): an example counts as broken as soon as one
surrogate breaks it, which is the per-example worst case over surrogates. Square reads
logits only, so it runs once, last, as the gradient-free check.
"""

from dataclasses import dataclass, field

import numpy as np

from edgebnn import ops
from edgebnn.attacks.apgd import DEFAULT_TARGET_CLASSES, apgd, apgd_t
from edgebnn.attacks.common import predict_labels, prepare, validate_surrogate
from edgebnn.attacks.ensemble import DEFAULT_SURROGATES, STAGES, Ensemble, stage_names
from edgebnn.attacks.square import square

import tensorflow as tf


@dataclass
class AutoAttackResult:
    """What :func:`run_autoattack` found.

    Attributes:
        x_adv: adversarial examples (the clean input where no attack succeeded), NumPy.
        robust: bool per example, True when still classified correctly after every attack.
        broken_by: per example, the first stage that broke it (``"apgd-ce/smooth"``,
            ``"square"``, ...), ``"clean"`` when already misclassified, ``""`` when robust.
        breakdown: ``[{"attack", "surrogate", "attacked", "broken"}]`` in run order.
        eps, norm: the budget.
    """

    x_adv: np.ndarray
    robust: np.ndarray
    broken_by: np.ndarray
    breakdown: list = field(default_factory=list)
    eps: float = 0.0
    norm: str = "inf"

    @property
    def clean_accuracy(self):
        return float(np.mean(self.broken_by != "clean"))

    @property
    def robust_accuracy(self):
        return float(np.mean(self.robust))

    def to_dict(self):
        """JSON-able summary (no arrays)."""
        return {
            "eps": self.eps,
            "norm": self.norm,
            "n": int(len(self.robust)),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "breakdown": [dict(row) for row in self.breakdown],
        }


def _batched(attack_fn, model_fn, x, y, batch_size, **options):
    return np.concatenate([
        np.asarray(attack_fn(model_fn, x[i : i + batch_size], y=y[i : i + batch_size], **options))
        for i in range(0, len(x), batch_size)
    ])


def run_autoattack(
    model_fn, x, y=None, *, eps, norm=np.inf, surrogates=DEFAULT_SURROGATES, steps=100,
    target_classes=DEFAULT_TARGET_CLASSES, restarts=1, square_queries=5000, stages=STAGES, eot_samples=1,
    batch_size=500, clip_min=0.0, clip_max=1.0,
):
    """Run the ensemble and return an :class:`AutoAttackResult` with the per-attack breakdown.

    Args:
        model_fn: callable mapping inputs to logits (a Keras model lets Larq sign
            quantizers take every surrogate).
        x: inputs in ``[clip_min, clip_max]`` (images for Square).
        y: true labels; ``None`` uses the model's predictions.
        eps: radius of the norm ball (>= 0).
        norm: ``np.inf`` or ``2``.
        surrogates: gradient surrogates the APGD stages try, in order (keys of
            :data:`edgebnn.ops.SURROGATES`).
        steps: APGD iterations per run (100 in AutoAttack).
        target_classes: APGD-T target classes (9 in AutoAttack), capped at classes - 1.
        restarts: APGD runs per stage (and per target class).
        square_queries: Square's query budget per example (5,000 in AutoAttack).
        stages: subset of :data:`STAGES` to run, kept in ensemble order.
        eot_samples: EOT passes per APGD gradient for randomized models.
        batch_size: examples per compiled attack call.
        clip_min, clip_max: valid input range.

    Returns:
        :class:`AutoAttackResult`.

    Raises:
        ValueError: bad budget, stage or surrogate names, before any attack runs.
    """
    if isinstance(surrogates, str) or not surrogates:
        raise ValueError(f"`surrogates` must be a non-empty list of names from {sorted(ops.SURROGATES)}, got {surrogates!r}.")
    surrogates = [validate_surrogate(s) for s in surrogates]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"`stages` must be a non-empty subset of {list(STAGES)}, got {stages!r}.")
    a = prepare(model_fn, x, y=y, targeted=False, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm,
                eot_samples=eot_samples, steps=steps, restarts=restarts, square_queries=square_queries,
                batch_size=batch_size, target_classes=target_classes)
    x, eps, norm, batch_size = a.x.numpy(), a.eps, a.norm, a.batch_size
    predicted = predict_labels(model_fn, x, batch_size=batch_size)
    y = predicted if a.y is None else a.y.numpy()
    classes = int(np.asarray(model_fn(tf.constant(x[:1]))).shape[-1])
    target_classes = min(target_classes, classes - 1)

    ensemble = Ensemble(predicted == y)
    x_adv = x.copy()
    common = dict(eps=float(eps), norm=norm, clip_min=clip_min, clip_max=clip_max)
    gradient = dict(steps=steps, restarts=restarts, eot_samples=eot_samples)
    options = {"apgd-ce": (apgd, dict(loss="ce", **gradient)),
               "apgd-t": (apgd_t, dict(target_classes=target_classes, **gradient)),
               "square": (square, dict(steps=square_queries))}
    for stage, surrogate in stage_names(surrogates):
        if stage not in stages:
            continue
        attack_fn, stage_options = options[stage]
        surrogate_option = {} if surrogate is None else {"surrogate": surrogate}
        idx = np.flatnonzero(ensemble.robust)
        correct = np.ones(len(x), bool)
        if len(idx) and eps > 0:
            candidate = _batched(attack_fn, model_fn, x[idx], y[idx], batch_size, **common, **stage_options,
                                 **surrogate_option)
            fooled = predict_labels(model_fn, candidate, batch_size=batch_size) != y[idx]
            x_adv[idx[fooled]] = candidate[fooled]
            correct[idx[fooled]] = False
        ensemble.add(stage if surrogate is None else f"{stage}/{surrogate}", correct, attack=stage, surrogate=surrogate)
    robust, broken_by, breakdown = ensemble.robust, ensemble.broken_by, ensemble.breakdown
    return AutoAttackResult(
        x_adv=x_adv, robust=robust, broken_by=broken_by.astype(str), breakdown=breakdown, eps=float(eps),
        norm="inf" if norm == np.inf else "l2",
    )


def autoattack(
    model_fn, x, *, eps, norm=np.inf, y=None, targeted=False, clip_min=0.0, clip_max=1.0,
    surrogates=DEFAULT_SURROGATES, steps=100, target_classes=DEFAULT_TARGET_CLASSES, restarts=1,
    square_queries=5000, eot_samples=1, batch_size=500,
):
    """The ensemble with the common attack signature: adversarial examples only.

    See :func:`run_autoattack` for the arguments and for the per-attack breakdown.
    Runs eagerly (each stage selects the still-robust examples), so
    :func:`edgebnn.evaluation.robustness.craft` calls it once on the whole set.

    Raises:
        ValueError: ``targeted=True`` (the ensemble is untargeted; APGD-T picks its own targets).
    """
    if targeted:
        raise ValueError("`targeted=True` is not supported by autoattack (untargeted ensemble; use apgd(targeted=True)).")
    result = run_autoattack(
        model_fn, x, y, eps=eps, norm=norm, surrogates=surrogates, steps=steps, target_classes=target_classes,
        restarts=restarts, square_queries=square_queries, eot_samples=eot_samples, batch_size=batch_size,
        clip_min=clip_min, clip_max=clip_max,
    )
    return tf.constant(result.x_adv)
