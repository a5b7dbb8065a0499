"""Quantizers usable from Larq layers: ``kernel_quantizer=`` / ``input_quantizer=``.

Where Larq has the quantizer, edgebnn uses Larq's: XNOR-Net weights are
``lq.quantizers.MagnitudeAwareSign`` and DoReFa k-bit activations
``lq.quantizers.DoReFa(k_bit, mode="activations")``. The classes here are thin,
serializable wrappers over an op of :mod:`edgebnn.ops`, derived from
``larq.quantizers.Quantizer`` so that ``lq.models.summary`` counts their weights at the
right bit width (the ``precision`` attribute).

Names resolve through the explicit dict :data:`QUANTIZERS` and :func:`get`, never
through Keras' global registry:

=====================  ==========================  ==================================
name                   quantizer                   notes
=====================  ==========================  ==================================
``"stochastic_sign"``  :class:`StochasticSign`     ``seed=`` optional
``"surrogate_sign"``   :class:`SurrogateSign`      Larq's ``SteSign``, selectable gradient
``"xnor_weight"``      Larq's MagnitudeAwareSign   per-output-channel scale
``"kbit_weight"``      :class:`KBitWeight`         needs ``bits=``, or ``"kbit_weight_2"``
``"kbit_activation"``  Larq's DoReFa (activations) needs ``bits=``, or ``"kbit_activation_4"``
``"ternary_weight"``   :class:`TernaryWeight`      ``threshold_ratio=`` optional
=====================  ==========================  ==================================

:class:`XnorWeight` and :class:`KBitActivation` are the same Larq quantizers under
edgebnn's earlier names, kept registered so that models saved with them load.

Example:
    >>> lq.layers.QuantConv2D(32, 3, kernel_quantizer=quantizers.get("kbit_weight_2"))

Finding XNOR layers in a model graph (deployment): an XNOR layer is a standard Larq
``QuantConv2D`` / ``QuantDense`` whose ``kernel_quantizer`` is a ``MagnitudeAwareSign``;
its per-channel scales are ``mean(|kernel|)`` over every axis but the last and the
binary weights ``sign(layer.kernel)`` (+1 at 0). See :func:`is_xnor_layer`.
"""

import re

from edgebnn import _validate, ops
from edgebnn.introspect import is_xnor

import larq as lq
import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class StochasticSign(lq.quantizers.Quantizer):
    """+1 with probability ``hard_sigmoid(x)``, else -1, sampled at every call.

    Wraps :func:`edgebnn.ops.stochastic_sign` (STE gradient, clipped at ``|x| <= 1``).
    Sampling happens in training **and** inference, so a model using it is random
    at test time; use :func:`edgebnn.evaluation.uncertainty.predict_mc`.

    Args:
        seed: optional op-level seed (see :func:`edgebnn.ops.stochastic_sign`).
    """

    precision = 1
    #: Samples at inference too (read by :func:`edgebnn.introspect.random_at_inference`).
    random_at_inference = True

    def __init__(self, seed=None, **kwargs):
        self.seed = _validate.seed(seed)
        super().__init__(**kwargs)

    def call(self, inputs):
        return ops.stochastic_sign(inputs, seed=self.seed)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class XnorWeight(lq.quantizers.MagnitudeAwareSign):
    """XNOR-Net weights (Rastegari et al. 2016): Larq's ``MagnitudeAwareSign`` under edgebnn's name.

    ``mean(|w|)`` per output channel (a constant in the backward pass) times ``sign(w)``
    (+1 at 0) with the clipped straight-through gradient. Adds nothing to Larq's class:
    the name stays registered so that models saved with it load; new models use
    ``lq.quantizers.MagnitudeAwareSign`` (``get("xnor_weight")``).
    """


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class KBitWeight(lq.quantizers.Quantizer):
    """Guan et al.'s k-bit weights (Eq. 11); wraps :func:`edgebnn.ops.kbit_weight`.

    Guan's grid keeps ``bits`` bits "in addition to 0": ``2**bits + 1`` levels
    (``bits=1`` is ternary, ``bits=4`` has 17 levels), so storing one weight takes
    ``bits + 1`` bits, and that is the ``precision`` Larq's model summary counts.

    Args:
        bits: int in ``[1, 8]``.
    """

    def __init__(self, bits, **kwargs):
        self.bits = ops.validate_bits(bits)
        super().__init__(**kwargs)

    @property
    def precision(self):
        """Bits needed to store one weight: ``bits + 1`` for the ``2**bits + 1`` levels."""
        return self.bits + 1

    def call(self, inputs):
        return ops.kbit_weight(inputs, self.bits)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class KBitActivation(lq.quantizers.DoReFa):
    """DoReFa k-bit activations in ``[0, 1]``: Larq's ``DoReFa(k_bit=bits, mode="activations")``.

    Only renames the argument (``bits``, validated like every bit width of edgebnn) and
    fixes the mode; forward pass and gradient are Larq's. The name stays registered so
    that models saved with it load; new models use ``lq.quantizers.DoReFa``
    (``get("kbit_activation", bits=b)``).

    Args:
        bits: int in ``[1, 8]``.
    """

    def __init__(self, bits, **kwargs):
        super().__init__(k_bit=ops.validate_bits(bits), mode="activations", **kwargs)

    @property
    def bits(self):
        return self.precision

    def get_config(self):
        config = super().get_config()
        del config["k_bit"], config["mode"]
        return {**config, "bits": self.bits}


