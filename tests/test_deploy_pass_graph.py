"""The graph walker: an identity rewrite rebuilds any functional model with the same function."""

import numpy as np

from edgebnn.deploy.passes import graph

import tensorflow as tf


def _copy_every_layer(layer, value, *, single_use):
    return graph.Plain(graph.call_copy(layer, value.plain()))


def test_identity_walk_rebuilds_multi_input_layers_and_nested_outputs(rng):
    a, b = tf.keras.Input((6,), name="a"), tf.keras.Input((6,), name="b")
    left, right = tf.keras.layers.Dense(5, name="left")(a), tf.keras.layers.Dense(5, name="right")(b)
    added = tf.keras.layers.Add()([left, right])  # several inputs: copied onto plain values
    model = tf.keras.Model([a, b], {"sum": tf.keras.layers.Dense(2)(added), "left": left})
    before = [w.copy() for w in model.get_weights()]
    walked = graph.walk(model, _copy_every_layer, name="walked")
    assert walked.name == "walked" and walked is not model
    x = [rng.normal(size=(4, 6)).astype(np.float32) for _ in range(2)]
    got, expected = walked(x), model(x)
    assert set(got) == {"sum", "left"}
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())
    for w, v in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w, v)


def test_single_use_tells_the_only_consumer(rng):
    inputs = tf.keras.Input((3,))
    hidden = tf.keras.layers.Dense(3, name="hidden")(inputs)
    model = tf.keras.Model(inputs, [tf.keras.layers.Dense(1, name="one")(hidden), tf.keras.layers.ReLU()(inputs)])
    seen = {}

    def record(layer, value, *, single_use):
        seen[layer.name] = single_use
        return _copy_every_layer(layer, value, single_use=single_use)

    graph.walk(model, record, name="walked")
    assert seen["hidden"] is False and seen["one"] is True  # the input feeds "hidden" and the ReLU
