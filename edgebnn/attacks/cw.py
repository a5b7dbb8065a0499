"""Carlini-Wagner L2 (Carlini & Wagner 2017, "Towards evaluating the robustness of neural networks").

Re-implemented in TF2 rather than wrapping CleverHans 4's ``carlini_wagner_l2``, which
ignores its ``targeted`` argument (it sets ``targeted = y is not None``; CleverHans'
GitHub issue #1228) and mis-broadcasts the per-example constant for image-shaped inputs
(CleverHans #1205). CleverHans' own code stays selectable:
:func:`edgebnn.attacks.cleverhans_backend.cw_l2`. Here the constant is one scalar per example, ``targeted`` is honoured,
the whole search runs as one compiled graph, and randomized models get EOT.
"""

from edgebnn import _validate, randomness
from edgebnn.attacks.common import (
    adam_direction, call_model, compiled, labels_or_predictions, logit_margin, prepare, validate_nonnegative,
    STEPS_IN_FLIGHT, stop_point,
)
from edgebnn.attacks.surrogates import use_surrogate

import tensorflow as tf

#: ``tanh`` never quite reaches +-1: inputs are shrunk by this factor before ``arctanh``.
_TANH_SHRINK = 0.999999
#: Upper bound of the constant's binary search that means "no success yet".
_CONST_UNBOUNDED = 1e10


def _margin(logits, y, *, targeted, confidence):
    """CW's f_6: ``max(Z_y - max_{j != y} Z_j + kappa, 0)`` untargeted, roles swapped when targeted."""
    return tf.maximum(logit_margin(logits, y, targeted=targeted) + confidence, 0.0)


def _succeeded(logits, y, *, targeted, confidence, num_classes):
    """Whether ``logits`` classify as the attack wants, with margin ``confidence``."""
    onehot = tf.one_hot(y, num_classes, dtype=logits.dtype)
    shifted = logits - onehot * confidence if targeted else logits + onehot * confidence
    pred = tf.argmax(shifted, axis=-1)
    return tf.equal(pred, y) if targeted else tf.not_equal(pred, y)


def cw_l2_core(
    model_fn, x, y, *, targeted, confidence, learning_rate, binary_search_steps, steps,
    initial_const, clip_min, clip_max, eps=None, eot_samples=1, surrogate="ste",
):
    """Graph-mode CW-L2 on validated tensors."""
    y = labels_or_predictions(model_fn, x, y)
    num_classes = call_model(model_fn, x[:1]).shape[-1]
    axes = list(range(1, x.shape.rank))
    batch = tf.shape(x)[0]
    scale = clip_max - clip_min

    def to_input(w):
        return (tf.tanh(w) + 1.0) / 2.0 * scale + clip_min

    w0 = tf.atanh(tf.clip_by_value(((x - clip_min) / scale * 2.0 - 1.0) * _TANH_SHRINK, -1.0, 1.0))
    lower = tf.zeros([batch])
    upper = tf.fill([batch], _CONST_UNBOUNDED)
    const = tf.fill([batch], float(initial_const))
    best_l2 = tf.fill([batch], float("inf"))
    best_adv = x
    mask_shape = [-1] + [1] * (x.shape.rank - 1)
    for _ in range(binary_search_steps):  # unrolled: a handful of constants
        delta = tf.zeros_like(x)  # optimised in tanh space: w = w0 + delta
        m, v = tf.zeros_like(x), tf.zeros_like(x)
        found = tf.zeros([batch], tf.bool)
        for step in tf.range(steps):
            tf.autograph.experimental.set_loop_options(parallel_iterations=STEPS_IN_FLIGHT)
            stop_point(step)
            randomness.loop_step(step)
            grad = tf.zeros_like(x)
            for _ in range(eot_samples):
                with use_surrogate(model_fn, surrogate), tf.GradientTape() as tape:
                    tape.watch(delta)
                    x_new = to_input(w0 + delta)
                    logits = call_model(model_fn, x_new)
                    l2 = tf.reduce_sum(tf.square(x_new - x), axes)
                    margin = _margin(logits, y, targeted=targeted, confidence=confidence)
                    loss = tf.reduce_sum(l2 + const * margin)
                grad += tape.gradient(loss, delta) / eot_samples
            # Keep the smallest successful example seen (checked before this step's update).
            ok = _succeeded(logits, y, targeted=targeted, confidence=confidence, num_classes=num_classes)
            if eps is not None:
                ok = tf.logical_and(ok, l2 <= eps * eps)
            improved = tf.logical_and(ok, l2 < best_l2)
            best_l2 = tf.where(improved, l2, best_l2)
            best_adv = tf.where(tf.reshape(improved, mask_shape), x_new, best_adv)
            found = tf.logical_or(found, ok)
            direction, m, v = adam_direction(grad, m, v, step)
            delta = delta - learning_rate * direction
        # Binary search on the constant, per example.
        upper = tf.where(found, tf.minimum(upper, const), upper)
        lower = tf.where(found, lower, tf.maximum(lower, const))
        const = tf.where(
            upper < _CONST_UNBOUNDED, (lower + upper) / 2.0, tf.where(found, const, const * 10.0)
        )
    return best_adv


