"""1-bit storage of ``+-g_c`` weight tensors, unpacked once by builtin ops of the stock TFLite runtime.

A weight tensor ``W`` whose every value is ``+g_c`` or ``-g_c`` for one magnitude per
output channel (``+-1`` kernels, BatchNorm-folded binary dense weights ``g_c * (+-1)``,
XNOR kernels ``+-alpha_c``) is stored as its sign bits, 15 to an int16 word, plus
``(-g_c, +g_c)`` per channel, and rebuilt in the graph with builtin ops only:

1. ``T = table of 15-bit patterns`` (``[2**15, 15]`` int16, bit ``j`` of ``v`` at
   ``T[v, j]``), built from a 5-bit table ``[32, 5]`` with ``TILE``,
   ``CONCATENATION``, ``GATHER`` and ``RESHAPE`` (once per subgraph, shared);
2. ``bits = GATHER(T, words)`` -> ``[words, 15]`` -> ``RESHAPE`` (and
   ``STRIDED_SLICE`` off the padding) -> ``RESHAPE`` to ``W``'s shape, int16 0/1;
3. ``W = GATHER(values, bits, axis=1, batch_dims=1)`` with the stored
   ``values[c] = (-g_c, +g_c)`` (or ``GATHER(values, bits)`` with one magnitude).

Every weight is copied from ``values``, never computed, so ``W`` is bit-identical to the original
(the sign bit is what is stored, so ``-0.0`` weights come back as ``-0.0`` too).

Why this runs once: TFLite kernels of ``GATHER``, ``TILE``, ``CONCATENATION``,
``RESHAPE`` and ``STRIDED_SLICE`` evaluate an op whose inputs are all constant (or
outputs of such ops) in ``Prepare`` and mark its output persistent and read-only
(``IsConstantOrPersistentTensor`` / ``SetTensorToPersistentRo`` in
``tensorflow/lite/kernels``); later invocations skip them. The whole chain above is
built of such ops, so the weights are unpacked when the interpreter allocates its
tensors, and inference then costs what the int8-storage model costs. No op of the
chain computes in float32, which XNNPACK (TFLite's default CPU delegate) could take
over and run on every inference. Ops that do not
do this (``CAST``, ``RIGHT_SHIFT``, ``FLOOR_MOD``, ``BITCAST``, ``FILL``) are not used:
a chain through them would run on every inference. This is also why the words are
int16 with 15 payload bits: ``GATHER`` positions must be int16/int32/int64 (no uint8,
and no cast available at prepare time) and non-negative. On a runtime without this
prepare-time evaluation the graph is still correct, only slower. Resource variables
with ``CALL_ONCE`` would also unpack once, but ``READ_VARIABLE`` copies the whole
variable into its output on every invocation, a per-inference cost of the size of
the float32 weights.

The unpacked weights live in the interpreter's memory as persistent tensors (as the
int8 model's dequantized weights do), together with the int16 bit tensors of the
chain (4 bytes per weight, 8 when the sign count is not a multiple of 15) and the
1 MB pattern table.

XNNPACK (TFLite's default CPU delegate) runs ``CONV_2D``, ``DEPTHWISE_CONV_2D`` and
``FULLY_CONNECTED`` only with static filters: tensors whose data is in the file
(``kTfLiteMmapRo``), or ``DEQUANTIZE``/``DENSIFY`` outputs of such tensors, which it
unpacks itself (``static_unpacked_data_`` in ``delegates/xnnpack/xnnpack_delegate.cc``).
It partitions the graph before any ``Prepare`` runs, when the unpacked weights are
ordinary arena tensors, so the layers reading them run on TFLite's builtin kernels.
No 1-bit encoding of the file reaches XNNPACK's static path: its unpackers take
float16, int8 and sparse (non-zero values) weights, 8 bits or more per binary weight.

The rewritten flatbuffer is also serialized compactly: tensors of the unpacking are
unnamed, equal constants share a buffer, all tensors without data share buffer 0,
unreferenced buffers and empty quantization tables are dropped.
"""

import dataclasses

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy import tflite_edit

from tensorflow.lite.python import schema_py_generated as schema

