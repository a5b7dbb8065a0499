"""Jacobian-based Saliency Map Attack (Papernot et al. 2016, "The limitations of deep learning in adversarial settings").

TF2 version of the pixel-pair saliency map (CleverHans TF2 has no JSMA): each step
picks the pair of pixels (p, q) that most increases the target logit while decreasing
the others, sets both to ``clip_max`` (theta = +1, the paper's setting) and removes
them from the search domain, until the target class is reached or a fraction
``gamma`` of the pixels has been changed.
"""

from edgebnn import randomness
from edgebnn.attacks.common import call_model, compiled, labels_or_predictions, prepare, validate_nonnegative
from edgebnn.attacks.surrogates import use_surrogate

import tensorflow as tf


def _logit_gradients(model_fn, x_flat, shape, cls, eot_samples, surrogate):
    """Gradients of the class-``cls`` logit and of the sum of the other logits w.r.t. ``x_flat``."""
    d_cls, d_all = tf.zeros_like(x_flat), tf.zeros_like(x_flat)
    for _ in range(eot_samples):
        with use_surrogate(model_fn, surrogate), tf.GradientTape(persistent=True) as tape:
            tape.watch(x_flat)
            logits = call_model(model_fn, tf.reshape(x_flat, shape))
            target_logit = tf.reduce_sum(tf.gather(logits, cls, batch_dims=1))
            all_logits = tf.reduce_sum(logits)
        d_cls += tape.gradient(target_logit, x_flat, unconnected_gradients=tf.UnconnectedGradients.ZERO) / eot_samples
        d_all += tape.gradient(all_logits, x_flat, unconnected_gradients=tf.UnconnectedGradients.ZERO) / eot_samples
        del tape
    return d_cls, d_all - d_cls, logits


#: Most pixel-pair saliency scores held at once (elements of a ``(batch, rows, pixels)`` block).
#: The full pair matrix of a batch of 100 MNIST images has 100 * 784**2 (61 million) of them;
#: scoring it in row blocks of at most this size bounds JSMA's memory at that of the block.
PAIR_BLOCK_ELEMENTS = 2**21


