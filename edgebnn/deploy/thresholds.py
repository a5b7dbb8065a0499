"""Sign thresholds: a ``+-g_c`` dense layer between two ``SIGN`` ops as ``+-1`` weights and a half-integer bias.

Pattern (stock TFLite flatbuffer, e.g. a binary ``QuantDense`` whose BatchNorm the
converter folded into it, followed by the next layer's sign quantizer)::

    x = SIGN(...)                          # every value in {-1, 0, +1}
    y = FULLY_CONNECTED(x, W, b)           # W[c, i] = +-g_c, g_c > 0
    SIGN(y)                                # the only consumer of y

Only the sign of ``y_c`` is used, and ``y_c`` is a float32 sum of ``n + 1`` operands
``+-g_c x_i`` (each exact) and ``b_c``. In exact arithmetic ``y_c = g_c z + b_c`` with the
integer ``z = sum_i sign(W[c, i]) x_i`` in ``[-n, n]``, so ``sign(y_c) = sign(z - tau_c)``
with ``tau_c = -b_c / g_c``. Any summation order rounds by at most
``gamma_n * (n g_c + |b_c|)``, ``gamma_n = n u / (1 - n u)``, ``u = 2**-24``
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 4.4). When every
integer ``z`` in ``[-n, n]`` has ``|g_c z + b_c|`` larger than that bound, the float32 sign
is the exact sign for every input and every kernel (builtin, XNNPACK, any order), and
the channel is rewritten (checked in exact rational arithmetic):

    W[c, :] -> sign(W[c, :])  (+-1.0)     b_c -> beta_c = -(floor(tau_c) + 1/2)

The new ``y_c = z + beta_c`` is a sum of integers and one half-integer, all far below
``2**24``, so every kernel computes it exactly; it is never zero and has the sign of
``z - tau_c``. The ``SIGN`` after the layer therefore outputs exactly what it did
before, for every input. Channels without that margin keep their weights and bias
(identical float operations, so identical results on the same kernels).

Why: ``+-1`` rows share one magnitude, so :mod:`edgebnn.deploy.packing` stores the
layer's sign bits with a table of the few remaining magnitudes instead of a
``(-g_c, +g_c)`` pair per channel. The layer's inputs must come straight from a ``SIGN``
op (first layers reading pixels are left alone), and its output must go only to
``SIGN`` ops (not to the logits).
"""

import dataclasses
import fractions
import math

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy import tflite_edit
from edgebnn.deploy.tflite import builtin_code

from tensorflow.lite.python import schema_py_generated as schema

#: Unit roundoff of float32 (round to nearest).
UNIT_ROUNDOFF = fractions.Fraction(1, 2**24)
_OP = schema.BuiltinOperator


@dataclasses.dataclass(frozen=True)
class ThresholdedLayer:
    """One rewritten ``FULLY_CONNECTED`` layer.

    Attributes:
        weight: name of its weight tensor.
        shape: the weight shape ``(channels, n)``.
        channels: output channels rewritten to ``+-1`` weights and a half-integer bias.
        kept: output channels left as they were (no provable margin).
    """

    weight: str
    shape: tuple
    channels: int
    kept: int


def rounding_bound(n, g, b):
    """Largest rounding error of a float32 sum of ``n`` terms ``+-g`` (or 0) and ``b``, in any order.

    ``gamma_n * (n |g| + |b|)`` as an exact ``Fraction`` (``n + 1`` operands, ``n`` additions).
    """
    gamma = n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)
    return gamma * (n * abs(fractions.Fraction(float(g))) + abs(fractions.Fraction(float(b))))


def threshold_bias(n, g, b):
    """``beta`` with ``sign(z + beta) == sign(float32 g z + b)`` for every integer ``|z| <= n``, or None.

    None when some ``z`` is within :func:`rounding_bound` of the threshold (float32 might
    round either way there), or ``g <= 0``.
    """
    g_exact, b_exact = fractions.Fraction(float(g)), fractions.Fraction(float(b))
    if g_exact <= 0:
        return None
    tau = -b_exact / g_exact
    bound = rounding_bound(n, g, b)
    nearest = {min(max(k, -n), n) for k in (math.floor(tau), math.ceil(tau))}
    if any(abs(g_exact * z + b_exact) <= bound for z in nearest):
        return None
    cut = min(max(math.floor(tau), -n - 1), n)  # z > tau  <=>  z >= cut + 1 for |z| <= n
    return np.float32(-(cut + 0.5))


