"""Facts about edgebnn's ``.tflite`` files, shared by the host side and the device runner.

This module imports only the standard library (through :mod:`edgebnn.deploy.opcodes`),
so :mod:`edgebnn.deploy.device` can use it on a device without TensorFlow, and the
host-side modules (:mod:`~edgebnn.deploy.convert`, :mod:`~edgebnn.deploy.report`,
:mod:`~edgebnn.deploy.verify`, :mod:`~edgebnn.deploy.bundle`) take the same numbers
and names from here instead of repeating them.
"""

from edgebnn.deploy.opcodes import custom_op_names

#: Value of the brightest uint8 pixel: ``x = pixel / PIXEL_MAX`` (as :func:`edgebnn.data.load`).
PIXEL_MAX = 255.0
#: Custom op names of Larq Compute Engine, as stored in a flatbuffer's operator codes.
LCE_OP_NAMES = ("LceBconv2d", "LceQuantize", "LceDequantize", "LceBMaxPool2d")
#: LCE ops that compute a layer with 1-bit weights and activations.
BINARY_OPS = ("LceBconv2d", "LceBMaxPool2d")
#: Builtin ops that compute a layer with a weight tensor (input 1), by schema name.
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV")
#: Width of LCE's bitpacking words: binary layers pack input channels 32 to a word.
LCE_BITPACK_WIDTH = 32


def builtin_code(operator_code):
    """The builtin op code of a TFLite ``OperatorCodeT`` (as TensorFlow's generated schema unpacks it).

    The schema keeps the code twice: ``deprecated_builtin_code`` (an int8, which older
    runtimes read) and ``builtin_code`` (an int32 for codes past 127); TFLite takes the
    larger, as :func:`edgebnn.deploy.opcodes.operator_codes` does.
    """
    return max(operator_code.builtinCode, operator_code.deprecatedBuiltinCode)


def uses_lce_ops(flatbuffer):
    """True if the model's operator codes include one of Larq Compute Engine's custom ops.

    Args:
        flatbuffer: the model bytes.

    Raises:
        FlatbufferError: ``flatbuffer`` is not a well-formed TFLite model.
    """
    return any(name in LCE_OP_NAMES for name in custom_op_names(flatbuffer))
