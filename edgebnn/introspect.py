"""What a model's quantizers and layers compute, decided in one place by class, not by name.

Attacks (which quantizers a gradient surrogate may replace), deployment (which kernels
become binary or XNOR kernels, which models cannot become one deterministic graph)
and certification (which layers the exact encoding covers) ask these functions:

- :func:`is_sign`: a quantizer whose forward pass is ``sign(x)`` with values ``+-1``
  (Larq's ``SteSign``, ``ApproxSign``, ``SwishSign`` and their subclasses, edgebnn's
  :class:`~edgebnn.quantizers.SurrogateSign` included).
- :func:`is_xnor`: an XNOR-Net kernel quantizer ``alpha_c * sign(W)`` (Larq's
  ``MagnitudeAwareSign``, edgebnn's :class:`~edgebnn.quantizers.XnorWeight` included).
- :func:`random_at_inference`: a quantizer or layer that samples at inference. A class
  says so with the attribute ``random_at_inference`` (a class attribute, or a property
  when it depends on the configuration, as :class:`~edgebnn.layers.MCDropout`'s
  ``always_on``); :func:`random_inference_layers` also finds layers called with
  ``training=True``.
"""

import larq as lq

#: Larq quantizers whose forward pass is ``sign(x)`` with values in ``{-1, +1}`` (+1 at 0).
SIGN_QUANTIZERS = (lq.quantizers.SteSign, lq.quantizers.ApproxSign, lq.quantizers.SwishSign)
#: XNOR-Net kernel quantizers ``alpha_c * sign(W)`` with ``alpha_c`` the mean ``|W|`` of channel ``c``.
XNOR_QUANTIZERS = (lq.quantizers.MagnitudeAwareSign,)
#: Attributes of Larq's quantized layers that hold quantizers.
QUANTIZER_ATTRIBUTES = ("input_quantizer", "kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer")
#: Attributes of a layer that may hold something sampling at inference.
_RANDOM_ATTRIBUTES = ("input_quantizer", "kernel_quantizer", "quantizer", "activation")


def is_sign(quantizer):
    """True if a Larq quantizer's forward pass is plain ``sign`` (values ``+-1``)."""
    return isinstance(quantizer, SIGN_QUANTIZERS)


def is_xnor(quantizer):
    """True for XNOR-Net kernels ``alpha_c * sign(W)``."""
    return isinstance(quantizer, XNOR_QUANTIZERS)


def random_at_inference(obj):
    """True if quantizer or layer ``obj`` samples at inference (its ``random_at_inference`` attribute)."""
    return obj is not None and bool(getattr(obj, "random_at_inference", False))


def _name_of(obj):
    return getattr(obj, "__name__", None) or type(obj).__name__


def all_layers(model):
    """The layers of Keras ``model``, those of nested models included."""
    import tensorflow as tf  # noqa: PLC0415 (this module's facts need no TensorFlow)

    for layer in model.layers:
        yield layer
        if isinstance(layer, tf.keras.Model):
            yield from all_layers(layer)


def random_inference_layers(model):
    """Names and reasons of the layers of ``model`` whose inference output is random.

    Found: quantizers and layers that declare ``random_at_inference`` (stochastic
    binarization samples ``+-1`` with probability ``hard_sigmoid(x)``; Monte-Carlo
    dropout with ``always_on``), and layers called with ``training=True`` (dropout kept
    on at inference).
    """
    found = []
    for layer in all_layers(model):
        for attr in _RANDOM_ATTRIBUTES:
            if random_at_inference(getattr(layer, attr, None)):
                found.append((layer.name, f"{attr} is stochastic ({_name_of(getattr(layer, attr))})"))
        if random_at_inference(layer):
            found.append((layer.name, f"Monte-Carlo layer {type(layer).__name__} is active at inference"))
        for node in layer._inbound_nodes:
            if node.call_kwargs.get("training") is True:
                found.append((layer.name, "called with training=True (random at inference)"))
                break
    return found
