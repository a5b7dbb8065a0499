"""SPSA (Uesato et al. 2018, "Adversarial risk and the dangers of evaluating against weak attacks").

Gradient-free: the gradient of the logit margin is estimated from finite differences
along random +-1 directions (simultaneous perturbation), so gradient masking (zero,
noisy or misleading gradients of discretized and binary models) does not blunt it.
"""

from edgebnn import randomness
from edgebnn.attacks.common import (
    adam_direction, call_model, clip, compiled, labels_or_predictions, logit_margin, prepare, project, random_init,
    validate_nonnegative, STEPS_IN_FLIGHT, stop_point,
)

import numpy as np
import tensorflow as tf

def spsa_core(
    model_fn, x, y, *, eps, steps, learning_rate, delta, num_samples, targeted, clip_min, clip_max,
    rand_init=True, eot_samples=1,
):
    """Graph-mode SPSA on validated tensors (L-inf)."""
    y = labels_or_predictions(model_fn, x, y)
    half = num_samples // 2  # antithetic pairs +v / -v
    batch = tf.shape(x)[0]
    features = tf.shape(x)[1:]
    per_example_shape = tf.concat([[batch, 2 * half], features], axis=0)
    flat_shape = tf.concat([[batch * 2 * half], features], axis=0)
    y_rep = tf.repeat(y, 2 * half)  # example-major, like tf.repeat(x_adv, ...) below
    mask_shape = [-1] + [1] * (x.shape.rank - 1)

    def loss(inputs, labels):
        total = 0.0
        for _ in range(eot_samples):
            total += logit_margin(call_model(model_fn, inputs), labels, targeted=targeted)
        return total / eot_samples

    x_adv = clip(x + random_init(x, eps, np.inf), clip_min, clip_max) if rand_init else x
    best, best_loss = x_adv, loss(x_adv, y)
    m, v = tf.zeros_like(x), tf.zeros_like(x)
    for step in tf.range(steps):
        tf.autograph.experimental.set_loop_options(parallel_iterations=STEPS_IN_FLIGHT)
        stop_point(step)
        randomness.loop_step(step)
        direction = tf.sign(randomness.uniform(tf.concat([[batch, half], features], 0), -1.0, 1.0))
        direction = tf.reshape(tf.concat([direction, -direction], axis=1), flat_shape)
        values = loss(tf.repeat(x_adv, 2 * half, axis=0) + delta * direction, y_rep)
        grad = tf.reshape(tf.reshape(values, mask_shape) * direction / delta, per_example_shape)
        grad = tf.reduce_mean(grad, axis=1)
        update, m, v = adam_direction(grad, m, v, step)
        x_adv = clip(x + project(x_adv - learning_rate * update - x, eps, np.inf), clip_min, clip_max)
        current = loss(x_adv, y)
        improved = current < best_loss
        best = tf.where(tf.reshape(improved, mask_shape), x_adv, best)
        best_loss = tf.minimum(current, best_loss)
    return best


_spsa = compiled(spsa_core)


def spsa(
    model_fn, x, *, eps, steps=100, learning_rate=0.01, delta=0.01, num_samples=128, rand_init=True, y=None,
    targeted=False, clip_min=0.0, clip_max=1.0, eot_samples=1,
):
    """L-inf SPSA with Adam, keeping per example the lowest-margin point found.

    Args:
        model_fn: callable mapping inputs to logits; only its outputs are used.
        x: inputs in ``[clip_min, clip_max]``.
        eps: L-inf radius (>= 0).
        steps: Adam iterations.
        learning_rate: Adam step size.
        delta: finite-difference probe size.
        num_samples: probes per example and step (even; half are mirrored).
        rand_init: start from a uniformly random point of the ball.
        y: labels or targets; ``None`` uses the model's predictions.
        targeted: move toward ``y``.
        clip_min, clip_max: valid input range.
        eot_samples: forward passes averaged per loss evaluation (randomized models).

    Returns:
        Adversarial examples shaped like ``x``.
    """
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps,
                eot_samples=eot_samples, num_samples=num_samples, steps=steps)
    if a.num_samples < 2 or a.num_samples % 2:
        raise ValueError(f"`num_samples` must be an even int >= 2, got {num_samples!r}.")
    if not validate_nonnegative(delta, "delta") > 0 or not validate_nonnegative(learning_rate, "learning_rate") > 0:
        raise ValueError(f"`delta` and `learning_rate` must be > 0, got {delta!r}, {learning_rate!r}.")
    if a.eps == 0:
        return a.x
    return _spsa(
        model_fn, a.x, a.y, eps=a.eps, steps=a.steps,
        learning_rate=float(learning_rate), delta=float(delta), num_samples=a.num_samples,
        targeted=a.targeted, clip_min=clip_min, clip_max=clip_max, rand_init=bool(rand_init),
        eot_samples=a.eot_samples,
    )
