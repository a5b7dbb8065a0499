"""Pure TensorFlow ops of edgebnn, each with its named gradient surrogate.

Every op here is non-differentiable in its forward pass (it rounds or samples), so
each one declares the surrogate gradient that white-box attacks and training use.
Keeping the surrogate explicit is what lets attacks see through the op (BPDA,
Athalye et al. 2018) instead of being fooled by zero gradients.
"""

import contextlib
import threading

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate, randomness

import tensorflow as tf

from edgebnn._autograph import skip_keras_internals

skip_keras_internals()

#: Ops hold no tensor-dependent Python control flow, so AutoGraph has nothing to
#: convert; converting them anyway can unwrap ``tf.custom_gradient`` and return the
#: raw ``(value, grad_fn)`` tuple inside Keras layer calls.
_NO_AUTOGRAPH = tf.autograph.experimental.do_not_convert

#: Smallest and largest supported input bit width of :func:`discretize`.
MIN_INPUT_BITS = 1
MAX_INPUT_BITS = 8

#: Gradient surrogates an attack can choose for the backward pass of every op here
#: (the forward pass never changes). ``"ste"`` is each op's own declared surrogate.
SURROGATES = {
    "ste": "each op's declared surrogate: identity through discretization, clipped STE through sign",
    "identity": "straight-through identity everywhere (sign too, unclipped)",
    "clipped": "clipped straight-through: zero outside the op's input range (|x| <= 1 for sign)",
    "smooth": "temperature-scaled soft staircase for discretization, tanh for sign",
    "smooth_poly": "soft staircase for discretization, the piecewise-polynomial ApproxSign (Liu et al. 2018) for sign",
}
#: Default temperature of the smooth surrogates. The soft staircase's sigmoids have a
#: scale of this many bin widths; the smooth sign is ``tanh(x / (4 * temperature))``,
#: so the default gives ``tanh(x)`` (slope 1 at 0, like the straight-through estimator).
DEFAULT_TEMPERATURE = 0.25
#: Thresholds on each side of an input that the soft-staircase gradient sums over; a
#: sigmoid scaled by ``DEFAULT_TEMPERATURE`` contributes < 1e-6 beyond four bins.
_STAIRCASE_WINDOW = 4

_SCOPE = threading.local()


def validate_surrogate(name):
    """Return ``name`` if it is a key of :data:`SURROGATES`; raise naming the valid ones."""
    if not isinstance(name, str) or name not in SURROGATES:
        raise ValueError(f"`surrogate` must be one of {sorted(SURROGATES)}, got {name!r}.")
    return name


def current_surrogate():
    """``(name, temperature)`` of the gradient surrogate in force (``("ste", ...)`` by default)."""
    return getattr(_SCOPE, "state", ("ste", DEFAULT_TEMPERATURE))


@contextlib.contextmanager
def gradient_surrogate(name, *, temperature=DEFAULT_TEMPERATURE):
    """Use surrogate ``name`` for the gradients of the ops of this module inside the scope.

    The choice is read when a gradient is *computed* (``tape.gradient`` eagerly, or
    while a ``tf.function`` is traced), so the scope must enclose the gradient call.
    The forward pass is unchanged: outputs stay bit-identical. Scopes nest and are
    thread-local; the previous setting is restored on exit, also on errors.

    Args:
        name: a key of :data:`SURROGATES`.
        temperature: > 0, the smoothness of ``"smooth"`` / ``"smooth_poly"``: sigmoid
            scale of the soft staircase in bin widths; the smooth sign is
            ``tanh(x / (4 * temperature))``.

    Example:
        >>> with gradient_surrogate("smooth"):
        ...     grad = tape.gradient(loss, x)
    """
    validate_surrogate(name)
    _validate.number(temperature, "temperature", low=0, low_open=True)
    previous = current_surrogate()
    _SCOPE.state = (name, float(temperature))
    try:
        yield
    finally:
        _SCOPE.state = previous


