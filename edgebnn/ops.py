"""Pure TensorFlow ops of edgebnn, each with its named gradient surrogate.

Every op here is non-differentiable in its forward pass (it rounds or samples), so
each one declares the surrogate gradient that white-box attacks and training use.
Keeping the surrogate explicit is what lets attacks see through the op (BPDA,
Athalye et al. 2018) instead of being fooled by zero gradients.
"""

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf

#: Smallest and largest supported input bit width of :func:`discretize`.
MIN_INPUT_BITS = 1
MAX_INPUT_BITS = 8


def validate_bits(bits, *, name="bits"):
    """Return ``bits`` as an int in ``[1, 8]`` or raise naming the argument."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"`{name}` must be an int in [{MIN_INPUT_BITS}, {MAX_INPUT_BITS}], got {bits!r}.")
    if not MIN_INPUT_BITS <= bits <= MAX_INPUT_BITS:
        raise ValueError(f"`{name}` must be in [{MIN_INPUT_BITS}, {MAX_INPUT_BITS}], got {bits}.")
    return bits


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
    op as ``y = x``, so gradient-based attacks see through it (BPDA).

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
            return dy  # straight-through estimator (identity)

        return y, grad

    return _discretize(tf.convert_to_tensor(x))


def _validate_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"`seed` must be an int or None, got {seed!r}.")
    return seed


def _clipped_ste(dy, x, clip_value=1.0):
    """Straight-through gradient, zeroed where ``|x| > clip_value`` (Hubara et al. 2016)."""
    return dy * tf.cast(tf.abs(x) <= clip_value, dy.dtype)


def hard_sigmoid(x):
    """``clip((x + 1) / 2, 0, 1)``: the probability of +1 in :func:`stochastic_sign`."""
    return tf.clip_by_value((tf.convert_to_tensor(x) + 1.0) / 2.0, 0.0, 1.0)


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
            reproducible; successive calls still draw different samples.

    Returns:
        A tensor of ``x``'s shape and dtype with values in ``{-1, +1}``.

    Raises:
        TypeError: if ``seed`` is not an int or None.
    """
    seed = _validate_seed(seed)

    @tf.custom_gradient
    def _stochastic_sign(x):
        uniform = tf.random.uniform(tf.shape(x), dtype=x.dtype, seed=seed)
        y = tf.where(uniform < hard_sigmoid(x), tf.ones_like(x), -tf.ones_like(x))

        def grad(dy):
            return _clipped_ste(dy, x)

        return y, grad

    return _stochastic_sign(tf.convert_to_tensor(x))


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


def kbit_activation(x, bits):
    """k-bit activation quantization (DoReFa-Net, Zhou et al. 2016, Eq. 9).

    ``q = round(clip(x, 0, 1) * (2**bits - 1)) / (2**bits - 1)``: ``2**bits`` levels
    evenly spaced in ``[0, 1]``, so the clip doubles as a bounded ReLU.

    Gradient surrogate: **straight-through estimator inside the clip range**,
    ``dy * 1{0 <= x <= 1}``.

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
            return dy * tf.cast((x >= 0.0) & (x <= 1.0), dy.dtype)

        return y, grad

    return _kbit_activation(tf.convert_to_tensor(x))


def xnor_weight(w):
    """XNOR-Net weight binarization (Rastegari et al. 2016, Sec. 3.1): ``alpha * sign(w)``.

    ``alpha`` is the mean absolute weight of each output channel (the last axis of a
    Keras ``Conv2D`` / ``Dense`` kernel), the scale that minimizes
    ``||w - alpha * sign(w)||``. It is computed from the latent weights and treated
    as a constant in the backward pass (as Larq's ``magnitude_aware_sign``).

    Gradient surrogate: **straight-through estimator with clip** for the sign,
    ``alpha * dy * 1{|w| <= 1}``. ``sign(0)`` is +1, as in Larq.

    Args:
        w: float kernel tensor; the last axis indexes output channels.

    Returns:
        Tensor of ``w``'s shape whose values are ``+-alpha`` per output channel.
    """
    w = tf.convert_to_tensor(w)
    return tf.stop_gradient(xnor_scale(w)) * _ste_sign(w)


def xnor_scale(w):
    """Per-output-channel XNOR scale ``mean(|w|)`` over every axis but the last."""
    w = tf.convert_to_tensor(w)
    return tf.reduce_mean(tf.abs(w), axis=list(range(len(w.shape) - 1)))


@tf.custom_gradient
def _ste_sign(x):
    y = tf.where(x >= 0.0, tf.ones_like(x), -tf.ones_like(x))

    def grad(dy):
        return _clipped_ste(dy, x)

    return y, grad
