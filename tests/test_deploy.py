"""Conversion targets, conversion report, refusal of random models, and verification vs Keras."""

import numpy as np
import pytest

from conftest import ours_and_lces_conversion
from edgebnn.deploy import convert as cv
from edgebnn.deploy import device, report
from edgebnn.deploy.verify import compare, tflite_predict, verify
from edgebnn.training import train

import larq as lq
import tensorflow as tf


@pytest.fixture(scope="module")
def lce_fb(fcn_in2_flatbuffer):
    return fcn_in2_flatbuffer(target="lce")


@pytest.fixture(scope="module")
def float_bytes(fcn_in2):
    """Size of the plain float TFLite model of the shared FCN."""
    return len(cv.float_reference(fcn_in2))


@pytest.fixture(scope="module")
def portable_fb(fcn_in2_flatbuffer):
    """The shared FCN converted for the portable target, per weight storage."""
    return {weights: fcn_in2_flatbuffer(target="portable", weights=weights)
            for weights in ("float32", "exact", "float16")}


def test_lce_target_writes_the_flatbuffer_of_lces_own_keras_conversion(fcn_in2, monkeypatch):
    """The LCE target saves the model without per-layer traces before LCE converts it: the same bytes as
    LCE's ``convert_keras_model``, which saves them (the rewritten binary FCN with uint8 input here; the
    zoo's models in tests/test_zoo.py::test_lce_target_equals_lces_own_conversion, slow)."""
    ours, lces = ours_and_lces_conversion(fcn_in2, monkeypatch, input_dtype="uint8")
    assert ours == lces


def test_lce_rewrites_make_every_layer_binary(fcn_in2, lce_fb, float_bytes):
    as_is = cv.convert(fcn_in2, target="lce", rewrites=False, weights="float32")  # LCE alone
    assert report.layer_ops(lce_fb) == {"binary": 3, "int8": 0, "float": 0}
    assert report.op_histogram(lce_fb)["LceBconv2d"] == 3
    # LCE alone keeps binary dense layers as float FULLY_CONNECTED
    assert report.layer_ops(as_is)["float"] == 3 and report.layer_ops(as_is)["binary"] == 0
    row = report.conversion_report(lce_fb, float_bytes=float_bytes, name="fcn", target="lce")
    assert row["bytes"] == len(lce_fb) and row["float_bytes"] == float_bytes
    # 54,912 weights (784-64-64-10): float32 in the reference, one bit each here, plus BatchNorm
    # thresholds and the graph
    assert row["ratio"] > 10 and row["weight_storage"]["1-bit"] == 3
    assert len(lce_fb) * 10 < len(as_is)
    assert "| fcn | lce |" in report.markdown_table([row])


def test_lce_matches_keras_and_kernel_paths_agree(fcn_in2, lce_fb, fashion_small):
    _, _, xt, yt = fashion_small
    x_adv = np.clip(xt + np.random.default_rng(0).choice([-0.1, 0.1], xt.shape), 0, 1).astype(np.float32)
    result = verify(lce_fb, keras_model=fcn_in2, x=xt, y=yt, x_adv=x_adv, kernel_check=64)
    for part in ("clean", "adversarial"):
        assert set(result[part]) == {"n", "accuracy_keras", "accuracy_tflite", "agreement", "max_abs_prob_diff"}
        assert result[part]["agreement"] == 1.0
        assert result[part]["max_abs_prob_diff"] < 1e-4
    assert result["clean"]["accuracy_keras"] > 0.5
    for path in ("default", "indirect_bgemm"):
        assert result["kernels"][path]["agreement_with_reference"] == 1.0
        assert result["kernels"][path]["max_abs_diff_vs_reference"] < 1e-4


