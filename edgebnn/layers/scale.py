"""A learned scalar multiplier (Galloway et al.'s scaled binary networks, model "C")."""

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate

import tensorflow as tf

#: Initial value of the scalar in Galloway et al.'s code (``SReLU``'s ``activation_scalar``).
GALLOWAY_INITIAL_SCALE = 0.05


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class LearnedScale(tf.keras.layers.Layer):
    """Multiply the input by one trainable scalar: ``y = alpha * x``.

    Galloway, Taylor and Moussa ("Attacking binarized neural networks", ICLR 2018)
    put it after the activation of each binary hidden layer (their model "C") to
    keep activation magnitudes, and hence logits, in a range where gradients are
    informative instead of saturated (unscaled BNNs mask gradients).

    Args:
        initial_value: starting value of ``alpha`` (Galloway et al.: 0.05).
        **kwargs: standard layer arguments.

    Raises:
        TypeError: ``initial_value`` is not a real number.
    """

    def __init__(self, initial_value=GALLOWAY_INITIAL_SCALE, **kwargs):
        super().__init__(**kwargs)
        self.initial_value = _validate.number(initial_value, "initial_value", finite=False, type_error=True,
                                              what="a real number")

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale", shape=(), initializer=tf.keras.initializers.Constant(self.initial_value),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs):
        return inputs * tf.cast(self.scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initial_value": self.initial_value}
