"""Jacobian-based Saliency Map Attack (Papernot et al. 2016, "The limitations of deep learning in adversarial settings").

TF2 version of the pixel-pair saliency map (CleverHans TF2 has no JSMA): each step
picks the pair of pixels (p, q) that most increases the target logit while decreasing
the others, sets both to ``clip_max`` (theta = +1, the paper's setting) and removes
them from the search domain, until the target class is reached or a fraction
``gamma`` of the pixels has been changed.
"""

from edgebnn.attacks.common import call_model, compiled, labels_or_predictions, prepare, validate_nonnegative

import tensorflow as tf


def _logit_gradients(model_fn, x_flat, shape, cls, eot_samples):
    """Gradients of the class-``cls`` logit and of the sum of the other logits w.r.t. ``x_flat``."""
    d_cls, d_all = tf.zeros_like(x_flat), tf.zeros_like(x_flat)
    for _ in range(eot_samples):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x_flat)
            logits = call_model(model_fn, tf.reshape(x_flat, shape))
            target_logit = tf.reduce_sum(tf.gather(logits, cls, batch_dims=1))
            all_logits = tf.reduce_sum(logits)
        d_cls += tape.gradient(target_logit, x_flat, unconnected_gradients=tf.UnconnectedGradients.ZERO) / eot_samples
        d_all += tape.gradient(all_logits, x_flat, unconnected_gradients=tf.UnconnectedGradients.ZERO) / eot_samples
        del tape
    return d_cls, d_all - d_cls, logits


def jsma_core(model_fn, x, y, *, theta, gamma, targeted, clip_min, clip_max, eot_samples=1):
    """Graph-mode JSMA on validated tensors. Memory is O(batch * pixels**2)."""
    y = labels_or_predictions(model_fn, x, y)
    shape = tf.shape(x)
    # The static batch size where known: a batch of one broadcasts against an unknown size,
    # so the loop variables would lose their shapes between iterations.
    batch = x.shape[0] if x.shape[0] is not None else shape[0]
    num_features = 1
    for d in x.shape[1:]:
        num_features *= d
    x_flat = tf.reshape(x, [-1, num_features])
    max_iters = int(gamma * num_features) // 2  # every step changes two pixels
    # theta > 0 raises pixels (only those below clip_max can move), theta < 0 lowers them.
    limit = clip_max if theta > 0 else clip_min
    domain = tf.not_equal(x_flat, limit)
    diagonal = tf.eye(num_features, dtype=tf.bool)
    active = tf.ones([batch], tf.bool)
    i = 0
    while i < max_iters and tf.reduce_any(active):
        d_cls, d_other, logits = _logit_gradients(model_fn, x_flat, shape, y, eot_samples)
        pred = tf.argmax(logits, axis=-1)
        done = tf.equal(pred, y) if targeted else tf.not_equal(pred, y)
        done = tf.ensure_shape(done, active.shape)  # models without a static batch size (MC dropout)
        active = tf.logical_and(active, tf.logical_not(done))
        # Targeted: raise the target class. Untargeted: lower the true class, i.e. the same
        # saliency with both derivatives negated. theta < 0 flips the direction of change.
        sign = (1.0 if targeted else -1.0) * (1.0 if theta > 0 else -1.0)
        alpha = sign * (d_cls[:, :, None] + d_cls[:, None, :])
        beta = sign * (d_other[:, :, None] + d_other[:, None, :])
        valid = domain[:, :, None] & domain[:, None, :] & ~diagonal[None] & (alpha > 0) & (beta < 0)
        scores = tf.where(valid, alpha * -beta, tf.zeros_like(alpha))
        flat_best = tf.argmax(tf.reshape(scores, [batch, -1]), axis=-1, output_type=tf.int32)
        has_pair = tf.reduce_max(tf.reshape(scores, [batch, -1]), axis=-1) > 0
        active = tf.logical_and(active, has_pair)
        p, q = flat_best // num_features, flat_best % num_features
        chosen = tf.logical_or(tf.one_hot(p, num_features, on_value=True, off_value=False),
                               tf.one_hot(q, num_features, on_value=True, off_value=False))
        chosen = tf.logical_and(chosen, active[:, None])
        x_flat = tf.where(chosen, tf.clip_by_value(x_flat + theta * (clip_max - clip_min), clip_min, clip_max), x_flat)
        domain = tf.logical_and(domain, tf.logical_not(chosen))
        i += 1
    return tf.reshape(x_flat, shape)


_jsma = compiled(jsma_core)


def jsma(model_fn, x, *, y=None, targeted=False, theta=1.0, gamma=0.1, clip_min=0.0, clip_max=1.0, eot_samples=1):
    """Targeted (or untargeted) JSMA over pixel pairs.

    Args:
        model_fn: callable mapping inputs to logits.
        x: inputs in ``[clip_min, clip_max]``.
        y: target classes when ``targeted``; otherwise the classes to move away from
            (``None``: the model's predictions).
        targeted: reach class ``y`` (the paper's setting).
        theta: change applied to a chosen pixel, as a fraction of ``clip_max - clip_min``
            (+1: set to ``clip_max``, the paper's choice; -1: set to ``clip_min``).
        gamma: maximum fraction of the pixels that may be changed, in ``(0, 1]``.
        clip_min, clip_max: valid input range.
        eot_samples: EOT forward passes per Jacobian.

    Returns:
        Adversarial examples shaped like ``x``; at most ``gamma`` of each example's
        pixels differ from ``x``. JSMA's memory is O(batch * pixels**2): use batches of
        a few dozen 28x28 images.
    """
    if clip_min is None or clip_max is None:
        raise ValueError(f"`clip_min` and `clip_max` are both required by JSMA, got {clip_min!r}, {clip_max!r}.")
    theta = float(theta)
    if theta == 0 or abs(theta) > 1:
        raise ValueError(f"`theta` must be in [-1, 0) or (0, 1], got {theta!r}.")
    gamma = validate_nonnegative(gamma, "gamma")
    if not 0 < gamma <= 1:
        raise ValueError(f"`gamma` must be in (0, 1], got {gamma!r}.")
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eot_samples=eot_samples)
    return _jsma(
        model_fn, a.x, a.y, theta=theta, gamma=gamma, targeted=a.targeted,
        clip_min=float(clip_min), clip_max=float(clip_max), eot_samples=a.eot_samples,
    )
