"""Parameter-free ResNet shortcut (He et al. 2016, option A)."""

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn._validate import positive_int

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class ZeroPadShortcut(tf.keras.layers.Layer):
    """Identity shortcut that subsamples by ``strides`` and zero-pads the channels.

    The CIFAR ResNets of He et al. (2016, Sec. 4.2) use this "option A" shortcut
    when a stage halves the resolution and doubles the width, so ResNet-20 keeps
    its 0.27M parameters. Input ``(n, h, w, c)`` becomes
    ``(n, ceil(h / s), ceil(w / s), filters)``; the new channels are split evenly
    before and after the old ones.

    Args:
        filters: output channels (>= input channels).
        strides: spatial subsampling factor (>= 1).
        **kwargs: standard layer arguments.
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        positive_int(filters, "filters")
        positive_int(strides, "strides")
        self.filters = filters
        self.strides = strides

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels > self.filters:
            raise ValueError(f"`filters` ({self.filters}) must be >= the input channels ({channels}).")
        super().build(input_shape)

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - inputs.shape[-1]
        if extra:
            x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])
        return x

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        spatial = [None if d is None else -(-d // self.strides) for d in shape[1:3]]
        return tf.TensorShape([shape[0], *spatial, self.filters])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}