_cw_l2 = compiled(cw_l2_core)


def cw_l2(
    model_fn, x, *, eps=None, y=None, targeted=False, confidence=0.0, learning_rate=5e-2, binary_search_steps=5,
    steps=100, initial_const=1.0, clip_min=0.0, clip_max=1.0, eot_samples=1, surrogate="ste",
):
    """The smallest-L2 adversarial example found by CW's optimisation in tanh space.

    Minimises ``||x' - x||_2^2 + c * f(x')`` with Adam, ``f`` the logit margin, and
    binary-searches ``c`` per example. Examples for which no adversarial example is
    found are returned unchanged (so accuracy under the attack counts them as robust).

    Args:
        model_fn: callable mapping inputs to logits.
        x: inputs in ``[clip_min, clip_max]``.
        eps: optional L2 budget: a found example farther than ``eps`` counts as a failure
            (returns ``x``). ``None`` (default) means unbounded, CW's minimal-distortion setting.
        y: labels or targets; ``None`` uses the model's predictions.
        targeted: reach class ``y`` (honoured, unlike CleverHans TF2).
        confidence: margin kappa required of the adversarial logits.
        learning_rate: Adam learning rate.
        binary_search_steps: constant updates.
        steps: Adam steps per constant (CW's and CleverHans' ``max_iterations``).
        initial_const: first constant c.
        clip_min, clip_max: valid input range (both required).
        eot_samples: EOT forward passes per gradient.
        surrogate: backward pass through discretization and sign, a key of
            :data:`edgebnn.ops.SURROGATES` (``"ste"``: each op's own).

    Returns:
        Adversarial examples shaped like ``x``.
    """
    if clip_min is None or clip_max is None:
        raise ValueError(f"`clip_min` and `clip_max` are both required by CW's tanh box, got {clip_min!r}, {clip_max!r}.")
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps,
                eot_samples=eot_samples, surrogate=surrogate, binary_search_steps=binary_search_steps,
                steps=steps)
    if clip_min == clip_max:
        raise ValueError(f"`clip_min` must be < `clip_max` for CW's tanh box, got both {clip_min!r}.")
    confidence = validate_nonnegative(confidence, "confidence")
    initial_const = validate_nonnegative(initial_const, "initial_const")
    learning_rate = _validate.number(learning_rate, "learning_rate", low=0, low_open=True)
    return _cw_l2(
        model_fn, a.x, a.y, targeted=a.targeted, confidence=confidence, learning_rate=learning_rate,
        binary_search_steps=a.binary_search_steps, steps=a.steps,
        initial_const=initial_const, clip_min=float(clip_min), clip_max=float(clip_max),
        eps=a.eps, eot_samples=a.eot_samples, surrogate=a.surrogate,
    )
