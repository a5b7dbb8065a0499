"""Graph rewrites applied to a copy of a Keras model before conversion: the deploy pass pipeline.

:func:`rewrite` leaves the original model untouched and builds a new functional model
with copied weights that is numerically equivalent to the original (tested against it
in Keras). It runs an ordered list of passes, one module each in
:mod:`edgebnn.deploy.passes`, over one walk of the graph
(:func:`edgebnn.deploy.passes.graph.walk`); each pass module states its math:

- :mod:`~edgebnn.deploy.passes.packed_planes`: channel-packed bit planes for
  convolutions with fewer than 32 input channels (space-to-depth for strided ones).
- :mod:`~edgebnn.deploy.passes.bit_planes`: the first binary layer after a ``k``-bit
  :class:`~edgebnn.layers.InputDiscretization` as ``k + 1`` binary layers on bit planes.
- :mod:`~edgebnn.deploy.passes.sign_threshold`: ReLU -> BatchNorm -> sign as a threshold.
- :mod:`~edgebnn.deploy.passes.dense_to_conv`: binary dense as 1x1 binary convolution.
- :mod:`~edgebnn.deploy.passes.xnor_fold`: XNOR kernel scales as a channel scale.

:data:`PASSES` names them and :data:`PIPELINES` orders them for each conversion target
(:func:`edgebnn.deploy.convert.prepare` reads it). Adding a pass is its module (with
its ``PASS``), one line in :data:`PASSES` and its place in :data:`PIPELINES`. On each
layer the rules of the passes are tried in pipeline order, and the first that returns a
value wins; a value of a kind no remaining rule takes (bit planes, per-plane outputs)
is made concrete first (its ``lower()``), and a layer no rule takes is copied.

The layers the passes introduce are re-exported here (models saved with them load by
these names).
"""

import dataclasses

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy.passes import bit_planes, dense_to_conv, packed_planes, sign_threshold, xnor_fold
from edgebnn.deploy.passes.graph import Context, Plain, call_copy, walk
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

import tensorflow as tf

__all__ = [
    "rewrite", "PASSES", "PIPELINES", "Pipeline", "DEFAULT_PASSES", "PLANES",
    "BitPlanes", "ChannelBias", "ChannelScale", "ConstantPad2D", "MergePlanes", "PackedPlanes", "SpaceToDepth",
    "ONES_PLANE_SHIFT", "plane_coefficients", "packed_plane_coefficients", "packed_plane_count",
]

#: Pass name -> :class:`~edgebnn.deploy.passes.graph.Pass`.
PASSES = {
    "packed_planes": packed_planes.PASS,
    "bit_planes": bit_planes.PASS,
    "sign_threshold": sign_threshold.PASS,
    "dense_to_conv": dense_to_conv.PASS,
    "xnor_fold": xnor_fold.PASS,
}
#: Where the bit-plane passes put a first layer on planes: ``"all"`` (wherever eligible) or
#: ``"auto"`` (only where LCE gains from it; see :func:`rewrite`).
PLANES = ("all", "auto")


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """The ordered passes of one conversion target, and its bit-plane policy (:data:`PLANES`)."""

    passes: tuple
    planes: str = "all"


#: Conversion target -> its pipeline. ``lce``: every pass (the binary kernels of Larq
#: Compute Engine are what they are for); ``portable``: only XNOR scale folding (stock
#: TFLite has no binary kernels).
PIPELINES = {
    "lce": Pipeline(("packed_planes", "bit_planes", "sign_threshold", "dense_to_conv", "xnor_fold"), planes="auto"),
    "portable": Pipeline(("xnor_fold",)),
}
#: What :func:`rewrite` runs by default: the LCE pipeline's exact passes.
DEFAULT_PASSES = tuple(name for name in PIPELINES["lce"].passes if PASSES[name].exact)


def _lowered(value, rules):
    """``value`` made concrete (its ``lower()``) as long as none of ``rules`` takes its kind."""
    while hasattr(value, "lower") and not any(isinstance(value, rule.takes) for rule in rules):
        value = value.lower()
    return value


def _rewrite_layer(layer, value, ctx, rules, *, single_use):
    """The rewritten output of single-input ``layer`` on ``value``: the first rule that takes it, else a copy."""
    for i, rule in enumerate(rules):
        value = _lowered(value, rules[i:])
        if isinstance(value, rule.takes) and (single_use or not rule.single_use):
            out = rule.fn(layer, value, ctx)
            if out is not None:
                return out
    return Plain(call_copy(layer, _lowered(value, ()).plain()))


def _validate(model, passes, planes):
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a tf.keras.Model, got {type(model).__name__}.")
    if not getattr(model, "_is_graph_network", False) or not model.inputs:
        raise TypeError(
            f"`model` must be a built functional or Sequential model (graph network), got a "
            f"{type(model).__name__} without a static graph."
        )
    if isinstance(passes, str) or not all(name in PASSES for name in passes):
        raise ValueError(f"`passes` must be a sequence of pass names from {sorted(PASSES)}, got {passes!r}.")
    if len(set(passes)) != len(passes):
        raise ValueError(f"`passes` must name each pass once, got {list(passes)}.")
    if planes not in PLANES:
        raise ValueError(f"`planes` must be one of {list(PLANES)}, got {planes!r}.")


def rewrite(model, *, passes=DEFAULT_PASSES, planes="all"):
    """A rewritten copy of functional Keras ``model`` (the original is not modified).

    Args:
        model: a functional or Sequential ``tf.keras.Model`` (built).
        passes: names of the passes to run (:data:`PASSES`), in order; one name runs
            that pass alone. Default: :data:`DEFAULT_PASSES`.
        planes: ``"all"``: the bit-plane passes take every eligible first layer (a
            ``+-1``/XNOR kernel and no bias). ``"auto"``: only where LCE gains from it:
            dense layers, convolutions with at least
            :data:`~edgebnn.deploy.tflite.LCE_BITPACK_WIDTH` input channels (planes
            stacked on the batch axis), and narrower convolutions whose channel-packed
            form (:class:`PackedPlanes`, space-to-depth) needs fewer weight words than
            the float layer. A stride-1 convolution of a 1-channel image does not
            qualify: it would store one 32-bit word per tap, as many bytes as float.

    Returns:
        A new ``tf.keras.Model`` with the same inputs, outputs and function.

    Raises:
        TypeError: if ``model`` is not a built functional/Sequential Keras model.
        ValueError: unknown or repeated pass names, or an unknown ``planes``.
    """
    _validate(model, passes, planes)
    chosen = [PASSES[name] for name in passes]
    state = {p: p.prepare(model) for p in chosen if p.prepare is not None}
    flags = {flag for p in chosen for flag in p.flags}
    ctx = Context(tuple(passes), fold_xnor="fold_xnor" in flags, dense_to_conv="dense_to_conv" in flags,
                  bit_planes=("bit_planes" in flags) and (True if planes == "all" else "auto"), state=state)
    rules = tuple(rule for p in chosen for rule in p.rules)

    def rewrite_layer(layer, value, *, single_use):
        return _rewrite_layer(layer, value, ctx, rules, single_use=single_use)

    return walk(model, rewrite_layer, name=f"{model.name}_rewritten")


def for_target(model, target):
    """``model`` rewritten by the pipeline of conversion ``target`` (:data:`PIPELINES`)."""
    if target not in PIPELINES:
        raise ValueError(f"`target` must be one of {sorted(PIPELINES)}, got {target!r}.")
    pipeline = PIPELINES[target]
    return rewrite(model, passes=pipeline.passes, planes=pipeline.planes)
