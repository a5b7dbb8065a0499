"""The exact integer model of a discretized binary network and its per-example constraint problem.

TensorFlow-free: solver worker processes import only this module, NumPy and a solver.

A :class:`BinaryNet` is what :func:`edgebnn.certify.network.extract` reads out of a
Keras model. With ``n = 2**bits`` input levels, a pixel at level ``k`` is the value
``(k + 1/2) / n`` after :func:`edgebnn.ops.discretize`, so the first binary layer
computes ``z = S / (2 n)`` with the **integer** ``S = sum_i W_i (2 k_i + 1)``
(``W_i = +-1``), exactly also in float32. Later layers compute the integer
``p = sum_j W_j x_j`` over ``x_j = +-1``. Each hidden neuron's BatchNorm and sign are
read off the Keras layers on every integer value the sum can take, so a neuron is
one integer threshold: ``+1`` iff ``S >= T`` (or ``S <= T``, or a constant), with the
float32 rounding and the ``sign(0) = +1`` convention of the Keras model built in.
The logits are a table over the output layer's integer sums.

For one example and an L-infinity radius ``eps``, :func:`build_problem` finds the
levels each pixel can reach in the ball, propagates integer bounds to fix every
neuron whose sign cannot change, and writes what is left as cardinality
constraints over Boolean variables (:class:`Problem`): each unstable neuron is
``h <=> count(literals) >= k``, and the prediction changes iff some other class's
logit beats the label's, a monotone staircase between two counts. A SAT or MILP
backend (:mod:`edgebnn.certify.solvers`) decides it. Balls holding few discretized
inputs are instead searched exhaustively with the exact forward pass
(:func:`enumerate_ball`).
"""

import dataclasses
import functools

import numpy as np
from scipy import sparse

#: Neuron kinds of a hidden layer: constant -1, constant +1, +1 iff sum >= T, +1 iff sum <= T.
CONST_NEG, CONST_POS, FIRE_GE, FIRE_LE = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class BinaryNet:
    """A discretized binary network as integers (NumPy only; picklable).

    Attributes:
        bits: input discretization bits (``2**bits`` levels per pixel).
        input_shape: shape of one input example.
        kernels: ``+-1`` int8 kernels ``(fan_in, units)``, first layer to output layer.
        kinds: per hidden layer, int8 array of neuron kinds (``CONST_NEG``, ``CONST_POS``,
            ``FIRE_GE``, ``FIRE_LE``).
        thresholds: per hidden layer, int64 thresholds ``T`` of the integer sums.
        logit_table: ``(2 m + 1, classes)`` float64 logits (float32 values) for output
            sums ``p = -m .. m``, ``m`` the output layer's fan-in.
        layer_names: names of the Keras layers the kernels come from.
    """

    bits: int
    input_shape: tuple
    kernels: tuple
    kinds: tuple
    thresholds: tuple
    logit_table: np.ndarray
    layer_names: tuple = ()

    @property
    def levels(self):
        return 2**self.bits

    @property
    def num_classes(self):
        return self.logit_table.shape[1]

    @property
    def widths(self):
        return tuple(k.shape[1] for k in self.kernels)

    @functools.cached_property
    def float_kernels(self):
        """The kernels as float32, for BLAS products of integer vectors (exact: every sum is far below ``2**24``)."""
        return tuple(k.astype(np.float32) for k in self.kernels)

    @functools.cached_property
    def sparse_kernels(self):
        """Per layer, the float32 kernel and its absolute value as transposed CSR matrices ``(units, fan_in)``.

        Convolution kernels written as dense matrices are mostly zeros; products with many
        inputs at once (:mod:`.branch`) are far cheaper over their nonzeros.
        """
        return tuple((sparse.csr_matrix(k.T), sparse.csr_matrix(np.abs(k.T))) for k in self.float_kernels)

    @property
    def macs_after_first(self):
        """Multiply-accumulates of one forward pass after the first layer's sums."""
        return int(sum(k.size for k in self.kernels[1:]))


def int_product(h, kernel32):
    """``h @ kernel`` for integer ``h`` and a float32 ``{-1, 0, 1}`` kernel, exactly (float32 BLAS, integer result)."""
    return (np.asarray(h, np.float32) @ kernel32).astype(np.int64)


