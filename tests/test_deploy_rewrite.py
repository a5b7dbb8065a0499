"""Graph rewrites are numerically equivalent to the original Keras model (Keras vs Keras)."""

import numpy as np
import pytest

from edgebnn.deploy import rewrite as rw
from edgebnn.deploy.passes import packed_planes, sign_threshold
from edgebnn.deploy.passes.quant import is_sign
from edgebnn.layers import InputDiscretization
from edgebnn.testing import randomize_batch_norm
from edgebnn.zoo.panda_fcn import build_fcn

import larq as lq
import tensorflow as tf

#: BatchNorm statistics as after training, the distributions this file's tolerances were set on.
BATCH_NORM_STATS = dict(mean_std=5.0, beta_std=0.5)


def _randomize_batch_norm(model, seed=0):
    return randomize_batch_norm(model, seed=seed, **BATCH_NORM_STATS)



def _inputs(rng, n=64, shape=(28, 28, 1)):
    return rng.random((n, *shape)).astype(np.float32)


def _assert_equivalent(original, rewritten, x, atol=1e-4):
    expected = original.predict(x, verbose=0)
    got = rewritten.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, atol=atol, rtol=1e-5)
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("input_bits", [None, 1, 2, 3])
def test_fcn_rewrite_equivalent_and_all_binary(input_bits, rng):
    model = _randomize_batch_norm(build_fcn(hidden_units=64, hidden_layers=2, precision="binary",
                                            input_bits=input_bits))
    before = [w.copy() for w in model.get_weights()]
    rewritten = rw.rewrite(model)
    _assert_equivalent(model, rewritten, _inputs(rng))
    # every binary dense layer became a 1x1 QuantConv2D; a first layer on real-valued
    # pixels (no discretization) is not binary and stays a dense layer
    float_first = 1 if input_bits is None else 0
    assert sum(isinstance(layer, lq.layers.QuantDense) for layer in rewritten.layers) == float_first
    assert sum(isinstance(layer, lq.layers.QuantConv2D) for layer in rewritten.layers) == 3 - float_first
    if input_bits is not None:
        first = rewritten.get_layer("dense_0")
        assert is_sign(first.input_quantizer)  # bit planes are +-1 inputs of a binary layer
        assert not any(isinstance(layer, InputDiscretization) for layer in rewritten.layers)
    # the original is untouched
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert rewritten is not model


def _conv_model(padding, input_bits=2, kernel_quantizer="ste_sign", first_bn=True):
    inputs = tf.keras.Input((12, 12, 1))
    x = InputDiscretization(input_bits)(inputs)
    x = lq.layers.QuantConv2D(8, 3, padding=padding, kernel_quantizer=kernel_quantizer, use_bias=False,
                              name="conv_0")(x)
    if first_bn:
        x = tf.keras.layers.BatchNormalization(scale=False)(x)
    x = lq.layers.QuantConv2D(8, 3, padding=padding, input_quantizer="ste_sign", kernel_quantizer=kernel_quantizer,
                              use_bias=False, name="conv_1")(x)
    x = tf.keras.layers.BatchNormalization(scale=False)(x)
    x = tf.keras.layers.MaxPool2D()(x)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(10, input_quantizer="ste_sign", kernel_quantizer=kernel_quantizer, use_bias=False)(x)
    return _randomize_batch_norm(tf.keras.Model(inputs, tf.keras.layers.BatchNormalization(scale=False)(x)))


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("first_bn", [True, False])
def test_conv_first_layer_bit_planes_equivalent(padding, first_bn, rng):
    model = _conv_model(padding, first_bn=first_bn)
    rewritten = rw.rewrite(model)
    assert any(isinstance(layer, rw.PackedPlanes) for layer in rewritten.layers)
    assert is_sign(rewritten.get_layer("conv_0").input_quantizer)
    _assert_equivalent(model, rewritten, _inputs(rng, shape=(12, 12, 1)))


def _first_conv_model(shape, filters, kernel, strides, padding, bits, kernel_quantizer="ste_sign"):
    inputs = tf.keras.Input(shape)
    x = InputDiscretization(bits)(inputs)
    x = lq.layers.QuantConv2D(filters, kernel, strides=strides, padding=padding, kernel_quantizer=kernel_quantizer,
                              kernel_constraint="weight_clip", use_bias=False, name="conv_0")(x)
    x = tf.keras.layers.BatchNormalization(scale=False)(x)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(10, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)(x)
    return _randomize_batch_norm(tf.keras.Model(inputs, x))


def _pre_activation(model, x):
    """The input of the model's first BatchNorm: the first layer's output."""
    bn = next(layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization))
    return tf.keras.Model(model.inputs, bn.input).predict(x, verbose=0)


