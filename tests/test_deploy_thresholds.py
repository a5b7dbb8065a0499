"""Sign thresholds for SIGN -> FULLY_CONNECTED -> SIGN layers (vs exact arithmetic, float32 sums and the model)."""

import fractions

import numpy as np
import pytest

from edgebnn.deploy import convert as cv
from edgebnn.deploy import packing, thresholds
from edgebnn.deploy.verify import model_input

import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema


def _exact_sign(g, b, z):
    v = fractions.Fraction(float(g)) * z + fractions.Fraction(float(b))
    return (v > 0) - (v < 0)


@pytest.mark.parametrize("n", [1, 7, 64, 600])
def test_threshold_bias_gives_the_exact_sign_for_every_integer_sum(rng, n):
    g = rng.uniform(1e-3, 3.0, 200).astype(np.float32)
    b = (g * rng.uniform(-1.2 * n, 1.2 * n, 200)).astype(np.float32)
    kept = 0
    for gc, bc in zip(g, b):
        beta = thresholds.threshold_bias(n, gc, bc)
        if beta is None:
            kept += 1
            continue
        assert beta.dtype == np.float32 and float(beta) % 1 == 0.5
        z = np.arange(-n, n + 1)
        new = np.sign(z.astype(np.float32) + beta)  # exact: integers plus one half-integer
        assert np.all(new != 0)
        assert new.tolist() == [_exact_sign(gc, bc, int(k)) for k in z]
    assert kept < 200 * (0.1 if n == 600 else 0.02)  # only channels with a threshold within the rounding bound


def test_threshold_bias_refuses_thresholds_within_the_rounding_bound():
    n, g = 600, np.float32(0.01875)
    on_integer = np.float32(-7 * g)  # tau = 7 exactly: g z + b = 0 at z = 7
    assert thresholds.threshold_bias(n, g, on_integer) is None
    bound = float(thresholds.rounding_bound(n, g, on_integer)) / float(g)
    assert 0.02 < bound < 0.03  # gamma_600 * (600 + 7)
    near = np.float32(-(7 + bound / 2) * g)
    assert thresholds.threshold_bias(n, g, near) is None
    far = np.float32(-(7 + 3 * bound) * g)
    assert thresholds.threshold_bias(n, g, far) == np.float32(-7.5)
    assert thresholds.threshold_bias(n, np.float32(0.0), np.float32(1.0)) is None
    # thresholds outside [-n, n]: a constant channel
    assert thresholds.threshold_bias(n, g, np.float32(1000 * g)) == np.float32(n + 0.5)
    assert thresholds.threshold_bias(n, g, np.float32(-1000 * g)) == np.float32(-(n + 0.5))


def test_float32_sums_in_any_order_agree_with_the_threshold(rng):
    """The proof's premise, sampled: float32 sums of +-g terms and b, in random orders, vs ``z + beta``."""
    n = 600
    checked = 0
    for _ in range(40):
        g = np.float32(rng.uniform(0.01, 0.05))
        z0 = int(rng.integers(-40, 40)) * 2
        b = np.float32(-(z0 + rng.uniform(0.03, 1.97)) * g)  # threshold between two even sums
        beta = thresholds.threshold_bias(n, g, b)
        if beta is None:
            continue
        for _ in range(20):
            k = (n + z0 + 2 * int(rng.integers(-2, 3))) // 2  # sums near the threshold
            terms = np.array([g] * k + [-g] * (n - k) + [b], np.float32)[rng.permutation(n + 1)]
            acc = np.float32(0)
            for t in terms:
                acc = np.float32(acc + t)
            z = 2 * k - n
            assert np.sign(acc) == np.sign(np.float32(z) + beta) != 0
            checked += 1
    assert checked >= 200


def _builtin(flatbuffer, x, *, xnnpack=False):
    resolver = tf.lite.experimental.OpResolverType
    interpreter = tf.lite.Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=resolver.AUTO if xnnpack else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for example in model_input(x, inp["dtype"]):
        interpreter.set_tensor(inp["index"], example[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(outputs)


def test_rewrites_the_hidden_binary_layer_and_keeps_every_output(fcn_in2_flatbuffer, fashion_small):
    _, _, xt, _ = fashion_small
    f32 = fcn_in2_flatbuffer(target="portable", input_dtype="uint8", weights="float32")
    rewritten, summary = thresholds.sign_thresholds_with_summary(f32)
    # pixels -> 64 (input not from SIGN), 64 -> 64 (rewritten), 64 -> 10 (logits, not followed by SIGN)
    assert [(s.shape, s.channels + s.kept) for s in summary] == [((64, 64), 64)]
    assert summary[0].channels >= 60
    model = schema.ModelT.InitFromPackedBuf(bytearray(rewritten), 0)
    sg = model.subgraphs[0]
    fc = [op for op in sg.operators if model.operatorCodes[op.opcodeIndex].builtinCode
          == schema.BuiltinOperator.FULLY_CONNECTED][1]
    w = np.frombuffer(bytes(model.buffers[sg.tensors[fc.inputs[1]].buffer].data), np.float32).reshape(64, 64)
    b = np.frombuffer(bytes(model.buffers[sg.tensors[fc.inputs[2]].buffer].data), np.float32)
    ones = np.all(np.abs(w) == 1.0, axis=1)
    assert ones.sum() == summary[0].channels and np.all(b[ones] % 1 == 0.5)
    for xnnpack in (False, True):
        np.testing.assert_array_equal(_builtin(rewritten, xt, xnnpack=xnnpack), _builtin(f32, xt, xnnpack=xnnpack))
    # +-1 rows leave few distinct magnitudes: the packed layer stores a small value table and a row index
    before = {p.shape: p.bytes_after for p in packing.pack_weights_with_summary(f32)[1]}
    after = {p.shape: p.bytes_after for p in packing.pack_weights_with_summary(rewritten)[1]}
    distinct = np.unique(np.abs(w[:, 0])).size
    assert before[(64, 64)] == 2 * -(-64 * 64 // packing.WORD_BITS) + 8 * 64
    values = 8 if distinct == 1 else 8 * distinct + 2 * 64  # one (-1, +1) pair, or a table and row indices
    assert after[(64, 64)] == 2 * -(-64 * 64 // packing.WORD_BITS) + values < before[(64, 64)]
    packed = fcn_in2_flatbuffer(target="portable", input_dtype="uint8", weights="packed")
    np.testing.assert_array_equal(_builtin(packed, xt), _builtin(f32, xt))


def test_nothing_to_rewrite_and_bad_input():
    inputs = tf.keras.Input((12,))
    plain = cv.convert(tf.keras.Model(inputs, tf.keras.layers.Dense(70)(inputs)), target="portable",
                       weights="float32")
    assert thresholds.sign_thresholds_with_summary(plain) == (plain, [])
    with pytest.raises(TypeError, match="`tflite` must be flatbuffer bytes"):
        thresholds.sign_thresholds("model.tflite")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        thresholds.sign_thresholds(b"\x00" * 64)
