"""Projected Gradient Descent (Madry et al. 2018): random start, restarts, EOT, compiled."""

import numpy as np

from edgebnn import randomness
from edgebnn.attacks.common import (
    STEPS_IN_FLIGHT, call_model, clip, compiled, cross_entropy, labels_or_predictions, loss_gradient, optimize_linear,
    prepare, project, random_init, stop_point, validate_steps,
)

import tensorflow as tf

#: Added to the score of a successful restart so that success always beats a higher loss.
_SUCCESS_BONUS = 1e9


def attack_score(model_fn, x_adv, y, *, targeted):
    """Per-example score of an adversarial example: success first, then the attack loss."""
    logits = call_model(model_fn, x_adv)
    pred = tf.argmax(logits, axis=-1)
    success = tf.equal(pred, y) if targeted else tf.not_equal(pred, y)
    loss = cross_entropy(logits, y)
    return tf.cast(success, tf.float32) * _SUCCESS_BONUS + (-loss if targeted else loss)


def pgd_core(
    model_fn, x, y, *, eps, steps, step_size, norm, rand_init, targeted, clip_min, clip_max,
    restarts=1, eot_samples=1, surrogate="ste",
):
    """Graph-mode PGD on validated tensors; ``eps`` / ``step_size`` scalars or per-example."""
    y = labels_or_predictions(model_fn, x, y)
    best, best_score = x, None
    for _ in range(restarts):  # unrolled: restarts are few
        x_adv = clip(x + random_init(x, eps, norm), clip_min, clip_max) if rand_init else x
        for step in tf.range(steps):
            tf.autograph.experimental.set_loop_options(parallel_iterations=STEPS_IN_FLIGHT)
            stop_point(step)
            randomness.loop_step(step)
            grad, _ = loss_gradient(model_fn, x_adv, y, targeted=targeted, eot_samples=eot_samples, surrogate=surrogate)
            x_adv = x_adv + optimize_linear(grad, step_size, norm)
            x_adv = clip(x + project(x_adv - x, eps, norm), clip_min, clip_max)
        if restarts == 1:
            return x_adv
        score = attack_score(model_fn, x_adv, y, targeted=targeted)
        if best_score is None:
            best, best_score = x_adv, score
        else:
            better = score > best_score
            mask = tf.reshape(better, [-1] + [1] * (x.shape.rank - 1))
            best, best_score = tf.where(mask, x_adv, best), tf.maximum(score, best_score)
    return best


_pgd = compiled(pgd_core)


def pgd_step_size(steps, step_size, eps):
    """PGD's (and BIM's) step size: ``step_size``, default ``2.5 * eps / steps``, capped at ``eps``.

    The one rule for both backends (:mod:`edgebnn.attacks.cleverhans_backend` too), so
    that they take the same steps.
    """
    return min(validate_steps(steps, step_size, eps), eps)


def pgd(
    model_fn, x, *, eps, steps=40, step_size=None, norm=np.inf, rand_init=True, restarts=1, y=None, targeted=False,
    clip_min=0.0, clip_max=1.0, eot_samples=1, surrogate="ste",
):
    """Iterated gradient steps projected onto the ``eps`` ball, from a random start.

    With ``restarts > 1`` the attack runs again from new random starts and keeps, per
    example, the worst case: a successful example over a failed one, then the higher
    loss. The whole loop runs as one compiled graph.

    Args:
        model_fn: callable mapping a batch of inputs to logits.
        x: inputs in ``[clip_min, clip_max]``.
        eps: radius of the norm ball (>= 0).
        steps: number of gradient steps.
        step_size: size of each step (default ``2.5 * eps / steps``, capped at ``eps``).
        norm: ``np.inf`` or ``2``.
        rand_init: start from a uniformly random point of the ball (Madry) or from ``x`` (BIM).
        restarts: number of runs (>= 1); the worst case per example is kept.
        y: labels or targets; ``None`` uses the model's predictions (no label leaking).
        targeted: move toward ``y``.
        clip_min, clip_max: valid input range.
        eot_samples: loss gradients averaged over this many forward passes (EOT).
        surrogate: backward pass through discretization and sign, a key of
            :data:`edgebnn.ops.SURROGATES` (``"ste"``: each op's own).

    Returns:
        Adversarial examples, a float32 tensor shaped like ``x``.
    """
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm,
                eot_samples=eot_samples, surrogate=surrogate, steps=steps, restarts=restarts)
    step_size = pgd_step_size(a.steps, step_size, a.eps)
    if a.restarts > 1 and not rand_init:
        raise ValueError(f"`restarts` > 1 needs `rand_init=True` (restarts from the same start repeat the same run), got restarts={a.restarts}.")
    if a.eps == 0:
        return a.x
    return _pgd(
        model_fn, a.x, a.y, eps=a.eps, steps=a.steps, step_size=float(step_size),
        norm=a.norm, rand_init=bool(rand_init), targeted=a.targeted, clip_min=clip_min, clip_max=clip_max,
        restarts=a.restarts, eot_samples=a.eot_samples, surrogate=a.surrogate,
    )