@pytest.mark.parametrize(
    ("shape", "kernel", "strides", "padding", "bits", "block"),
    [
        ((28, 28, 1), 8, 2, "same", 2, 2),  # Galloway's first layer: space-to-depth
        ((13, 13, 1), 4, 2, "same", 2, 2),  # odd size: extra -1 row before space-to-depth
        ((13, 13, 1), 4, 2, "valid", 1, 2),  # extra row cropped off the output
        ((12, 12, 3), 3, 1, "same", 3, 1),  # CIFAR-like: 3 channels, 15 planes each
        ((11, 11, 2), 3, 2, "valid", 2, 1),  # stride does not divide the kernel: no space-to-depth
    ],
)
def test_packed_planes_first_conv_exact(shape, kernel, strides, padding, bits, block, rng):
    """The channel-packed bit-plane convolution equals the original pre-activation bit for bit."""
    model = _first_conv_model(shape, 6, kernel, strides, padding, bits)
    rewritten = rw.rewrite(model)
    conv = rewritten.get_layer("conv_0")
    assert is_sign(conv.input_quantizer) and is_sign(conv.kernel_quantizer)
    assert conv.padding == "valid" and conv.input_spec.axes[-1] == shape[-1] * rw.packed_plane_count(bits) * block**2
    assert any(isinstance(layer, rw.SpaceToDepth) for layer in rewritten.layers) == (block > 1)
    x = _inputs(rng, n=16, shape=shape)
    x[0, :2] = 0.0  # exact level boundaries and extremes
    x[1, :2] = 1.0
    x[2] = np.round(x[2] * 2**bits) / 2**bits
    np.testing.assert_array_equal(_pre_activation(rewritten, x), _pre_activation(model, x))
    _assert_equivalent(model, rewritten, x)


def test_packed_planes_xnor_first_conv(rng):
    model = _first_conv_model((14, 14, 1), 4, 4, 2, "same", 2, kernel_quantizer="magnitude_aware_sign")
    rewritten = rw.rewrite(model)
    assert any(isinstance(layer, rw.PackedPlanes) for layer in rewritten.layers)
    _assert_equivalent(model, rewritten, _inputs(rng, n=16, shape=(14, 14, 1)), atol=1e-4)


def test_auto_packs_only_where_smaller():
    """'auto' keeps a stride-1 1-channel float-sized layer, packs Galloway's 8x8/2 layer (16 -> 4 words/output)."""
    plain = _first_conv_model((12, 12, 1), 4, 3, 1, "same", 2)
    assert not any(isinstance(layer, rw.PackedPlanes) for layer in rw.rewrite(plain, planes="auto").layers)
    strided = _first_conv_model((28, 28, 1), 4, 8, 2, "same", 2)
    assert any(isinstance(layer, rw.PackedPlanes) for layer in rw.rewrite(strided, planes="auto").layers)
    assert packed_planes.packed_layout(strided.get_layer("conv_0"), 2) == (2, 16, 64)


@pytest.mark.parametrize("bits", range(1, 9))
def test_packed_planes_sum_to_discretized_input(bits, rng):
    """c + a * sum(sign(planes)) is the discretized input; -1 padding stands for 0."""
    boundaries = np.arange(25 * 2).reshape(1, 5, 5, 2) % 2**bits / 2**bits  # exactly q / n
    x = np.concatenate([_inputs(rng, n=4, shape=(5, 5, 2)), np.zeros((1, 5, 5, 2)), np.ones((1, 5, 5, 2)),
                        boundaries, boundaries - 0.5, boundaries + 0.5]).astype(np.float32)
    planes = np.where(rw.PackedPlanes(bits)(x).numpy() >= 0, 1.0, -1.0)  # ste_sign: sign(0) = +1
    count = rw.packed_plane_count(bits)
    assert planes.shape[-1] == 2 * count and set(np.unique(planes)) <= {-1.0, 1.0}
    a, c = rw.packed_plane_coefficients(bits)
    per_channel = planes.reshape(*x.shape, count).sum(-1)
    np.testing.assert_array_equal(c + a * per_channel, InputDiscretization(bits)(x).numpy())
    assert c + a * -count == 0.0


def test_bit_planes_reconstruct_discretized_input(rng):
    """sum_j c_j * plane_j is exactly the discretized input, for every bit width."""
    x = _inputs(rng, n=8, shape=(5, 5, 1))
    for bits in range(1, 9):
        planes = rw.BitPlanes(bits)(x).numpy().reshape(bits + 1, *x.shape)
        merged = sum(c * p for c, p in zip(rw.plane_coefficients(bits), planes))
        np.testing.assert_array_equal(merged, InputDiscretization(bits)(x).numpy())
        assert set(np.unique(planes)) <= {-1.0, 1.0}


