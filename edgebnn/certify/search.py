"""Counterexample search on the exact integer model: hill climbing over the discretized ball (TensorFlow-free).

A cheap first try before the solver. Every step evaluates, with the exact forward
pass of :mod:`edgebnn.certify.encode`, all inputs that differ from the current one
in a single pixel level (the first-layer sums are updated incrementally), and moves
to the one with the largest best-rival margin ``max_{c != y} logit_c - logit_y``;
on a plateau (sign networks are piecewise constant) it takes a random non-worsening
move, and it restarts from a random corner of the ball when stuck. Whatever it
returns is a genuine counterexample (checked by :func:`edgebnn.certify.encode.predict_levels`
in the caller); finding nothing proves nothing.
"""

import numpy as np

from edgebnn.certify import encode


def _logits_from_first_sums(net, sums):
    """Logits of the exact forward pass from first-layer integer sums ``(batch, units)``.

    Later sums are computed in float32 (BLAS), exact because they are integers far below ``2**24``.
    """
    h = encode.fire(sums, net.kinds[0], net.thresholds[0])
    for kernel, kinds, thresholds in zip(net.float_kernels[1:-1], net.kinds[1:], net.thresholds[1:]):
        h = encode.fire(encode.int_product(h, kernel), kinds, thresholds)
    p = encode.int_product(h, net.float_kernels[-1])
    m = net.kernels[-1].shape[0]
    return np.take_along_axis(net.logit_table, p + m, axis=0)


def _margins(logits, y):
    """Best-rival margin per row, with ``tf.argmax``'s tie rule folded in (a tie with a lower class wins)."""
    rival = logits.copy()
    rival[:, y] = -np.inf
    best = rival.max(axis=1)
    # ties go to the first maximum: a rival below y wins a tie, so nudge those margins up by a hair
    first = np.argmax(rival, axis=1)
    return best - logits[:, y] + np.where((best == logits[:, y]) & (first < y), 1e-9, 0.0)


def hill_climb(net, x, y, eps, *, steps, seed=0, starts=()):
    """Search the ball around ``x`` for levels not classified as ``y``.

    Args:
        net: the network.
        x: one example (flat pixels).
        y: its label.
        eps: the L-infinity radius.
        steps: number of moves in total, over all restarts (0: no search).
        seed: seed of the random moves and restarts.
        starts: extra starting points (levels, e.g. an attack's), tried first.

    Returns:
        ``(levels, best)``: the levels of a counterexample or ``None``, and per class the
        largest ``logit_c - logit_y`` seen (``-inf`` for the label), to rank the rivals.
    """
    x = np.asarray(x, np.float32).reshape(-1)
    klo, khi = encode.level_range(x, eps, net.bits)
    free = np.flatnonzero(khi > klo)
    best_seen = np.full(net.num_classes, -np.inf)
    if steps <= 0 or len(free) == 0:
        return None, best_seen
    rng = np.random.default_rng(seed)
    kernel = net.kernels[0]
    queue = [np.clip(np.asarray(s, np.int64), klo, khi) for s in starts]
    queue.append(encode.pixel_levels(x, net.bits))

    def restart():
        if queue:
            return queue.pop(0)
        levels = klo.copy()
        levels[free] = rng.integers(klo[free], khi[free] + 1)
        return levels

    levels = restart()
    sums = encode.int_product(2 * levels + 1, net.float_kernels[0])
    current = _margins(_logits_from_first_sums(net, sums[None]), y)[0]
    stuck, tabu = 0, {}
    for step in range(steps):
        # every single-pixel move: each free pixel to each other reachable level
        pix, new = [], []
        for level in range(int((khi - klo).max()) + 1):
            target = np.minimum(klo[free] + level, khi[free])
            move = target != levels[free]
            pix.append(free[move])
            new.append(target[move])
        pix, new = np.concatenate(pix), np.concatenate(new)
        cand = sums[None, :] + 2 * (new - levels[pix])[:, None] * kernel[pix]
        logits = _logits_from_first_sums(net, cand)
        rivals = logits - logits[:, [y]]
        rivals[:, y] = -np.inf
        best_seen = np.maximum(best_seen, rivals.max(axis=0))
        margins = _margins(logits, y)
        if np.any(margins > 0):
            k = int(np.argmax(margins))
            out = levels.copy()
            out[pix[k]] = new[k]
            return out, best_seen
        allowed = np.array([tabu.get(int(p), -1) < step for p in pix])
        if not allowed.any():
            allowed[:] = True
        top = margins[allowed].max()
        if top > current:
            k = int(rng.choice(np.flatnonzero(allowed & (margins == top))))
            stuck = 0
        elif top == current and stuck < 3 * len(free):
            k = int(rng.choice(np.flatnonzero(allowed & (margins == top))))
            stuck += 1
        else:
            levels = restart()
            sums = encode.int_product(2 * levels + 1, net.float_kernels[0])
            current = _margins(_logits_from_first_sums(net, sums[None]), y)[0]
            stuck, tabu = 0, {}
            continue
        tabu[int(pix[k])] = step + max(1, len(free) // 4)
        sums = cand[k]
        levels = levels.copy()
        levels[pix[k]] = new[k]
        current = margins[k]
    return None, best_seen
