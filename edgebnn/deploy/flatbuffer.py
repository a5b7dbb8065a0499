"""Bounded reading and structural verification of TFLite flatbuffers, with the standard library only.

A TFLite interpreter trusts the flatbuffer it is given: a flipped bit in an offset, a
vector length, a tensor shape or a buffer index can make it read outside the file,
crash, or allocate without limit. :func:`verify_model` walks every part of the schema
(``tensorflow/lite/schema/schema.fbs``) that an interpreter reads, checks each offset,
vtable, vector and string against the file, and checks that tensors, buffers,
operators, quantization parameters and signatures refer to each other consistently,
before any interpreter sees the bytes. The device runner
(:mod:`edgebnn.deploy.device`) uses it, so this module must stay TensorFlow-free.

Flatbuffer layout: the file starts with a ``uint32`` offset to the root table and the
4-byte file identifier. A table starts with an ``int32`` offset back to its vtable; the
vtable holds its own size and the table's inline size (``uint16`` each), then one
``uint16`` offset per field (0: absent, the default value). Vectors and strings are
``uint32`` offsets to a ``uint32`` element count followed by the elements (strings end
with a NUL byte). A union is two fields: a ``uint8`` type and an offset to the table.
All little-endian.

What this runner accepts beyond the schema (edgebnn's converter never emits the rest):
one subgraph (no control flow), dense tensors of fixed-size numeric types, buffers
stored inside the flatbuffer, and builtin options from the ``BuiltinOptions`` union
only (no StableHLO ops).
"""

import struct
from dataclasses import dataclass

#: The file identifier of a TFLite flatbuffer (bytes 4-8).
FILE_IDENTIFIER = b"TFL3"
#: ``Model.version`` of every TFLite flatbuffer (``TFLITE_SCHEMA_VERSION``).
SCHEMA_VERSION = 3
#: Flatbuffer offsets are signed / unsigned 32-bit: a flatbuffer is smaller than 2 GiB.
MAX_FLATBUFFER_BYTES = 2**31 - 1
#: Largest tensor rank accepted: TFLite's broadcasting and transposing kernels take at most 6.
MAX_RANK = 6
#: ``BuiltinOperator.CUSTOM`` in the TFLite schema.
CUSTOM = 32
#: Bits per element of the fixed-size ``TensorType`` values (``STRING``, ``RESOURCE`` and
#: ``VARIANT`` are variable-size and not accepted); ``INT4`` is packed two to a byte.
TENSOR_TYPE_BITS = {
    0: 32, 1: 16, 2: 32, 3: 8, 4: 64, 6: 8, 7: 16, 8: 64, 9: 8, 10: 64, 11: 128, 12: 64, 15: 32, 16: 16,
    17: 4, 18: 16,
}
#: ``TensorType`` names, for messages and summaries.
TENSOR_TYPE_NAMES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16",
    8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64", 13: "resource", 14: "variant",
    15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16",
}
#: Largest member of the ``BuiltinOptions`` union in the schema (``RightShiftOptions``).
MAX_BUILTIN_OPTIONS = 126
#: Members of ``BuiltinOptions`` whose tables hold offsets: field index -> ``"int32s"``,
#: ``"floats"`` (vectors of 4-byte elements) or ``"string"``. Every other member holds
#: scalars only.
BUILTIN_OPTIONS_OFFSETS = {
    3: {1: "int32s", 2: "int32s"},  # ConcatEmbeddingsOptions
    17: {0: "int32s"},  # ReshapeOptions.new_shape
    30: {0: "int32s"},  # SqueezeOptions.squeeze_dims
    111: {0: "string", 1: "string"},  # VarHandleOptions
    115: {0: "floats"},  # BucketizeOptions.boundaries
}
#: Largest scalar of the schema (``int64`` / ``uint64`` / ``double``), for options tables
#: read without their field types.
_MAX_SCALAR_BYTES = 8

# Field indices of the schema's tables.
_MODEL = dict(version=0, operator_codes=1, subgraphs=2, description=3, buffers=4, metadata_buffer=5, metadata=6,
              signature_defs=7)
_SUBGRAPH = dict(tensors=0, inputs=1, outputs=2, operators=3, name=4)
_TENSOR = dict(shape=0, type=1, buffer=2, name=3, quantization=4, is_variable=5, sparsity=6, shape_signature=7,
               has_rank=8, variant_tensors=9)
