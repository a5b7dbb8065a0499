"""AutoGraph skips Keras 2's own code (``tf_keras``) and the trained numbers stay the same."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.autograph.core import config
from tensorflow.python.autograph.impl import conversion

import edgebnn.ops  # noqa: F401  (puts tf_keras on AutoGraph's do-not-convert list)
from edgebnn import zoo
from edgebnn._autograph import skip_keras_internals
from edgebnn.training import AdversarialModel, train


def _is_skipped(function):
    return conversion.is_allowlisted(function)


def test_keras_internals_are_skipped_and_edgebnn_code_is_not():
    assert _is_skipped(tf.keras.Model.train_step)
    assert _is_skipped(tf.keras.layers.Dense.call)
    assert not _is_skipped(AdversarialModel.train_step)  # ours: converted as before
    rules = len(config.CONVERSION_RULES)
    skip_keras_internals()
    assert len(config.CONVERSION_RULES) == rules  # idempotent


def _train_twice(x, y):
    """Weights and predictions of a BNN and an adversarially trained binary CNN, seeded."""
    tf.keras.utils.set_random_seed(0)
    fcn = zoo.get("panda_fcn2")(precision="binary", input_bits=2)
    train(fcn, x, y, epochs=1, batch_size=64, seed=0, verbose=0)
    tf.keras.utils.set_random_seed(0)
    cnn = zoo.get("galloway_cnn")(precision="B", kernels=32)
    train(AdversarialModel(cnn, method="pgd", eps=0.1, steps=2, fraction=0.5), x, y, epochs=1, batch_size=64,
          seed=0, verbose=0)
    return [*fcn.get_weights(), *cnn.get_weights(), fcn.predict(x, verbose=0), cnn.predict(x, verbose=0)]


@pytest.mark.slow  # the converted run transpiles Keras once more, the cost the rule removes
def test_training_gives_the_same_numbers_as_with_keras_converted(fashion_small, monkeypatch):
    x, y = fashion_small[0][:256], fashion_small[1][:256]
    skipped = _train_twice(x, y)
    monkeypatch.setattr(config, "CONVERSION_RULES",
                        tuple(r for r in config.CONVERSION_RULES if not r.matches("tf_keras")))
    assert not _is_skipped(tf.keras.Model.train_step)
    converted = _train_twice(x, y)
    assert len(skipped) == len(converted)
    for a, b in zip(skipped, converted):
        np.testing.assert_array_equal(a, b)
