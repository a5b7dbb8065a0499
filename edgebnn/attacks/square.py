"""Square Attack (Andriushchenko, Croce, Flammarion and Hein 2020), L-inf and L2, compiled.

A score-based black-box attack: it only reads the model's logits, never a gradient,
so gradient masking (zero, noisy or misleading gradients of discretized and binary
models) cannot blunt it. Each iteration proposes one random square-shaped update at a
random position and keeps it when the margin loss drops; the square's side shrinks on
a fixed schedule of the query budget. This is the version AutoAttack runs; the
schedule, initializations and L2 update follow the authors' reference implementation
(``fra31/auto-attack``, ``square.py``), with images in NHWC layout.
"""

import weakref

import numpy as np

from edgebnn import _cache, _validate, randomness
from edgebnn.attacks.common import (
    STEPS_IN_FLIGHT, stop_point, call_model, clip, compiled, cross_entropy, labels_or_predictions, prepare,
)

import tensorflow as tf

#: Initial fraction of the pixels a square covers (the reference's ``p_init``).
DEFAULT_P_INIT = 0.8
#: The schedule of p: p_init is halved when the iteration, rescaled to a 10,000-query
#: budget, passes each of these values.
_P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_RESCALED_BUDGET = 10000.0
#: Added to L2 norms before dividing, as in the reference implementation.
_TINY = 1e-12
#: Grid of the L2 initialization: squares of side ``height // 5``.
_L2_INIT_GRID = 5
#: Queries spent before the first square: the clean input and the initialization.
_START_QUERIES = 2


def margin_and_loss(logits, y, *, targeted):
    """``(margin, loss)`` of the reference: the attack succeeds when ``margin <= 0`` and minimises ``loss``.

    Untargeted: ``margin = loss = z_y - max_{j != y} z_j``. Targeted (``y`` the target):
    ``margin = max_{j != y} z_j - z_y`` and ``loss`` the cross-entropy toward ``y``.
    """
    onehot = tf.one_hot(y, tf.shape(logits)[-1]) > 0
    true = tf.gather(logits, y, axis=-1, batch_dims=1)
    other = tf.reduce_max(tf.where(onehot, tf.cast(-np.inf, logits.dtype), logits), axis=-1)
    if targeted:
        return other - true, cross_entropy(logits, y)
    return true - other, true - other


def _p_selection(iteration, queries, p_init):
    rescaled = tf.floor(tf.cast(iteration, tf.float32) * _RESCALED_BUDGET / float(queries))
    halvings = tf.reduce_sum(tf.cast(rescaled > tf.constant(_P_SCHEDULE, tf.float32), tf.float32))
    return p_init / tf.pow(2.0, halvings)


def _random_int(high):
    """Uniform int in ``[0, high)`` like the reference's ``random_int`` (0 when ``high`` is 0)."""
    return tf.cast(tf.floor(randomness.uniform([]) * tf.cast(high, tf.float32)), tf.int32)


def _random_sign(shape):
    return tf.sign(randomness.uniform(shape, -1.0, 1.0))


def _window(height, width, top, left, side):
    """``(height, width, 1)`` float mask of the square ``[top, top + side) x [left, left + side)``."""
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return tf.cast(inside, tf.float32)[:, :, None]


def _eta_rectangle(rows, cols):
    delta = np.zeros([rows, cols])
    centre_r, centre_c = rows // 2 + 1, cols // 2 + 1
    corner = [centre_r - 1, centre_c - 1]
    for ring in range(max(centre_r, centre_c)):
        delta[max(corner[0], 0) : min(corner[0] + 2 * ring + 1, rows),
              max(0, corner[1]) : min(corner[1] + 2 * ring + 1, cols)] += 1.0 / (ring + 1) ** 2
        corner[0] -= 1
        corner[1] -= 1
    return delta / np.sqrt((delta**2).sum())