_BUFFER = dict(data=0, offset=1)
_OPERATOR = dict(opcode_index=0, inputs=1, outputs=2, builtin_options_type=3, builtin_options=4,
                 custom_options=5, custom_options_format=6, mutating_variable_inputs=7, intermediates=8,
                 large_custom_options_offset=9, large_custom_options_size=10, builtin_options_2_type=11,
                 builtin_options_2=12)
_CODE = dict(deprecated_builtin_code=0, custom_code=1, version=2, builtin_code=3)
_QUANTIZATION = dict(min=0, max=1, scale=2, zero_point=3, details_type=4, details=5, quantized_dimension=6)
_METADATA = dict(name=0, buffer=1)
_SIGNATURE = dict(inputs=0, outputs=1, signature_key=2, subgraph_index=4)
_TENSOR_MAP = dict(name=0, tensor_index=1)


class FlatbufferError(ValueError):
    """The bytes are not a well-formed TFLite flatbuffer (or one this runner does not accept)."""


@dataclass(frozen=True)
class Table:
    """A table: its position, inline size and the positions of its fields (``None``: absent)."""

    pos: int
    size: int
    fields: tuple


@dataclass(frozen=True)
class OperatorCode:
    """One entry of ``Model.operator_codes``: a builtin op code, or ``CUSTOM`` with a name."""

    builtin_code: int
    custom_code: str | None
    version: int


@dataclass(frozen=True)
class TensorInfo:
    """An input or output tensor of the model: index, element type name and shape."""

    index: int
    dtype: str
    shape: tuple


@dataclass(frozen=True)
class ModelSummary:
    """What :func:`verify_model` found in a structurally sound model.

    Attributes:
        operator_codes: the model's :class:`OperatorCode` list.
        inputs, outputs: :class:`TensorInfo` of the subgraph's inputs and outputs.
        tensors, operators: how many.
        constant_bytes: bytes of the tensors with data in the file.
        tensor_bytes: bytes of every other tensor (activations, inputs, outputs), as
            their shapes declare them: an upper bound of the interpreter's arena.
    """

    operator_codes: tuple
    inputs: tuple
    outputs: tuple
    tensors: int
    operators: int
    constant_bytes: int
    tensor_bytes: int