def test_adversarial_set_with_its_own_labels(fcn_in2, lce_fb, fashion_small):
    """Several adversarial sets per clean set (one per attack and eps) carry their own labels."""
    _, _, xt, yt = fashion_small
    x_adv = np.concatenate([xt, 1.0 - xt[:50]])
    y_adv = np.concatenate([yt, yt[:50]])
    result = verify(lce_fb, keras_model=fcn_in2, x=xt, y=yt, x_adv=x_adv, y_adv=y_adv, kernel_check=0)
    expected = np.mean(fcn_in2.predict(x_adv, verbose=0).argmax(-1) == y_adv)
    assert result["adversarial"]["n"] == len(x_adv)
    assert result["adversarial"]["accuracy_keras"] == pytest.approx(expected)
    assert "kernels" not in result  # kernel_check=0 skips the cross-check


@pytest.mark.parametrize("weights", ["float32", "exact", "float16"])
def test_portable_is_builtin_only_and_runs_on_stock_tflite(fcn_in2, fashion_small, portable_fb, float_bytes, weights):
    _, _, xt, yt = fashion_small
    fb = portable_fb[weights]
    ops = report.op_histogram(fb)
    assert not device.uses_lce_ops(fb) and not any(name.startswith("Lce") for name in ops)
    result = compare(fcn_in2, fb, xt, yt, runtime="tensorflow")
    assert report.layer_ops(fb)["float"] == 3  # float32 arithmetic in every case
    if weights == "float32":
        assert result["agreement"] == 1.0 and result["max_abs_prob_diff"] < 1e-4
        assert report.weight_storage(fb)["float32"] == 3
        return
    # every weight of a binary FCN (BatchNorm folded into +-1 columns included) is exactly int8
    assert report.weight_storage(fb) == {"1-bit": 0, "int8": 3, "float16": 0, "float32": 0}
    np.testing.assert_array_equal(tflite_predict(fb, xt), tflite_predict(portable_fb["float32"], xt))
    assert len(fb) < 0.3 * float_bytes


def test_strip_drops_names_not_function(fcn_in2, lce_fb, fashion_small):
    _, _, xt, _ = fashion_small
    stripped = cv.convert(fcn_in2, target="lce", strip=True)
    assert len(stripped) < len(lce_fb)
    assert b"dense_0" in lce_fb and b"dense_0" not in stripped
    np.testing.assert_array_equal(tflite_predict(stripped, xt), tflite_predict(lce_fb, xt))


@pytest.mark.parametrize("target", ["lce", "portable"])
def test_uint8_input_takes_raw_pixels(fcn_in2, fcn_in2_flatbuffer, fashion_small, target):
    _, _, xt, _ = fashion_small
    fb = fcn_in2_flatbuffer(target=target, input_dtype="uint8")
    runner = device.load_interpreter(fb, runtime="lce")
    assert runner.input_dtype == np.uint8
    pixels = np.round(xt * 255).astype(np.uint8)
    got = runner.predict(pixels[:100])
    expected = fcn_in2.predict(pixels[:100].astype(np.float32) / 255.0, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # tflite_predict rounds [0, 1] floats to the pixel grid for a uint8 model
    np.testing.assert_allclose(tflite_predict(fb, xt[:20]), expected[:20], atol=1e-4)


class StochasticSign(lq.quantizers.SteSign):
    """Stand-in for a stochastic binarizer (the real ones live in edgebnn.quantizers)."""

    random_at_inference = True


def test_refuses_models_that_sample_at_inference():
    inputs = tf.keras.Input((8,))
    out = lq.layers.QuantDense(4, input_quantizer=StochasticSign(), kernel_quantizer="ste_sign")(inputs)
    with pytest.raises(cv.NotDeployableError, match="stochastic"):
        cv.convert(tf.keras.Model(inputs, out))
    x = tf.keras.layers.Dense(8)(inputs)
    x = tf.keras.layers.Dropout(0.5)(x, training=True)  # Monte-Carlo dropout
    with pytest.raises(cv.NotDeployableError, match="training=True"):
        cv.convert(tf.keras.Model(inputs, tf.keras.layers.Dense(2)(x)), target="portable")
    # plain dropout is the identity at inference: deterministic, converts
    y = tf.keras.layers.Dropout(0.5)(tf.keras.layers.Dense(8)(inputs))
    assert cv.random_inference_layers(tf.keras.Model(inputs, tf.keras.layers.Dense(2)(y))) == []


def test_convert_validates_arguments(fcn_in2):
    with pytest.raises(ValueError, match="`target` must be one of"):
        cv.convert(fcn_in2, target="tpu")
    with pytest.raises(ValueError, match="`input_dtype` must be one of"):
        cv.convert(fcn_in2, input_dtype="int8")
    with pytest.raises(ValueError, match="`weights` must be one of"):
        cv.convert(fcn_in2, target="portable", weights="int4")
    with pytest.raises(TypeError, match="strip"):
        cv.convert(fcn_in2, strip="yes")
    with pytest.raises(TypeError, match="`model` must be a tf.keras.Model"):
        cv.convert("model.h5")


def test_refuses_zoo_stochastic_and_mc_dropout_models():
    from edgebnn import zoo
    from edgebnn.layers import MCDropout

    with pytest.raises(cv.NotDeployableError, match="StochasticSign"):
        cv.convert(zoo.get("galloway_cnn")(precision="S"))
    inputs = tf.keras.Input((8,))
    for always_on, refused in ((True, True), (False, False)):
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(MCDropout(0.5, always_on=always_on)(inputs)))
        assert bool(cv.random_inference_layers(model)) is refused


