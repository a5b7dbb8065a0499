"""Quantizers usable from Larq layers: ``kernel_quantizer=`` / ``input_quantizer=``.

Each class is a thin, serializable wrapper over an op of :mod:`edgebnn.ops`, derived
from ``larq.quantizers.Quantizer`` so that ``lq.models.summary`` counts its weights at
the right bit width (the ``precision`` attribute).

Names resolve through the explicit dict :data:`QUANTIZERS` and :func:`get`, never
through Keras' global registry:

=====================  ======================  ==================================
name                   class                   notes
=====================  ======================  ==================================
``"stochastic_sign"``  :class:`StochasticSign`  ``seed=`` optional
``"surrogate_sign"``   :class:`SurrogateSign`   Larq's ``SteSign``, selectable gradient
``"xnor_weight"``      :class:`XnorWeight`      per-output-channel scale
``"kbit_weight"``      :class:`KBitWeight`      needs ``bits=``, or ``"kbit_weight_2"``
``"kbit_activation"``  :class:`KBitActivation`  needs ``bits=``, or ``"kbit_activation_4"``
=====================  ======================  ==================================

Example:
    >>> lq.layers.QuantConv2D(32, 3, kernel_quantizer=quantizers.get("kbit_weight_2"))

Finding XNOR layers in a model graph (deployment): an XNOR layer is a standard Larq
``QuantConv2D`` / ``QuantDense`` whose ``kernel_quantizer`` is an :class:`XnorWeight`
instance (serialized as ``"registered_name": "edgebnn>XnorWeight"``); its per-channel
scales are ``edgebnn.ops.xnor_scale(layer.kernel)`` and the binary weights
``sign(layer.kernel)`` (+1 at 0). See :func:`is_xnor_layer`.
"""

import re

from edgebnn import ops

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

    def __init__(self, seed=None, **kwargs):
        self.seed = ops._validate_seed(seed)
        super().__init__(**kwargs)

    def call(self, inputs):
        return ops.stochastic_sign(inputs, seed=self.seed)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class XnorWeight(lq.quantizers.Quantizer):
    """XNOR-Net weights: ``mean(|w|)`` per output channel times ``sign(w)``.

    Wraps :func:`edgebnn.ops.xnor_weight` (Rastegari et al. 2016). Use it as the
    ``kernel_quantizer`` of a Larq layer whose ``input_quantizer`` is ``"ste_sign"``.
    """

    precision = 1

    def call(self, inputs):
        return ops.xnor_weight(inputs)


class _KBit(lq.quantizers.Quantizer):
    """Base of the k-bit quantizers: stores and validates ``bits``."""

    def __init__(self, bits, **kwargs):
        self.bits = ops.validate_bits(bits)
        super().__init__(**kwargs)

    @property
    def precision(self):
        return self.bits

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class KBitWeight(_KBit):
    """Guan et al.'s k-bit weights (Eq. 11); wraps :func:`edgebnn.ops.kbit_weight`.

    Args:
        bits: int in ``[1, 8]``.
    """

    def call(self, inputs):
        return ops.kbit_weight(inputs, self.bits)


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class KBitActivation(_KBit):
    """DoReFa k-bit activations in ``[0, 1]``; wraps :func:`edgebnn.ops.kbit_activation`.

    Args:
        bits: int in ``[1, 8]``.
    """

    def call(self, inputs):
        return ops.kbit_activation(inputs, self.bits)


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


#: name -> quantizer class (the explicit registry behind :func:`get`).
QUANTIZERS = {
    "stochastic_sign": StochasticSign,
    "surrogate_sign": SurrogateSign,
    "xnor_weight": XnorWeight,
    "kbit_weight": KBitWeight,
    "kbit_activation": KBitActivation,
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
    """True when ``layer`` is a Larq quantized layer with an :class:`XnorWeight` kernel quantizer."""
    return isinstance(getattr(layer, "kernel_quantizer", None), XnorWeight)


__all__ = [
    "KBitActivation", "KBitWeight", "QUANTIZERS", "StochasticSign", "SurrogateSign", "XnorWeight",
    "get", "is_xnor_layer", "names",
]
