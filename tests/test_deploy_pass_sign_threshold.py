"""Pass sign_threshold: ReLU -> BatchNorm -> sign chains found and folded into one per-channel map."""

import numpy as np

from edgebnn.deploy.passes import sign_threshold
from edgebnn.deploy.rewrite import rewrite

import larq as lq
import tensorflow as tf

SIGN_IN = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)
#: gamma, beta, moving mean, moving variance per channel, one channel per case of the threshold:
#: g > 0 with theta > 0 (two), g > 0 with theta <= 0 (always +1), g < 0 with theta >= 0 (two),
#: g < 0 with theta < 0 (always -1), g = 0 with h >= 0 and with h < 0 (constants).
BATCH_NORM = ([1.0, 2.0, 1.0, -1.0, -0.5, -1.0, 0.0, 0.0],
              [0.0, -1.0, 2.0, 0.0, 1.0, -1.0, 1.0, -1.0],
              [3.0, 0.0, -1.0, 2.0, 4.0, -2.0, 0.0, 0.0],
              [1.0] * 8)


def _chain_model(*, second_consumer=None):
    """dense -> relu -> bn -> binary dense; ``second_consumer`` also reads the BatchNorm (or the ReLU)."""
    inputs = tf.keras.Input((12,))
    z = lq.layers.QuantDense(8, **SIGN_IN, name="dense_0")(inputs)
    r = tf.keras.layers.ReLU(name="relu")(z)
    bn = tf.keras.layers.BatchNormalization(name="bn")
    b = bn(r)
    outputs = [lq.layers.QuantDense(4, **SIGN_IN, name="dense_1")(b)]
    if second_consumer == "float_dense":
        outputs.append(tf.keras.layers.Dense(3, name="float")(b))
    elif second_consumer == "relu":
        outputs.append(tf.keras.layers.Dense(3, name="float")(r))
    model = tf.keras.Model(inputs, outputs)
    bn.set_weights([np.array(w, np.float32) for w in BATCH_NORM])
    return model


def test_chain_found_only_when_every_consumer_takes_the_sign():
    assert sign_threshold.sign_threshold_chains(_chain_model()) == {"relu", "bn"}
    assert sign_threshold.sign_threshold_chains(_chain_model(second_consumer="float_dense")) == frozenset()
    assert sign_threshold.sign_threshold_chains(_chain_model(second_consumer="relu")) == frozenset()


def test_chain_on_dense_columns_folds_and_keeps_the_sign(rng):
    """The threshold map acts on the 1x1 column of the dense rewrite; the signs the next layer sees are unchanged."""
    model = _chain_model()
    rewritten = rewrite(model, passes=["sign_threshold", "dense_to_conv"])
    names = {layer.name for layer in rewritten.layers}
    assert {"bn_sign_scale", "bn_sign_bias"} <= names and not {"relu", "bn"} & names
    assert rewritten.get_layer("bn_sign_bias").output.shape.rank == 4  # still a column
    x = rng.normal(0, 1, (64, 12)).astype(np.float32)
    pre = tf.keras.Model(model.inputs, model.get_layer("bn").output)(x).numpy()
    pre_new = tf.keras.Model(rewritten.inputs, rewritten.get_layer("bn_sign_bias").output)(x).numpy()
    np.testing.assert_array_equal(np.where(pre_new.reshape(pre.shape) >= 0, 1, -1), np.where(pre >= 0, 1, -1))
    np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), atol=1e-5)