def fingerprint(net):
    """SHA-256 (hex) of everything the exact decisions depend on: bits, input shape, kernels, thresholds, logits.

    Two networks with the same fingerprint give the same answer on every example, so a
    report that stores it (with eps, the image and the solver) pins down what was proved.
    """
    import hashlib  # noqa: PLC0415

    digest = hashlib.sha256()
    digest.update(repr((net.bits, tuple(net.input_shape))).encode())
    arrays = [*net.kernels, *net.kinds, *net.thresholds, net.logit_table]
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def pixel_levels(x, bits):
    """Bin index of float32 pixels, as :func:`edgebnn.ops.discretize_levels` (NumPy, exact)."""
    n = 2**bits
    return np.clip(np.floor(np.asarray(x, np.float32) * np.float32(n)), 0, n - 1).astype(np.int64)


def ball_bounds(x, eps):
    """Smallest and largest float32 values of each pixel within ``eps`` of ``x`` and inside ``[0, 1]``."""
    x = np.asarray(x, np.float32).astype(np.float64)
    lo_real, hi_real = np.maximum(x - eps, 0.0), np.minimum(x + eps, 1.0)
    lo, hi = lo_real.astype(np.float32), hi_real.astype(np.float32)
    lo = np.where(lo.astype(np.float64) < lo_real, np.nextafter(lo, np.float32(np.inf)), lo)
    hi = np.where(hi.astype(np.float64) > hi_real, np.nextafter(hi, np.float32(-np.inf)), hi)
    return lo.astype(np.float32), hi.astype(np.float32)


def level_range(x, eps, bits):
    """``(klo, khi)``: the lowest and highest discretization level reachable per pixel of flat ``x``."""
    lo, hi = ball_bounds(x, eps)
    return pixel_levels(lo, bits), pixel_levels(hi, bits)


def witness(x, levels, eps, bits):
    """A float32 input within ``eps`` of ``x`` (and in ``[0, 1]``) whose pixels discretize to ``levels``.

    Pixels whose level is unchanged keep their value; others move to the nearest
    point of the requested bin inside the ball.
    """
    x = np.asarray(x, np.float32)
    n = np.float32(2**bits)
    lo, hi = ball_bounds(x, eps)
    levels = np.asarray(levels, np.int64)
    own = pixel_levels(x, bits)
    bin_lo = (levels / n).astype(np.float32)  # exact: n is a power of two
    bin_top = np.nextafter(((levels + 1) / n).astype(np.float32), np.float32(-np.inf))
    out = np.where(levels > own, np.maximum(lo, bin_lo), np.minimum(hi, bin_top))
    out = np.where(levels == own, x, out).astype(np.float32)
    if not np.array_equal(pixel_levels(out, bits), levels) or np.any(out < lo) or np.any(out > hi):
        raise ValueError("`levels` are not all reachable within `eps` of `x`.")
    return out


def fire(pre, kinds, thresholds):
    """``+1`` / ``-1`` of each neuron for integer pre-activations ``pre`` (..., units)."""
    ge, le = pre >= thresholds, pre <= thresholds
    on = np.where(kinds == FIRE_GE, ge, np.where(kinds == FIRE_LE, le, kinds == CONST_POS))
    return np.where(on, 1, -1).astype(np.int64)


def forward_levels(net, levels):
    """Exact forward pass on discretization levels ``(batch, pixels)``: ``(hidden signs, logits)``."""
    h = 2 * np.asarray(levels, np.int64) + 1
    signs = []
    for kernel, kinds, thresholds in zip(net.float_kernels[:-1], net.kinds, net.thresholds):
        h = fire(int_product(h, kernel), kinds, thresholds)
        signs.append(h)
    p = int_product(h, net.float_kernels[-1])
    m = net.kernels[-1].shape[0]
    logits = np.take_along_axis(net.logit_table, p + m, axis=0) if p.ndim == 2 else net.logit_table[p + m,
                                                                                                     np.arange(p.size)]
    return signs, logits


def predict_levels(net, levels):
    """Arg-max class (first maximum, as ``tf.argmax``) of the exact forward pass."""
    return np.argmax(forward_levels(net, levels)[1], axis=-1)


# --------------------------------------------------------------------------- problem


@dataclasses.dataclass
class Atleast:
    """A Boolean variable ``var`` defined as ``count(lits) >= k`` (literals are signed 1-based ints)."""

    var: int
    lits: list
    k: int


@dataclasses.dataclass
class Rival:
    """Class ``c`` beats the label iff ``count_c >= steps[count_y]`` (``steps`` nondecreasing).

    ``steps[a]`` for ``a = 0 .. len(label_lits)``; a value ``> len(lits)`` means "never".
    """

    cls: int
    lits: list
    steps: np.ndarray


