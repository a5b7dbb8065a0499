"""Projected Gradient Descent (Madry et al. 2018), from CleverHans TF2 with validation."""

import numpy as np

from edgebnn.attacks.common import check_inputs, validate_attack, validate_norm, validate_steps

from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent


def pgd(
    model_fn,
    x,
    *,
    eps,
    steps=40,
    step_size=None,
    norm=np.inf,
    rand_init=True,
    y=None,
    targeted=False,
    clip_min=0.0,
    clip_max=1.0,
):
    """Iterated gradient steps projected onto the ``eps`` ball, from a random start.

    Args:
        model_fn: callable mapping a batch of inputs to logits.
        x: inputs in ``[clip_min, clip_max]``.
        eps: radius of the norm ball (>= 0).
        steps: number of gradient steps.
        step_size: size of each step (default ``2.5 * eps / steps``, capped at ``eps``).
        norm: ``np.inf`` or ``2``.
        rand_init: start from a uniformly random point of the ball (Madry) or from ``x`` (BIM).
        y: labels or targets; ``None`` uses the model's predictions (no label leaking).
        targeted: move toward ``y``.
        clip_min, clip_max: valid input range.

    Returns:
        Adversarial examples, a float32 tensor shaped like ``x``.
    """
    norm = validate_norm(norm)
    validate_attack(eps=eps, clip_min=clip_min, clip_max=clip_max, y=y, targeted=targeted)
    step_size = min(validate_steps(steps, step_size, eps), eps)
    x = check_inputs(x, clip_min=clip_min, clip_max=clip_max)
    if eps == 0:
        return x
    return projected_gradient_descent(
        model_fn, x, eps, step_size, steps, norm,
        clip_min=clip_min, clip_max=clip_max, y=y, targeted=targeted,
        rand_init=bool(rand_init), sanity_checks=False,
    )