#: Payload bits per stored int16 word (``GATHER`` positions must be non-negative).
WORD_BITS = 15
#: Bits of the stored pattern table the ``2**WORD_BITS``-row table is built from.
TABLE_BITS = 5
#: Op versions (``tensorflow/lite/tools/versioning/op_version.cc``): ``GATHER`` with
#: int16 positions is version 6, int16 values 4; ``STRIDED_SLICE`` (int16), ``TILE``,
#: ``CONCATENATION`` (int32) and ``RESHAPE`` are version 1.
VERSIONS = {
    "gather_int16_positions": 6,
    "gather_int16_values": 4,
    "tile": 1,
    "concatenation": 1,
    "reshape": 1,
    "strided_slice": 1,
}
#: Constants up to this many values are shared between the ops that use them.
_SHARED_CONSTANT_SIZE = 8
#: Flatbuffer bytes of the extra ``GATHER``, its output and its row-index tensor (approximate).
_INDEXED_OVERHEAD = 160
_OP = schema.BuiltinOperator
_T = schema.TensorType


@dataclasses.dataclass(frozen=True)
class PackedWeight:
    """One weight tensor stored as sign bits.

    Attributes:
        name: the tensor's name in the flatbuffer.
        shape: its shape.
        magnitudes: ``"per_channel"`` (one ``g_c`` per output channel) or ``"per_tensor"``.
        bytes_before: float32 bytes of the tensor.
        bytes_after: bytes of its packed words and magnitudes.
    """

    name: str
    shape: tuple
    magnitudes: str
    bytes_before: int
    bytes_after: int


def sign_magnitudes(w, axis):
    """``(g, per_channel)`` if every value of ``w`` is ``+-g`` (one ``g`` per tensor, or per slice on axis 0).

    ``g`` is the float32 magnitude array (one value, or one per slice of axis 0);
    ``None`` if ``w`` is not of that form (or not finite). Per-channel magnitudes are
    only used for ``axis == 0`` (the unpacking gathers along a leading batch axis).
    """
    w = np.asarray(w, np.float32)
    if w.size == 0 or not np.all(np.isfinite(w)):
        return None
    magnitude = np.abs(w)
    if np.all(magnitude == magnitude.flat[0]):
        return np.array([magnitude.flat[0]], np.float32), False
    if axis != 0 or w.ndim < 2:
        return None
    rows = magnitude.reshape(w.shape[0], -1)
    if not np.all(rows == rows[:, :1]):
        return None
    return rows[:, 0].copy(), True


