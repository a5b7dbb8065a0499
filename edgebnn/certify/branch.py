"""Complete search of an L-infinity ball by splitting pixel ranges, pruned by integer bounds (TensorFlow-free).

A ball of a discretized network holds ``prod(levels per pixel)`` inputs; when few pixels
are free it is decided faster by branch and bound over the inputs than by a SAT or
MILP solver. A node is a box of pixel level ranges. Its integer bounds (the interval
propagation of :func:`edgebnn.certify.encode.build_problem`, one layer after another:
a neuron is stable when its whole sum range fires the same way) either prove that no
class can beat the label anywhere in the box (the node is closed), or the box is split
in two on the free pixel that feeds the most unstable first-layer neurons. A box with
a single input is decided by the exact forward pass. Nodes are bounded in batches
(dense BLAS products over many boxes at once) and explored depth first, so a
counterexample, when there is one, is usually met early.

The search is complete: it answers ``"robust"`` only when every box was closed by its
bounds or by the exact forward pass, and ``"not_robust"`` with the levels of an input
the exact forward pass classifies otherwise.
"""

import time

import numpy as np

from edgebnn import _validate
from edgebnn.certify import encode

#: Boxes bounded per batch of dense products.
BATCH = 64


def _product(rows, matrix):
    """``rows @ kernel`` for integer ``(boxes, fan_in)`` rows and a transposed CSR kernel, exactly (integer result)."""
    return np.asarray(matrix @ np.asarray(rows, np.float32).T).T.astype(np.int64)


def _hidden_values(net, lo, hi):
    """Per hidden layer, ``+1`` / ``-1`` for neurons stable over each box of ``[lo, hi]`` levels, ``0`` otherwise.

    ``lo`` and ``hi`` are ``(boxes, pixels)`` level arrays; returns the stable values of
    the last hidden layer and the first layer's unstable mask.
    """
    kernel, magnitude = net.sparse_kernels[0]
    mid = _product(lo + hi + 1, kernel)  # S = sum W (2k + 1): center and radius over the box
    radius = _product(hi - lo, magnitude)
    s_lo, s_hi = mid - radius, mid + radius
    first_unstable = None
    value = None
    for layer, (kinds, thresholds) in enumerate(zip(net.kinds, net.thresholds)):
        if layer > 0:
            kernel, magnitude = net.sparse_kernels[layer]
            fixed, n_free = _product(value, kernel), _product(value == 0, magnitude)
            s_lo, s_hi = fixed - n_free, fixed + n_free
        lo_fire, hi_fire = encode.fire(s_lo, kinds, thresholds), encode.fire(s_hi, kinds, thresholds)
        value = np.where(lo_fire == hi_fire, lo_fire, 0)
        if layer == 0:
            first_unstable = value == 0
    return value, first_unstable


#: Added to the rigorous residual of each affine logit fit, against float64 rounding of the sums.
FIT_MARGIN = 1e-9