def test_galloway_binary_first_layer_deploys_binary_end_to_end(fashion_small):
    """Galloway B with a binary 8x8/2 first layer on 2-bit input: the whole conv stack is LceBconv2d.

    With a 7-bit classifier, its weights are stored as int8, bit-exactly.
    The first layer goes through channel-packed bit planes and space-to-depth, so its
    binary kernel is one 32-bit word per tap (4x4 taps x 64 outputs), not the float 8x8.
    """
    from edgebnn import zoo

    x, y, xt, yt = fashion_small
    # Seeded: an initialization that trains to chance leaves BatchNorm outputs within
    # float rounding of 0, where Keras and LCE may round the sign differently.
    tf.keras.utils.set_random_seed(0)
    model = zoo.get("galloway_cnn")(precision="B", kernels=64, input_bits=2, binary_first=True, classifier_bits=7)
    train(model, x, y, epochs=4, batch_size=32, learning_rate=3e-3, verbose=0)
    fb = cv.convert(model, target="lce", input_dtype="uint8")
    assert report.layer_ops(fb) == {"binary": 3, "int8": 0, "float": 1}  # the classifier computes in float
    # ... with its 7-bit weights stored exactly as int8
    assert report.weight_storage(fb) == {"1-bit": 3, "int8": 1, "float16": 0, "float32": 0}
    as_is = cv.convert(model, target="lce", rewrites=False, weights="float32")  # LCE alone
    assert report.layer_ops(as_is) == {"binary": 2, "int8": 0, "float": 2}
    assert len(as_is) - len(fb) > 7_000  # 8x8x64 float32 weights (16 KB) -> 4x4x64 words (4 KB), less plane ops
    result = compare(model, fb, xt, yt, runtime="lce")
    # pixels on the 2-bit level boundaries (x = q / 4, where a thermometer plane is 0) and clipped extremes
    edges = np.stack([np.full((28, 28, 1), v, np.float32) for v in (0.0, 0.25, 0.5, 0.75, 1.0)])
    edges = np.concatenate([edges, np.where(xt[:20] > 0.5, 0.5, 0.25)])
    np.testing.assert_allclose(tflite_predict(cv.convert(model, target="lce"), edges),
                               model.predict(edges, verbose=0), atol=1e-3)
    assert result["accuracy_keras"] > 0.3  # trained well above chance (0.1): realistic BatchNorm
    assert result["agreement"] == 1.0 and result["max_abs_prob_diff"] < 1e-4
