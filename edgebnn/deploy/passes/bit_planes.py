"""Pass: the first binary layer on a discretized input as binary layers on its bit planes.

After a ``k``-bit :class:`~edgebnn.layers.InputDiscretization` the input is
``d = (l + 1/2) / n`` with level ``l = sum_j 2**j b_j``, ``b_j`` in ``{0, 1}``,
``n = 2**k``. Writing ``s_j = 2 b_j - 1`` (a ``+-1`` plane),
``d = sum_j 2**(j-1)/n * s_j + 1/2 * 1``, so a first layer ``W`` with binary
weights computes ``d * W = sum_j 2**(j-1)/n * (s_j * W) + 1/2 * (1 * W)``: ``k + 1``
binary convolutions sharing one weight tensor (the last plane is all ones and
carries the constant term, including the zero-padding border of a ``"same"``
convolution). The planes are stacked along the batch axis
(:class:`~edgebnn.deploy.passes.layers.BitPlanes`) so the converted model holds one
``LceBconv2d`` with one weight tensor, and the per-plane outputs are summed with
their coefficients afterwards (:class:`~edgebnn.deploy.passes.layers.MergePlanes`).
Every term is an integer times a power of two, so the result is exact in float32.

Without spatial padding (a dense layer, ``"valid"`` or 1x1 convolutions) the ones
plane's output is a per-channel constant, added as a bias instead of convolved. A
BatchNorm right after the layer is folded into the per-plane outputs, where LCE fuses
it into the binary convolution.

The walk carries two values of its own: :class:`Planes` (the discretization's input,
planes made where a layer consumes them; per-example reshapes in between are
replayed on the planes) and :class:`Merge` (the per-plane outputs, summed where used).
Convolutions with few input channels take the channel-packed form of
:mod:`~edgebnn.deploy.passes.packed_planes` instead.
"""

import dataclasses

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.passes.dense_to_conv import Column, as_column
from edgebnn.deploy.passes.graph import Pass, Plain, Rule, call_copy
from edgebnn.deploy.passes.layers import BitPlanes, ChannelBias, ChannelScale, MergePlanes, plane_coefficients
from edgebnn.deploy.passes.quant import batch_norm_affine, binary_kernel, binary_linear, effective_kernel, last_axis
from edgebnn.deploy.tflite import LCE_BITPACK_WIDTH
from edgebnn.layers import InputDiscretization

import larq as lq
import tensorflow as tf

#: Layers that only reshape each example, so they accept batch-stacked bit planes.
PER_EXAMPLE_RESHAPE = (tf.keras.layers.Flatten, tf.keras.layers.Reshape)


@dataclasses.dataclass(frozen=True)
class Planes:
    """The bit planes of a discretized input, made where a layer consumes them.

    ``tensor`` is the input of the ``source`` discretization layer (``bits`` bits);
    ``pending`` are per-example reshapes to replay after making the planes.
    """

    tensor: object
    bits: int
    source: object
    pending: tuple = ()

    @property
    def coefficients(self):
        return plane_coefficients(self.bits)

    def plain(self):
        """The original discretized input (a copy of the discretization and the reshapes)."""
        t = call_copy(self.source, self.tensor)
        for layer in self.pending:
            t = call_copy(layer, t)
        return t

    def planes(self, *, ones):
        """The stacked ``+-1`` planes (with the all-ones plane if ``ones``) after the pending reshapes."""
        t = BitPlanes(self.bits, ones=ones)(self.tensor)
        for layer in self.pending:
            t = call_copy(layer, t)
        return t

    def lower(self):
        """The plain value of the discretized input, where no rule takes the planes."""
        return Plain(self.plain())


@dataclasses.dataclass(frozen=True)
class Merge:
    """Per-plane outputs of the first layer, stacked on the batch axis, to be summed.

    The original output is ``sum_j coefficients[j] * plane_output_j + ones_term``, a
    value of kind ``merged_as`` (:class:`Plain`, or :class:`Column` for a dense layer).
    """

    tensor: object
    coefficients: tuple
    merged_as: type
    ones_term: object = 0.0

    def merged(self):
        """The summed output, as a ``merged_as`` value."""
        out = MergePlanes(self.coefficients)(self.tensor)
        if np.any(np.asarray(self.ones_term) != 0):
            out = ChannelBias(self.ones_term)(out)
        return self.merged_as(out)

    def plain(self):
        return self.merged().plain()

    def lower(self):
        """The summed output, where no rule takes the per-plane outputs."""
        return self.merged()


