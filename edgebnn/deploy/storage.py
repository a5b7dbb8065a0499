"""Weight storage of a TFLite flatbuffer: int8 (or float16) constants plus a builtin ``DEQUANTIZE``.

A constant float32 weight tensor ``W`` read by a layer op is replaced by a smaller
constant ``Q`` and a ``DEQUANTIZE`` op whose float32 output takes ``W``'s place (same
tensor index, so every consumer, signature and graph output still refers to it). The
layer op keeps computing in float32.

When every value of ``W`` is ``scale * q`` with an integer ``q`` in ``[-127, 127]``
(per tensor, or per output channel), the dequantized tensor is bit-identical to ``W``
and the model computes exactly the same numbers: ``+-1`` kernels (scale 1), XNOR
kernels ``+-alpha_c`` (scale ``alpha_c``), BatchNorm-folded binary dense weights
``g_c * (+-1)``. :func:`store_weights` checks that identity value by value, with the
arithmetic of TFLite's ``DEQUANTIZE`` kernels (``float(q) * scale`` in float32 and in
double rounded to float32, both must give ``W``), before it rewrites a tensor. This is
int8 *storage* with float32 arithmetic, unlike TFLite's dynamic-range ("hybrid") int8
kernels, which are inexact for binary layers (see :mod:`edgebnn.deploy.convert`).

Modes:

- ``"exact"``: only the bit-exact int8 rewrite; other weights stay float32.
- ``"float16"``: exact int8 where possible, other weights float16 (approximate:
  relative error <= 2**-11 per weight; weights beyond float16's range stay float32).
- ``"int8"``: exact int8 where possible, other weights symmetric per-channel int8
  (approximate: absolute error <= scale_c / 2 = max|W_c| / 254 per weight).

Run time: TFLite's ``DEQUANTIZE`` kernel evaluates a constant input once
(``float_dequantized_weights_initialized`` in ``kernels/dequantize.cc``; its output is
persistent) and XNNPACK unpacks it into static weights when it builds its graph, so the
float32 weights are materialized in memory once and no latency is added per inference.
Only the file (and what a device must download or keep in flash) shrinks.

Not rewritten (left float32, as they are): weights under :data:`MIN_ELEMENTS` values,
weights that are graph inputs/outputs or read by any op other than as a layer weight
(see :func:`edgebnn.deploy.tflite_edit.weight_tensors`), sparse or variable tensors,
and weights that already come out of a ``DEQUANTIZE`` (e.g. ``convert(..., weights="float16")``). The
``min_runtime_version`` metadata is raised to what the added ``DEQUANTIZE`` versions need.
"""

import dataclasses

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy import tflite_edit
from edgebnn.deploy.tflite_edit import MIN_ELEMENTS, WEIGHT_OPS  # noqa: F401  (documented here)

from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

MODES = ("exact", "float16", "int8")
#: Largest |q| of symmetric int8 (-128 is not used, so that zero point 0 is symmetric).
QMAX = 127
#: ``DEQUANTIZE`` versions required by TFLite's op versioning
#: (``tensorflow/lite/tools/versioning/op_version.cc``): int8 per tensor 2, float16 3,
#: int8 per channel 5.
DEQUANTIZE_VERSIONS = {"int8": 2, "float16": 3, "int8_per_channel": 5}
#: First TFLite runtime with each ``DEQUANTIZE`` version
#: (``tensorflow/lite/tools/versioning/runtime_version.cc``); the flatbuffer's
#: ``min_runtime_version`` metadata is raised to it when needed.
DEQUANTIZE_MIN_RUNTIME = {2: "1.14.0", 3: "1.15.0", 5: "2.7.0"}
_MIN_RUNTIME_KEY = b"min_runtime_version"
#: TFLite's converter writes the version as a NUL-padded string of this length.
_MIN_RUNTIME_BYTES = 16

_FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclasses.dataclass(frozen=True)
class StoredWeight:
    """One rewritten weight tensor.

    Attributes:
        name: the tensor's name in the flatbuffer.
        shape: its shape.
        old_dtype, new_dtype: storage before and after (``"float32"`` -> ``"int8"``/``"float16"``).
        scheme: ``"per_tensor"``, ``"per_channel"`` (int8) or ``"cast"`` (float16).
        exact: the dequantized tensor is bit-identical to the original.
        bytes_saved: weight bytes before minus after (scales included; flatbuffer
            overhead of the extra op and tensor not included).
    """

    name: str
    shape: tuple
    old_dtype: str
    new_dtype: str
    scheme: str
    exact: bool
    bytes_saved: int


def _validate(tflite, mode):
    tflite_edit.check_bytes(tflite)
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {list(MODES)}, got {mode!r}.")
    tflite_edit.check_identifier(tflite)


def dequantize(q, scales, axis):
    """What TFLite's ``DEQUANTIZE`` computes for symmetric int8 ``q``, with both of its paths.

    The reference kernel computes ``static_cast<float>(double(scale) * q)`` per tensor and
    ``float(q) * scale`` per channel (and optimized kernels multiply in float32). Returns
    ``(float32_product, double_product_rounded)``.
    """
    scales = np.asarray(scales, np.float32)
    shape = [1] * q.ndim
    if scales.size > 1:
        shape[axis] = -1
    s32 = scales.reshape(shape)
    as_float = q.astype(np.float32) * s32
    as_double = (q.astype(np.float64) * s32.astype(np.float64)).astype(np.float32)
    return as_float, as_double


