"""Pass bit_planes: the first binary layer on a discretized input as binary layers on its bit planes."""

import numpy as np
import pytest

from edgebnn.deploy.passes import bit_planes, layers
from edgebnn.deploy.rewrite import rewrite
from edgebnn.layers import InputDiscretization

import larq as lq
import tensorflow as tf


def _first_dense_model(rng, *, bits, share_output=False, flatten=False):
    inputs = tf.keras.Input((4, 4, 1) if flatten else (16,))
    x = InputDiscretization(bits)(inputs)
    if flatten:
        x = tf.keras.layers.Flatten()(x)
    z = lq.layers.QuantDense(8, kernel_quantizer="ste_sign", use_bias=False, name="dense_0")(x)
    bn = tf.keras.layers.BatchNormalization(name="bn_0")
    outputs = [bn(z), z] if share_output else bn(z)
    model = tf.keras.Model(inputs, outputs)
    bn.set_weights([rng.uniform(0.5, 2, 8), rng.normal(0, 1, 8), rng.normal(0, 3, 8), rng.uniform(1, 9, 8)])
    return model


@pytest.mark.parametrize("bits", [1, 3])
def test_first_dense_on_planes_with_batch_norm_folded(bits, rng):
    model = _first_dense_model(rng, bits=bits)
    rewritten = rewrite(model, passes=["bit_planes", "dense_to_conv"])
    kinds = {type(layer) for layer in rewritten.layers}
    assert layers.BitPlanes in kinds and InputDiscretization not in kinds
    assert {"bn_0_scale", "bn_0_bias", "bn_0_merge_planes"} <= {layer.name for layer in rewritten.layers}
    # a dense layer is unpadded: the ones plane is a bias, not a convolved plane
    plane_layer = next(layer for layer in rewritten.layers if isinstance(layer, layers.BitPlanes))
    assert not plane_layer.ones
    x = rng.random((32, 16)).astype(np.float32)
    np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), atol=1e-4)


def test_batch_norm_not_folded_into_a_shared_output(rng):
    model = _first_dense_model(rng, bits=2, share_output=True)
    rewritten = rewrite(model, passes=["bit_planes", "dense_to_conv"])
    assert "bn_0_merge_planes" not in {layer.name for layer in rewritten.layers}
    x = rng.random((16, 16)).astype(np.float32)
    for got, expected in zip(rewritten(x), model(x)):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)


def test_reshape_is_replayed_on_the_planes(rng):
    model = _first_dense_model(rng, bits=2, flatten=True)
    rewritten = rewrite(model, passes=["bit_planes", "dense_to_conv"])
    order = [type(layer) for layer in rewritten.layers]
    assert order.index(layers.BitPlanes) < order.index(tf.keras.layers.Flatten)
    x = rng.random((16, 4, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), atol=1e-4)


def test_planes_value_is_the_discretized_input_where_no_pass_takes_it(rng):
    inputs = tf.keras.Input((6,))
    discretize = InputDiscretization(2)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(discretize(inputs)))
    value = bit_planes.Planes(tf.keras.Input((6,)), 2, source=discretize)
    assert value.coefficients == layers.plane_coefficients(2)
    rewritten = rewrite(model)
    assert any(isinstance(layer, InputDiscretization) for layer in rewritten.layers)
    x = rng.random((8, 6)).astype(np.float32)
    np.testing.assert_array_equal(rewritten(x).numpy(), model(x).numpy())
