"""Auto-PGD (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"), compiled, with EOT and gradient surrogates.

APGD is PGD without a step size to tune: it starts at ``2 * eps``, adds momentum
(0.75), and halves the step at checkpoints where the loss stopped rising, restarting
from the best point found. Two losses: cross-entropy and the Difference of Logits
Ratio (DLR), which is invariant to shifting and scaling the logits, so saturated
softmax outputs (one cause of vanishing gradients) cannot hide a weak decision.
:func:`apgd_t` is Croce and Hein's APGD-T: the targeted DLR loss toward each of the
top-ranked wrong classes in turn, as AutoAttack runs it.

The step-size schedule, checkpoints and DLR definitions follow the authors' reference
implementation (``fra31/auto-attack``, ``autopgd_base.py``).
"""

import numpy as np

from edgebnn import _validate, randomness
from edgebnn.attacks.common import (
    call_model, clip, compiled, cross_entropy, labels_or_predictions, loss_gradient_and_logits,
    optimize_linear, prepare, project, STEPS_IN_FLIGHT, stop_point,
)
from edgebnn.choices import APGD_TARGET_CLASSES as DEFAULT_TARGET_CLASSES

import tensorflow as tf

#: Momentum of the update (Croce and Hein 2020, Sec. 3.1: alpha = 0.75).
MOMENTUM = 0.75
#: Fraction of the steps since the last checkpoint in which the loss must have risen
#: for the step size to be kept (rho).
RHO = 0.75
#: Initial step size in units of eps (2 eps, for L-inf and L2).
INITIAL_STEP = 2.0
#: Checkpoint spacing as fractions of the iteration budget: the first after 22%, then
#: each 3% shorter than the previous one, never shorter than 6%.
FIRST_CHECKPOINT, CHECKPOINT_DECREASE, MIN_CHECKPOINT = 0.22, 0.03, 0.06
#: Added to DLR denominators, as in the reference implementation.
_DLR_EPS = 1e-12
#: Added to the score of a successful example so that success always beats a higher loss.
_SUCCESS_BONUS = 1e9

LOSSES = ("ce", "dlr")


def dlr_loss(logits, y):
    """Difference of Logits Ratio, to be maximised: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``.

    ``z_pi1 >= z_pi2 >= ...`` are the sorted logits (Croce and Hein 2020, Eq. 5).
    Needs at least 3 classes.
    """
    top = tf.math.top_k(logits, k=3).values
    true = tf.gather(logits, y, axis=-1, batch_dims=1)
    onehot = tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype)
    other = tf.reduce_max(tf.where(onehot > 0, tf.cast(-np.inf, logits.dtype), logits), axis=-1)
    return -(true - other) / (top[:, 0] - top[:, 2] + _DLR_EPS)


def targeted_dlr_loss(logits, y, target):
    """Targeted DLR, to be maximised: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` (Eq. 6).

    Needs at least 4 classes.
    """
    top = tf.math.top_k(logits, k=4).values
    true = tf.gather(logits, y, axis=-1, batch_dims=1)
    toward = tf.gather(logits, target, axis=-1, batch_dims=1)
    return -(true - toward) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_EPS)


def checkpoints(steps):
    """Boolean array over iterations ``0..steps-1``: True where APGD checks its step size.

    With ``k`` the current window (first ``max(int(0.22 steps), 1)``), a check happens
    after ``k`` more iterations and ``k`` then shrinks by ``max(int(0.03 steps), 1)``
    down to ``max(int(0.06 steps), 1)`` (the reference's ``n_iter_2``, ``size_decr``,
    ``n_iter_min``). Also returns the window length ending at each check.
    """
    k = max(int(FIRST_CHECKPOINT * steps), 1)
    decrease = max(int(CHECKPOINT_DECREASE * steps), 1)
    shortest = max(int(MIN_CHECKPOINT * steps), 1)
    is_check, window = np.zeros(steps, bool), np.zeros(steps, np.float32)
    i = k - 1
    while i < steps:
        is_check[i], window[i] = True, k
        k = max(k - decrease, shortest)
        i += k
    return is_check, window


def _random_start(x, eps, norm):
    """Croce and Hein's start: a random direction scaled to the sphere of radius eps."""
    shape = [-1] + [1] * (x.shape.rank - 1)
    axes = list(range(1, x.shape.rank))
    if norm == np.inf:
        t = randomness.uniform(tf.shape(x), -1.0, 1.0)
        scale = tf.reduce_max(tf.abs(t), axis=axes)
    else:
        t = randomness.normal(tf.shape(x))
        scale = tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes))
    return x + eps * t / (tf.reshape(scale, shape) + _DLR_EPS)