class Reader:
    """Bounds-checked access to the parts of a flatbuffer (every read stays inside the bytes)."""

    def __init__(self, data):
        self.data = memoryview(bytes(data))
        self.size = len(self.data)

    def unpack(self, fmt, pos):
        """The scalar of struct format ``fmt`` at ``pos``."""
        width = struct.calcsize(fmt)
        if pos < 0 or pos + width > self.size:
            raise FlatbufferError(f"offset {pos} is outside the {self.size}-byte flatbuffer")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def indirect(self, pos):
        """Follow the ``uint32`` offset stored at ``pos`` (4-byte aligned)."""
        if pos % 4:
            raise FlatbufferError(f"offset field at {pos} is not 4-byte aligned")
        target = pos + self.unpack("<I", pos)
        if target >= self.size:
            raise FlatbufferError(f"offset {target} (from {pos}) is outside the {self.size}-byte flatbuffer")
        return target

    def table(self, pos):
        """The :class:`Table` at ``pos``: vtable and inline bytes inside the file, field offsets inside the table."""
        if pos % 4:
            raise FlatbufferError(f"table at {pos} is not 4-byte aligned")
        vtable = pos - self.unpack("<i", pos)
        if vtable % 2:
            raise FlatbufferError(f"vtable of the table at {pos} is at an odd offset {vtable}")
        vtable_size = self.unpack("<H", vtable)
        inline_size = self.unpack("<H", vtable + 2)
        if vtable_size < 4 or vtable_size % 2 or vtable + vtable_size > self.size:
            raise FlatbufferError(f"bad vtable size {vtable_size} at offset {vtable}")
        if inline_size < 4 or pos + inline_size > self.size:
            raise FlatbufferError(f"table at {pos} of {inline_size} bytes overruns the {self.size}-byte flatbuffer")
        fields = []
        for i in range((vtable_size - 4) // 2):
            offset = self.unpack("<H", vtable + 4 + 2 * i)
            if offset and not 4 <= offset < inline_size:
                raise FlatbufferError(f"field {i} of the table at {pos} is at offset {offset}, outside its "
                                      f"{inline_size} bytes")
            fields.append(pos + offset if offset else None)
        return Table(pos, inline_size, tuple(fields))

    @staticmethod
    def field(table, index):
        """Absolute position of field ``index`` of ``table``, or ``None`` when it is absent (default)."""
        return table.fields[index] if index < len(table.fields) else None

    def scalar(self, table, index, fmt, default=0):
        """The scalar field ``index`` of ``table`` (``default`` when absent), inside the table's bytes."""
        pos = self.field(table, index)
        if pos is None:
            return default
        width = struct.calcsize(fmt)
        if pos + width > table.pos + table.size:
            raise FlatbufferError(f"field {index} of the table at {table.pos} overruns the table")
        if pos % width:  # flatbuffers aligns every scalar to its size
            raise FlatbufferError(f"field {index} of the table at {table.pos} is not {width}-byte aligned")
        return self.unpack(fmt, pos)

    def child(self, table, index):
        """Position of the object that offset field ``index`` points to, or ``None`` when absent."""
        pos = self.field(table, index)
        if pos is None:
            return None
        if pos + 4 > table.pos + table.size:
            raise FlatbufferError(f"field {index} of the table at {table.pos} overruns the table")
        return self.indirect(pos)

    def vector(self, start, element_bytes):
        """``(position of the first element, length)`` of the vector at ``start``, inside the file."""
        if start % 4:
            raise FlatbufferError(f"vector at {start} is not 4-byte aligned")
        length = self.unpack("<I", start)
        if start + 4 + length * element_bytes > self.size:
            raise FlatbufferError(f"a vector of {length} entries at offset {start} overruns the flatbuffer")
        return start + 4, length

    def scalars(self, start, fmt):
        """The elements of the vector of scalars (struct format ``fmt``, e.g. ``"i"``) at ``start``."""
        width = struct.calcsize("<" + fmt)
        first, length = self.vector(start, width)
        if width > 4 and first % width:
            raise FlatbufferError(f"vector of {width}-byte elements at {start} is not aligned")
        return struct.unpack_from(f"<{length}{fmt}", self.data, first)

    def tables(self, start):
        """The tables of the vector of tables at ``start``."""
        first, length = self.vector(start, 4)
        return [self.table(self.indirect(first + 4 * i)) for i in range(length)]

    def string(self, start):
        """The UTF-8 string at ``start`` (with its NUL terminator inside the file)."""
        first, length = self.vector(start, 1)
        if first + length >= self.size or self.data[first + length] != 0:
            raise FlatbufferError(f"string at {start} lacks its NUL terminator")
        return bytes(self.data[first : first + length]).decode("utf-8", errors="replace")


def root(flatbuffer):
    """``(Reader, Model table)`` of a TFLite flatbuffer, after checking its size and file identifier."""
    size = len(flatbuffer)
    if size > MAX_FLATBUFFER_BYTES:
        raise FlatbufferError(f"a flatbuffer is smaller than 2 GiB, got {size} bytes")
    if size < 8 or bytes(flatbuffer[4:8]) != FILE_IDENTIFIER:
        raise FlatbufferError(f"not a TFLite flatbuffer (file identifier {FILE_IDENTIFIER!r} expected at bytes 4-8, "
                              f"got {bytes(flatbuffer[4:8])!r})")
    reader = Reader(flatbuffer)
    return reader, reader.table(reader.indirect(0))


def read_operator_codes(reader, model):
    """The :class:`OperatorCode` list of a model (TFLite takes the larger of the two builtin codes)."""
    codes = []
    start = reader.child(model, _MODEL["operator_codes"])
    for code in [] if start is None else reader.tables(start):
        custom = reader.child(code, _CODE["custom_code"])
        codes.append(OperatorCode(
            builtin_code=max(reader.scalar(code, _CODE["deprecated_builtin_code"], "<b"),
                             reader.scalar(code, _CODE["builtin_code"], "<i")),
            custom_code=None if custom is None else reader.string(custom),
            version=reader.scalar(code, _CODE["version"], "<i", default=1),
        ))
    return codes


def _indices(values, count, what, *, optional=False):
    """Check tensor / buffer indices ``values`` against ``count`` (``-1`` allowed with ``optional``)."""
    for value in values:
        if not (0 <= value < count or (optional and value == -1)):
            raise FlatbufferError(f"{what} refers to index {value}, the model has {count}")
    return values


def _tensor_bytes(shape, type_code):
    elements = 1
    for d in shape:
        elements *= d
    return (elements * TENSOR_TYPE_BITS[type_code] + 7) // 8


def _verify_quantization(reader, table, shape, what):
    scale_pos = reader.child(table, _QUANTIZATION["scale"])
    zero_pos = reader.child(table, _QUANTIZATION["zero_point"])
    for index in (_QUANTIZATION["min"], _QUANTIZATION["max"]):
        pos = reader.child(table, index)
        if pos is not None:
            reader.scalars(pos, "f")
    if reader.scalar(table, _QUANTIZATION["details_type"], "<B"):
        raise FlatbufferError(f"{what}: custom quantization details are not supported")
    scales = () if scale_pos is None else reader.scalars(scale_pos, "f")
    zeros = () if zero_pos is None else reader.scalars(zero_pos, "q")
    if zeros and len(zeros) != len(scales):
        raise FlatbufferError(f"{what}: {len(scales)} quantization scales but {len(zeros)} zero points")
    if any(not s > 0 or s == float("inf") for s in scales):
        raise FlatbufferError(f"{what}: quantization scales must be finite and > 0")
    if len(scales) > 1:
        axis = reader.scalar(table, _QUANTIZATION["quantized_dimension"], "<i")
        if not 0 <= axis < len(shape) or shape[axis] != len(scales):
            raise FlatbufferError(f"{what}: {len(scales)} per-channel scales along dimension {axis} of shape "
                                  f"{list(shape)}")


def _verify_tensor(reader, tensor, index, buffer_sizes, max_tensor_bytes):
    """``(shape, type code, constant)`` of tensor ``index``, checked."""
    what = f"tensor {index}"
    type_code = reader.scalar(tensor, _TENSOR["type"], "<b")
    if type_code not in TENSOR_TYPE_BITS:
        raise FlatbufferError(f"{what}: element type {TENSOR_TYPE_NAMES.get(type_code, type_code)} is not supported")
    shape_pos = reader.child(tensor, _TENSOR["shape"])
    shape = () if shape_pos is None else reader.scalars(shape_pos, "i")
    if len(shape) > MAX_RANK or any(d < 0 for d in shape):
        raise FlatbufferError(f"{what}: shape {list(shape)} is not a shape of rank <= {MAX_RANK}")
    signature_pos = reader.child(tensor, _TENSOR["shape_signature"])
    if signature_pos is not None:
        signature = reader.scalars(signature_pos, "i")
        if len(signature) != len(shape) or any(s != d and s != -1 for s, d in zip(signature, shape)):
            raise FlatbufferError(f"{what}: shape signature {list(signature)} does not fit shape {list(shape)}")
    for name, field in (("sparsity", "sparsity"), ("variant tensors", "variant_tensors")):
        if reader.field(tensor, _TENSOR[field]) is not None:
            raise FlatbufferError(f"{what}: {name} are not supported")
    name = reader.child(tensor, _TENSOR["name"])
    if name is not None:
        reader.string(name)
    size = _tensor_bytes(shape, type_code)
    buffer = reader.scalar(tensor, _TENSOR["buffer"], "<I")
    _indices([buffer], len(buffer_sizes), f"{what}'s buffer")
    constant = buffer_sizes[buffer] > 0
    if constant and buffer_sizes[buffer] != size:
        raise FlatbufferError(f"{what}: shape {list(shape)} of {TENSOR_TYPE_NAMES[type_code]} needs {size} bytes, "
                              f"its buffer {buffer} holds {buffer_sizes[buffer]}")
    if not constant and size > max_tensor_bytes:
        raise FlatbufferError(f"{what}: shape {list(shape)} of {TENSOR_TYPE_NAMES[type_code]} needs {size} bytes, "
                              f"more than the {max_tensor_bytes} allowed")
    quantization = reader.child(tensor, _TENSOR["quantization"])
    if quantization is not None:
        _verify_quantization(reader, reader.table(quantization), shape, what)
    return shape, type_code, constant


def _verify_options(reader, operator, what):
    if reader.scalar(operator, _OPERATOR["builtin_options_2_type"], "<B"):
        raise FlatbufferError(f"{what}: StableHLO options (builtin_options_2) are not supported")
    for field in ("large_custom_options_offset", "large_custom_options_size"):
        if reader.scalar(operator, _OPERATOR[field], "<Q"):
            raise FlatbufferError(f"{what}: custom options outside the flatbuffer are not supported")
    custom = reader.child(operator, _OPERATOR["custom_options"])
    if custom is not None:
        reader.vector(custom, 1)
    kind = reader.scalar(operator, _OPERATOR["builtin_options_type"], "<B")
    options = reader.child(operator, _OPERATOR["builtin_options"])
    if kind > MAX_BUILTIN_OPTIONS:
        raise FlatbufferError(f"{what}: builtin options type {kind} is not in the schema")
    if options is None:
        return
    if kind == 0:
        raise FlatbufferError(f"{what}: builtin options without a type")
    table = reader.table(options)
    offsets = BUILTIN_OPTIONS_OFFSETS.get(kind, {})
    for index, pos in enumerate(table.fields):
        if pos is None:
            continue
        if index in offsets:
            target = reader.child(table, index)
            if offsets[index] == "string":
                reader.string(target)
            else:
                reader.scalars(target, "i" if offsets[index] == "int32s" else "f")
        elif pos + _MAX_SCALAR_BYTES > reader.size:
            raise FlatbufferError(f"{what}: options field {index} overruns the flatbuffer")


def _verify_operator(reader, operator, index, n_codes, n_tensors):
    what = f"operator {index}"
    _indices([reader.scalar(operator, _OPERATOR["opcode_index"], "<I")], n_codes, f"{what}'s op code")
    lists = {}
    for field in ("inputs", "outputs", "intermediates"):
        pos = reader.child(operator, _OPERATOR[field])
        lists[field] = () if pos is None else _indices(reader.scalars(pos, "i"), n_tensors, f"{what}'s {field}",
                                                       optional=field == "inputs")
    mutating = reader.child(operator, _OPERATOR["mutating_variable_inputs"])
    if mutating is not None and reader.vector(mutating, 1)[1] != len(lists["inputs"]):
        raise FlatbufferError(f"{what}: mutating_variable_inputs does not have one entry per input")
    _verify_options(reader, operator, what)


def verify_model(flatbuffer, *, max_tensor_bytes):
    """Check the structure of a TFLite model before an interpreter reads it.

    Checks: size and file identifier, schema version; every table, vtable, vector and
    string inside the file; operator codes; one subgraph whose inputs, outputs and
    operator inputs / outputs / intermediates name existing tensors and op codes; each
    operator's builtin options table; each tensor's element type, rank (at most
    :data:`MAX_RANK`), shape signature and buffer index; a constant tensor's buffer
    holds exactly the bytes its shape and type need; any other tensor needs at most
    ``max_tensor_bytes`` and all of them together too; quantization scales are finite,
    positive and one per channel; buffers lie inside the file; metadata and signature
    definitions refer to existing buffers, subgraphs and tensors.

    Args:
        flatbuffer: the model bytes.
        max_tensor_bytes: the most bytes the model's non-constant tensors may declare.

    Returns:
        A :class:`ModelSummary`.

    Raises:
        FlatbufferError: the first problem, named (which tensor, operator or offset).
    """
    reader, model = root(flatbuffer)
    version = reader.scalar(model, _MODEL["version"], "<I")
    if version != SCHEMA_VERSION:
        raise FlatbufferError(f"schema version {version}, expected {SCHEMA_VERSION}")
    codes = read_operator_codes(reader, model)
    description = reader.child(model, _MODEL["description"])
    if description is not None:
        reader.string(description)
    buffers_pos = reader.child(model, _MODEL["buffers"])
    buffer_sizes = []
    for i, buffer in enumerate([] if buffers_pos is None else reader.tables(buffers_pos)):
        if reader.scalar(buffer, _BUFFER["offset"], "<Q") > 1:  # the schema's mark of data after the flatbuffer
            raise FlatbufferError(f"buffer {i}: data outside the flatbuffer is not supported")
        data = reader.child(buffer, _BUFFER["data"])
        buffer_sizes.append(0 if data is None else reader.vector(data, 1)[1])
    subgraphs_pos = reader.child(model, _MODEL["subgraphs"])
    subgraphs = [] if subgraphs_pos is None else reader.tables(subgraphs_pos)
    if len(subgraphs) != 1:
        raise FlatbufferError(f"the model must have one subgraph (no control flow), it has {len(subgraphs)}")
    subgraph = subgraphs[0]
    tensors_pos = reader.child(subgraph, _SUBGRAPH["tensors"])
    tensors = [] if tensors_pos is None else reader.tables(tensors_pos)
    infos, constant_bytes, tensor_bytes = [], 0, 0
    for i, tensor in enumerate(tensors):
        shape, type_code, constant = _verify_tensor(reader, tensor, i, buffer_sizes, max_tensor_bytes)
        infos.append((shape, type_code))
        if constant:
            constant_bytes += _tensor_bytes(shape, type_code)
        else:
            tensor_bytes += _tensor_bytes(shape, type_code)
    if tensor_bytes > max_tensor_bytes:
        raise FlatbufferError(f"the model's tensors need {tensor_bytes} bytes, more than the {max_tensor_bytes} "
                              f"allowed")
    ends = {}
    for field in ("inputs", "outputs"):
        pos = reader.child(subgraph, _SUBGRAPH[field])
        ends[field] = tuple(
            TensorInfo(t, TENSOR_TYPE_NAMES[infos[t][1]], tuple(infos[t][0]))
            for t in (() if pos is None else _indices(reader.scalars(pos, "i"), len(tensors), f"subgraph {field}")))
    operators_pos = reader.child(subgraph, _SUBGRAPH["operators"])
    operators = [] if operators_pos is None else reader.tables(operators_pos)
    for i, operator in enumerate(operators):
        _verify_operator(reader, operator, i, len(codes), len(tensors))
    name = reader.child(subgraph, _SUBGRAPH["name"])
    if name is not None:
        reader.string(name)
    _verify_model_extras(reader, model, len(buffer_sizes), len(subgraphs), len(tensors))
    return ModelSummary(operator_codes=tuple(codes), inputs=ends["inputs"], outputs=ends["outputs"],
                        tensors=len(tensors), operators=len(operators), constant_bytes=constant_bytes,
                        tensor_bytes=tensor_bytes)


def _verify_model_extras(reader, model, n_buffers, n_subgraphs, n_tensors):
    """Metadata, metadata buffers and signature definitions refer to what exists."""
    pos = reader.child(model, _MODEL["metadata_buffer"])
    if pos is not None:
        _indices(reader.scalars(pos, "i"), n_buffers, "metadata_buffer")
    pos = reader.child(model, _MODEL["metadata"])
    for entry in [] if pos is None else reader.tables(pos):
        name = reader.child(entry, _METADATA["name"])
        if name is not None:
            reader.string(name)
        _indices([reader.scalar(entry, _METADATA["buffer"], "<I")], n_buffers, "metadata")
    pos = reader.child(model, _MODEL["signature_defs"])
    for signature in [] if pos is None else reader.tables(pos):
        _indices([reader.scalar(signature, _SIGNATURE["subgraph_index"], "<I")], n_subgraphs, "a signature")
        key = reader.child(signature, _SIGNATURE["signature_key"])
        if key is not None:
            reader.string(key)
        for field in ("inputs", "outputs"):
            maps = reader.child(signature, _SIGNATURE[field])
            for entry in [] if maps is None else reader.tables(maps):
                name = reader.child(entry, _TENSOR_MAP["name"])
                if name is not None:
                    reader.string(name)
                _indices([reader.scalar(entry, _TENSOR_MAP["tensor_index"], "<I")], n_tensors, f"a signature {field}")


def buffer_data_ranges(flatbuffer):
    """``[(start, end)]`` byte ranges of the buffers' data (the weights) in a TFLite flatbuffer.

    The bytes outside them are the model's structure (tables, vtables, shapes, indices,
    names, padding).

    Raises:
        FlatbufferError: the buffers cannot be read.
    """
    reader, model = root(flatbuffer)
    start = reader.child(model, _MODEL["buffers"])
    ranges = []
    for buffer in [] if start is None else reader.tables(start):
        data = reader.child(buffer, _BUFFER["data"])
        if data is not None:
            first, length = reader.vector(data, 1)
            if length:
                ranges.append((first, first + length))
    return sorted(ranges)