def pack_signs(w):
    """Sign bits of ``w`` (1 for ``+``, 0 for ``-``, the float sign bit), ``WORD_BITS`` per int16 word.

    Bit ``j`` of word ``i`` is element ``WORD_BITS * i + j`` of ``w`` in C order; the
    last word is padded with zeros.
    """
    bits = (~np.signbit(np.asarray(w, np.float32))).reshape(-1).astype(np.int64)
    words = -(-bits.size // WORD_BITS)
    bits = np.pad(bits, (0, words * WORD_BITS - bits.size)).reshape(words, WORD_BITS)
    return (bits << np.arange(WORD_BITS)).sum(axis=1).astype(np.int16)


def unpack_signs(words, shape, magnitudes):
    """NumPy reference of the in-graph unpacking: ``+-g`` values of ``shape`` from :func:`pack_signs` words."""
    bits = (np.asarray(words, np.int64)[:, None] >> np.arange(WORD_BITS)) & 1
    bits = bits.reshape(-1)[: int(np.prod(shape))].reshape(shape).astype(bool)
    g = np.asarray(magnitudes, np.float32).reshape([-1] + [1] * (len(shape) - 1) if magnitudes.size > 1 else [])
    return np.where(bits, g, -g).astype(np.float32)


class _Builder:
    """Appends constants, intermediate tensors and ops to one subgraph of a ``ModelT``."""

    def __init__(self, model, subgraph, prefix, *, names=False):
        self.model, self.subgraph, self.prefix, self.ops, self.names = model, subgraph, prefix, [], names
        self._empty, self._constants, self._buffers = None, {}, {}

    def tensor(self, dtype, shape, name, data=None):
        t = schema.TensorT()
        t.type, t.shape = dtype, [int(d) for d in shape]
        # unnamed unless asked: names cost file bytes, and nothing looks the tensors up
        t.name = f"{self.prefix}/{name}".encode() if self.names else None
        if data is None:
            if self._empty is None:
                self._empty = tflite_edit.empty_buffer(self.model)
            t.buffer = self._empty
        else:
            data = np.ascontiguousarray(data)
            # constants with the same bytes (e.g. one range in three shapes) share a buffer
            key = (data.dtype.str, data.tobytes())
            if key not in self._buffers:
                self._buffers[key] = tflite_edit.new_buffer(self.model, data)
            t.buffer = self._buffers[key]
        self.subgraph.tensors.append(t)
        return len(self.subgraph.tensors) - 1

    def const(self, array, name):
        """A constant tensor; equal small constants (shapes, slice bounds) are one tensor."""
        array = np.asarray(array)
        key = (array.dtype.str, array.shape, array.tobytes()) if array.size <= _SHARED_CONSTANT_SIZE else None
        if key is not None and key in self._constants:
            return self._constants[key]
        dtype = {np.dtype(np.int32): _T.INT32, np.dtype(np.int16): _T.INT16, np.dtype(np.float32): _T.FLOAT32}
        index = self.tensor(dtype[array.dtype], array.shape, name, array)
        if key is not None:
            self._constants[key] = index
        return index

    def op(self, builtin, inputs, outputs, *, version=1, options=None):
        op = schema.OperatorT()
        op.opcodeIndex = tflite_edit.opcode_index(self.model, builtin, version)
        op.inputs, op.outputs = list(inputs), list(outputs)
        if options is not None:
            op.builtinOptionsType = getattr(schema.BuiltinOptions, type(options).__name__[:-1])
            op.builtinOptions = options
        self.ops.append(op)

    def reshape(self, x, dtype, shape, name):
        out = self.tensor(dtype, shape, name)
        self.op(_OP.RESHAPE, [x, self.const(np.array(shape, np.int32), f"{name}_shape")], [out],
                version=VERSIONS["reshape"])
        return out

    def gather(self, values, positions, out, *, axis=0, batch_dims=0, version):
        options = schema.GatherOptionsT()
        options.axis, options.batchDims = axis, batch_dims
        self.op(_OP.GATHER, [values, positions], [out], version=version, options=options)


def _pattern_table(b):
    """The ``[2**WORD_BITS, WORD_BITS]`` int16 table of bit patterns, built from a ``TABLE_BITS`` table."""
    parts, n = WORD_BITS // TABLE_BITS, 2**TABLE_BITS
    v = np.arange(n)
    small = b.const(((v[:, None] >> np.arange(TABLE_BITS)) & 1).astype(np.int16), "bits5")
    # positions[h, ..., l, k] = the k-th TABLE_BITS digit of the row index, as a tiled [n]*parts grid
    digits = []
    for k in range(parts):
        axis = parts - 1 - k  # digit 0 (lowest bits) varies along the last grid axis
        base_shape = [1] * parts + [1]
        base_shape[axis] = n
        multiples = [n] * parts + [1]
        multiples[axis] = 1
        base = b.const(np.arange(n, dtype=np.int32).reshape(base_shape), f"digit{k}_base")
        tiled = b.tensor(_T.INT32, [n] * parts + [1], f"digit{k}")
        b.op(_OP.TILE, [base, b.const(np.array(multiples, np.int32), f"digit{k}_multiples")], [tiled],
             version=VERSIONS["tile"])
        digits.append(tiled)
    positions = b.tensor(_T.INT32, [n] * parts + [parts], "digits")
    concat = schema.ConcatenationOptionsT()
    concat.axis = parts
    b.op(_OP.CONCATENATION, digits, [positions], version=VERSIONS["concatenation"], options=concat)
    rows = b.tensor(_T.INT16, [n] * parts + [parts, TABLE_BITS], "pattern_parts")
    b.gather(small, positions, rows, version=VERSIONS["gather_int16_values"])
    return b.reshape(rows, _T.INT16, [2**WORD_BITS, WORD_BITS], "patterns")


def _signed_values(b, magnitudes, per_channel, name):
    """The ``[C, 2]`` (or ``[2]``) float32 tensor ``(-g, +g)``, stored or gathered from a table of distinct rows.

    Stored rather than computed (e.g. ``MUL(g, (-1, 1))``, 4 bytes per channel
    smaller): newer XNNPACK versions (``ai-edge-litert`` 1.4) take a float ``MUL`` into
    the delegate even with constant inputs, and its output is then recomputed on
    every inference, and with it the whole unpacking after it. When few magnitudes are
    distinct (e.g. ``+-1`` rows written by :mod:`edgebnn.deploy.thresholds`), the
    distinct rows are stored once with an int16 row index per channel, expanded by a
    prepare-time ``GATHER``.
    """
    if not per_channel:
        return b.const(np.array([-magnitudes[0], magnitudes[0]], np.float32), f"{name}/values")
    distinct, rows = np.unique(magnitudes, return_inverse=True)
    if _indexed_values(distinct.size, magnitudes.size):
        table = b.const(np.stack([-distinct, distinct], axis=1).astype(np.float32), f"{name}/value_table")
        values = b.tensor(_T.FLOAT32, [magnitudes.size, 2], f"{name}/values")
        b.gather(table, b.const(rows.astype(np.int16), f"{name}/value_rows"), values,
                 version=VERSIONS["gather_int16_positions"])
        return values
    return b.const(np.stack([-magnitudes, magnitudes], axis=1).astype(np.float32), f"{name}/values")


def _indexed_values(distinct, channels):
    """Whether a table of ``distinct`` rows plus an int16 row per channel is smaller than ``channels`` rows."""
    return 8 * distinct + 2 * channels + _INDEXED_OVERHEAD < 8 * channels


def _values_bytes(magnitudes, per_channel):
    if not per_channel:
        return 8
    distinct = np.unique(magnitudes).size
    return 8 * distinct + 2 * magnitudes.size if _indexed_values(distinct, magnitudes.size) else 8 * magnitudes.size


def _unpack(b, table, w, magnitudes, per_channel, out, name):
    """Ops writing the ``+-g`` tensor ``w`` into tensor ``out`` from its packed signs."""
    words = pack_signs(w)
    n = w.size
    stored = b.const(words, f"{name}/signs")
    groups = b.tensor(_T.INT16, [words.size, WORD_BITS], f"{name}/bit_groups")
    b.gather(table, stored, groups, version=VERSIONS["gather_int16_positions"])
    bits = groups
    if words.size * WORD_BITS != n:  # flatten, cut the padding off the last word
        bits = b.reshape(bits, _T.INT16, [words.size * WORD_BITS], f"{name}/bits_padded")
        sliced = b.tensor(_T.INT16, [n], f"{name}/bits_flat")
        ends = [b.const(np.array([v], np.int32), f"{name}/slice_{k}") for k, v in (("begin", 0), ("end", n),
                                                                                  ("stride", 1))]
        b.op(_OP.STRIDED_SLICE, [bits, *ends], [sliced], version=VERSIONS["strided_slice"],
             options=schema.StridedSliceOptionsT())
        bits = sliced
    bits = b.reshape(bits, _T.INT16, w.shape, f"{name}/bits")
    values = _signed_values(b, magnitudes, per_channel, name)
    if per_channel:
        b.gather(values, bits, out, axis=1, batch_dims=1, version=VERSIONS["gather_int16_positions"])
    else:
        b.gather(values, bits, out, version=VERSIONS["gather_int16_positions"])
    rebuilt = unpack_signs(words, w.shape, magnitudes)
    if not np.array_equal(rebuilt.view(np.int32), np.asarray(w, np.float32).view(np.int32)):
        # a bug in this module, not bad input: never write a model with different weights
        raise AssertionError(f"sign packing does not reproduce weight {name!r} bit for bit")


def _pack_subgraph(model, subgraph, index, summary):
    plans = []
    for tensor_index, axis in sorted(tflite_edit.weight_tensors(model, subgraph).items()):
        tensor = subgraph.tensors[tensor_index]
        w = tflite_edit.buffer_array(model, tensor)
        found = sign_magnitudes(w, axis)
        if found is not None:
            plans.append((tensor_index, w, *found))
    if not plans:
        return
    b = _Builder(model, subgraph, f"packed{index}" if index else "packed")
    table = _pattern_table(b)
    for k, (tensor_index, w, magnitudes, per_channel) in enumerate(plans):
        tensor = subgraph.tensors[tensor_index]
        name = (tensor.name or b"").decode() or f"tensor_{tensor_index}"
        _unpack(b, table, w, magnitudes, per_channel, tensor_index, f"w{k}")
        tensor.buffer = tflite_edit.empty_buffer(model)  # now the output of the unpacking GATHER
        tensor.quantization = None
        summary.append(PackedWeight(
            name=name, shape=tuple(int(d) for d in w.shape),
            magnitudes="per_channel" if per_channel else "per_tensor",
            bytes_before=int(w.nbytes),
            bytes_after=int(2 * -(-w.size // WORD_BITS) + _values_bytes(magnitudes, per_channel)),
        ))
    subgraph.operators = b.ops + list(subgraph.operators)


def _is_empty_quantization(q):
    return q is not None and all(
        getattr(q, field) is None or len(getattr(q, field)) == 0 for field in ("scale", "zeroPoint", "min", "max")
    ) and q.details is None


def _compact(model):
    """Serialize less: one shared empty buffer, no unreferenced buffers, no empty quantization tables.

    Tensors without data all point to buffer 0 (TFLite's empty sentinel), buffers no
    tensor or metadata refers to are removed (indices renumbered), and quantization
    tables without scales, zero points or ranges (what the converter writes for float
    tensors) are dropped. None of this changes what any tensor holds.
    """
    if model.buffers[0].data is not None and len(model.buffers[0].data):
        return
    for sg in model.subgraphs:
        for t in sg.tensors:
            data = model.buffers[t.buffer].data
            if data is None or len(data) == 0:
                t.buffer = 0
            if _is_empty_quantization(t.quantization):
                t.quantization = None
    legacy = tflite_edit.indices(model.metadataBuffer)
    used = {0, *legacy} | {t.buffer for sg in model.subgraphs for t in sg.tensors}
    used |= {m.buffer for m in model.metadata or []}
    new_index = {old: new for new, old in enumerate(sorted(used))}
    model.buffers = [model.buffers[i] for i in sorted(used)]
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = new_index[t.buffer]
    for m in model.metadata or []:
        m.buffer = new_index[m.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [new_index[i] for i in legacy]


def pack_weights_with_summary(tflite):
    """:func:`pack_weights`, and the list of :class:`PackedWeight` it rewrote."""
    tflite_edit.check_flatbuffer(tflite)
    model = tflite_edit.parse(tflite)
    summary = []
    for index, subgraph in enumerate(model.subgraphs):
        _pack_subgraph(model, subgraph, index, summary)
    if not summary:
        return bytes(tflite), summary
    tflite_edit.drop_unused_buffers(model)
    _compact(model)
    return tflite_edit.serialize(model), summary


def pack_weights(tflite):
    """Store every ``+-g_c`` layer weight of ``tflite`` as sign bits, unpacked by builtin ops at prepare time.

    Only float32 constant weights of builtin layer ops (:data:`edgebnn.deploy.tflite_edit.WEIGHT_OPS`,
    input 1, not read by anything else) are considered; those with one magnitude per
    tensor, or per output channel on axis 0, are rewritten (see the module docstring).
    Others are left as they are (e.g. for :func:`edgebnn.deploy.storage.store_weights`).

    Args:
        tflite: the flatbuffer (``bytes``).

    Returns:
        The rewritten flatbuffer (``tflite`` itself when there is nothing to pack).
        Its layers compute with bit-identical weights.

    Raises:
        TypeError: ``tflite`` is not bytes.
        ValueError: ``tflite`` is not a TFLite flatbuffer.
    """
    return pack_weights_with_summary(tflite)[0]


def markdown_table(packed):
    """A list of :class:`PackedWeight` as a markdown table (for conversion reports)."""
    lines = ["| tensor | shape | magnitudes | bytes before | bytes after |", "|---|---|---|---:|---:|"]
    for p in packed:
        lines.append(f"| {p.name} | {p.shape} | {p.magnitudes} | {p.bytes_before:,} | {p.bytes_after:,} |")
    return "\n".join(lines)