def _step(x, x_adv, grad, step_size, eps, norm, clip_min, clip_max):
    return clip(x + project(x_adv + optimize_linear(grad, step_size, norm) - x, eps, norm), clip_min, clip_max)


def _momentum_step(x, x_adv, x_adv_old, grad, step_size, momentum, *, eps, norm, clip_min, clip_max):
    """APGD's update (Croce and Hein 2020, Eq. 2): a projected step, then momentum, projected again."""
    x_step = _step(x, x_adv, grad, step_size, eps, norm, clip_min, clip_max)
    x_new = x_adv + (x_step - x_adv) * momentum + (x_adv - x_adv_old) * (1.0 - momentum)
    return clip(x + project(x_new - x, eps, norm), clip_min, clip_max)


#: The elementwise update fused into one XLA kernel (about twenty elementwise ops otherwise).
_fused_momentum_step = tf.function(_momentum_step, jit_compile=True, autograph=False)


def _track(wrong, x_adv, grad, loss, fooled, x_best_adv, loss_prev, increases, x_best, grad_best, loss_best):
    """An iteration's bookkeeping: ``(fooled, x_best_adv, increases, x_best, grad_best, loss_best)`` after
    the point ``x_adv`` (its gradient, loss and whether it is ``wrong``). Selects and comparisons only
    (the count of loss increases is a float sum of ones): exact under any fusion."""
    shape = [-1] + [1] * (x_adv.shape.rank - 1)
    fooled = fooled | wrong
    x_best_adv = tf.where(tf.reshape(wrong, shape), x_adv, x_best_adv)
    increases = increases + tf.cast(loss > loss_prev, tf.float32)
    improved = loss > loss_best
    x_best = tf.where(tf.reshape(improved, shape), x_adv, x_best)
    grad_best = tf.where(tf.reshape(improved, shape), grad, grad_best)
    loss_best = tf.where(improved, loss, loss_best)
    return fooled, x_best_adv, increases, x_best, grad_best, loss_best


#: The bookkeeping fused into one XLA kernel (three image-sized selects and a few small ops otherwise).
_fused_track = tf.function(_track, jit_compile=True, autograph=False)


def apgd_run(model_fn, x, y, loss_fn, *, eps, steps, norm, clip_min, clip_max, eot_samples, surrogate, target=None):
    """One APGD run (graph mode) maximising ``loss_fn(logits, y)``.

    Success is leaving class ``y``, or reaching ``target`` when one is given.

    Returns:
        ``(x_best_adv, fooled, x_best, loss_best)``: the last successful point per
        example (or the input), whether one was found, the highest-loss point and its loss.
    """
    is_check, window = checkpoints(steps)
    is_check, window = tf.constant(is_check), tf.constant(window)
    shape = [-1] + [1] * (x.shape.rank - 1)

    def gradient(x_adv):
        return loss_gradient_and_logits(
            model_fn, x_adv, y, targeted=False, eot_samples=eot_samples, loss_fn=loss_fn, surrogate=surrogate,
        )

    def success(logits):
        pred = tf.argmax(logits, axis=-1)
        return tf.not_equal(pred, y) if target is None else tf.equal(pred, target)

    x_adv = clip(_random_start(x, eps, norm), clip_min, clip_max)
    grad, loss, logits = gradient(x_adv)
    fooled = success(logits)
    x_best_adv = tf.where(tf.reshape(fooled, shape), x_adv, x)
    x_best, grad_best, loss_best = x_adv, grad, loss
    step_size = tf.fill(tf.shape(loss), tf.cast(INITIAL_STEP * eps, tf.float32))
    x_adv_old = x_adv
    loss_prev = loss
    increases = tf.zeros_like(loss)
    loss_best_last_check = loss_best
    reduced_last_check = tf.ones_like(loss, dtype=tf.bool)
    for i in tf.range(steps):
        tf.autograph.experimental.set_loop_options(parallel_iterations=STEPS_IN_FLIGHT)
        stop_point(i)
        randomness.loop_step(i)
        momentum = tf.where(i > 0, MOMENTUM, 1.0)
        x_adv, x_adv_old = _fused_momentum_step(
            x, x_adv, x_adv_old, grad, step_size, momentum, eps=eps, norm=norm, clip_min=clip_min, clip_max=clip_max,
        ), x_adv

        grad, loss, logits = gradient(x_adv)
        fooled, x_best_adv, increases, x_best, grad_best, loss_best = _fused_track(
            success(logits), x_adv, grad, loss, fooled, x_best_adv, loss_prev, increases, x_best, grad_best, loss_best,
        )
        loss_prev = loss

        state = (step_size, x_adv, grad, reduced_last_check, loss_best_last_check, increases)
        # Only the few checkpoint iterations pay for the check (a branch, not a select per step).
        state = tf.cond(
            is_check[i],
            lambda: _check_step_size(*state, x_best=x_best, grad_best=grad_best, loss_best=loss_best, window=window[i]),
            lambda: state,
        )
        step_size, x_adv, grad, reduced_last_check, loss_best_last_check, increases = state
    return x_best_adv, fooled, x_best, loss_best


