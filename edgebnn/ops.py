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
