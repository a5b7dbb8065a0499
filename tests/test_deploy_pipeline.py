"""The deploy pass pipeline: each registered pass runs alone; a new pass is its code, a registry line, a table position."""

import numpy as np
import pytest

from edgebnn.deploy import convert as cv
from edgebnn.deploy import rewrite as rw
from edgebnn.deploy.passes.graph import Pass, Plain, Rule
from edgebnn.layers import InputDiscretization
from edgebnn.testing import randomize_batch_norm

import larq as lq
import tensorflow as tf

BINARY = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)


def _model():
    """Discretized input, a few-channel binary conv, ReLU -> BatchNorm -> sign, an XNOR conv, binary dense."""
    inputs = tf.keras.Input((8, 8, 1))
    x = InputDiscretization(2)(inputs)
    x = lq.layers.QuantConv2D(4, 4, strides=2, padding="same", kernel_quantizer="ste_sign", use_bias=False,
                              name="conv_0")(x)
    x = tf.keras.layers.ReLU(name="relu_0")(x)
    x = tf.keras.layers.BatchNormalization(name="bn_0")(x)
    x = lq.layers.QuantConv2D(4, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="magnitude_aware_sign",
                              use_bias=False, name="xnor_1")(x)
    x = tf.keras.layers.BatchNormalization(name="bn_1")(x)  # off the ties of a sign at 0 after an XNOR scale
    x = tf.keras.layers.Dropout(0.1, name="dropout")(tf.keras.layers.Flatten()(x))
    x = lq.layers.QuantDense(10, **BINARY, name="dense_2")(x)
    return randomize_batch_norm(tf.keras.Model(inputs, x), seed=0, mean_std=1.0, beta_std=0.5)


#: A layer name each pass introduces on :func:`_model`, when it runs alone.
MARKS = {
    "packed_planes": "conv_0_packed_planes",
    "bit_planes": "bit_planes",
    "sign_threshold": "bn_0_sign_scale",
    "dense_to_conv": "dense_2",
    "xnor_fold": "xnor_1_xnor_scale",
}


def test_every_pass_is_marked():
    assert set(MARKS) == set(rw.PASSES)


@pytest.mark.parametrize("name", sorted(MARKS))
def test_each_pass_runs_alone(name, rng):
    model = _model()
    rewritten = rw.rewrite(model, passes=[name])
    names = [layer.name for layer in rewritten.layers]
    assert any(n.startswith(MARKS[name]) for n in names)
    if name == "dense_to_conv":
        assert isinstance(rewritten.get_layer("dense_2"), lq.layers.QuantConv2D)
    others = [layer for layer in rewritten.layers if isinstance(layer, rw.PackedPlanes)]
    assert bool(others) == (name == "packed_planes")
    x = rng.random((16, 8, 8, 1)).astype(np.float32)
    if rw.PASSES[name].exact:
        np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), atol=1e-4)
    else:  # exact up to rounding ties of the threshold: the signs agree on almost every input
        assert np.mean(rewritten(x).numpy().argmax(-1) == model(x).numpy().argmax(-1)) >= 0.9


def test_no_pass_is_a_copy(rng):
    model = _model()
    copy = rw.rewrite(model, passes=[])
    assert [type(layer) for layer in copy.layers] == [type(layer) for layer in model.layers]
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(copy(x).numpy(), model(x).numpy())


def _drop_dropout(layer, value, ctx):
    """A pass written in the test: inference-time dropout is the identity."""
    return value if isinstance(layer, tf.keras.layers.Dropout) else None


def test_a_new_pass_is_a_registry_line_and_a_table_position(monkeypatch, rng):
    model = _model()
    monkeypatch.setitem(rw.PASSES, "drop_dropout", Pass(rules=(Rule((Plain,), _drop_dropout),)))
    portable = rw.PIPELINES["portable"]
    monkeypatch.setitem(rw.PIPELINES, "portable", rw.Pipeline(("drop_dropout", *portable.passes), portable.planes))
    alone = rw.rewrite(model, passes=["drop_dropout"])
    assert "dropout" in {layer.name for layer in model.layers} - {layer.name for layer in alone.layers}
    prepared = cv.prepare(model, target="portable")  # convert's own code knows no pass
    names = {layer.name for layer in prepared.layers}
    assert "dropout" not in names and "xnor_1_xnor_scale" in names
    x = rng.random((8, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(prepared(x).numpy(), model(x).numpy(), atol=1e-4)


def test_pipeline_arguments_are_checked():
    model = _model()
    with pytest.raises(ValueError, match="`passes` must be a sequence of pass names .*got 'xnor_fold'"):
        rw.rewrite(model, passes="xnor_fold")
    with pytest.raises(ValueError, match="`passes` must be a sequence of pass names"):
        rw.rewrite(model, passes=["fold_everything"])
    with pytest.raises(ValueError, match="`passes` must name each pass once"):
        rw.rewrite(model, passes=["xnor_fold", "xnor_fold"])
    with pytest.raises(ValueError, match="`planes` must be one of"):
        rw.rewrite(model, planes=True)
    with pytest.raises(ValueError, match="`target` must be one of"):
        rw.for_target(model, "gpu")
