"""The operator codes of a TFLite flatbuffer, read with the standard library only.

The on-device runner must know whether a model needs Larq Compute Engine's custom ops
before it picks an interpreter, without TensorFlow (whose generated
``schema_py_generated`` module is how the host side reads flatbuffers, see
:mod:`edgebnn.deploy.report`). This reads just ``Model.operator_codes`` of the TFLite
schema, with the bounds-checked reader of :mod:`edgebnn.deploy.flatbuffer` (which also
verifies whole models).
"""

from edgebnn.deploy.flatbuffer import CUSTOM, FILE_IDENTIFIER, FlatbufferError, OperatorCode, read_operator_codes, root

__all__ = ["CUSTOM", "FILE_IDENTIFIER", "FlatbufferError", "OperatorCode", "custom_op_names", "operator_codes"]


def operator_codes(flatbuffer):
    """The operator codes of a TFLite model, in the model's order.

    Args:
        flatbuffer: the model bytes.

    Returns:
        A list of :class:`~edgebnn.deploy.flatbuffer.OperatorCode`.

    Raises:
        FlatbufferError: not a TFLite flatbuffer, or an offset points outside it.
    """
    return read_operator_codes(*root(flatbuffer))


def custom_op_names(flatbuffer):
    """Names of the custom ops a TFLite model declares (sorted, without repeats)."""
    return sorted({c.custom_code for c in operator_codes(flatbuffer) if c.builtin_code == CUSTOM and c.custom_code})
