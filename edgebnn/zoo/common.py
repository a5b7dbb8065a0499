"""Shared pieces of the model builders: the validated model input, quantized layers."""

from edgebnn import _validate, ops, quantizers
from edgebnn.layers import InputDiscretization

import larq as lq
import tensorflow as tf

#: Larq keyword arguments of a BNN hidden layer (Courbariaux et al. 2016): binary
#: inputs and weights with the straight-through sign, latent weights clipped to [-1, 1].
BINARY_HIDDEN = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
#: The first layer of a BNN sees the (possibly discretized) pixels, not their sign.
BINARY_FIRST = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
#: BatchNorm settings used after every quantized layer (Larq's BNN examples).
BATCH_NORM = dict(momentum=0.9, scale=False)


def model_input(family, precision, precisions, *, input_bits, num_classes, input_shape):
    """Validate the arguments every builder shares; return the model input and the tensor the first layer reads.

    The tensor is the input itself, or its :class:`InputDiscretization` when ``input_bits`` is set.
    """
    _validate.one_of(precision, "precision", precisions, prefix=f"{family}: ")
    if input_bits is not None:
        ops.validate_bits(input_bits, name="input_bits")
    _validate.integer(num_classes, "num_classes", low=2, prefix=f"{family}: ")
    shape = tuple(input_shape)
    if not shape or not all(_validate.is_int(d) and d > 0 for d in shape):
        raise ValueError(f"{family}: `input_shape` must be positive ints, got {input_shape!r}.")
    inputs = tf.keras.Input(shape=shape, name="pixels")
    x = inputs if input_bits is None else InputDiscretization(input_bits, name="input_discretization")(inputs)
    return inputs, x


#: k-bit precisions of Guan et al. and their bit widths.
KBIT_PRECISIONS = {"2bit": 2, "3bit": 3, "4bit": 4}


def layer_quantizers(precision, *, first=False, kbit_inputs=True):
    """Larq keyword arguments of one hidden layer at ``precision`` (``None``: plain Keras).

    - ``"float"``: ``None``, a plain ``Conv2D`` / ``Dense``.
    - ``"binary"``: BNN (Courbariaux et al. 2016), sign/STE weights and inputs.
    - ``"xnor"``: XNOR-Net (Rastegari et al. 2016), Larq's ``MagnitudeAwareSign``
      kernels with binary inputs.
    - ``"stochastic_binary"``: :class:`~edgebnn.quantizers.StochasticSign` kernels, binary inputs.
    - ``"2bit"`` / ``"3bit"`` / ``"4bit"``: :class:`~edgebnn.quantizers.KBitWeight` kernels
      (Guan Eq. 11) and Larq's DoReFa k-bit activation inputs; with
      ``kbit_inputs=False`` the inputs are binary (sign/STE) as in a BNN, so the layer
      differs from the ``"binary"`` one only in its weights.

    k-bit and stochastic kernels start uniform in [-1, 1] so that they span the grid
    and carry signal (Glorot-scaled weights would all round to 0, or sample nearly
    fair coins). The first layer of a network (``first=True``) sees the (possibly discretized)
    pixels, so its inputs are never quantized. Latent weights are clipped to [-1, 1].
    Quantizer instances are fresh for every call (never shared between layers).
    """
    if precision == "float":
        return None
    if precision == "binary":
        kwargs = dict(BINARY_FIRST if first else BINARY_HIDDEN)
    elif precision == "xnor":
        kwargs = dict(input_quantizer="ste_sign", kernel_quantizer=lq.quantizers.MagnitudeAwareSign())
    elif precision == "stochastic_binary":
        kwargs = dict(
            input_quantizer="ste_sign", kernel_quantizer=quantizers.StochasticSign(),
            # Glorot-scaled weights would sample nearly fair coins (hard_sigmoid(w) ~ 0.5).
            kernel_initializer=tf.keras.initializers.RandomUniform(-1.0, 1.0),
        )
    elif precision in KBIT_PRECISIONS:
        bits = KBIT_PRECISIONS[precision]
        kwargs = dict(
            input_quantizer=quantizers.kbit_activation(bits) if kbit_inputs else "ste_sign",
            kernel_quantizer=quantizers.KBitWeight(bits),
            # Glorot-scaled weights (|w| < 2**-bits) would all round to 0 on the k-bit grid.
            kernel_initializer=tf.keras.initializers.RandomUniform(-1.0, 1.0),
        )
    else:
        raise ValueError(f"Unknown precision {precision!r}.")
    kwargs["kernel_constraint"] = "weight_clip"
    if first:
        kwargs.pop("input_quantizer", None)
    return kwargs


def conv(filters, kernel_size, *, quant=None, **kwargs):
    """``Conv2D`` when ``quant`` is None, else Larq ``QuantConv2D(**quant)``."""
    if quant is None:
        return tf.keras.layers.Conv2D(filters, kernel_size, **kwargs)
    return lq.layers.QuantConv2D(filters, kernel_size, **quant, **kwargs)


def dense(units, *, quant=None, **kwargs):
    """``Dense`` when ``quant`` is None, else Larq ``QuantDense(**quant)``."""
    if quant is None:
        return tf.keras.layers.Dense(units, **kwargs)
    return lq.layers.QuantDense(units, **quant, **kwargs)


def model_name(family, precision, input_bits):
    """Default model name: ``<family>_<precision>[_in<bits>]``."""
    return f"{family}_{precision}" + ("" if input_bits is None else f"_in{input_bits}")
