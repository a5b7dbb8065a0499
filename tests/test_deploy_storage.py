"""Weight storage rewriting: exact int8 for binary/XNOR weights, float16/int8 for the rest (vs the original)."""

import copy

import numpy as np
import pytest

from conftest import randomize_batch_norm  # deployment statistics (conftest.DEPLOY_BATCH_NORM)
from edgebnn.deploy import convert as cv
from edgebnn.deploy import report, storage
from edgebnn.deploy.verify import tflite_predict
from edgebnn.layers import InputDiscretization
from edgebnn.zoo.panda_fcn import build_fcn

import larq as lq
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

#: float16 weights: each weight has relative error <= 2**-11, so a float layer's output
#: moves by <= 2**-11 * sum|w x|; over two float layers this stays well within 2**-8
#: of the largest logit.
FLOAT16_RTOL = 2.0**-8
#: int8 weights: error <= max|W_c| / 254 per weight (~0.4% of the channel's largest).
INT8_RTOL = 2.0**-4


def _mixed_model():
    """Float first conv and float classifier around a binary conv and a binary dense layer."""
    inputs = tf.keras.Input((12, 12, 1))
    x = InputDiscretization(2)(inputs)
    x = tf.keras.layers.Conv2D(8, 3, use_bias=False, name="float_conv")(x)  # 72 weights
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(16, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False,
                              name="binary_conv")(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.MaxPool2D()(x)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(32, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False,
                             name="binary_dense")(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.Activation("relu")(x)
    outputs = tf.keras.layers.Dense(10, name="float_classifier")(x)
    return randomize_batch_norm(tf.keras.Model(inputs, outputs))


def _float_model():
    """No sign after any float layer, so weight errors move the logits smoothly."""
    inputs = tf.keras.Input((12, 12, 1))
    x = tf.keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = tf.keras.layers.Flatten()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(10, name="dense")(x))


@pytest.fixture(scope="module")
def mixed():
    return _mixed_model()


@pytest.fixture(scope="module")
def mixed_portable(mixed):
    return cv.convert(mixed, target="portable", weights="float32")


def _x(n=64, shape=(12, 12, 1), seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def _model(flatbuffer):
    return schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)


def _weights(flatbuffer):
    """``{tensor name: (dtype code, raw bytes)}`` of every constant read as input 1 of a layer op."""
    model = _model(flatbuffer)
    found = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) in storage.WEIGHT_OPS:
                t = sg.tensors[op.inputs[1]]
                data = model.buffers[t.buffer].data
                found[t.name.decode()] = (t.type, None if data is None else bytes(np.asarray(data, np.uint8)))
    return found


def _builtin_kernels(flatbuffer, x):
    """Outputs of stock TFLite's builtin kernels, without the default XNNPACK delegate."""
    interpreter = tf.lite.Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for example in x:
        interpreter.set_tensor(inp["index"], example[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0])
    return np.stack(outputs)


def _dequantize_versions(flatbuffer):
    model = _model(flatbuffer)
    return sorted(
        model.operatorCodes[op.opcodeIndex].version
        for sg in model.subgraphs
        for op in sg.operators
        if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.DEQUANTIZE
    )


def _min_runtime(flatbuffer):
    model = _model(flatbuffer)
    (entry,) = [m for m in model.metadata if m.name == b"min_runtime_version"]
    return bytes(np.asarray(model.buffers[entry.buffer].data, np.uint8)).rstrip(b"\0").decode()


@pytest.mark.parametrize(
    ("w", "scales"),
    [
        (np.array([[1, -1, 1], [-1, -1, 1]] * 40, np.float32), [1.0]),  # +-1: scale 1 per tensor
        (np.array([[0.3, -0.3], [-0.07, 0.07], [2.5, 2.5]], np.float32), [0.3, 0.07, 2.5]),  # XNOR +-alpha_c
        (np.array([[-3, -1, 1, 3]] * 3, np.float32) * np.float32(0.1), [np.float32(0.1)]),  # 2-bit levels
    ],
)
def test_exact_int8_finds_the_scale_and_reproduces_every_bit(w, scales):
    q, got = storage.exact_int8(w, 0)
    np.testing.assert_array_equal(got, np.asarray(scales, np.float32))
    for dequantized in storage.dequantize(q, got, 0):
        assert dequantized.dtype == np.float32 and np.array_equal(dequantized.view(np.int32), w.view(np.int32))