def _exact_scale(values):
    """A float32 scale ``s`` with ``values == s * q`` exactly, integer ``|q| <= QMAX``; else None.

    ``values`` are the distinct values of a tensor or channel. If such ``s`` exists, the
    largest magnitude is ``s * k`` for some ``k`` in ``1..QMAX``, so those are the candidates
    (smallest ``k`` first).
    """
    top = float(np.max(np.abs(values)))
    if top == 0.0:
        return np.float32(1.0)
    for k in range(1, QMAX + 1):
        s = np.float32(top / k)
        if not np.isfinite(s) or s == 0:
            return None
        q = np.rint(values / s)
        if np.max(np.abs(q)) > QMAX:
            continue
        if np.array_equal(q.astype(np.float32) * s, values) and np.array_equal(
            (q * np.float64(s)).astype(np.float32), values
        ):
            return s
    return None


def exact_int8(w, axis):
    """Bit-exact symmetric int8 form of float32 ``w``: ``(q, scales)`` or None.

    Tries one scale for the tensor, then one per slice along ``axis``. Never for
    non-finite values. A ``-0.0`` weight (e.g. a k-bit quantizer rounding a small
    negative weight) dequantizes to ``+0.0``: equal as a number, and a product or sum
    with it is the same number either way (only the sign of an exact-zero result could
    differ, and no later op of a classifier tells ``-0.0`` from ``+0.0``).
    """
    w = np.asarray(w, np.float32)
    if not np.all(np.isfinite(w)):
        return None
    distinct = np.unique(w)
    candidates = []
    if distinct.size <= 2 * QMAX + 1:
        s = _exact_scale(distinct)
        if s is not None:
            candidates.append(np.array([s], np.float32))
    if not candidates and w.ndim > 0 and w.shape[axis] > 1:
        slices = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        scales = []
        for row in slices:
            distinct = np.unique(row)
            s = None if distinct.size > 2 * QMAX + 1 else _exact_scale(distinct)
            if s is None:
                return None
            scales.append(s)
        candidates.append(np.array(scales, np.float32))
    for scales in candidates:
        q = _quantize(w, scales, axis)
        if all(np.array_equal(d, w) for d in dequantize(q, scales, axis)):
            return q, scales
    return None


def _quantize(w, scales, axis):
    shape = [1] * w.ndim
    if scales.size > 1:
        shape[axis] = -1
    return np.clip(np.rint(w / scales.reshape(shape)), -QMAX, QMAX).astype(np.int8)


def approximate_int8(w, axis):
    """Symmetric per-channel int8 (per tensor for 1-D/one-channel ``w``): ``(q, scales)``."""
    w = np.asarray(w, np.float32)
    if w.ndim == 0 or w.shape[axis] == 1:
        top = np.max(np.abs(w), initial=0.0).reshape(1)
    else:
        top = np.max(np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)), axis=1)
    scales = np.where(top > 0, top / QMAX, 1.0).astype(np.float32)
    return _quantize(w, scales, axis), scales


def _plan(w, axis, mode):
    """``(array, scales or None, scheme, exact)`` for weight ``w``, or None to leave it float32."""
    found = exact_int8(w, axis)
    if found is not None:
        q, scales = found
        return q, scales, "per_tensor" if scales.size == 1 else "per_channel", True
    if mode == "float16" and np.all(np.isfinite(w)) and np.max(np.abs(w), initial=0.0) <= _FLOAT16_MAX:
        return w.astype(np.float16), None, "cast", False
    if mode == "int8" and np.all(np.isfinite(w)):
        q, scales = approximate_int8(w, axis)
        return q, scales, "per_tensor" if scales.size == 1 else "per_channel", False
    return None


