"""Momentum Iterative Method (Dong et al. 2018, "Boosting adversarial attacks with momentum")."""

import numpy as np

from edgebnn import randomness
from edgebnn.attacks.common import (
    AVOID_ZERO_DIV, clip, compiled, labels_or_predictions, loss_gradient, optimize_linear, prepare, project,
    validate_nonnegative, validate_steps, STEPS_IN_FLIGHT, stop_point,
)

import tensorflow as tf


def mim_core(model_fn, x, y, *, eps, steps, step_size, decay, norm, targeted, clip_min, clip_max, eot_samples=1,
             surrogate="ste"):
    """Graph-mode MIM on validated tensors."""
    y = labels_or_predictions(model_fn, x, y)
    axes = list(range(1, x.shape.rank))
    momentum, x_adv = tf.zeros_like(x), x
    for step in tf.range(steps):
        tf.autograph.experimental.set_loop_options(parallel_iterations=STEPS_IN_FLIGHT)
        stop_point(step)
        randomness.loop_step(step)
        grad, _ = loss_gradient(model_fn, x_adv, y, targeted=targeted, eot_samples=eot_samples, surrogate=surrogate)
        # Each gradient is L1-normalised (mean absolute value) before it is accumulated.
        grad = grad / tf.maximum(AVOID_ZERO_DIV, tf.reduce_mean(tf.abs(grad), axes, keepdims=True))
        momentum = decay * momentum + grad
        x_adv = x_adv + optimize_linear(momentum, step_size, norm)
        x_adv = clip(x + project(x_adv - x, eps, norm), clip_min, clip_max)
    return x_adv


_mim = compiled(mim_core)


def mim_options(steps, step_size, decay, eps):
    """MIM's own options, checked: ``(step_size, decay)``, the step size ``eps / steps`` by default (Dong et al.).

    The one rule for both backends (:mod:`edgebnn.attacks.cleverhans_backend` too).
    """
    step_size = eps / steps if step_size is None else validate_steps(steps, step_size, eps)
    return step_size, validate_nonnegative(decay, "decay")


def mim(
    model_fn, x, *, eps, steps=10, step_size=None, decay=1.0, norm=np.inf, y=None, targeted=False,
    clip_min=0.0, clip_max=1.0, eot_samples=1, surrogate="ste",
):
    """Iterative FGSM whose direction is a decaying sum of L1-normalised gradients.

    Same result as CleverHans' ``momentum_iterative_method`` on a deterministic model.

    Args:
        model_fn, x: the model (inputs to logits) and the inputs, as in every attack.
        eps: radius of the norm ball (>= 0).
        steps: number of steps.
        step_size: step size (default ``eps / steps``, Dong et al.).
        decay: momentum decay factor mu (>= 0; 1.0 in the paper).
        norm: ``np.inf`` or ``2``.
        y, targeted, clip_min, clip_max, eot_samples: the arguments every attack shares (:mod:`edgebnn.attacks`).
        surrogate: backward pass through discretization and sign, a key of
            :data:`edgebnn.ops.SURROGATES` (``"ste"``: each op's own).

    Returns:
        Adversarial examples shaped like ``x``.
    """
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm,
                eot_samples=eot_samples, surrogate=surrogate, steps=steps)
    step_size, decay = mim_options(a.steps, step_size, decay, a.eps)
    if a.eps == 0:
        return a.x
    return _mim(
        model_fn, a.x, a.y, eps=a.eps, steps=a.steps, step_size=float(step_size),
        decay=decay, norm=a.norm, targeted=a.targeted, clip_min=clip_min, clip_max=clip_max,
        eot_samples=a.eot_samples, surrogate=a.surrogate,
    )
