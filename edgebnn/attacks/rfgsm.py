"""R-FGSM: a random sign step, then a gradient sign step, in two variants.

``variant="tramer"`` (Tramèr et al. 2018, "Ensemble adversarial training", Eq. 7): the
gradient step is ``eps - alpha``, so the total perturbation stays within ``eps``.
``variant="panda"`` (Panda et al. 2019, Sec. 3 with their Eq. 1): the gradient step is a
full FGSM step of ``eps`` after the random step of ``alpha``, a total L-inf of up to
``alpha + eps`` (``1.5 * eps`` with the default ``alpha = eps / 2``).
"""

import numpy as np

from edgebnn import randomness
from edgebnn.attacks.common import (
    clip, compiled, labels_or_predictions, loss_gradient, optimize_linear, per_example, prepare,
    validate_nonnegative,
)
from edgebnn.choices import RFGSM_VARIANTS as VARIANTS

import tensorflow as tf



def rfgsm_core(model_fn, x, y, *, eps, alpha, targeted, clip_min, clip_max, eot_samples=1, variant="tramer",
               surrogate="ste"):
    """Graph-mode R-FGSM; ``eps`` and ``alpha`` may be scalars or per-example ``(batch,)``."""
    y = labels_or_predictions(model_fn, x, y)
    eps, alpha = per_example(eps, x), per_example(alpha, x)
    x_rand = clip(x + alpha * tf_sign_normal(x), clip_min, clip_max)
    grad, _ = loss_gradient(model_fn, x_rand, y, targeted=targeted, eot_samples=eot_samples, surrogate=surrogate)
    if VARIANTS[variant]:
        x_adv = x_rand + optimize_linear(grad, eps - alpha, np.inf)
        # The two steps add up to at most eps; the explicit clip guards against rounding.
        x_adv = tf.clip_by_value(x_adv, x - eps, x + eps)
    else:
        x_adv = x_rand + optimize_linear(grad, eps, np.inf)
    return clip(x_adv, clip_min, clip_max)


def tf_sign_normal(x):
    """``sign(N(0, I))`` shaped like ``x``: a random vertex of the unit L-inf ball."""
    return tf.sign(randomness.normal(tf.shape(x), dtype=x.dtype))


def validate_variant(variant):
    """``variant`` if it is a key of :data:`VARIANTS`, else ``ValueError`` naming the valid ones."""
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {sorted(VARIANTS)}, got {variant!r}.")
    return variant


def max_linf(eps, *, alpha=None, variant="tramer"):
    """The largest L-inf perturbation R-FGSM can produce: ``eps`` (Tramèr) or ``alpha + eps`` (Panda)."""
    alpha = eps / 2.0 if alpha is None else alpha
    return float(eps) if VARIANTS[validate_variant(variant)] else float(alpha + eps)


_rfgsm = compiled(rfgsm_core)


def rfgsm(
    model_fn, x, *, eps, alpha=None, variant="tramer", y=None, targeted=False, clip_min=0.0, clip_max=1.0,
    eot_samples=1, surrogate="ste",
):
    """R-FGSM, L-inf: ``x' = x + alpha * sign(N(0, I))``, then a gradient sign step from ``x'``.

    The random step escapes the sharp curvature around data points that makes
    single-step FGSM weak against FGSM-trained models (Tramèr et al. 2018, Eq. 7).

    - ``variant="tramer"``: ``x' + (eps - alpha) * sign(grad(x'))``; L-inf <= ``eps``.
    - ``variant="panda"``: ``x' + eps * sign(grad(x'))`` (Panda et al. 2019: the random
      step, then their Eq. 1, FGSM of size ``eps``); L-inf <= ``alpha + eps``, i.e.
      ``1.5 * eps`` at the default ``alpha``. Compare its accuracies with attacks of
      budget ``eps`` knowing the perturbation may be half as large again.

    Args:
        model_fn, x: the model (inputs to logits) and the inputs, as in every attack.
        eps: L-inf budget of the whole attack (``"tramer"``) or of its gradient step
            (``"panda"``), >= 0.
        alpha: size of the random step, ``0 <= alpha <= eps``; default ``eps / 2``
            (both papers).
        variant: ``"tramer"`` or ``"panda"`` (see above).
        y, targeted, clip_min, clip_max, eot_samples: the arguments every attack shares (:mod:`edgebnn.attacks`).
        surrogate: backward pass through discretization and sign, a key of
            :data:`edgebnn.ops.SURROGATES` (``"ste"``: each op's own).

    Returns:
        Adversarial examples shaped like ``x``.

    Raises:
        ValueError: for ``eps < 0``, ``alpha`` outside ``[0, eps]``, an unknown
            ``variant``, ``clip_min > clip_max``, ``targeted`` without ``y`` or inputs
            outside the clip range.
    """
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps,
                eot_samples=eot_samples, surrogate=surrogate)
    variant = validate_variant(variant)
    alpha = a.eps / 2.0 if alpha is None else validate_nonnegative(alpha, "alpha")
    if alpha > a.eps:
        raise ValueError(f"`alpha` must be <= `eps` ({eps}), got {alpha!r}.")
    return _rfgsm(
        model_fn, a.x, a.y, eps=a.eps, alpha=float(alpha), targeted=a.targeted,
        clip_min=clip_min, clip_max=clip_max, eot_samples=a.eot_samples, variant=variant,
        surrogate=a.surrogate,
    )
