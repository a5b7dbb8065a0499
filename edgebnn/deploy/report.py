"""What a converted flatbuffer contains: op histogram, binary vs int8 vs float layers, size ratio."""

import collections

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.tflite import BINARY_OPS, WEIGHT_OPS, builtin_code

from tensorflow.lite.python import schema_py_generated as schema

_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TENSOR_TYPES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def _op_name(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    builtin = builtin_code(code)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return code.customCode.decode()
    return _BUILTIN_NAMES[builtin]


def op_histogram(flatbuffer):
    """``{op name: count}`` over all subgraphs (custom ops by their custom name)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    return dict(collections.Counter(_op_name(model, op) for sg in model.subgraphs for op in sg.operators))


def layer_ops(flatbuffer):
    """Counts of weight-carrying layer ops by arithmetic: ``{"binary", "int8", "float"}``.

    ``binary``: :data:`BINARY_OPS`; ``int8``/``float``: :data:`WEIGHT_OPS` by the type
    of their weight tensor (int8 includes dynamic-range "hybrid" kernels).
    """
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    counts = {"binary": 0, "int8": 0, "float": 0}
    for sg in model.subgraphs:
        for op in sg.operators:
            name = _op_name(model, op)
            if name in BINARY_OPS:
                counts["binary"] += 1
            elif name in WEIGHT_OPS:
                weight_type = _TENSOR_TYPES[sg.tensors[op.inputs[1]].type]
                counts["int8" if weight_type == "INT8" else "float"] += 1
    return counts


def weight_storage(flatbuffer):
    """Counts of weight-carrying layer ops by how their weights are stored in the file.

    ``{"1-bit", "int8", "float16", "float32"}``: binary ops (:data:`BINARY_OPS`) store
    1-bit weights, and so do builtin layer ops whose weight is the output of a ``GATHER``
    (sign bits unpacked by :mod:`edgebnn.deploy.packing`); a builtin layer op's weight
    (input 1) is otherwise counted by the type of the
    constant behind it, looking through a ``DEQUANTIZE`` (weights stored as int8 or
    float16 and computed in float32, :mod:`edgebnn.deploy.storage`).
    """
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    counts = {"1-bit": 0, "int8": 0, "float16": 0, "float32": 0}
    for sg in model.subgraphs:
        producers = {out: op for op in sg.operators for out in op.outputs}
        for op in sg.operators:
            name = _op_name(model, op)
            if name in BINARY_OPS:
                counts["1-bit"] += 1
            elif name in WEIGHT_OPS:
                weight = op.inputs[1]
                source = producers.get(weight)
                if source is not None and _op_name(model, source) == "GATHER":
                    counts["1-bit"] += 1  # sign bits unpacked by GATHER (edgebnn.deploy.packing)
                    continue
                if source is not None and _op_name(model, source) == "DEQUANTIZE":
                    weight = source.inputs[0]
                dtype = _TENSOR_TYPES[sg.tensors[weight].type].lower()
                counts[dtype] = counts.get(dtype, 0) + 1
    return counts


def conversion_report(flatbuffer, *, float_bytes, name=None, target=None):
    """One row of a conversion report.

    Args:
        flatbuffer: the converted model.
        float_bytes: size of the plain float TFLite model of the same architecture
            (``len(float_reference(model))``).
        name, target: labels of the row.

    Returns:
        dict: ``name, target, bytes, float_bytes, ratio, layer_ops, weight_storage, ops``.
    """
    return {
        "name": name,
        "target": target,
        "bytes": len(flatbuffer),
        "float_bytes": int(float_bytes),
        "ratio": float_bytes / len(flatbuffer),
        "layer_ops": layer_ops(flatbuffer),
        "weight_storage": weight_storage(flatbuffer),
        "ops": op_histogram(flatbuffer),
    }


def markdown_table(rows):
    """Conversion report rows as a markdown table."""
    lines = [
        "| model | target | bytes | float TFLite bytes | ratio | binary / int8 / float layer ops "
        "| weights stored 1-bit / int8 / float16 / float32 | ops |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        lo, ws = r["layer_ops"], r["weight_storage"]
        ops = ", ".join(f"{k} {v}" for k, v in sorted(r["ops"].items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(
            f"| {r['name']} | {r['target']} | {r['bytes']:,} | {r['float_bytes']:,} | {r['ratio']:.1f}x "
            f"| {lo['binary']} / {lo['int8']} / {lo['float']} "
            f"| {ws['1-bit']} / {ws['int8']} / {ws['float16']} / {ws['float32']} | {ops} |"
        )
    return "\n".join(lines)
