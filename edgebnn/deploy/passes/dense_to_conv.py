"""Pass: binary dense layers as 1x1 binary convolutions.

Larq Compute Engine converts a binary ``QuantDense`` into a float ``FULLY_CONNECTED``
between ``LceQuantize`` and ``LceDequantize`` (it has no binary dense op), while a
binary ``QuantConv2D`` becomes an ``LceBconv2d``. A run of dense layers is therefore
carried as ``(batch, 1, 1, channels)`` tensors (:class:`Column` values), each binary
``QuantDense`` with a ``sign`` input quantizer becomes a 1x1 binary ``QuantConv2D``
with the same kernel, and per-channel layers (BatchNorm, activations, dropout) work on
the column unchanged, so LCE can fuse them into the binary convolution. The column is
flattened back to ``(batch, channels)`` where any other layer needs it.
"""

import dataclasses

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.passes.graph import Pass, Plain, Rule, call_copy
from edgebnn.deploy.passes.quant import binary_kernel, binary_linear, is_sign

import larq as lq
import tensorflow as tf

#: Layers that act on the last (channel) axis only, so they accept a column tensor.
CHANNELWISE = (
    tf.keras.layers.BatchNormalization,
    tf.keras.layers.Activation,
    tf.keras.layers.ReLU,
    tf.keras.layers.Dropout,
)


@dataclasses.dataclass(frozen=True)
class Column:
    """A 2-D ``(batch, channels)`` tensor carried as ``(batch, 1, 1, channels)``."""

    tensor: object

    def plain(self):
        return tf.keras.layers.Reshape((self.tensor.shape[-1],))(self.tensor)


def as_column(t):
    """``(batch, channels) -> (batch, 1, 1, channels)``."""
    return tf.keras.layers.Reshape((1, 1, t.shape[-1]))(t)


def carry_channelwise(layer, value, opts):
    """A per-channel ``layer`` applied to a :class:`Column` (a BatchNorm on axis -1), or ``None``."""
    if not (isinstance(value, Column) and isinstance(layer, CHANNELWISE)):
        return None
    overrides = {"axis": -1} if isinstance(layer, tf.keras.layers.BatchNormalization) else {}
    return Column(call_copy(layer, value.tensor, **overrides))


def binary_dense(layer, value, opts):
    """A binary ``QuantDense`` on ``sign`` inputs as a 1x1 binary convolution (a :class:`Column`), or ``None``."""
    if not (opts.dense_to_conv and isinstance(layer, lq.layers.QuantDense) and binary_kernel(layer, opts)
            and is_sign(layer.input_quantizer)):
        return None
    out = binary_linear(layer, value.tensor if isinstance(value, Column) else as_column(value.tensor), conv=True)
    return None if out is None else Column(out)


#: The pass: binary dense layers as 1x1 binary convolutions, per-channel layers on columns.
PASS = Pass(rules=(Rule((Column,), carry_channelwise), Rule((Plain, Column), binary_dense)), flags=("dense_to_conv",))
