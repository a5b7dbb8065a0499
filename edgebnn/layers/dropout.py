"""Monte-Carlo dropout: dropout that can stay active at inference."""

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class MCDropout(tf.keras.layers.Dropout):
    """Dropout that, with ``always_on=True``, also drops units at inference.

    Monte-Carlo dropout (Gal and Ghahramani 2016) as used by Guan et al.: rate 0.5,
    50 stochastic forward passes whose softmax outputs are averaged, and whose
    variance is the model's uncertainty (see
    :func:`edgebnn.evaluation.uncertainty.predict_mc`). With ``always_on=False`` it is
    a plain ``tf.keras.layers.Dropout``.

    Gradient: that of dropout (mask times ``1 / (1 - rate)``); no surrogate needed.

    Args:
        rate: fraction of units dropped, a number in ``[0, 1)``.
        always_on: drop units whatever the ``training`` flag.
        seed: optional int seed of the dropout masks; masks still differ at every call.
        **kwargs: standard layer arguments (``name``, ``noise_shape``, ...).

    Raises:
        TypeError, ValueError: bad ``rate``, ``always_on`` or ``seed``.
    """

    def __init__(self, rate, *, always_on=True, seed=None, **kwargs):
        _validate.number(rate, "rate", low=0, high=1, high_open=True, type_error=True)
        _validate.boolean(always_on, "always_on")
        _validate.seed(seed)
        super().__init__(float(rate), seed=seed, **kwargs)
        self.always_on = always_on

    def call(self, inputs, training=None):
        return super().call(inputs, training=True if self.always_on else training)

    def get_config(self):
        return {**super().get_config(), "always_on": self.always_on}