def affine_logits(net):
    """Per class, ``(slope, intercept, residual)`` with ``|logit(p) - slope p - intercept| <= residual`` for every ``p``.

    Each logit is BatchNorm (an affine map) of the output sum ``p``, rounded to float32 in
    the table; the least-squares fit over the whole table and its largest deviation make
    the bound hold for every value the table holds.
    """
    table = np.asarray(net.logit_table, np.float64)
    m = (table.shape[0] - 1) // 2
    p = np.arange(-m, m + 1, dtype=np.float64)
    design = np.stack([p, np.ones_like(p)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, table, rcond=None)
    residual = np.abs(table - design @ np.stack([slope, intercept])).max(axis=0) + FIT_MARGIN
    return slope, intercept, residual


def _can_change(net, value, y, fit):
    """Per box: can some class beat ``y`` (arg-max keeps the first maximum) given the last hidden layer's ranges?

    Two sound tests, a box stays open only if both fail: the interval of every logit
    (each is monotone in its integer sum, so spanned by the sum's two ends), and the
    difference ``logit_c - logit_y`` bounded through the affine fit of
    :func:`affine_logits`, which keeps the correlation of the two sums over the shared
    unstable units.
    """
    kernel, magnitude = net.sparse_kernels[-1]
    m = kernel.shape[1]
    fixed, n_free = _product(value, kernel), _product(value == 0, magnitude)
    table = net.logit_table
    columns = np.arange(table.shape[1])
    at_lo = table[fixed - n_free + m, columns]
    at_hi = table[fixed + n_free + m, columns]
    lowest, highest = np.minimum(at_lo, at_hi), np.maximum(at_lo, at_hi)
    ties_win = columns < y
    beats = np.where(ties_win[None, :], highest >= lowest[:, y][:, None], highest > lowest[:, y][:, None])
    slope, intercept, residual = fit
    weights = net.kernels[-1].astype(np.float64)
    difference = weights * slope[None, :] - (weights[:, y] * slope[y])[:, None]  # (units, classes)
    value = value.astype(np.float64)
    gap = (value @ difference + (value == 0) @ np.abs(difference)
           + (intercept - intercept[y]) + residual + residual[y])  # >= logit_c - logit_y over the box
    beats &= np.where(ties_win[None, :], gap >= 0, gap > 0)
    beats[:, y] = False
    return beats.any(axis=1)


def search(net, x, y, eps, *, time_limit=None, max_boxes=None):
    """Decide the ball around ``x`` exactly by branch and bound over pixel level ranges.

    Args:
        net: the network (:class:`~edgebnn.certify.encode.BinaryNet`).
        x: one example (flat pixels in ``[0, 1]``).
        y: its label (the exact forward pass of ``x`` itself is assumed to give it).
        eps: the L-infinity radius (>= 0).
        time_limit: seconds (``None``: no limit).
        max_boxes: boxes bounded at most (``None``: no limit).

    Returns:
        ``(status, levels, boxes)``: ``status`` is ``"robust"``, ``"not_robust"`` (``levels``
        the pixel levels of a counterexample) or ``"unknown"`` (a limit was reached);
        ``boxes`` the number of boxes bounded.
    """
    _validate.number(eps, "eps", low=0)
    if time_limit is not None:
        _validate.number(time_limit, "time_limit", low=0)
    if max_boxes is not None:
        _validate.positive_int(max_boxes, "max_boxes")
    start = time.perf_counter()
    x = np.asarray(x, np.float32).reshape(-1)
    klo, khi = encode.level_range(x, eps, net.bits)
    fit = affine_logits(net)
    magnitude_first = net.sparse_kernels[0][1].T.tocsr()  # (pixels, units): first-layer neurons per pixel
    stack_lo, stack_hi = [klo.astype(np.int64)], [khi.astype(np.int64)]
    boxes = 0
    while stack_lo:
        if time_limit is not None and time.perf_counter() - start >= time_limit:
            return "unknown", None, boxes
        if max_boxes is not None and boxes >= max_boxes:
            return "unknown", None, boxes
        take = min(BATCH, len(stack_lo))
        lo, hi = np.stack(stack_lo[-take:]), np.stack(stack_hi[-take:])
        del stack_lo[-take:], stack_hi[-take:]
        boxes += take
        single = np.all(lo == hi, axis=1)
        if single.any():
            wrong = np.flatnonzero(encode.predict_levels(net, lo[single]) != y)
            if len(wrong):
                return "not_robust", lo[single][wrong[0]], boxes
        lo, hi = lo[~single], hi[~single]
        if not len(lo):
            continue
        value, first_unstable = _hidden_values(net, lo, hi)
        open_ = _can_change(net, value, y, fit)
        lo, hi, first_unstable = lo[open_], hi[open_], first_unstable[open_]
        if not len(lo):
            continue
        # split on the free pixel feeding the most unstable first-layer neurons (ties: the widest range)
        influence = _product(first_unstable, magnitude_first).astype(np.float64)
        span = hi - lo
        score = np.where(span > 0, influence + span / (span.max() + 1.0), -1.0)
        pixel = np.argmax(score, axis=1)
        rows = np.arange(len(lo))
        cut = (lo[rows, pixel] + hi[rows, pixel]) // 2
        for i in range(len(lo)):  # the half below the cut is pushed last, so explored first
            upper_lo = lo[i].copy()
            upper_lo[pixel[i]] = cut[i] + 1
            lower_hi = hi[i].copy()
            lower_hi[pixel[i]] = cut[i]
            stack_lo += [upper_lo, lo[i]]
            stack_hi += [hi[i], lower_hi]
    return "robust", None, boxes
