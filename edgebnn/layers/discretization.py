"""Keras layer wrapping :func:`edgebnn.ops.discretize`."""

from edgebnn import ops

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class InputDiscretization(tf.keras.layers.Layer):
    """Quantize ``[0, 1]`` inputs to ``2**bits`` levels inside the model graph.

    A thin layer over :func:`edgebnn.ops.discretize` (Panda et al., Eq. 2). Because it
    is part of the graph, a converted TFLite model discretizes its own input. The
    backward pass is straight-through (identity), so white-box attacks see through
    it (BPDA); robustness it shows is therefore not an artefact of masked gradients.

    Args:
        bits: int in ``[1, 8]``, bits kept per input value.
        **kwargs: standard Keras layer arguments (``name``, ...).
    """

    def __init__(self, bits, **kwargs):
        super().__init__(**kwargs)
        self.bits = ops.validate_bits(bits)

    def call(self, inputs):
        return ops.discretize(inputs, self.bits)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}