def _rewrite_subgraph(model, subgraph, mode, summary):
    dequantize_ops = []
    replaced = {}  # (old buffer, axis, dtype, scales) -> new buffer, for tensors sharing a buffer
    for index, axis in sorted(tflite_edit.weight_tensors(model, subgraph).items()):
        tensor = subgraph.tensors[index]
        w = tflite_edit.buffer_array(model, tensor)
        plan = _plan(w, axis, mode)
        if plan is None:
            continue
        array, scales, scheme, exact = plan
        stored = schema.TensorT()
        stored.name = (tensor.name or b"") + (b"_int8" if array.dtype == np.int8 else b"_float16")
        stored.shape = list(tensor.shape)
        stored.shapeSignature = None if tensor.shapeSignature is None else list(tensor.shapeSignature)
        stored.type = schema.TensorType.INT8 if array.dtype == np.int8 else schema.TensorType.FLOAT16
        key = (tensor.buffer, axis, array.dtype.str, None if scales is None else scales.tobytes())
        stored.buffer = replaced[key] if key in replaced else tflite_edit.new_buffer(model, array)
        new_bytes = 0 if key in replaced else array.nbytes + (0 if scales is None else scales.nbytes)
        replaced[key] = stored.buffer
        if scales is not None:
            params = schema.QuantizationParametersT()
            params.scale = [float(s) for s in scales]
            params.zeroPoint = [0] * scales.size
            params.quantizedDimension = axis if scales.size > 1 else 0
            stored.quantization = params
        subgraph.tensors.append(stored)
        # the original tensor becomes the DEQUANTIZE output: same index, no data
        tensor.buffer = tflite_edit.empty_buffer(model)
        tensor.quantization = None
        version = DEQUANTIZE_VERSIONS["float16" if scales is None else
                                      "int8_per_channel" if scales.size > 1 else "int8"]
        op = schema.OperatorT()
        op.opcodeIndex = tflite_edit.opcode_index(model, schema.BuiltinOperator.DEQUANTIZE, version)
        op.inputs = [len(subgraph.tensors) - 1]
        op.outputs = [index]
        dequantize_ops.append(op)
        summary.append(StoredWeight(
            name=(tensor.name or b"").decode(),
            shape=tuple(int(d) for d in tensor.shape),
            old_dtype="float32",
            new_dtype=array.dtype.name,
            scheme=scheme,
            exact=exact,
            bytes_saved=int(w.nbytes) - new_bytes,
        ))
    # constants exist before the first op runs, so their DEQUANTIZE ops go first
    subgraph.operators = dequantize_ops + list(subgraph.operators)


def _version(text):
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _raise_min_runtime(model):
    """Raise the ``min_runtime_version`` metadata (if any) to what the added ``DEQUANTIZE`` ops need."""
    needed = [
        DEQUANTIZE_MIN_RUNTIME[code.version]
        for code in model.operatorCodes
        if code.builtinCode == schema.BuiltinOperator.DEQUANTIZE and code.version in DEQUANTIZE_MIN_RUNTIME
    ]
    for entry in model.metadata or []:
        if entry.name != _MIN_RUNTIME_KEY or not needed:
            continue
        buffer = model.buffers[entry.buffer]
        current = bytes(np.asarray(buffer.data, np.uint8)).rstrip(b"\0").decode()
        required = max(needed, key=_version)
        if _version(required) > _version(current):
            buffer.data = np.frombuffer(required.encode().ljust(_MIN_RUNTIME_BYTES, b"\0"), np.uint8).copy()


def strip_strings(tflite):
    """``tflite`` without tensor and subgraph names, description and signature definitions.

    ``tensorflow.lite.tools.flatbuffer_utils.strip_strings``; custom op names and
    metadata names stay. The model then addresses its inputs and outputs by index only.
    """
    _validate(tflite, MODES[0])
    model = tflite_edit.parse(tflite)
    flatbuffer_utils.strip_strings(model)
    return tflite_edit.serialize(model)


def store_weights_with_summary(tflite, *, mode="exact"):
    """:func:`store_weights`, and the list of :class:`StoredWeight` it rewrote."""
    _validate(tflite, mode)
    model = tflite_edit.parse(tflite)
    summary = []
    for subgraph in model.subgraphs:
        _rewrite_subgraph(model, subgraph, mode, summary)
    if not summary:  # re-serializing would only change padding (LCE flatbuffers grow)
        return bytes(tflite), summary
    tflite_edit.drop_unused_buffers(model)
    _raise_min_runtime(model)
    return tflite_edit.serialize(model), summary


def markdown_table(stored):
    """A list of :class:`StoredWeight` as a markdown table (for conversion reports)."""
    lines = [
        "| tensor | shape | storage | scales | exact | bytes saved |",
        "|---|---|---|---|---|---:|",
    ]
    for s in stored:
        lines.append(
            f"| {s.name} | {s.shape} | {s.old_dtype} -> {s.new_dtype} | {s.scheme} | {'yes' if s.exact else 'no'} "
            f"| {s.bytes_saved:,} |"
        )
    return "\n".join(lines)


def store_weights(tflite, *, mode="exact"):
    """Store the float32 weights of ``tflite`` as int8 (exact where possible) or float16.

    Works on stock and Larq Compute Engine flatbuffers alike: only builtin layer ops'
    weights (:data:`WEIGHT_OPS`, input 1, at least :data:`MIN_ELEMENTS` values) are
    touched; custom ops (``LceBconv2d``, ...) and their options pass through as they are.

    Args:
        tflite: the flatbuffer (``bytes``).
        mode: ``"exact"`` (bit-exact int8 only), ``"float16"`` or ``"int8"`` (exact int8
            where possible, the other weights approximate), see the module docstring.

    Returns:
        The rewritten flatbuffer as ``bytes`` (identical computation in ``"exact"`` mode;
        ``tflite`` itself when there is nothing to rewrite).

    Raises:
        TypeError: ``tflite`` is not bytes.
        ValueError: unknown ``mode``, or ``tflite`` is not a TFLite flatbuffer.

    Example:
        >>> small = store_weights(convert(model, target="portable"))
    """
    return store_weights_with_summary(tflite, mode=mode)[0]
