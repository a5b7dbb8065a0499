"""The operator codes of a TFLite flatbuffer, read with the standard library only.

The on-device runner must know whether a model needs Larq Compute Engine's custom ops
before it picks an interpreter, without TensorFlow (whose generated
``schema_py_generated`` module is how the host side reads flatbuffers, see
:mod:`edgebnn.deploy.report`). This reads just ``Model.operator_codes`` of the TFLite
schema (``tensorflow/lite/schema/schema.fbs``), checking every offset against the buffer.

Flatbuffer layout used here: a table starts with an ``int32`` offset back to its
vtable; the vtable lists ``uint16`` offsets of the fields present; vectors and strings
are ``uint32`` offsets to a ``uint32`` length followed by the elements. All little-endian.
"""

import struct
from dataclasses import dataclass

#: The file identifier of a TFLite flatbuffer (bytes 4-8).
FILE_IDENTIFIER = b"TFL3"
#: ``BuiltinOperator.CUSTOM`` in the TFLite schema.
CUSTOM = 32
#: Field indices in the schema: ``Model.operator_codes`` and those of ``OperatorCode``
#: (an op code is the larger of ``deprecated_builtin_code`` and ``builtin_code``, as TFLite reads it).
_MODEL_OPERATOR_CODES = 1
_CODE_DEPRECATED_BUILTIN, _CODE_CUSTOM, _CODE_VERSION, _CODE_BUILTIN = 0, 1, 2, 3


class FlatbufferError(ValueError):
    """The bytes are not a well-formed TFLite flatbuffer."""


@dataclass(frozen=True)
class OperatorCode:
    """One entry of ``Model.operator_codes``: a builtin op code, or ``CUSTOM`` with a name."""

    builtin_code: int
    custom_code: str | None
    version: int


class _Reader:
    def __init__(self, data):
        self.data = data

    def _unpack(self, fmt, pos):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise FlatbufferError(f"offset {pos} is outside the {len(self.data)}-byte flatbuffer")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos):
        """``(table position, vtable field offsets)``."""
        vtable = pos - self._unpack("<i", pos)
        vtable_size = self._unpack("<H", vtable)
        if vtable_size < 4 or vtable_size % 2:
            raise FlatbufferError(f"bad vtable size {vtable_size} at offset {vtable}")
        return pos, [self._unpack("<H", vtable + 4 + 2 * i) for i in range((vtable_size - 4) // 2)]

    def field(self, table, index):
        """Absolute position of field ``index`` of ``table``, or ``None`` when it is absent (default)."""
        pos, fields = table
        return pos + fields[index] if index < len(fields) and fields[index] else None

    def indirect(self, pos):
        return pos + self._unpack("<I", pos)

    def vector(self, pos):
        """Positions of the offsets of a vector of tables / strings."""
        start = self.indirect(pos)
        length = self._unpack("<I", start)
        if start + 4 + 4 * length > len(self.data):
            raise FlatbufferError(f"a vector of {length} entries at offset {start} overruns the flatbuffer")
        return [start + 4 + 4 * i for i in range(length)]

    def string(self, pos):
        start = self.indirect(pos)
        length = self._unpack("<I", start)
        if start + 4 + length > len(self.data):
            raise FlatbufferError(f"a string of {length} bytes at offset {start} overruns the flatbuffer")
        return bytes(self.data[start + 4 : start + 4 + length]).decode("utf-8", errors="replace")


def operator_codes(flatbuffer):
    """The operator codes of a TFLite model, in the model's order.

    Args:
        flatbuffer: the model bytes.

    Returns:
        A list of :class:`OperatorCode`.

    Raises:
        FlatbufferError: not a TFLite flatbuffer, or an offset points outside it.
    """
    data = memoryview(bytes(flatbuffer))
    if len(data) < 8 or bytes(data[4:8]) != FILE_IDENTIFIER:
        raise FlatbufferError(f"not a TFLite flatbuffer (file identifier {FILE_IDENTIFIER!r} expected at bytes 4-8, "
                              f"got {bytes(data[4:8])!r})")
    reader = _Reader(data)
    model = reader.table(reader.indirect(0))
    codes_field = reader.field(model, _MODEL_OPERATOR_CODES)
    codes = []
    for entry in [] if codes_field is None else reader.vector(codes_field):
        code = reader.table(reader.indirect(entry))
        deprecated = reader.field(code, _CODE_DEPRECATED_BUILTIN)
        builtin = reader.field(code, _CODE_BUILTIN)
        custom = reader.field(code, _CODE_CUSTOM)
        version = reader.field(code, _CODE_VERSION)
        builtin_code = max(0 if deprecated is None else reader._unpack("<b", deprecated),
                           0 if builtin is None else reader._unpack("<i", builtin))
        codes.append(OperatorCode(
            builtin_code=builtin_code,
            custom_code=None if custom is None else reader.string(custom),
            version=1 if version is None else reader._unpack("<i", version),
        ))
    return codes


def custom_op_names(flatbuffer):
    """Names of the custom ops a TFLite model declares (sorted, without repeats)."""
    return sorted({c.custom_code for c in operator_codes(flatbuffer) if c.builtin_code == CUSTOM and c.custom_code})