def soft_staircase_gradient(x, levels, *, offset, temperature):
    """Derivative of a staircase with unit-height steps smoothed by sigmoids.

    The staircase ``sum_j 1{x * levels >= j + offset}`` (thresholds every ``1 / levels``)
    is replaced by ``sum_j sigmoid((x * levels - j - offset) / temperature) / levels``
    in units where the whole staircase rises by 1 over ``[0, 1]``; the returned value
    is its derivative with respect to ``x``. Only the thresholds within
    ``_STAIRCASE_WINDOW`` bins of ``x`` are summed; thresholds outside ``[1, levels - 1]``
    (for ``offset=0``) do not exist and are skipped.
    """
    u = x * levels - offset
    nearest = tf.floor(u)
    total = tf.zeros_like(x)
    for shift in range(-_STAIRCASE_WINDOW + 1, _STAIRCASE_WINDOW + 1):
        j = nearest + shift
        exists = (j + offset > 0.0) & (j + offset < levels)
        s = tf.sigmoid((u - j) / temperature)
        total += tf.where(exists, s * (1.0 - s) / temperature, 0.0)
    return total


def _input_range_gradient(dy, x, lo, hi):
    return dy * tf.cast((x >= lo) & (x <= hi), dy.dtype)


def sign_gradient(dy, x, *, clip_value=1.0):
    """Backward pass of a sign under the surrogate in force.

    ``"ste"`` / ``"clipped"``: ``dy * 1{|x| <= clip_value}`` (Hubara et al. 2016);
    ``"identity"``: ``dy``; ``"smooth"``: derivative of ``tanh(x / T)``;
    ``"smooth_poly"``: Bi-Real's ``(2 - 2|x|) * 1{|x| <= 1}`` (as Larq's ``approx_sign``).
    """
    name, temperature = current_surrogate()
    if name == "identity":
        return dy
    if name == "smooth":
        scale = 4.0 * temperature
        return dy * (1.0 - tf.square(tf.tanh(x / scale))) / scale
    if name == "smooth_poly":
        return dy * tf.where(tf.abs(x) <= 1.0, 2.0 - 2.0 * tf.abs(x), 0.0)
    if clip_value is None:
        return dy
    return dy * tf.cast(tf.abs(x) <= clip_value, dy.dtype)


def validate_bits(bits, *, name="bits"):
    """Return ``bits`` as an int in ``[1, 8]`` or raise naming the argument."""
    if not _validate.is_int(bits):
        raise TypeError(f"`{name}` must be an int in [{MIN_INPUT_BITS}, {MAX_INPUT_BITS}], got {bits!r}.")
    if not MIN_INPUT_BITS <= bits <= MAX_INPUT_BITS:
        raise ValueError(f"`{name}` must be in [{MIN_INPUT_BITS}, {MAX_INPUT_BITS}], got {bits}.")
    return int(bits)


def discretize_levels(x, bits):
    """Bin index ``k`` in ``{0, ..., 2**bits - 1}`` of inputs ``x`` in ``[0, 1]``.

    ``k = min(floor(x * 2**bits), 2**bits - 1)``; inputs outside ``[0, 1]`` are
    clamped into the first or last bin. The result is a float tensor of whole
    numbers (the dtype of ``x``). No gradient is defined: use :func:`discretize`.
    """
    levels = 2.0**bits
    x = tf.convert_to_tensor(x)
    return tf.clip_by_value(tf.floor(x * levels), 0.0, levels - 1.0)