def test_exact_int8_refuses_what_int8_cannot_hold_exactly(rng):
    assert storage.exact_int8(rng.normal(size=(8, 9)).astype(np.float32), 0) is None
    assert storage.exact_int8(np.arange(300, dtype=np.float32).reshape(1, 300), 0) is None  # > 255 levels
    q, _ = storage.exact_int8(np.array([[-0.0, 1.0]] * 40, np.float32), 0)  # -0.0 is stored as 0 (== -0.0)
    assert np.array_equal(q, np.array([[0, 1]] * 40))
    g = rng.uniform(0.1, 3.0, (6, 1)).astype(np.float32)  # BatchNorm-folded binary weights g_c * (+-1)
    signs = np.where(rng.random((6, 50)) < 0.5, -1.0, 1.0).astype(np.float32)
    q, scales = storage.exact_int8(g * signs, 0)
    np.testing.assert_array_equal(q, signs.astype(np.int8))
    np.testing.assert_array_equal(scales, g[:, 0])


def test_exact_mode_shrinks_an_all_binary_fcn_4x_with_identical_outputs():
    model = randomize_batch_norm(build_fcn(hidden_units=64, hidden_layers=2, precision="binary", input_bits=2))
    before = cv.convert(model, target="portable", weights="float32")
    after, summary = storage.store_weights_with_summary(before)
    assert len(before) / len(after) > 3.5  # float32 -> int8 weights; 4x minus biases and the graph
    assert len(summary) == 3 and all(s.exact and s.new_dtype == "int8" for s in summary)
    assert report.op_histogram(after)["DEQUANTIZE"] == 3
    assert report.op_histogram(after)["FULLY_CONNECTED"] == report.op_histogram(before)["FULLY_CONNECTED"]
    # the summary counts weight bytes; the flatbuffer also pays an op, a tensor and its scales' table per rewrite
    overhead = (sum(s.bytes_saved for s in summary) - (len(before) - len(after))) / len(summary)
    assert 0 <= overhead < 1000
    x = _x(64, (28, 28, 1))
    for runtime in ("tensorflow", "lce"):  # stock TFLite (XNNPACK), and LCE's interpreter running builtin ops
        np.testing.assert_array_equal(tflite_predict(after, x, runtime=runtime),
                                      tflite_predict(before, x, runtime=runtime))
    # TFLite's own DEQUANTIZE kernel (no XNNPACK, which unpacks constant weights itself)
    np.testing.assert_array_equal(_builtin_kernels(after, x), _builtin_kernels(before, x))
    assert "| (64, 784) | float32 -> int8 | per_channel | yes |" in storage.markdown_table(summary)


def test_exact_mode_leaves_float_weights_alone(mixed_portable):
    after, summary = storage.store_weights_with_summary(mixed_portable)
    # the folded binary conv and dense weights are rewritten, exactly; the float ones stay float32
    assert sorted(s.shape for s in summary) == [(16, 3, 3, 8), (32, 256)]
    assert all(s.exact and s.new_dtype == "int8" for s in summary)
    expected = sorted(storage.DEQUANTIZE_VERSIONS["int8" if s.scheme == "per_tensor" else "int8_per_channel"]
                      for s in summary)
    assert _dequantize_versions(after) == expected
    old, new = _weights(mixed_portable), _weights(after)
    floats = {name: w for name, w in old.items() if name not in {s.name for s in summary}}
    assert len(floats) == 2  # float_conv and float_classifier
    for name, w in floats.items():
        assert new[name] == w and w[0] == schema.TensorType.FLOAT32
    x = _x()
    np.testing.assert_array_equal(tflite_predict(after, x, runtime="tensorflow"),
                                  tflite_predict(mixed_portable, x, runtime="tensorflow"))


