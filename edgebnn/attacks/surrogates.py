"""Choosing the gradient surrogate of a model without retraining it or changing its forward pass.

Discretization and sign have no useful gradient, so a white-box attack differentiates a
surrogate instead (BPDA, Athalye et al. 2018), and which surrogate attacks a given model
best differs from model to model. :func:`use_surrogate` selects one of
:data:`edgebnn.ops.SURROGATES` for the duration of a ``with`` block:

* edgebnn's own ops (:func:`~edgebnn.ops.discretize`, :func:`~edgebnn.ops.stochastic_sign`,
  the k-bit weight quantizer) read the choice from :func:`edgebnn.ops.gradient_surrogate`
  when their gradient is computed;
* Larq's sign quantizers (``"ste_sign"``, ``"approx_sign"``, ``"swish_sign"``: all
  ``sign(x)`` forward) are swapped, on the layers of the Keras model, for
  :class:`edgebnn.quantizers.SurrogateSign`, and Larq's DoReFa activation quantizers for
  :class:`edgebnn.quantizers.SurrogateDoReFa`; each has the same forward pass as the
  quantizer it replaces and reads the same choice. The original quantizers are put back
  on exit, also on errors. (Kernel quantizers such as Larq's ``MagnitudeAwareSign`` act on
  weights, not on the attacked input, so their gradient never enters an attack.)

The attacks call it around each forward/backward pass (``surrogate=`` argument), so the
choice is captured when the attack's graph is traced; every surrogate gets its own graph.
"""

import contextlib

from edgebnn import ops, quantizers
from edgebnn.introspect import QUANTIZER_ATTRIBUTES, is_sign

import larq as lq


def _is_dorefa_activation(quantizer):
    return (isinstance(quantizer, lq.quantizers.DoReFa) and quantizer.mode == "activations"
            and not isinstance(quantizer, quantizers.SurrogateDoReFa))


def _larq_sign_slots(model_fn):
    """``(layer, attribute, quantizer)`` for every swappable Larq quantizer in ``model_fn``'s layers."""
    submodules = getattr(model_fn, "submodules", None)
    if submodules is None:
        return []
    slots = []
    for layer in [model_fn, *submodules]:
        for attribute in QUANTIZER_ATTRIBUTES:
            quantizer = getattr(layer, attribute, None)
            if (is_sign(quantizer) and not isinstance(quantizer, quantizers.SurrogateSign)
                    or _is_dorefa_activation(quantizer)):
                slots.append((layer, attribute, quantizer))
    return slots


def _replacement(quantizer):
    if isinstance(quantizer, lq.quantizers.DoReFa):
        return quantizers.SurrogateDoReFa(k_bit=quantizer.precision)
    return quantizers.SurrogateSign(clip_value=getattr(quantizer, "clip_value", 1.0))


@contextlib.contextmanager
def use_surrogate(model_fn, name, *, temperature=ops.DEFAULT_TEMPERATURE):
    """Within the block, gradients through ``model_fn`` use surrogate ``name``.

    ``"ste"`` changes nothing (every op keeps its declared surrogate; Larq's quantizers
    keep theirs). For the others, Larq sign and DoReFa activation quantizers found on
    ``model_fn``'s layers (when ``model_fn`` is a Keras model; a plain function hides its
    layers) are swapped for :class:`~edgebnn.quantizers.SurrogateSign` /
    :class:`~edgebnn.quantizers.SurrogateDoReFa` and edgebnn's ops switch their
    backward pass. The forward pass is bit-identical in every case.

    Args:
        model_fn: the attacked model (a Keras model, or any callable).
        name: a key of :data:`edgebnn.ops.SURROGATES`.
        temperature: smoothness of the ``"smooth"`` surrogates (see
            :func:`edgebnn.ops.gradient_surrogate`).

    Raises:
        ValueError: unknown ``name`` or bad ``temperature``.
    """
    ops.validate_surrogate(name)
    if name == "ste":
        yield
        return
    slots = _larq_sign_slots(model_fn)
    try:
        for layer, attribute, quantizer in slots:
            # object.__setattr__: a temporary swap must not be tracked by Keras as a new sublayer.
            object.__setattr__(layer, attribute, _replacement(quantizer))
        with ops.gradient_surrogate(name, temperature=temperature):
            yield
    finally:
        for layer, attribute, quantizer in slots:
            object.__setattr__(layer, attribute, quantizer)


def larq_sign_count(model_fn):
    """Number of Larq quantizers (sign and DoReFa activations) :func:`use_surrogate` would swap on ``model_fn``."""
    return len(_larq_sign_slots(model_fn))


__all__ = ["larq_sign_count", "use_surrogate"]
