"""R-FGSM: a random sign step, then FGSM (Tramèr et al. 2018, "Ensemble adversarial training")."""

import numpy as np

from edgebnn.attacks.common import (
    check_inputs, check_labels, clip, compiled, labels_or_predictions, loss_gradient,
    optimize_linear, per_example, validate_attack, validate_nonnegative, validate_positive_int,
)

import tensorflow as tf


def rfgsm_core(model_fn, x, y, *, eps, alpha, targeted, clip_min, clip_max, eot_samples=1):
    """Graph-mode R-FGSM; ``eps`` and ``alpha`` may be scalars or per-example ``(batch,)``."""
    y = labels_or_predictions(model_fn, x, y)
    eps, alpha = per_example(eps, x), per_example(alpha, x)
    x_rand = clip(x + alpha * tf_sign_normal(x), clip_min, clip_max)
    grad, _ = loss_gradient(model_fn, x_rand, y, targeted=targeted, eot_samples=eot_samples)
    x_adv = x_rand + optimize_linear(grad, eps - alpha, np.inf)
    # The two steps add up to at most eps; the explicit clip guards against rounding.
    return clip(tf.clip_by_value(x_adv, x - eps, x + eps), clip_min, clip_max)


def tf_sign_normal(x):
    """``sign(N(0, I))`` shaped like ``x``: a random vertex of the unit L-inf ball."""
    return tf.sign(tf.random.normal(tf.shape(x), dtype=x.dtype))


_rfgsm = compiled(rfgsm_core)


def rfgsm(model_fn, x, *, eps, alpha=None, y=None, targeted=False, clip_min=0.0, clip_max=1.0, eot_samples=1):
    """R-FGSM, L-inf: ``x' = x + alpha * sign(N(0, I))``, then ``x' + (eps - alpha) * sign(grad(x'))``.

    The random step escapes the sharp curvature around data points that makes
    single-step FGSM weak against FGSM-trained models (Tramèr et al. 2018, Eq. 7).

    Args:
        model_fn: callable mapping inputs to logits.
        x: inputs in ``[clip_min, clip_max]``.
        eps: total L-inf budget (>= 0).
        alpha: size of the random step, ``0 <= alpha <= eps``; default ``eps / 2`` (Tramèr).
        y: labels or targets; ``None`` uses the model's predictions.
        targeted: move toward ``y``.
        clip_min, clip_max: valid input range.
        eot_samples: EOT forward passes per gradient.

    Returns:
        Adversarial examples shaped like ``x``.
    """
    validate_attack(eps=eps, clip_min=clip_min, clip_max=clip_max, y=y, targeted=targeted)
    alpha = eps / 2.0 if alpha is None else validate_nonnegative(alpha, "alpha")
    if alpha > eps:
        raise ValueError(f"`alpha` must be <= `eps` ({eps}), got {alpha!r}.")
    eot_samples = validate_positive_int(eot_samples, "eot_samples")
    x = check_inputs(x, clip_min=clip_min, clip_max=clip_max, model_fn=model_fn)
    return _rfgsm(
        model_fn, x, check_labels(y, x), eps=float(eps), alpha=float(alpha), targeted=bool(targeted),
        clip_min=clip_min, clip_max=clip_max, eot_samples=eot_samples,
    )