def best_pairs(d_cls, d_other, domain, *, sign, block_elements=None):
    """The most salient pixel pair of every example, scoring the pair matrix in row blocks.

    The saliency of pair ``(p, q)`` is ``alpha * -beta`` with ``alpha = sign * (d_cls[p] +
    d_cls[q]) > 0`` and ``beta = sign * (d_other[p] + d_other[q]) < 0``, both pixels in
    ``domain`` and ``p != q`` (0 otherwise). Rows ``p`` are scored a block at a time, so
    memory is ``O(max(block_elements, batch * pixels))`` instead of ``O(batch * pixels**2)``;
    the result equals an arg-max over the whole ``(pixels, pixels)`` matrix, ties going to
    the smallest flat index ``p * pixels + q`` as ``tf.argmax`` does.

    Args:
        d_cls: ``(batch, pixels)`` gradients of the target (or true) class logit.
        d_other: ``(batch, pixels)`` gradients of the sum of the other logits.
        domain: ``(batch, pixels)`` bool, the pixels that may still change.
        sign: +1.0 or -1.0, the direction of the saliency (see :func:`jsma_core`).
        block_elements: most scores held at once (at least one row per block; default
            :data:`PAIR_BLOCK_ELEMENTS`).

    Returns:
        ``(flat_best, best_score)``: int32 ``p * pixels + q`` and the float score of the best
        pair of every example (score 0: no pair qualifies).
    """
    block_elements = PAIR_BLOCK_ELEMENTS if block_elements is None else block_elements
    num_features = d_cls.shape[-1]
    # The static batch size where known, so that the loop variables keep their shapes.
    batch = d_cls.shape[0] if d_cls.shape[0] is not None else tf.shape(d_cls)[0]
    rows = tf.clip_by_value(block_elements // (batch * num_features), 1, num_features)
    columns = tf.range(num_features)

    def score_block(start, best_score, best_index):
        stop = tf.minimum(start + rows, num_features)
        alpha = sign * (d_cls[:, start:stop, None] + d_cls[:, None, :])
        beta = sign * (d_other[:, start:stop, None] + d_other[:, None, :])
        off_diagonal = tf.not_equal(tf.range(start, stop)[:, None], columns[None, :])
        valid = domain[:, start:stop, None] & domain[:, None, :] & off_diagonal[None] & (alpha > 0) & (beta < 0)
        scores = tf.reshape(tf.where(valid, alpha * -beta, tf.zeros_like(alpha)), [batch, -1])
        score = tf.reduce_max(scores, axis=-1)
        index = tf.argmax(scores, axis=-1, output_type=tf.int32) + start * num_features
        better = score > best_score  # strictly: on ties the earlier block (smaller index) stays
        return stop, tf.where(better, score, best_score), tf.where(better, index, best_index)

    # Scores are >= 0, so the first block always replaces the initial -1.
    init = (tf.constant(0), -tf.ones([batch], d_cls.dtype), tf.zeros([batch], tf.int32))
    _, best_score, best_index = tf.while_loop(
        lambda start, *_: start < num_features, score_block, init, parallel_iterations=1,
    )
    return best_index, best_score


def jsma_core(model_fn, x, y, *, theta, gamma, targeted, clip_min, clip_max, eot_samples=1, surrogate="ste"):
    """Graph-mode JSMA on validated tensors. Memory is O(batch * pixels) (see :func:`best_pairs`)."""
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
    active = tf.ones([batch], tf.bool)
    i = 0
    while i < max_iters and tf.reduce_any(active):
        randomness.loop_step(i)
        d_cls, d_other, logits = _logit_gradients(model_fn, x_flat, shape, y, eot_samples, surrogate)
        pred = tf.argmax(logits, axis=-1)
        done = tf.equal(pred, y) if targeted else tf.not_equal(pred, y)
        done = tf.ensure_shape(done, active.shape)  # models without a static batch size (MC dropout)
        active = tf.logical_and(active, tf.logical_not(done))
        # Targeted: raise the target class. Untargeted: lower the true class, i.e. the same
        # saliency with both derivatives negated. theta < 0 flips the direction of change.
        sign = (1.0 if targeted else -1.0) * (1.0 if theta > 0 else -1.0)
        flat_best, best_score = best_pairs(d_cls, d_other, domain, sign=sign)
        active = tf.logical_and(active, best_score > 0)
        p, q = flat_best // num_features, flat_best % num_features
        chosen = tf.logical_or(tf.one_hot(p, num_features, on_value=True, off_value=False),
                               tf.one_hot(q, num_features, on_value=True, off_value=False))
        chosen = tf.logical_and(chosen, active[:, None])
        x_flat = tf.where(chosen, tf.clip_by_value(x_flat + theta * (clip_max - clip_min), clip_min, clip_max), x_flat)
        domain = tf.logical_and(domain, tf.logical_not(chosen))
        i += 1
    return tf.reshape(x_flat, shape)


_jsma = compiled(jsma_core)


def jsma(
    model_fn, x, *, y=None, targeted=False, theta=1.0, gamma=0.1, clip_min=0.0, clip_max=1.0, eot_samples=1,
    surrogate="ste",
):
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
        surrogate: backward pass through discretization and sign, a key of
            :data:`edgebnn.ops.SURROGATES` (``"ste"``: each op's own).

    Returns:
        Adversarial examples shaped like ``x``; at most ``gamma`` of each example's
        pixels differ from ``x``. The pixel-pair saliency is scored in blocks of at most
        :data:`PAIR_BLOCK_ELEMENTS` scores, so memory grows with ``batch * pixels``, not
        with ``batch * pixels**2``.
    """
    if clip_min is None or clip_max is None:
        raise ValueError(f"`clip_min` and `clip_max` are both required by JSMA, got {clip_min!r}, {clip_max!r}.")
    theta = float(theta)
    if theta == 0 or abs(theta) > 1:
        raise ValueError(f"`theta` must be in [-1, 0) or (0, 1], got {theta!r}.")
    gamma = validate_nonnegative(gamma, "gamma")
    if not 0 < gamma <= 1:
        raise ValueError(f"`gamma` must be in (0, 1], got {gamma!r}.")
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eot_samples=eot_samples,
                surrogate=surrogate)
    return _jsma(
        model_fn, a.x, a.y, theta=theta, gamma=gamma, targeted=a.targeted,
        clip_min=float(clip_min), clip_max=float(clip_max), eot_samples=a.eot_samples,
        surrogate=a.surrogate,
    )
