"""1-bit packed weight storage for the portable target (vs NumPy, the int8-storage model and Keras)."""

import numpy as np
import pytest

from conftest import randomize_batch_norm
from edgebnn import testing, zoo
from edgebnn.deploy import convert as cv
from edgebnn.deploy import packing, report, storage, tflite_edit
from edgebnn.deploy.verify import compare, interpreter, model_input, tflite_predict

import larq as lq
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

#: Ops of the unpacking chain; every one is evaluated at prepare time for constant inputs.
UNPACK_OPS = {"GATHER", "TILE", "CONCATENATION", "RESHAPE", "STRIDED_SLICE"}


def _model(flatbuffer):
    return schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)


def _builtin_kernels(flatbuffer, x):
    """Outputs on stock TFLite's builtin kernels (no default XNNPACK delegate), one example at a time."""
    runner = interpreter(flatbuffer, runtime="tensorflow", kernels="builtin")
    return runner.predict(model_input(x, runner.input_dtype))


def _layer_weights(model):
    """``[(op name, weight tensor)]`` for input 1 of every layer op."""
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    found = []
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            if builtin in storage.WEIGHT_OPS:
                found.append((names[builtin], sg.tensors[op.inputs[1]]))
    return found


def _buffer_bytes(model):
    return [bytes(np.asarray(b.data, np.uint8)) for b in model.buffers if b.data is not None and len(b.data)]


def _float_weights(flatbuffer):
    """The float32 constant weights of a ``weights="float32"`` conversion, by tensor name."""
    model = _model(flatbuffer)
    return {t.name: tflite_edit.buffer_array(model, t) for _, t in _layer_weights(model)
            if t.buffer and model.buffers[t.buffer].data is not None}


@pytest.mark.parametrize(("shape", "zero"), [((7,), False), ((15,), True), ((16,), False), ((3, 5, 5, 2), False),
                                             ((600, 784), False), ((4, 30), True)])