def eta(side):
    """The reference's L2 square pattern: two opposite-sign halves of concentric rings, unit L2 norm."""
    delta = np.zeros([side, side])
    delta[: side // 2] = _eta_rectangle(side // 2, side)
    delta[side // 2 :] = -_eta_rectangle(side - side // 2, side)
    return delta / np.sqrt((delta**2).sum())


def _eta_table(height, width):
    """``(min(h, w) + 1, 2, h, w)``: pattern of every side (and its transpose) in the top-left corner."""
    table = np.zeros([min(height, width) + 1, 2, height, width], np.float32)
    for side in range(2, min(height, width) + 1):
        pattern = eta(side)
        table[side, 0, :side, :side] = pattern
        table[side, 1, :side, :side] = pattern.T
    return tf.constant(table)


def _placed_eta(table, side, top, left):
    """The pattern of ``side`` (transposed with probability 1/2) moved to ``(top, left)``."""
    flip = tf.cast(randomness.uniform([]) > 0.5, tf.int32)
    pattern = table[side, flip]
    return tf.roll(pattern, shift=[top, left], axis=[0, 1])[:, :, None]


def _l2_norm(delta):
    return tf.sqrt(tf.reduce_sum(tf.square(delta), axis=[1, 2, 3], keepdims=True))


def _l2_normalize(delta):
    return delta / (_l2_norm(delta) + _TINY)


def _linf_init(x, eps):
    batch, width, channels = tf.shape(x)[0], tf.shape(x)[2], tf.shape(x)[3]
    stripes = _random_sign(tf.stack([batch, 1, width, channels]))  # vertical stripes
    return x + eps * stripes


def _l2_init(x, eps, table):
    height, width = x.shape[1], x.shape[2]
    batch, channels = tf.shape(x)[0], tf.shape(x)[3]
    side = height // _L2_INIT_GRID
    start = (height - side * _L2_INIT_GRID) // 2
    delta = tf.zeros_like(x)
    for top in range(start, start + side * (height // side), side):
        if top + side > height:
            break
        for left in range(start, start + side * (width // side), side):
            if left + side > width:
                break
            pattern = _placed_eta(table, side, top, left)
            delta += pattern[None] * _random_sign(tf.stack([batch, 1, 1, channels]))
    return x + _l2_normalize(delta) * eps


def _linf_proposal(x, x_best, eps, side, height, width, clip_min, clip_max):
    """``x_best`` with a random square set to ``+-eps`` per channel.

    Where the drawn signs would leave an image unchanged (its square already at those
    values, a query spent on nothing), the opposite signs are used, as the authors'
    first implementation redraws them (``max-andr/square-attack``).
    """
    batch, channels = tf.shape(x)[0], tf.shape(x)[3]
    top, left = _random_int(height - side), _random_int(width - side)
    window = _window(height, width, top, left, side)[None]
    signs = _random_sign(tf.stack([batch, 1, 1, channels]))

    def moved(signs):
        x_new = x_best + window * 2.0 * eps * signs
        return clip(tf.minimum(tf.maximum(x_new, x - eps), x + eps), clip_min, clip_max)

    x_new = moved(signs)
    unchanged = tf.reduce_all(tf.equal(x_new, x_best), axis=[1, 2, 3])
    return tf.where(tf.reshape(unchanged, [-1, 1, 1, 1]), moved(-signs), x_new)


def _l2_proposal(x, x_best, eps, side, height, width, table):
    batch, channels = tf.shape(x)[0], tf.shape(x)[3]
    delta = x_best - x
    top, left = _random_int(height - side), _random_int(width - side)
    window_1 = _window(height, width, top, left, side)[None]
    norms_window_1 = tf.sqrt(tf.reduce_sum(tf.square(delta * window_1), axis=[1, 2], keepdims=True))
    top_2, left_2 = _random_int(height - side), _random_int(width - side)
    window_2 = _window(height, width, top_2, left_2, side)[None]
    norms_image = _l2_norm(delta)
    both = tf.maximum(window_1, window_2)
    norms_windows = tf.sqrt(tf.reduce_sum(tf.square(delta * both), axis=[1, 2], keepdims=True))
    new = _placed_eta(table, side, top, left)[None] * _random_sign(tf.stack([batch, 1, 1, channels]))
    new += delta * window_1 / (_TINY + norms_window_1)
    new_norm = tf.sqrt(tf.reduce_sum(tf.square(new), axis=[1, 2], keepdims=True))
    budget = tf.maximum(eps**2 - tf.square(norms_image), 0.0) / tf.cast(channels, tf.float32) + tf.square(norms_windows)
    new = new / (_TINY + new_norm) * tf.sqrt(budget)
    delta = delta * (1.0 - window_2)
    delta = delta * (1.0 - window_1) + new * window_1
    return x + _l2_normalize(delta) * eps


def _side(p, features, channels, height, width, norm):
    side = tf.cast(tf.round(tf.sqrt(p * features / channels)), tf.int32)
    if norm == np.inf:
        side = tf.maximum(side, 1)
    else:
        side = tf.maximum(side, 3)
        side += 1 - side % 2  # odd sides only
    return tf.minimum(side, min(height, width))


def _alive_margin_and_loss(model_fn, x_new, y, alive, margin_min, loss_min, *, targeted):
    """:func:`margin_and_loss` of the proposals, querying the model on the ``alive`` examples only.

    The examples already broken keep ``margin_min`` and ``loss_min`` (the loop ignores them).
    """
    index = tf.where(alive)
    margin, loss = margin_and_loss(
        call_model(model_fn, tf.gather_nd(x_new, index)), tf.gather_nd(y, index), targeted=targeted,
    )
    return tf.tensor_scatter_nd_update(margin_min, index, margin), tf.tensor_scatter_nd_update(loss_min, index, loss)


def square_core(model_fn, x, y, *, eps, norm, queries, p_init, targeted, clip_min, clip_max):
    """Graph-mode Square attack on validated NHWC tensors.

    Returns:
        ``(x_adv, queries_used)``: the best point per example and the number of model
        evaluations spent on it (the clean and the initial point included; an example stops
        spending queries once it is adversarial: the model only sees the examples
        still alive, while every random draw keeps the full batch's shape, so an
        example's result does not depend on when the others break).
    """
    y = labels_or_predictions(model_fn, x, y)
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    features = float(height * width * channels)
    table = _eta_table(height, width) if norm == 2 else None
    shape = [-1, 1, 1, 1]

    # Start from the reference's initialization where it lowers the loss of the clean
    # input, else from the clean input (as ART does): two queries.
    margin_min, loss_min = margin_and_loss(call_model(model_fn, x), y, targeted=targeted)
    x_init = clip(_linf_init(x, eps) if norm == np.inf else _l2_init(x, eps, table), clip_min, clip_max)
    margin_init, loss_init = margin_and_loss(call_model(model_fn, x_init), y, targeted=targeted)
    better = loss_init < loss_min
    x_best = tf.where(tf.reshape(better, shape), x_init, x)
    margin_min, loss_min = tf.where(better, margin_init, margin_min), tf.minimum(loss_init, loss_min)
    used = tf.fill(tf.shape(margin_min), float(_START_QUERIES))
    iteration = tf.constant(0)
    while iteration < queries - _START_QUERIES and tf.reduce_any(margin_min > 0.0):
        tf.autograph.experimental.set_loop_options(parallel_iterations=STEPS_IN_FLIGHT)
        stop_point(iteration)
        randomness.loop_step(iteration)
        alive = margin_min > 0.0
        side = _side(_p_selection(iteration, queries, p_init), features, channels, height, width, norm)
        if norm == np.inf:
            x_new = _linf_proposal(x, x_best, eps, side, height, width, clip_min, clip_max)
        else:
            x_new = clip(_l2_proposal(x, x_best, eps, side, height, width, table), clip_min, clip_max)
        margin, loss = _alive_margin_and_loss(model_fn, x_new, y, alive, margin_min, loss_min, targeted=targeted)
        improved = loss < loss_min
        loss_min = tf.where(alive & improved, loss, loss_min)
        accept = alive & (improved | (margin <= 0.0))
        margin_min = tf.where(accept, margin, margin_min)
        x_best = tf.where(tf.reshape(accept, shape), x_new, x_best)
        used += tf.cast(alive, tf.float32)
        iteration += 1
    return x_best, used


_square = compiled(square_core)

# One channel-adding wrapper per model, so the compiled loop sees the same callable on every
# call with (batch, height, width) inputs and does not retrace.
_WITH_CHANNEL = weakref.WeakKeyDictionary()


def _with_channel(model_fn):
    """``model_fn`` for images with a trailing channel axis of 1, cached per model."""
    return _cache.per_model(_WITH_CHANNEL, model_fn,
                            lambda get_model: lambda images: get_model()(images[..., 0]))


def square_with_queries(
    model_fn, x, *, eps, norm=np.inf, steps=5000, p_init=DEFAULT_P_INIT, y=None, targeted=False, clip_min=0.0,
    clip_max=1.0,
):
    """:func:`square`, also returning the queries spent per example: ``(x_adv, queries_used)``."""
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm,
                steps=steps)
    p_init = _validate.number(p_init, "p_init", low=0, high=1, low_open=True)
    if a.steps < _START_QUERIES:
        raise ValueError(f"`steps` must be >= {_START_QUERIES} (the clean input and the initialization), got {a.steps}.")
    x = a.x
    if x.shape.rank == 3:
        x_img = x[..., None]
    elif x.shape.rank == 4:
        x_img = x
    else:
        raise ValueError(f"`x` must be images, (batch, height, width) or (batch, height, width, channels), got shape {x.shape}.")
    if a.eps == 0:
        return x, tf.zeros(tf.shape(x)[:1])
    x_adv, used = _square(
        model_fn if x.shape.rank == 4 else _with_channel(model_fn), x_img, a.y,
        eps=a.eps, norm=a.norm, queries=a.steps, p_init=p_init, targeted=a.targeted,
        clip_min=clip_min, clip_max=clip_max,
    )
    return tf.reshape(x_adv, tf.shape(x)), used


def square(model_fn, x, *, eps, norm=np.inf, steps=5000, p_init=DEFAULT_P_INIT, y=None, targeted=False,
           clip_min=0.0, clip_max=1.0):
    """Square attack: random square updates accepted when the margin loss drops; no gradients.

    Args:
        model_fn: callable mapping a batch of images to logits; only its outputs are read.
        x: images ``(batch, height, width[, channels])`` in ``[clip_min, clip_max]``.
        eps: radius of the norm ball (>= 0).
        norm: ``np.inf`` or ``2``.
        steps: the query budget, model evaluations per example (>= 2), the clean input
            and the initial point included (the reference's ``n_queries``; AutoAttack uses 5,000).
        p_init: initial fraction of pixels a square covers.
        y: labels, or targets when ``targeted``; ``None`` uses the model's predictions.
        targeted: reach class ``y`` (cross-entropy loss) instead of leaving it (margin loss).
        clip_min, clip_max: valid input range.

    Returns:
        Adversarial examples, a float32 tensor shaped like ``x``.

    Raises:
        ValueError: bad ``eps``, ``norm``, ``steps``, ``p_init``, clip range,
            ``targeted`` without ``y``, or inputs that are not images.
    """
    return square_with_queries(
        model_fn, x, eps=eps, norm=norm, steps=steps, p_init=p_init, y=y, targeted=targeted,
        clip_min=clip_min, clip_max=clip_max,
    )[0]
