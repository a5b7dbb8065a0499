"""Editing a parsed TFLite flatbuffer: the toolkit the flatbuffer post-passes share.

:mod:`edgebnn.deploy.storage` (int8/float16 weight storage),
:mod:`edgebnn.deploy.thresholds` (sign thresholds) and :mod:`edgebnn.deploy.packing`
(sign-bit packing) each rewrite a flatbuffer through TensorFlow's object API
(``schema_py_generated``'s ``ModelT``): parse the bytes (:func:`parse`), find the layer
weights they may rewrite (:func:`weight_tensors`), read them (:func:`buffer_array`),
add buffers and op codes (:func:`new_buffer`, :func:`empty_buffer`,
:func:`opcode_index`), forget the buffers nothing refers to any more
(:func:`drop_unused_buffers`) and serialize (:func:`serialize`). The TensorFlow-free
reader and verifier of the same files is :mod:`edgebnn.deploy.flatbuffer`.
"""

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.tflite import builtin_code

from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

#: Layer ops whose input 1 is a weight tensor that may be rewritten, with the axis of
#: their output channels (per-channel scales): OHWI conv / transpose-conv kernels and
#: [out, in] dense weights on axis 0, ``[1, H, W, C*M]`` depthwise kernels on axis 3.
WEIGHT_OPS = {
    schema.BuiltinOperator.CONV_2D: 0,
    schema.BuiltinOperator.DEPTHWISE_CONV_2D: 3,
    schema.BuiltinOperator.FULLY_CONNECTED: 0,
    schema.BuiltinOperator.TRANSPOSE_CONV: 0,
}
#: Smaller weight tensors are left as they are: a ``DEQUANTIZE`` op, a second tensor and
#: its quantization parameters cost ~100-200 bytes of flatbuffer, more than 64 float32
#: weights (256 bytes) would save.
MIN_ELEMENTS = 64
#: The file identifier of a TFLite flatbuffer, at bytes 4-8.
FILE_IDENTIFIER = b"TFL3"


def check_bytes(tflite):
    """Raise ``TypeError`` unless ``tflite`` is ``bytes``/``bytearray``."""
    if not isinstance(tflite, (bytes, bytearray)):
        raise TypeError(f"`tflite` must be flatbuffer bytes, got {type(tflite).__name__}.")


def check_identifier(tflite):
    """Raise ``ValueError`` unless ``tflite`` carries the TFLite file identifier."""
    if len(tflite) < 8 or bytes(tflite[4:8]) != FILE_IDENTIFIER:
        raise ValueError(
            f"`tflite` is not a TFLite flatbuffer (file identifier 'TFL3' expected at bytes 4-8, "
            f"got {bytes(tflite[4:8])!r})."
        )


def check_flatbuffer(tflite):
    """Raise ``TypeError``/``ValueError`` unless ``tflite`` is bytes of a TFLite flatbuffer."""
    check_bytes(tflite)
    check_identifier(tflite)


def parse(tflite):
    """The ``ModelT`` of flatbuffer bytes ``tflite`` (``ValueError`` naming the argument if it is not one)."""
    try:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    except Exception as e:  # the flatbuffers parser raises anything on garbage
        raise ValueError(f"`tflite` could not be parsed as a TFLite flatbuffer: {type(e).__name__}: {e}") from e
    if model.buffers is None or model.subgraphs is None:
        raise ValueError("`tflite` is a TFLite flatbuffer without buffers or subgraphs.")
    return model


def serialize(model):
    """The flatbuffer bytes of ``ModelT`` ``model``."""
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def indices(array):
    """A flatbuffer index vector (NumPy array, list or None) as a list of ints."""
    return [] if array is None else [int(i) for i in array]


def buffer_array(model, tensor):
    """The float32 data of constant ``tensor`` as an array of its shape."""
    data = model.buffers[tensor.buffer].data
    return np.frombuffer(bytes(np.asarray(data, np.uint8)), "<f4").reshape(tuple(indices(tensor.shape)))


def is_constant_float(model, tensor):
    """Whether ``tensor`` is a dense, non-variable float32 constant with all its data."""
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return (
        tensor.type == schema.TensorType.FLOAT32
        and not tensor.isVariable
        and tensor.sparsity is None
        and buffer is not None
        and buffer.data is not None
        and len(buffer.data) == 4 * int(np.prod(indices(tensor.shape)))
    )


def opcode_index(model, builtin, version):
    """Index of the operator code of ``builtin`` at ``version`` in ``model``, appended if missing."""
    for i, code in enumerate(model.operatorCodes):
        if builtin_code(code) == builtin and code.version == version:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def new_buffer(model, array):
    """Append a buffer holding the bytes of ``array``; its index."""
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8).copy()
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def empty_buffer(model):
    """Index of a buffer without data for non-constant tensors (TFLite's convention: buffer 0)."""
    if model.buffers[0].data is None or len(model.buffers[0].data) == 0:
        return 0
    return new_buffer(model, np.zeros(0, np.uint8))


def weight_tensors(model, subgraph):
    """``{tensor index: channel axis}`` of the rewritable weights of ``subgraph``.

    Input 1 of a :data:`WEIGHT_OPS` op, a float32 constant of at least
    :data:`MIN_ELEMENTS` values. A tensor read by several layer ops is rewritten once if
    they agree on the channel axis (all consumers then read the same rewritten tensor);
    with conflicting axes it is skipped. Skipped too: tensors that any op reads other
    than as a layer weight, and graph inputs/outputs. XNNPACK (TFLite's default CPU
    delegate) unpacks a constant's ``DEQUANTIZE`` into its own memory and never writes
    the op's output tensor, so a rewritten weight that is also a graph output reads as
    garbage (measured, TF 2.16).
    """
    axes, other_uses = {}, set(indices(subgraph.inputs)) | set(indices(subgraph.outputs))
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = builtin_code(code)
        for position, index in enumerate(indices(op.inputs)):
            if builtin in WEIGHT_OPS and position == 1:
                axes.setdefault(index, set()).add(WEIGHT_OPS[builtin])
            else:
                other_uses.add(index)
        other_uses.update(indices(op.intermediates))
    found = {}
    for index, tensor_axes in axes.items():
        if index < 0 or index in other_uses or len(tensor_axes) != 1:
            continue
        tensor = subgraph.tensors[index]
        if not is_constant_float(model, tensor):
            continue
        if int(np.prod(indices(tensor.shape))) >= MIN_ELEMENTS:
            found[index] = tensor_axes.pop()
    return found


def drop_unused_buffers(model):
    """Empty the data of buffers no tensor or metadata refers to any more (indices kept)."""
    used = {t.buffer for sg in model.subgraphs for t in sg.tensors}
    used |= {m.buffer for m in (model.metadata or [])}
    for i, buffer in enumerate(model.buffers):
        if i not in used and buffer.data is not None:
            buffer.data = None