@dataclasses.dataclass
class Problem:
    """Cardinality constraints whose solutions are exactly the inputs in the ball that change the prediction.

    Attributes:
        num_vars: Boolean variables ``1 .. num_vars``.
        chains: per free pixel ``(pixel, [u_1, ..., u_d])`` with ``u_{t+1} -> u_t``;
            the pixel's level is ``klo + sum(u)``.
        neurons: :class:`Atleast` definitions, in topological order.
        label_lits: literals whose count is the label's output count.
        rivals: the classes that can still beat the label.
        klo: lowest reachable level per pixel.
    """

    num_vars: int
    chains: list
    neurons: list
    label_lits: list
    rivals: list
    klo: np.ndarray

    def levels(self, true_vars):
        """Pixel levels of an assignment given as a set of true variables."""
        levels = self.klo.copy()
        for pixel, chain in self.chains:
            levels[pixel] += sum(1 for v in chain if v in true_vars)
        return levels


def _steps(logit_c, logit_y, rival_first):
    """``steps[a]``: fewest true literals of class c that beat the label with ``a`` true label literals.

    ``logit_c[b]`` / ``logit_y[a]`` are the logits at ``b`` / ``a`` true literals, both nondecreasing.
    """
    if rival_first:  # arg-max keeps the first maximum: a tie goes to the lower class index
        beats = logit_c[None, :] >= logit_y[:, None]
    else:
        beats = logit_c[None, :] > logit_y[:, None]
    return np.where(beats.any(axis=1), beats.argmax(axis=1), len(logit_c))


def _output_literals(kernel_col, active_items, value, table_col, m):
    """Literals of one output sum and the logit at each count, oriented so that the logit grows with the count."""
    active_items = [(j, lit) for j, lit in active_items if kernel_col[j] != 0]
    base = int(np.dot(kernel_col, value)) - len(active_items)
    lits = [lit if kernel_col[j] > 0 else -lit for j, lit in active_items]
    logits = table_col[base + 2 * np.arange(len(lits) + 1) + m]  # p = base + 2 count
    if logits[-1] < logits[0]:  # the logit falls with the count: count the negated literals instead
        return [-lit for lit in lits], logits[::-1]
    return lits, logits