def kbit_activation(bits):
    """Larq's ``DoReFa(k_bit=bits, mode="activations")`` after checking ``bits`` is an int in ``[1, 8]``."""
    return lq.quantizers.DoReFa(k_bit=ops.validate_bits(bits), mode="activations")


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class SurrogateSign(lq.quantizers.SteSign):
    """Larq's ``SteSign`` with the backward pass chosen by :func:`edgebnn.ops.gradient_surrogate`.

    Same forward pass as ``lq.quantizers.SteSign`` (sign, +1 at 0) and, outside a
    surrogate scope, the same clipped straight-through gradient; wraps
    :func:`edgebnn.ops.sign`. Attacks swap it in for Larq's sign quantizers while
    they trace (:func:`edgebnn.attacks.surrogates.use_surrogate`).

    Args:
        clip_value: gradient clip of the straight-through estimator (``None``: no clip).
    """

    def call(self, inputs):
        outputs = ops.sign(inputs, clip_value=self.clip_value)
        return super(lq.quantizers.SteSign, self).call(outputs)  # skip SteSign.call, keep the metrics hook


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class SurrogateDoReFa(lq.quantizers.DoReFa):
    """Larq's ``DoReFa`` (activations mode) with the backward pass chosen by :func:`edgebnn.ops.gradient_surrogate`.

    Same forward pass as ``lq.quantizers.DoReFa(k_bit, mode="activations")`` and,
    outside a surrogate scope, the same gradient (straight-through inside ``[0, 1]``);
    wraps :func:`edgebnn.ops.kbit_activation`. Attacks swap it in for Larq's DoReFa
    activation quantizers while they trace (:func:`edgebnn.attacks.surrogates.use_surrogate`).

    Args:
        k_bit: int in ``[1, 8]``, as Larq's.
        mode: only ``"activations"`` (Larq's weight mode preprocesses the weights first).
    """

    def __init__(self, k_bit=2, mode="activations", **kwargs):
        if mode != "activations":
            raise ValueError(f"`mode` must be 'activations', got {mode!r}.")
        super().__init__(k_bit=ops.validate_bits(k_bit, name="k_bit"), mode=mode, **kwargs)

    def call(self, inputs):
        outputs = ops.kbit_activation(inputs, self.precision)
        return super(lq.quantizers.DoReFa, self).call(outputs)  # skip DoReFa.call, keep the metrics hook


