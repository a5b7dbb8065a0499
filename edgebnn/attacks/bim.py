"""Basic Iterative Method (Kurakin et al. 2017): PGD from the clean input, no random start."""

import numpy as np

from edgebnn.attacks.pgd import pgd


def bim(
    model_fn, x, *, eps, steps=10, step_size=None, norm=np.inf, y=None, targeted=False,
    clip_min=0.0, clip_max=1.0, eot_samples=1,
):
    """Iterated FGSM steps of ``step_size`` projected onto the ``eps`` ball, starting at ``x``.

    Args:
        model_fn: callable mapping inputs to logits.
        x: inputs in ``[clip_min, clip_max]``.
        eps: radius of the norm ball (>= 0).
        steps: number of steps.
        step_size: step size (default ``2.5 * eps / steps``, capped at ``eps``).
        norm: ``np.inf`` or ``2``.
        y: labels or targets; ``None`` uses the model's predictions.
        targeted: move toward ``y``.
        clip_min, clip_max: valid input range.
        eot_samples: EOT forward passes per gradient.

    Returns:
        Adversarial examples shaped like ``x``.
    """
    return pgd(
        model_fn, x, eps=eps, steps=steps, step_size=step_size, norm=norm, rand_init=False,
        y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eot_samples=eot_samples,
    )