def build_problem(net, x, y, eps):
    """The constraint problem of example ``x`` (flattened pixels) with label ``y`` at radius ``eps``.

    Returns:
        ``(problem, bounds)``: ``problem`` is a :class:`Problem` or ``None`` when integer
        bound propagation alone proves that no input in the ball changes the
        prediction away from ``y``; ``bounds`` is a dict of counts (free pixels,
        unstable neurons per layer) for reports.
    """
    x = np.asarray(x, np.float32).reshape(-1)
    klo, khi = level_range(x, eps, net.bits)
    free = np.flatnonzero(khi > klo)
    counter = iter(range(1, 1 << 62))
    chains = [(int(i), [next(counter) for _ in range(khi[i] - klo[i])]) for i in free]

    # first layer: S = sum_i W_i (2 k_i + 1) = base + 2 count(literals); zero weights count nothing
    kernel = net.kernels[0]
    fixed = int_product(2 * klo + 1, net.float_kernels[0])
    span = khi - klo
    down = int_product(2 * span, np.minimum(net.float_kernels[0], 0))  # sum over W < 0 of -2 span, <= 0
    up = int_product(2 * span, np.maximum(net.float_kernels[0], 0))
    s_lo, s_hi = fixed + down, fixed + up
    first_base = fixed + down
    chain_pix = np.array([i for i, chain in chains for _ in chain], np.int64)
    chain_var = np.array([u for _, chain in chains for u in chain], np.int64)

    def oriented(rows, lits, column):
        """The literals ``lits`` (of inputs ``rows``) oriented by the weights of ``column``, zero weights dropped."""
        weights = column[rows].astype(np.int64)
        return (lits * weights)[weights != 0].tolist()

    neurons, unstable_counts = [], []
    value, active_rows, active_lits = None, None, None  # previous layer: stable +-1 (0 = unstable), its literals
    for layer, (kinds, thresholds) in enumerate(zip(net.kinds, net.thresholds)):
        if layer > 0:
            kernel = net.kernels[layer]
            fixed = int_product(value, net.float_kernels[layer])
            n_free = np.abs(net.float_kernels[layer][value == 0]).sum(axis=0).astype(np.int64)
            s_lo, s_hi = fixed - n_free, fixed + n_free
        lo_fire, hi_fire = fire(s_lo, kinds, thresholds), fire(s_hi, kinds, thresholds)
        new_value = np.where(lo_fire == hi_fire, lo_fire, 0)
        new_rows, new_lits = [], []
        for j in np.flatnonzero(new_value == 0):
            if layer == 0:
                lits, base = oriented(chain_pix, chain_var, kernel[:, j]), int(first_base[j])
            else:
                lits = oriented(active_rows, active_lits, kernel[:, j])
                base = int(fixed[j]) - len(lits)
            t = int(thresholds[j])
            if kinds[j] == FIRE_GE:  # S >= T  <=>  count >= ceil((T - base) / 2)
                var, k, sign = next(counter), -((base - t) // 2), 1
            else:  # S <= T  <=>  not count >= floor((T - base) / 2) + 1
                var, k, sign = next(counter), (t - base) // 2 + 1, -1
            neurons.append(Atleast(var, lits, k))
            new_rows.append(int(j))
            new_lits.append(sign * var)
        value, active_rows, active_lits = new_value, np.array(new_rows, np.int64), np.array(new_lits, np.int64)
        unstable_counts.append(len(new_rows))

    kernel = net.kernels[-1].astype(np.int64)
    m = kernel.shape[0]
    table = net.logit_table
    active_items = list(zip(active_rows.tolist(), active_lits.tolist()))
    oriented = [_output_literals(kernel[:, c], active_items, value, table[:, c], m) for c in range(net.num_classes)]
    label_lits, logit_y = oriented[y]
    rivals = []
    for c in range(net.num_classes):
        if c == y:
            continue
        lits_c, logit_c = oriented[c]
        steps = _steps(logit_c, logit_y, rival_first=c < y)
        if steps[0] <= len(lits_c):  # steps grow with the label's count: steps[0] is the easiest case
            rivals.append(Rival(c, lits_c, steps))
    bounds = {"free_pixels": int(len(free)), "unstable": unstable_counts}
    if not rivals:
        return None, bounds
    problem = Problem(next(counter) - 1, chains, neurons, label_lits, rivals, klo)
    return problem, bounds



def enumerate_ball(net, x, y, eps, *, chunk=1 << 14):
    """Exhaustive search of the ball: every combination of reachable levels, by the exact forward pass.

    Args:
        net: the network.
        x: one example (flat pixels).
        y: its label.
        eps: the L-infinity radius.
        chunk: combinations evaluated per batch.

    Returns:
        The levels of the first combination not classified as ``y`` (in enumeration
        order), or ``None`` if there is none (the example is robust).
    """
    x = np.asarray(x, np.float32).reshape(-1)
    klo, khi = level_range(x, eps, net.bits)
    free = np.flatnonzero(khi > klo)
    spans = khi[free] - klo[free] + 1
    total = int(np.prod(spans, dtype=np.int64))
    base = int_product(2 * klo + 1, net.float_kernels[0])
    free_rows = 2 * net.float_kernels[0][free]  # one level up adds 2 W_i to S
    for start in range(0, total, chunk):
        index = np.arange(start, min(start + chunk, total), dtype=np.int64)
        steps = np.stack(np.unravel_index(index, spans), axis=1) if len(free) else np.zeros((len(index), 0), np.int64)
        h = base + (steps.astype(np.float32) @ free_rows).astype(np.int64)  # exact: small integers
        for layer, (kinds, thresholds) in enumerate(zip(net.kinds, net.thresholds)):
            if layer > 0:
                h = int_product(h, net.float_kernels[layer])
            h = fire(h, kinds, thresholds)
        p = int_product(h, net.float_kernels[-1])
        m = net.kernels[-1].shape[0]
        logits = np.take_along_axis(net.logit_table, p + m, axis=0)
        wrong = np.flatnonzero(np.argmax(logits, axis=1) != y)
        if len(wrong):
            levels = klo.copy()
            levels[free] += steps[wrong[0]]
            return levels
    return None


def ball_size(x, eps, bits):
    """Number of distinct discretized inputs in the ball around ``x`` (a Python int)."""
    klo, khi = level_range(np.asarray(x, np.float32).reshape(-1), eps, bits)
    return int(np.prod((khi - klo + 1).astype(object)))