#: Ternary threshold as a multiple of the layer's mean absolute latent weight (Li et al. 2016, "Ternary weight networks").
TERNARY_THRESHOLD_RATIO = 0.7


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class TernaryWeight(lq.quantizers.Quantizer):
    """Sparse binary weights: ``sign(w)`` where ``|w| > r * mean(|w|)``, else 0.

    The threshold is relative to the layer's mean absolute latent weight (Li et al.
    2016, ternary weight networks), so every layer keeps a similar fraction of zeros:
    the balanced layer-wise sparsity that makes a binary network easy to verify
    exactly (Jia and Rinard 2020 reach it with a learnt mask instead). Gradient:
    straight-through (identity), as Larq's ``ste_sign`` inside the weight clip.

    Args:
        threshold_ratio: ``r >= 0``; 0 gives plain signs (no zeros except at ``w = 0``).
    """

    precision = 2

    def __init__(self, threshold_ratio=TERNARY_THRESHOLD_RATIO, **kwargs):
        self.threshold_ratio = _validate.number(threshold_ratio, "threshold_ratio", low=0)
        super().__init__(**kwargs)

    def call(self, inputs):
        delta = self.threshold_ratio * tf.reduce_mean(tf.abs(inputs))
        ternary = tf.sign(inputs) * tf.cast(tf.abs(inputs) > delta, inputs.dtype)
        return super().call(inputs + tf.stop_gradient(ternary - inputs))

    def get_config(self):
        return {**super().get_config(), "threshold_ratio": self.threshold_ratio}


#: name -> quantizer constructor (the explicit registry behind :func:`get`); the XNOR
#: and k-bit activation quantizers are Larq's own.
QUANTIZERS = {
    "stochastic_sign": StochasticSign,
    "surrogate_sign": SurrogateSign,
    "xnor_weight": lq.quantizers.MagnitudeAwareSign,
    "kbit_weight": KBitWeight,
    "kbit_activation": kbit_activation,
    "ternary_weight": TernaryWeight,
}
_BITS_SUFFIX = re.compile(r"^(kbit_weight|kbit_activation)_(\d+)$")


def names():
    """Sorted names accepted by :func:`get` (``kbit_*`` also as ``kbit_*_<bits>``)."""
    return sorted(QUANTIZERS)


def get(name, **kwargs):
    """A new quantizer instance from its registry name.

    Args:
        name: a key of :data:`QUANTIZERS`, or ``"kbit_weight_<b>"`` /
            ``"kbit_activation_<b>"`` with the bit width as a suffix.
        **kwargs: constructor arguments (``bits=``, ``seed=``).

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: unknown name, or bits given twice.
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a quantizer name (str), got {type(name).__name__}.")
    match = _BITS_SUFFIX.match(name)
    if match:
        if "bits" in kwargs:
            raise ValueError(f"`bits` given both in the name {name!r} and as bits={kwargs['bits']!r}.")
        name, kwargs = match.group(1), {**kwargs, "bits": int(match.group(2))}
    try:
        cls = QUANTIZERS[name]
    except KeyError:
        raise ValueError(
            f"Unknown quantizer {name!r}; valid names: {names()} (kbit_* also as e.g. 'kbit_weight_2')."
        ) from None
    return cls(**kwargs)


def is_xnor_layer(layer):
    """True when ``layer`` is a Larq quantized layer whose kernel quantizer is Larq's ``MagnitudeAwareSign``
    (edgebnn's :class:`XnorWeight` included)."""
    return is_xnor(getattr(layer, "kernel_quantizer", None))


__all__ = [
    "KBitActivation", "KBitWeight", "QUANTIZERS", "StochasticSign", "SurrogateDoReFa", "SurrogateSign",
    "XnorWeight", "get", "is_xnor_layer", "kbit_activation", "names",
]