def test_xnor_scales_folded(rng):
    model = _conv_model("same", kernel_quantizer="magnitude_aware_sign")
    rewritten = rw.rewrite(model)
    quantizers = [layer.kernel_quantizer for layer in rewritten.layers if hasattr(layer, "kernel_quantizer")]
    assert quantizers and all(is_sign(q) for q in quantizers)
    # the first layer's scale goes into its bit-plane scale
    assert sum(layer.name.endswith("_xnor_scale") for layer in rewritten.layers) == 2
    assert sum(layer.name.endswith("_plane_scale") for layer in rewritten.layers) == 1
    _assert_equivalent(model, rewritten, _inputs(rng, shape=(12, 12, 1)), atol=1e-3)


def test_options_switch_rewrites_off(rng):
    model = build_fcn(hidden_units=32, hidden_layers=1, precision="binary", input_bits=2)
    plain = rw.rewrite(model, passes=["xnor_fold"])
    assert sum(isinstance(layer, lq.layers.QuantDense) for layer in plain.layers) == 2
    assert any(isinstance(layer, InputDiscretization) for layer in plain.layers)
    _assert_equivalent(model, plain, _inputs(rng, n=16))


def test_rewrite_rejects_bad_model():
    class Sub(tf.keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="model"):
        rw.rewrite("not a model")
    with pytest.raises(TypeError, match="functional"):
        rw.rewrite(Sub())


def test_zoo_xnor_resnet20_rewrite_equivalent(rng):
    from edgebnn import zoo

    model = _randomize_batch_norm(zoo.get("panda_resnet20_cifar100")(precision="xnor"))
    rewritten = rw.rewrite(model)
    assert sum(layer.name.endswith("_xnor_scale") for layer in rewritten.layers) == 18
    _assert_equivalent(model, rewritten, _inputs(rng, n=8, shape=(32, 32, 3)), atol=1e-3)


def _batch_norm(gamma, beta, mean, variance, scale=True):
    bn = tf.keras.layers.BatchNormalization(scale=scale, epsilon=1e-3)
    bn.build((None, len(mean)))
    bn.set_weights([w for w in (gamma if scale else None, beta, mean, variance) if w is not None])
    return bn


def test_sign_threshold_matches_relu_batch_norm_sign(rng):
    """sign(scale * z + bias) == sign(BN(relu(z))) for gamma >, <, = 0 and thresholds either side of 0."""
    n = 64
    gamma = rng.normal(0, 1, n).astype(np.float32)
    gamma[:4] = 0.0
    beta, mean = rng.normal(0, 2, n).astype(np.float32), rng.normal(0, 3, n).astype(np.float32)
    variance = rng.uniform(0.1, 9, n).astype(np.float32)
    bn = _batch_norm(gamma, beta, mean, variance)
    scale, bias = sign_threshold.sign_threshold(bn)
    z = rng.normal(0, 6, (500, n)).astype(np.float32)
    z[:20] = np.round(z[:20])  # integers, as a binary convolution's output
    z[20] = 0.0
    larq_sign = lambda v: np.where(v >= 0, 1.0, -1.0)  # noqa: E731  (ste_sign: sign(0) = +1)
    expected = larq_sign(bn(np.maximum(z, 0.0), training=False).numpy())
    np.testing.assert_array_equal(larq_sign(scale * z + bias), expected)
    assert set(np.unique(scale)) <= {-1.0, 0.0, 1.0}


def test_sign_threshold_chains_rewritten(rng):
    """Galloway B: relu_0 -> bn_1 -> conv_1 and relu_1 -> bn_2 -> conv_2 fold; relu_2 -> flatten does not."""
    from edgebnn import zoo

    model = _randomize_batch_norm(zoo.get("galloway_cnn")(precision="B", input_bits=2, binary_first=True))
    assert sign_threshold.sign_threshold_chains(model) == {"relu_0", "bn_1", "relu_1", "bn_2"}
    rewritten = rw.for_target(model, "lce")
    names = {layer.name for layer in rewritten.layers}
    assert {"bn_1_sign_scale", "bn_2_sign_bias", "relu_2"} <= names and not {"relu_0", "bn_1", "bn_2"} & names
    _assert_equivalent(model, rewritten, _inputs(rng, n=64), atol=1e-4)
    # off by default
    assert not any(name.endswith("_sign_scale") for name in (layer.name for layer in rw.rewrite(model).layers))
    # in C a learned scale sits between relu_1 and bn_2
    assert sign_threshold.sign_threshold_chains(zoo.get("galloway_cnn")(precision="C")) == {"relu_0", "bn_1"}