def _check_step_size(step_size, x_adv, grad, reduced_last_check, loss_best_last_check, increases, *, x_best,
                     grad_best, loss_best, window):
    """APGD's checkpoint: the next ``(step_size, x_adv, grad, reduced_last_check, loss_best_last_check, increases)``.

    Halve the step, and restart from the best point, where the loss rose in at most rho
    of the window's steps, or where the last check kept the step and the best loss did not move.
    """
    shape = [-1] + [1] * (x_adv.shape.rank - 1)
    oscillating = increases <= window * RHO
    stalled = tf.logical_not(reduced_last_check) & (loss_best_last_check >= loss_best)
    reduce = oscillating | stalled
    step_size = tf.where(reduce, step_size / 2.0, step_size)
    x_adv = tf.where(tf.reshape(reduce, shape), x_best, x_adv)
    grad = tf.where(tf.reshape(reduce, shape), grad_best, grad)
    return step_size, x_adv, grad, reduce, loss_best, tf.zeros_like(increases)


def _merge(best, new, shape):
    """Keep, per example, the better of two ``(x, score)`` pairs."""
    better = new[1] > best[1]
    return tf.where(tf.reshape(better, shape), new[0], best[0]), tf.maximum(new[1], best[1])


def _run_score(run):
    x_best_adv, fooled, x_best, loss_best = run
    shape = [-1] + [1] * (x_best.shape.rank - 1)
    x_out = tf.where(tf.reshape(fooled, shape), x_best_adv, x_best)
    return x_out, tf.cast(fooled, tf.float32) * _SUCCESS_BONUS + tf.where(fooled, 0.0, loss_best)


def _loss_function(loss, *, targeted, target=None):
    if targeted:
        # Targeted mode: y are the targets; ascend -CE(target) or the targeted DLR from the source class.
        if loss == "ce":
            return lambda logits, source: -cross_entropy(logits, target)
        return lambda logits, source: targeted_dlr_loss(logits, source, target)
    return cross_entropy if loss == "ce" else dlr_loss


def apgd_core(
    model_fn, x, y, *, eps, steps, norm, loss, restarts, targeted, clip_min, clip_max, eot_samples=1,
    surrogate="ste",
):
    """Graph-mode APGD on validated tensors; ``y`` labels (untargeted) or targets (targeted)."""
    shape = [-1] + [1] * (x.shape.rank - 1)
    if targeted:
        # The "true" class a targeted attack moves away from is the model's own prediction.
        source, target = tf.argmax(call_model(model_fn, x), axis=-1), y
    else:
        source, target = labels_or_predictions(model_fn, x, y), None
    loss_fn = _loss_function(loss, targeted=targeted, target=target)
    best = None
    for _ in range(restarts):  # unrolled: restarts are few
        # Targeted: success means reaching the target, not just leaving the source class.
        scored = _run_score(apgd_run(
            model_fn, x, source, loss_fn, eps=eps, steps=steps, norm=norm, clip_min=clip_min, clip_max=clip_max,
            eot_samples=eot_samples, surrogate=surrogate, target=target,
        ))
        best = scored if best is None else _merge(best, scored, shape)
    return best[0]


def apgd_t_core(
    model_fn, x, y, *, eps, steps, norm, target_classes, restarts, clip_min, clip_max, eot_samples=1,
    surrogate="ste",
):
    """Graph-mode APGD-T: targeted DLR toward the 2nd, 3rd, ... ranked class of the clean logits."""
    shape = [-1] + [1] * (x.shape.rank - 1)
    y = labels_or_predictions(model_fn, x, y)
    ranking = tf.argsort(call_model(model_fn, x), axis=-1, direction="DESCENDING")
    # Any score beats this start, so the first run is kept as it is.
    best = (x, tf.fill(tf.shape(y), tf.constant(-np.inf, tf.float32)))
    # A graph loop over the targets: one traced APGD run serves every target class.
    for rank in tf.range(1, target_classes + 1):
        tf.autograph.experimental.set_loop_options(parallel_iterations=STEPS_IN_FLIGHT)
        randomness.loop_step(rank)
        target = tf.gather(ranking, rank, axis=-1)
        loss_fn = _loss_function("dlr", targeted=True, target=target)
        for _ in range(restarts):  # unrolled: restarts are few
            scored = _run_score(apgd_run(
                model_fn, x, y, loss_fn, eps=eps, steps=steps, norm=norm, clip_min=clip_min, clip_max=clip_max,
                eot_samples=eot_samples, surrogate=surrogate,
            ))
            best = _merge(best, scored, shape)
    return best[0]