@pytest.mark.parametrize(("mode", "rtol"), [("float16", FLOAT16_RTOL), ("int8", INT8_RTOL)])
def test_approximate_modes_store_float_weights_small_with_close_outputs(mode, rtol):
    before = cv.convert(_float_model(), target="portable", weights="float32")
    after, summary = storage.store_weights_with_summary(before, mode=mode)
    assert sorted(s.shape for s in summary) == [(8, 3, 3, 1), (10, 800)]
    assert all(not s.exact and s.new_dtype == ("float16" if mode == "float16" else "int8") for s in summary)
    assert len(after) < len(before) * (0.55 if mode == "float16" else 0.35)
    version = storage.DEQUANTIZE_VERSIONS["float16" if mode == "float16" else "int8_per_channel"]
    assert _dequantize_versions(after) == [version] * 2
    x = _x(128)
    ref = tflite_predict(before, x, runtime="tensorflow")
    got = tflite_predict(after, x, runtime="tensorflow")
    assert not np.array_equal(got, ref)  # approximate, and the test can see it
    np.testing.assert_allclose(got, ref, rtol=0, atol=rtol * np.max(np.abs(ref)))
    np.testing.assert_allclose(_builtin_kernels(after, x[:16]), ref[:16], rtol=0, atol=rtol * np.max(np.abs(ref)))


@pytest.mark.parametrize("mode", ["float16", "int8"])
def test_approximate_modes_keep_binary_weights_exact(mixed_portable, mode):
    after, summary = storage.store_weights_with_summary(mixed_portable, mode=mode)
    by_exact = {s.shape: s.exact for s in summary}
    assert by_exact == {(16, 3, 3, 8): True, (32, 256): True, (8, 3, 3, 1): False, (10, 32): False}
    assert all(t == (schema.TensorType.FLOAT32, None) for t in _weights(after).values())  # all via DEQUANTIZE
    assert report.op_histogram(after)["DEQUANTIZE"] == 4


def test_lce_flatbuffer_keeps_lce_ops_and_options_and_outputs(mixed):
    # LCE without the rewrites keeps the binary dense layer as a float FULLY_CONNECTED with
    # +-1 (BatchNorm-folded) weights between LceQuantize/LceDequantize: exact int8 material
    before = cv.convert(mixed, target="lce", rewrites=False, weights="float32")
    ops_before = report.op_histogram(before)
    assert ops_before["LceBconv2d"] == 1 and ops_before["FULLY_CONNECTED"] == 2
    after, summary = storage.store_weights_with_summary(before)
    assert [s.shape for s in summary] == [(32, 256)] and summary[0].exact
    ops_after = report.op_histogram(after)
    assert ops_after.pop("DEQUANTIZE") == 1 and ops_after == ops_before
    custom = [
        [(m.operatorCodes[op.opcodeIndex].customCode, bytes(np.asarray(op.customOptions, np.uint8)))
         for sg in m.subgraphs for op in sg.operators if op.customOptions is not None]
        for m in (_model(before), _model(after))
    ]
    assert custom[0] and custom[0] == custom[1]
    assert _min_runtime(before) == "1.14.0" and _min_runtime(after) == "2.7.0"  # per-channel DEQUANTIZE (v5)
    x = _x()
    for kernel in ("default", "reference"):
        np.testing.assert_array_equal(tflite_predict(after, x, runtime="lce", kernel=kernel),
                                      tflite_predict(before, x, runtime="lce", kernel=kernel))
    # with the rewrites LCE has no float32 binary weights left: nothing to do, same bytes
    rewritten = cv.convert(mixed, target="lce", weights="float32")
    assert storage.store_weights(rewritten) == rewritten
    smaller = storage.store_weights(rewritten, mode="float16")
    assert len(smaller) < len(rewritten)
    # float16 is lossy: a float layer feeding a sign can flip it on a near tie, so a rare
    # changed prediction is expected; a wrong dequantization would change most of them
    agreement = np.mean(tflite_predict(smaller, x, runtime="lce").argmax(-1)
                        == tflite_predict(rewritten, x, runtime="lce").argmax(-1))
    assert agreement >= 0.95, agreement