def start(layer, value, opts):
    """An :class:`InputDiscretization` on a plain value starts :class:`Planes` (if ``opts.bit_planes``), or ``None``."""
    if isinstance(layer, InputDiscretization) and opts.bit_planes and isinstance(value, Plain):
        return Planes(value.tensor, layer.bits, source=layer)
    return None


def carry_reshape(layer, value, opts):
    """A per-example reshape of :class:`Planes` is replayed on the planes later, or ``None``."""
    if isinstance(value, Planes) and isinstance(layer, PER_EXAMPLE_RESHAPE):
        return dataclasses.replace(value, pending=(*value.pending, layer))
    return None


def first_linear(layer, value, opts):
    """A binary layer on :class:`Planes` as the same binary layer on the batch-stacked planes (a :class:`Merge`).

    Taken when the kernel is ``+-1`` or XNOR, the layer has no input quantizer and no
    bias, and LCE gains from it: a dense layer (with ``opts.dense_to_conv``), any
    convolution with ``opts.bit_planes is True``, or one with at least
    :data:`~edgebnn.deploy.tflite.LCE_BITPACK_WIDTH` input channels. Otherwise ``None``.
    """
    if not isinstance(value, Planes) or not binary_kernel(layer, opts):
        return None
    dense = isinstance(layer, lq.layers.QuantDense)
    worth_it = dense or opts.bit_planes is True or layer.input_spec.axes[-1] >= LCE_BITPACK_WIDTH
    if layer.input_quantizer is not None or layer.use_bias or not worth_it or (dense and not opts.dense_to_conv):
        return None
    # Without spatial padding the ones plane's output is a per-channel constant:
    # add it as a bias instead of convolving an all-ones plane.
    unpadded = dense or layer.padding == "valid" or tuple(layer.kernel_size) == (1, 1)
    t = value.planes(ones=not unpadded)
    out = binary_linear(layer, as_column(t) if dense else t, conv=dense, input_quantizer="ste_sign")
    coefficients = value.coefficients[:-1] if unpadded else value.coefficients
    ones_term = value.coefficients[-1] * effective_kernel(layer).sum(axis=(0, 1, 2)) if unpadded else 0.0
    return Merge(out, tuple(coefficients), Column if dense else Plain, ones_term)


def fuse_batch_norm(layer, value, opts):
    """BatchNorm after the bit-plane layer, folded into the per-plane outputs (LCE fuses it into the bconv).

    ``BN(sum_j c_j o_j + K) = A sum_j c_j o_j + A K + B = sum_j c_j (A o_j + D)`` with
    ``D = (A K + B) / sum_j c_j``. Taken for a last-axis BatchNorm that is the
    :class:`Merge` value's only consumer (its rule is ``single_use``); otherwise ``None``.
    """
    bn = layer
    if not (isinstance(value, Merge) and isinstance(bn, tf.keras.layers.BatchNormalization) and last_axis(bn)):
        return None
    a, b = batch_norm_affine(bn)
    d = (a * value.ones_term + b) / sum(value.coefficients)
    out = ChannelScale(a, name=f"{bn.name}_scale")(value.tensor)
    out = ChannelBias(d, name=f"{bn.name}_bias")(out)
    return value.merged_as(MergePlanes(value.coefficients, name=f"{bn.name}_merge_planes")(out))


#: The pass: planes start at a discretization and follow per-example reshapes; the
#: first binary layer runs on them; a BatchNorm after it folds into the per-plane outputs.
PASS = Pass(
    rules=(
        Rule((Merge,), fuse_batch_norm, single_use=True),
        Rule((Plain,), start),
        Rule((Planes,), carry_reshape),
        Rule((Planes,), first_linear),
    ),
    flags=("bit_planes",),
)