_apgd = compiled(apgd_core)
_apgd_t = compiled(apgd_t_core)


def apgd(
    model_fn, x, *, eps, norm=np.inf, steps=100, loss="ce", restarts=1, y=None, targeted=False, clip_min=0.0,
    clip_max=1.0, eot_samples=1, surrogate="ste",
):
    """Auto-PGD with the cross-entropy (APGD-CE) or DLR (APGD-DLR) loss.

    Per example, returns the last misclassified point found (for ``targeted``, the
    last one classified as the target), else the highest-loss point. With
    ``restarts > 1`` it runs again from new random starts and keeps the worst case.

    Args:
        model_fn: callable mapping a batch of inputs to logits.
        x: inputs in ``[clip_min, clip_max]``.
        eps: radius of the norm ball (>= 0).
        norm: ``np.inf`` or ``2``.
        steps: iterations per run (Croce and Hein use 100).
        loss: ``"ce"`` or ``"dlr"`` (needs >= 3 classes; targeted DLR needs >= 4).
        restarts: runs from independent random starts (>= 1).
        y: labels, or targets when ``targeted``; ``None`` uses the model's predictions.
        targeted: move toward ``y``: ascend ``-CE(y)`` or the targeted DLR loss with the
            model's clean prediction as the source class.
        clip_min, clip_max: valid input range.
        eot_samples: loss gradients averaged over this many forward passes (EOT).
        surrogate: backward pass through discretization and sign, a key of
            :data:`edgebnn.ops.SURROGATES`.

    Returns:
        Adversarial examples, a float32 tensor shaped like ``x``.

    Raises:
        ValueError: bad ``eps``, ``norm``, ``loss``, ``steps``, ``restarts``, clip range,
            ``targeted`` without ``y``, or unknown ``surrogate``.
    """
    _validate.one_of(loss, "loss", LOSSES)
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm,
                eot_samples=eot_samples, surrogate=surrogate, steps=steps, restarts=restarts)
    if a.eps == 0:
        return a.x
    return _apgd(
        model_fn, a.x, a.y, eps=a.eps, loss=loss, targeted=a.targeted, clip_min=clip_min, clip_max=clip_max,
        norm=a.norm, steps=a.steps, restarts=a.restarts, eot_samples=a.eot_samples, surrogate=a.surrogate,
    )


def apgd_t(
    model_fn, x, *, eps, norm=np.inf, steps=100, target_classes=DEFAULT_TARGET_CLASSES, restarts=1, y=None,
    targeted=False, clip_min=0.0, clip_max=1.0, eot_samples=1, surrogate="ste",
):
    """APGD-T: untargeted in effect, targeted DLR toward each of the top wrong classes in turn.

    For ``rank = 1 .. target_classes``, APGD maximises the targeted DLR loss toward the
    class ranked ``rank + 1`` in the clean logits; an example counts as broken when it
    is misclassified by any run (Croce and Hein 2020, AutoAttack's APGD-T).

    Args:
        model_fn, x, eps, norm, steps, restarts, clip_min, clip_max, eot_samples, surrogate:
            as :func:`apgd` (``restarts`` per target class).
        target_classes: number of target classes, at most ``classes - 1`` (needs >= 4 classes).
        y: true labels; ``None`` uses the model's predictions.
        targeted: must be False (the targets are chosen by rank); accepted for the common
            attack signature.

    Returns:
        Adversarial examples, a float32 tensor shaped like ``x``.
    """
    if targeted:
        raise ValueError("`targeted=True` is not supported by apgd_t (it picks its own targets); use apgd(targeted=True).")
    a = prepare(model_fn, x, y=y, targeted=False, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm,
                eot_samples=eot_samples, surrogate=surrogate, steps=steps, restarts=restarts,
                target_classes=target_classes)
    if a.eps == 0:
        return a.x
    classes = int(call_model(model_fn, a.x[:1]).shape[-1])
    if a.target_classes > classes - 1:
        raise ValueError(f"`target_classes` must be <= classes - 1 = {classes - 1}, got {a.target_classes}.")
    return _apgd_t(
        model_fn, a.x, a.y, eps=a.eps, target_classes=a.target_classes, clip_min=clip_min, clip_max=clip_max,
        norm=a.norm, steps=a.steps, restarts=a.restarts, eot_samples=a.eot_samples, surrogate=a.surrogate,
    )