def test_depthwise_and_transpose_conv_weights():
    inputs = tf.keras.Input((8, 8, 4))
    x = lq.layers.QuantDepthwiseConv2D(3, depth_multiplier=4, padding="same", depthwise_quantizer="ste_sign",
                                       use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2DTranspose(8, 3, kernel_quantizer="ste_sign", use_bias=False)(x)
    model = randomize_batch_norm(tf.keras.Model(inputs, tf.keras.layers.BatchNormalization()(x)))
    before = cv.convert(model, target="portable", rewrites=False, weights="float32")
    after, summary = storage.store_weights_with_summary(before)
    # depthwise kernels [1, H, W, C*M] have their channels on axis 3, transpose-conv kernels OHWI on axis 0
    assert sorted(s.shape for s in summary) == [(1, 3, 3, 16), (8, 3, 3, 16)]
    assert all(s.exact and s.scheme == "per_channel" for s in summary)  # BatchNorm folded: g_c * (+-1)
    x = _x(32, (8, 8, 4))
    np.testing.assert_array_equal(tflite_predict(after, x, runtime="tensorflow"),
                                  tflite_predict(before, x, runtime="tensorflow"))
    np.testing.assert_array_equal(_builtin_kernels(after, x), _builtin_kernels(before, x))


def test_shared_weights_are_dequantized_once_for_all_consumers():
    inputs = tf.keras.Input((20,))
    shared = lq.layers.QuantDense(16, kernel_quantizer="ste_sign", use_bias=False, name="shared")
    outputs = tf.keras.layers.Concatenate()([shared(inputs), shared(tf.keras.layers.ReLU()(inputs))])
    before = cv.convert(tf.keras.Model(inputs, outputs), target="portable", rewrites=False, weights="float32")
    after, summary = storage.store_weights_with_summary(before)
    assert report.op_histogram(after)["FULLY_CONNECTED"] == 2
    assert report.op_histogram(after)["DEQUANTIZE"] == len(summary) == 1  # one weight tensor, read twice
    x = np.random.default_rng(1).normal(size=(32, 20)).astype(np.float32)
    np.testing.assert_array_equal(tflite_predict(after, x, runtime="tensorflow"),
                                  tflite_predict(before, x, runtime="tensorflow"))

    # two tensors on one buffer: both dequantized from one int8 buffer, the float32 one dropped;
    # then also a graph output: that tensor is left float32 (XNNPACK would not write it), its buffer kept
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(before))
    sg = model.subgraphs[0]
    second = next(op for op in sg.operators[1:] if op.inputs[1] == sg.operators[1].inputs[1] and op.inputs[0] != 0)
    sg.tensors.append(copy.deepcopy(sg.tensors[second.inputs[1]]))
    second.inputs[1] = len(sg.tensors) - 1
    twin_buffers = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    sg.outputs = list(sg.outputs) + [second.inputs[1]]
    twin_output = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    for edited, rewritten, float_buffer_kept in ((twin_buffers, 2, False), (twin_output, 1, True)):
        after, summary = storage.store_weights_with_summary(edited)
        assert len(summary) == rewritten and summary[0].exact
        sizes = [0 if b.data is None else len(b.data) for b in _model(after).buffers]
        assert sizes.count(16 * 20) == 1 and (16 * 20 * 4 in sizes) == float_buffer_kept
        outputs = []
        for flatbuffer in (edited, after):
            interpreter = tf.lite.Interpreter(model_content=flatbuffer)
            interpreter.allocate_tensors()
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[:1])
            interpreter.invoke()
            outputs.append([interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()])
        assert len(outputs[0]) == len(outputs[1]) == len(sg.outputs) - (not float_buffer_kept)
        for a, b in zip(*outputs):
            np.testing.assert_array_equal(a, b)


def test_small_and_already_stored_weights_are_left_alone(mixed):
    inputs = tf.keras.Input((4,))
    tiny = lq.layers.QuantDense(8, kernel_quantizer="ste_sign", use_bias=False)(inputs)  # 32 < MIN_ELEMENTS
    before = cv.convert(tf.keras.Model(inputs, tiny), target="portable", weights="float32")
    assert storage.store_weights_with_summary(before) == (before, [])
    # weights already stored: they come out of DEQUANTIZE ops, not float32 constants
    float16 = cv.convert(mixed, target="portable", weights="float16")
    assert storage.store_weights_with_summary(float16, mode="int8") == (float16, [])


def test_bad_input_is_refused(mixed_portable):
    with pytest.raises(TypeError, match="`tflite` must be flatbuffer bytes, got str"):
        storage.store_weights("model.tflite")
    with pytest.raises(ValueError, match="`mode` must be one of .*got 'int4'"):
        storage.store_weights(mixed_portable, mode="int4")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        storage.store_weights(b"\x00" * 64)
    with pytest.raises(ValueError, match="could not be parsed"):
        storage.store_weights(b"\xff\xff\xff\x7fTFL3" + b"\x00" * 8)