def test_pack_signs_round_trips_every_bit_including_negative_zero(rng, shape, zero):
    g = rng.uniform(0.1, 3.0, shape[0]).astype(np.float32) * (0.0 if zero else 1.0)
    signs = np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)
    w = (signs * g.reshape([-1] + [1] * (len(shape) - 1)) if len(shape) > 1 else signs * g[0]).astype(np.float32)
    found = packing.sign_magnitudes(w, 0)
    assert found is not None
    magnitudes, per_channel = found
    words = packing.pack_signs(w)
    assert words.dtype == np.int16 and words.size == -(-w.size // packing.WORD_BITS) and words.min() >= 0
    rebuilt = packing.unpack_signs(words, w.shape, magnitudes)
    assert np.array_equal(rebuilt.view(np.int32), w.view(np.int32))  # -0.0 stays -0.0
    # per-channel magnitudes exactly when the channels differ
    assert per_channel == (len(shape) > 1 and not zero)


def test_sign_magnitudes_refuses_what_is_not_plus_minus_g(rng):
    assert packing.sign_magnitudes(rng.normal(size=(8, 9)).astype(np.float32), 0) is None
    two_levels = np.array([[1, -1, 2]] * 4, np.float32)
    assert packing.sign_magnitudes(two_levels, 0) is None
    per_channel_last_axis = np.array([[1, -2], [-1, 2]] * 4, np.float32)  # channels on axis 1
    assert packing.sign_magnitudes(per_channel_last_axis, 1) is None
    assert packing.sign_magnitudes(np.array([[np.inf, -np.inf]] * 4, np.float32), 0) is None
    g, per_channel = packing.sign_magnitudes(np.array([[0.5, -0.5]] * 4, np.float32), 0)
    assert g.tolist() == [0.5] and not per_channel


def _mixed_model():
    """A float first layer and a binary conv/dense, an XNOR conv and a float classifier."""
    inputs = tf.keras.Input((12, 12, 1))
    x = tf.keras.layers.Conv2D(8, 3, use_bias=False, name="float_conv")(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(16, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False,
                              padding="same", name="binary_conv")(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(16, 3, input_quantizer="ste_sign", kernel_quantizer="magnitude_aware_sign",
                              use_bias=False, name="xnor_conv")(x)
    x = tf.keras.layers.MaxPool2D()(x)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(33, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False,
                             name="binary_dense")(x)  # 33 x 256: not a multiple of 15 weights
    x = tf.keras.layers.BatchNormalization()(x)
    outputs = tf.keras.layers.Dense(10, name="float_classifier")(tf.keras.layers.Activation("relu")(x))
    model = tf.keras.Model(inputs, outputs)
    for layer in model.layers:
        if isinstance(layer, lq.layers.QuantConv2D) and layer.name == "xnor_conv":
            layer.kernel.assign(tf.random.stateless_normal(layer.kernel.shape, seed=(1, 2)))
    return randomize_batch_norm(model, seed=0)  # deployment statistics (conftest.DEPLOY_BATCH_NORM)


@pytest.fixture(scope="module")
def mixed():
    """:func:`_mixed_model` converted for the portable target with float32, exact and packed weights."""
    model = _mixed_model()
    return {weights: cv.convert(model, target="portable", weights=weights) for weights in ("float32", "exact", "packed")}


def test_packed_stores_binary_kernels_as_bits_only_and_computes_the_same_numbers(mixed):
    f32, exact, packed = mixed["float32"], mixed["exact"], mixed["packed"]
    floats = _float_weights(f32)
    binary = {name: w for name, w in floats.items() if packing.sign_magnitudes(w, 0) is not None}
    assert len(binary) == 3 and len(floats) == 5  # binary conv, XNOR conv, folded binary dense; two float layers
    m = _model(packed)
    buffers = _buffer_bytes(m)
    for name, w in binary.items():
        # no float32, float16 or int8 copy of a binary kernel anywhere in the file
        copies = {w.tobytes(), w.astype(np.float16).tobytes(), np.sign(w).astype(np.int8).tobytes(),
                  storage.exact_int8(w, 0)[0].tobytes()}
        assert not any(c in buf for c in copies for buf in buffers), name
        assert any(packing.pack_signs(w).tobytes() == buf for buf in buffers), name
    # layer weights of the binary layers come out of the unpacking GATHER, the float ones as before
    weights = {t.name: t for _, t in _layer_weights(m)}
    for name in binary:
        assert weights[name].buffer == 0 or not m.buffers[weights[name].buffer].data
    assert len(packed) < len(exact)  # small layers: the unpacking graph is a fixed ~10 kB
    # compact serialization: tensors without data share buffer 0, no buffer is left unreferenced
    tensors = m.subgraphs[0].tensors
    assert all(t.buffer == 0 for t in tensors if m.buffers[t.buffer].data is None or not len(m.buffers[t.buffer].data))
    assert set(range(len(m.buffers))) == {0} | {t.buffer for t in tensors} | {e.buffer for e in m.metadata or []}
    assert not any(packing._is_empty_quantization(t.quantization) for t in tensors)
    ops = report.op_histogram(packed)
    assert all(isinstance(op, str) and not op.startswith("Lce") for op in ops)
    assert set(ops) - set(report.op_histogram(exact)) <= UNPACK_OPS
    x = np.random.default_rng(0).random((64, 12, 12, 1)).astype(np.float32)
    np.testing.assert_array_equal(_builtin_kernels(packed, x), _builtin_kernels(exact, x))


def test_every_op_is_a_builtin():
    model = testing.randomize_batch_norm(zoo.get("galloway_cnn")(precision="B", kernels=32, input_bits=2,
                                                                     binary_first=True, classifier_bits=7), seed=0)
    packed = cv.convert(model, target="portable", input_dtype="uint8", weights="packed")
    m = _model(packed)
    for code in m.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        assert builtin != schema.BuiltinOperator.CUSTOM and not code.customCode
    binary = [w for w in _float_weights(cv.convert(model, target="portable", weights="float32")).values()
              if packing.sign_magnitudes(w, 0) is not None]
    assert len(binary) == 3  # binary first layer, two binary convs
    buffers = _buffer_bytes(m)
    for w in binary:
        assert any(packing.pack_signs(w).tobytes() == buf for buf in buffers)
    x = np.random.default_rng(1).random((16, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(
        _builtin_kernels(packed, x),
        _builtin_kernels(cv.convert(model, target="portable", input_dtype="uint8"), x),
    )


def test_weights_are_unpacked_when_tensors_are_allocated(mixed):
    """Stock TFLite evaluates the whole unpacking chain in Prepare: the weights exist before any invoke."""
    f32, packed = mixed["float32"], mixed["packed"]
    allocated = tf.lite.Interpreter(  # allocated, never invoked
        model_content=packed, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    allocated.allocate_tensors()
    details = {d["name"]: d["index"] for d in allocated.get_tensor_details()}
    binary = {n: w for n, w in _float_weights(f32).items() if packing.sign_magnitudes(w, 0) is not None}
    for name, w in binary.items():
        got = allocated.get_tensor(details[name.decode()])
        assert np.array_equal(got.view(np.int32), w.view(np.int32)), name


def test_bit_identical_to_int8_storage_and_agrees_with_keras_on_fashion_mnist(fcn_in2, fcn_in2_flatbuffer,
                                                                             fashion_small):
    _, _, xt, yt = fashion_small
    exact = fcn_in2_flatbuffer(target="portable", input_dtype="uint8")
    packed = fcn_in2_flatbuffer(target="portable", input_dtype="uint8", weights="packed")
    assert len(packed) < len(exact) / 3  # 64 units: the unpacking graph is a larger share
    np.testing.assert_array_equal(_builtin_kernels(packed, xt), _builtin_kernels(exact, xt))
    result = compare(fcn_in2, packed, xt, yt, runtime="tensorflow")  # with the default XNNPACK delegate
    assert result["agreement"] == 1.0 and result["max_abs_prob_diff"] < 1e-4
    # XNNPACK runs the int8 model's dense layers, builtin kernels the packed model's: equal up to float sums
    np.testing.assert_allclose(tflite_predict(packed, xt, runtime="tensorflow"),
                               tflite_predict(exact, xt, runtime="tensorflow"), rtol=0, atol=1e-3)


def test_lce_target_and_bad_values_are_refused(fcn_in2):
    with pytest.raises(ValueError, match="`weights='packed'` needs target 'portable'"):
        cv.convert(fcn_in2, target="lce", weights="packed")
    with pytest.raises(ValueError, match="`weights` must be one of .*'packed'.*got 'bits'"):
        cv.convert(fcn_in2, target="portable", weights="bits")
    with pytest.raises(TypeError, match="`tflite` must be flatbuffer bytes"):
        packing.pack_weights("model.tflite")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        packing.pack_weights(b"\x00" * 64)


def test_nothing_to_pack_leaves_the_flatbuffer_as_it_is():
    inputs = tf.keras.Input((12,))
    float_only = cv.convert(tf.keras.Model(inputs, tf.keras.layers.Dense(70)(inputs)), target="portable",
                            weights="float32")
    assert packing.pack_weights_with_summary(float_only) == (float_only, [])
