"""Graph rewrites applied to a copy of a Keras model before conversion.

:func:`rewrite` leaves the original model untouched and builds a new functional model
with copied weights that is numerically equivalent to the original (tested against it
in Keras). It runs the passes of :mod:`edgebnn.deploy.passes` over one walk of the
graph (:func:`edgebnn.deploy.passes.graph.walk`); each pass module states its math:

- :mod:`~edgebnn.deploy.passes.dense_to_conv`: binary dense as 1x1 binary convolution.
- :mod:`~edgebnn.deploy.passes.bit_planes`: the first binary layer after a ``k``-bit
  :class:`~edgebnn.layers.InputDiscretization` as ``k + 1`` binary layers on bit planes.
- :mod:`~edgebnn.deploy.passes.packed_planes`: channel-packed bit planes for
  convolutions with fewer than 32 input channels (space-to-depth for strided ones).
- :mod:`~edgebnn.deploy.passes.sign_threshold`: ReLU -> BatchNorm -> sign as a threshold.
- :mod:`~edgebnn.deploy.passes.xnor_fold`: XNOR kernel scales as a channel scale.

The layers the passes introduce and the helpers tests use are re-exported here.
"""

import dataclasses
import functools

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.passes import bit_planes as planes_pass
from edgebnn.deploy.passes import dense_to_conv, packed_planes, sign_threshold, xnor_fold
from edgebnn.deploy.passes.graph import Plain, call_copy, walk
from edgebnn.deploy.passes.layers import (  # noqa: F401  (public names of this module)
    ONES_PLANE_SHIFT,
    BitPlanes,
    ChannelBias,
    ChannelScale,
    ConstantPad2D,
    MergePlanes,
    PackedPlanes,
    SpaceToDepth,
    packed_plane_coefficients,
    packed_plane_count,
    plane_coefficients,
)
from edgebnn.deploy.passes.packed_planes import packed_layout as _packed_layout  # noqa: F401  (read by tests)
from edgebnn.deploy.passes.quant import SIGN_QUANTIZERS, is_sign  # noqa: F401
from edgebnn.deploy.passes.sign_threshold import sign_threshold as _sign_threshold  # noqa: F401  (read by tests)
from edgebnn.deploy.passes.sign_threshold import sign_threshold_chains
from edgebnn.deploy.tflite import LCE_BITPACK_WIDTH  # noqa: F401

import tensorflow as tf

__all__ = [
    "rewrite", "sign_threshold_chains", "is_sign", "SIGN_QUANTIZERS", "LCE_BITPACK_WIDTH",
    "BitPlanes", "ChannelBias", "ChannelScale", "ConstantPad2D", "MergePlanes", "PackedPlanes", "SpaceToDepth",
    "ONES_PLANE_SHIFT", "plane_coefficients", "packed_plane_coefficients", "packed_plane_count",
]
_BIT_PLANES = (True, False, "auto")


@dataclasses.dataclass(frozen=True)
class _Options:
    dense_to_conv: bool
    bit_planes: object
    fold_xnor: bool
    sign_chains: frozenset = frozenset()


#: Passes that consume a bit-plane value (:class:`~edgebnn.deploy.passes.bit_planes.Planes`) as it is.
_ON_PLANES = (planes_pass.start, planes_pass.carry_reshape, packed_planes.first_conv, planes_pass.first_linear)
#: Passes tried next, on plain values and dense columns.
_ON_CHANNELS = (dense_to_conv.carry_channelwise, dense_to_conv.binary_dense, xnor_fold.fold)


def _rewrite_layer(layer, value, opts, *, single_use):
    """The rewritten output of single-input ``layer`` on ``value``: the first pass that takes it, else a copy."""
    if isinstance(value, planes_pass.Merge):
        out = planes_pass.fuse_batch_norm(layer, value, opts, single_use=single_use)
        if out is not None:
            return out
        value = value.merged()
    if layer.name in opts.sign_chains:
        plain = Plain(value.plain()) if isinstance(value, planes_pass.Planes) else value
        return sign_threshold.fold(layer, plain, opts)
    for rewrite_pass in _ON_PLANES:
        out = rewrite_pass(layer, value, opts)
        if out is not None:
            return out
    if isinstance(value, planes_pass.Planes):
        value = Plain(value.plain())
    for rewrite_pass in _ON_CHANNELS:
        out = rewrite_pass(layer, value, opts)
        if out is not None:
            return out
    return Plain(call_copy(layer, value.plain()))


def rewrite(model, *, dense_to_conv=True, bit_planes=True, fold_xnor=True, sign_thresholds=False):
    """A rewritten copy of functional Keras ``model`` (the original is not modified).

    Args:
        model: a functional or Sequential ``tf.keras.Model`` (built).
        dense_to_conv: binary ``QuantDense`` -> 1x1 binary ``QuantConv2D`` on column tensors.
        bit_planes: first quantized layer after an ``InputDiscretization`` -> bit-plane
            binary layer (needs a ``+-1``/XNOR kernel and no bias; otherwise left as is).
            ``"auto"``: only where LCE gains from it: dense layers, convolutions with at
            least :data:`LCE_BITPACK_WIDTH` input channels (planes stacked on the batch
            axis), and narrower convolutions whose channel-packed form
            (:class:`PackedPlanes`, space-to-depth) needs fewer weight words than the
            float layer. A stride-1 convolution of a 1-channel image does not qualify:
            it would store one 32-bit word per tap, as many bytes as float.
        fold_xnor: ``magnitude_aware_sign`` kernels -> ``+-1`` kernel and a channel scale.
        sign_thresholds: ReLU -> BatchNorm -> sign chains -> one per-channel affine map
            (exact up to ties within rounding, so off by default; the LCE target uses it).

    Returns:
        A new ``tf.keras.Model`` with the same inputs, outputs and function.

    Raises:
        TypeError: if ``model`` is not a built functional/Sequential Keras model.
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a tf.keras.Model, got {type(model).__name__}.")
    if not getattr(model, "_is_graph_network", False) or not model.inputs:
        raise TypeError(
            f"`model` must be a built functional or Sequential model (graph network), got a "
            f"{type(model).__name__} without a static graph."
        )
    if bit_planes not in _BIT_PLANES:
        raise ValueError(f"`bit_planes` must be one of {list(_BIT_PLANES)}, got {bit_planes!r}.")
    opts = _Options(dense_to_conv, bit_planes, fold_xnor,
                    sign_threshold_chains(model) if sign_thresholds else frozenset())
    rewrite_layer = functools.partial(_rewrite_layer, opts=opts)
    return walk(model, rewrite_layer, name=f"{model.name}_rewritten")