def discretize(x, bits):
    """Quantize inputs in ``[0, 1]`` to the centre of one of ``2**bits`` equal bins.

    Input discretization of Panda, Chakraborty and Roy ("Discretization based
    solutions for secure machine learning against adversarial attacks", Eq. 2):
    the range ``[0, 1]`` is cut into ``n = 2**bits`` bins of width ``1/n`` and each
    value is replaced by the centre of its bin, ``(k + 0.5) / n`` with
    ``k = min(floor(x * n), n - 1)``. With ``bits=8`` the 256 pixel values
    ``p / 255`` fall into 256 distinct bins, so no information is lost.

    Gradient surrogate: **straight-through (identity)**. The backward pass treats the
    op as ``y = x``, so gradient-based attacks see through it (BPDA). Inside
    :func:`gradient_surrogate`, ``"clipped"`` zeroes it outside ``[0, 1]`` and
    ``"smooth"`` uses the soft staircase of :func:`soft_staircase_gradient` (thresholds
    ``j / 2**bits``).

    Args:
        x: float tensor of pixels scaled to ``[0, 1]``; values outside are clamped.
        bits: int in ``[1, 8]``, the number of bits kept per input value.

    Returns:
        A tensor of the same shape and dtype as ``x`` with ``2**bits`` distinct values.

    Raises:
        TypeError, ValueError: if ``bits`` is not an int in ``[1, 8]``.

    Example:
        >>> discretize(tf.constant([0.0, 0.3, 1.0]), 1).numpy()
        array([0.25, 0.25, 0.75], dtype=float32)
    """
    bits = validate_bits(bits)

    @tf.custom_gradient
    def _discretize(x):
        levels = 2.0**bits
        y = (discretize_levels(x, bits) + 0.5) / levels

        def grad(dy):
            name, temperature = current_surrogate()
            if name in ("smooth", "smooth_poly"):
                return dy * soft_staircase_gradient(x, levels, offset=0.0, temperature=temperature)
            if name == "clipped":
                return _input_range_gradient(dy, x, 0.0, 1.0)
            return dy  # straight-through estimator (identity)

        return y, grad

    return _discretize(tf.convert_to_tensor(x))


def _clipped_ste(dy, x, clip_value=1.0):
    """Straight-through gradient, zeroed where ``|x| > clip_value`` (Hubara et al. 2016),
    or the backward pass of the surrogate chosen with :func:`gradient_surrogate`."""
    return sign_gradient(dy, x, clip_value=clip_value)


def hard_sigmoid(x):
    """``clip((x + 1) / 2, 0, 1)``: the probability of +1 in :func:`stochastic_sign`."""
    return tf.clip_by_value((tf.convert_to_tensor(x) + 1.0) / 2.0, 0.0, 1.0)


@_NO_AUTOGRAPH
def stochastic_sign(x, *, seed=None):
    """Stochastic binarization: +1 with probability ``hard_sigmoid(x)``, else -1.

    Courbariaux et al. 2015 (BinaryConnect, Eq. 2); used on the weights of one layer
    by Galloway et al. 2018 (model "S") and of Guan's randomized BNN. A fresh sample
    is drawn at **every** call, at training and at test time alike, so the expected
    value is ``2 * hard_sigmoid(x) - 1`` (``x`` itself inside ``[-1, 1]``).

    Gradient surrogate: **straight-through estimator with the usual clip**: the
    backward pass is ``dy * 1{|x| <= 1}``, as for Larq's ``ste_sign``.

    Args:
        x: float tensor (typically latent weights clipped to ``[-1, 1]``).
        seed: optional op-level seed of ``tf.random.uniform``. Together with a global
            seed (``tf.random.set_seed``) it makes the sequence of samples
            reproducible; successive calls still draw different samples. Within a
            :func:`edgebnn.randomness.seeded` scope (a seeded craft or Monte-Carlo
            prediction) the samples come from the scope's key instead and ``seed`` is not used.

    Returns:
        A tensor of ``x``'s shape and dtype with values in ``{-1, +1}``.

    Raises:
        TypeError: if ``seed`` is not an int or None.
    """
    seed = _validate.seed(seed)

    @tf.custom_gradient
    def _stochastic_sign(x):
        uniform = randomness.uniform(tf.shape(x), dtype=x.dtype, seed=seed)
        y = tf.where(uniform < hard_sigmoid(x), tf.ones_like(x), -tf.ones_like(x))

        def grad(dy):
            return _clipped_ste(dy, x)

        return y, grad

    return _stochastic_sign(tf.convert_to_tensor(x))


#: Read by :func:`edgebnn.introspect.random_at_inference` (the function used directly as a quantizer).
stochastic_sign.random_at_inference = True


