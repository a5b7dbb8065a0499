"""Monte-Carlo dropout: dropout that can stay active at inference."""

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate, randomness

import larq as lq
import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class MCDropout(tf.keras.layers.Dropout):
    """Dropout that, with ``always_on=True``, also drops units at inference.

    Monte-Carlo dropout (Gal and Ghahramani 2016) as used by Guan et al.: rate 0.5,
    50 stochastic forward passes whose softmax outputs are averaged, and whose
    variance is the model's uncertainty (see
    :func:`edgebnn.evaluation.uncertainty.predict_mc`). With ``always_on=False`` it is
    a plain ``tf.keras.layers.Dropout``.

    In a binarized network dropout has to act on the binary activations, as in
    Courbariaux et al.'s BinaryNet (sign, then dropout: a dropped unit sends 0 to the
    next layer, a kept one +-1 / (1 - rate)). Dropout placed before the next layer's
    sign quantizer drops nothing: the sign maps a dropped 0 to +1 (Larq's sign is +1 at 0).
    ``input_quantizer`` does it in one place: the layer quantizes its input, then drops,
    and the next layer takes the result as it is (no input quantizer of its own). The
    quantizer sits in the attribute Larq's layers use, so attacks swap its gradient
    surrogate as they do theirs (:func:`edgebnn.attacks.surrogates.use_surrogate`).

    Gradient: that of the quantizer (when given), then of dropout (mask times
    ``1 / (1 - rate)``).

    Masks drawn at inference within an :func:`edgebnn.randomness.seeded` scope (a seeded
    craft or Monte-Carlo prediction) come from the scope's key, as in ``tf.nn.dropout``
    (a unit is kept where a uniform number is at least ``rate``); elsewhere (training,
    unseeded calls) from Keras' dropout, as for ``tf.keras.layers.Dropout``.

    Args:
        rate: fraction of units dropped, a number in ``[0, 1)``.
        always_on: drop units whatever the ``training`` flag.
        seed: optional int seed of the dropout masks; masks still differ at every call
            (not used within a seeded scope).
        input_quantizer: optional Larq quantizer (instance or name, e.g. ``"ste_sign"``)
            applied to the input before dropping; ``None`` (the default) for plain dropout.
        **kwargs: standard layer arguments (``name``, ``noise_shape``, ...).

    Raises:
        TypeError, ValueError: bad ``rate``, ``always_on``, ``seed`` or ``input_quantizer``.
    """

    def __init__(self, rate, *, always_on=True, seed=None, input_quantizer=None, **kwargs):
        _validate.number(rate, "rate", low=0, high=1, high_open=True, type_error=True)
        _validate.boolean(always_on, "always_on")
        _validate.seed(seed)
        super().__init__(float(rate), seed=seed, **kwargs)
        self.always_on = always_on
        try:
            self.input_quantizer = lq.quantizers.get(input_quantizer)
        except ValueError:
            raise ValueError(f"`input_quantizer` must be a Larq quantizer or its name, got {input_quantizer!r}.") from None

    @property
    def random_at_inference(self):
        """Whether it drops units at inference (read by :func:`edgebnn.introspect.random_at_inference`)."""
        return self.always_on

    def call(self, inputs, training=None):
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs)
        if self.always_on and self.rate and randomness.is_seeded():
            return tf.nn.experimental.general_dropout(inputs, rate=self.rate, noise_shape=self._get_noise_shape(inputs),
                                                      uniform_sampler=_seeded_uniform)
        return super().call(inputs, training=True if self.always_on else training)

    def get_config(self):
        config = {**super().get_config(), "always_on": self.always_on}
        if self.input_quantizer is not None:
            config["input_quantizer"] = lq.quantizers.serialize(self.input_quantizer)
        return config


def _seeded_uniform(shape, dtype):
    """``tf.nn.experimental.general_dropout``'s sampler: uniform numbers of the open seeded scope."""
    return randomness.uniform(shape, dtype=dtype)