def _op_name(model, op):
    return builtin_code(model.operatorCodes[op.opcodeIndex])


def _candidates(model, subgraph):
    """``FULLY_CONNECTED`` ops reading a ``SIGN`` output and read only by ``SIGN`` ops."""
    producer, consumers = {}, {}
    for op in subgraph.operators:
        for t in tflite_edit.indices(op.outputs):
            producer[t] = _op_name(model, op)
        for t in tflite_edit.indices(op.inputs):
            consumers.setdefault(t, []).append(_op_name(model, op))
    graph_outputs = set(tflite_edit.indices(subgraph.outputs))
    weights = tflite_edit.weight_tensors(model, subgraph)
    found = []
    for op in subgraph.operators:
        inputs = tflite_edit.indices(op.inputs)
        if _op_name(model, op) != _OP.FULLY_CONNECTED or len(inputs) != 3 or inputs[2] < 0:
            continue
        options = op.builtinOptions
        if options is None or options.fusedActivationFunction != schema.ActivationFunctionType.NONE:
            continue
        (out,) = tflite_edit.indices(op.outputs)
        if (producer.get(inputs[0]) != _OP.SIGN or out in graph_outputs
                or set(consumers.get(out, [])) != {_OP.SIGN} or inputs[1] not in weights):
            continue
        bias = subgraph.tensors[inputs[2]]
        if not tflite_edit.is_constant_float(model, bias) or consumers.get(inputs[2]) != [_OP.FULLY_CONNECTED]:
            continue
        found.append(op)
    return found


def _rewrite_layer(model, subgraph, op, summary):
    w_index, b_index = tflite_edit.indices(op.inputs)[1:3]
    w_tensor, b_tensor = subgraph.tensors[w_index], subgraph.tensors[b_index]
    w = tflite_edit.buffer_array(model, w_tensor)
    b = tflite_edit.buffer_array(model, b_tensor)
    if w.ndim != 2 or b.shape != (w.shape[0],):
        return
    magnitude = np.abs(w)
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b)) and np.all(magnitude == magnitude[:, :1])):
        return
    n = w.shape[1]
    new_w, new_b, rewritten = w.copy(), b.copy(), 0
    for c in range(w.shape[0]):
        beta = threshold_bias(n, magnitude[c, 0], b[c])
        if beta is None:
            continue
        new_w[c] = np.copysign(np.float32(1.0), w[c])
        new_b[c] = beta
        rewritten += 1
    if not rewritten:
        return
    for tensor, array in ((w_tensor, new_w), (b_tensor, new_b)):
        tensor.buffer = tflite_edit.new_buffer(model, array.astype(np.float32))
    summary.append(ThresholdedLayer(weight=(w_tensor.name or b"").decode(), shape=tuple(int(d) for d in w.shape),
                                    channels=rewritten, kept=int(w.shape[0] - rewritten)))


def sign_thresholds_with_summary(tflite):
    """:func:`sign_thresholds`, and the list of :class:`ThresholdedLayer` it rewrote."""
    tflite_edit.check_flatbuffer(tflite)
    model = tflite_edit.parse(tflite)
    summary = []
    for subgraph in model.subgraphs:
        for op in _candidates(model, subgraph):
            _rewrite_layer(model, subgraph, op, summary)
    if not summary:
        return bytes(tflite), summary
    tflite_edit.drop_unused_buffers(model)
    return tflite_edit.serialize(model), summary


def sign_thresholds(tflite):
    """Rewrite every provable channel of ``SIGN -> FULLY_CONNECTED -> SIGN`` layers to ``+-1`` weights.

    See the module docstring for the pattern, the rounding bound and why the ``SIGN``
    outputs, and so the model's outputs, are unchanged for every input.

    Args:
        tflite: the flatbuffer (``bytes``), float32 weights.

    Returns:
        The rewritten flatbuffer (``tflite`` itself when nothing matches).

    Raises:
        TypeError: ``tflite`` is not bytes.
        ValueError: ``tflite`` is not a TFLite flatbuffer.
    """
    return sign_thresholds_with_summary(tflite)[0]