@_NO_AUTOGRAPH
def kbit_weight(w, bits):
    """k-bit weight quantization of Guan et al. (Eq. 11).

    ``q = clip(round(w * 2**(bits - 1)) / 2**(bits - 1), -1, 1)``: the grid of step
    ``2**(1 - bits)`` inside ``[-1, 1]``. ``bits=2`` gives ``{-1, -0.5, 0, 0.5, 1}``,
    ``bits=1`` the ternary ``{-1, 0, 1}``. ``round`` is TensorFlow's (and NumPy's)
    round-half-to-even.

    Gradient surrogate: **straight-through estimator with clip**, ``dy * 1{|w| <= 1}``
    (with Larq's ``weight_clip`` constraint every latent weight passes).

    Args:
        w: float tensor of latent weights.
        bits: int in ``[1, 8]``.

    Returns:
        The quantized tensor, same shape and dtype as ``w``.

    Raises:
        TypeError, ValueError: if ``bits`` is not an int in ``[1, 8]``.
    """
    bits = validate_bits(bits)

    @tf.custom_gradient
    def _kbit_weight(w):
        steps = 2.0 ** (bits - 1)
        y = tf.clip_by_value(tf.round(w * steps) / steps, -1.0, 1.0)

        def grad(dy):
            return _clipped_ste(dy, w)

        return y, grad

    return _kbit_weight(tf.convert_to_tensor(w))


@_NO_AUTOGRAPH
def kbit_activation(x, bits):
    """k-bit activation quantization (DoReFa-Net, Zhou et al. 2016, Eq. 9).

    ``q = round(clip(x, 0, 1) * (2**bits - 1)) / (2**bits - 1)``: ``2**bits`` levels
    evenly spaced in ``[0, 1]``, so the clip doubles as a bounded ReLU. Models use
    Larq's ``DoReFa(k_bit=bits, mode="activations")``, which computes the same forward
    pass and gradient; this op exists for the gradient surrogates, which Larq's
    quantizer cannot switch (:class:`edgebnn.quantizers.SurrogateDoReFa`).

    Gradient surrogate: **straight-through estimator inside the clip range**,
    ``dy * 1{0 <= x <= 1}`` (Larq's); inside :func:`gradient_surrogate`, ``"identity"``
    passes ``dy`` everywhere and ``"smooth"`` / ``"smooth_poly"`` use the soft staircase
    (thresholds half-way between levels).

    Args:
        x: float tensor of pre-activations.
        bits: int in ``[1, 8]``.

    Returns:
        The quantized tensor, same shape and dtype as ``x``.

    Raises:
        TypeError, ValueError: if ``bits`` is not an int in ``[1, 8]``.
    """
    bits = validate_bits(bits)

    @tf.custom_gradient
    def _kbit_activation(x):
        levels = 2.0**bits - 1.0
        y = tf.round(tf.clip_by_value(x, 0.0, 1.0) * levels) / levels

        def grad(dy):
            name, temperature = current_surrogate()
            if name == "identity":
                return dy
            if name in ("smooth", "smooth_poly"):
                # Rounding thresholds sit half-way between the levels.
                return dy * soft_staircase_gradient(x, levels, offset=0.5, temperature=temperature)
            return _input_range_gradient(dy, x, 0.0, 1.0)

        return y, grad

    return _kbit_activation(tf.convert_to_tensor(x))


@_NO_AUTOGRAPH
def sign(x, *, clip_value=1.0):
    """Sign with +1 at 0 (Larq's ``ste_sign`` forward pass) and a selectable gradient.

    Gradient surrogate: **straight-through estimator clipped at** ``clip_value``
    (``None``: unclipped), exactly Larq's ``ste_sign``; inside
    :func:`gradient_surrogate` the one chosen there (:func:`sign_gradient`).
    """

    @tf.custom_gradient
    def _sign(x):
        y = tf.where(x >= 0.0, tf.ones_like(x), -tf.ones_like(x))

        def grad(dy):
            return sign_gradient(dy, x, clip_value=clip_value)

        return y, grad

    return _sign(tf.convert_to_tensor(x))
