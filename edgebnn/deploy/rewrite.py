"""Graph rewrites applied to a copy of a Keras model before conversion.

Each rewrite leaves the original model untouched, builds a new functional model with
copied weights, and is numerically equivalent to the original (tested against it in
Keras, ``tests/test_deploy_rewrite.py``):

- **binary dense as 1x1 binary convolution.** Larq Compute Engine 0.16 converts a
  binary ``QuantDense`` into a float ``FULLY_CONNECTED`` between ``LceQuantize`` and
  ``LceDequantize`` (binary dense is LCE issue 53), while a binary ``QuantConv2D``
  becomes an ``LceBconv2d``. A run of dense layers is therefore carried as
  ``(batch, 1, 1, channels)`` tensors ("columns"), each binary ``QuantDense`` becomes
  a 1x1 binary ``QuantConv2D`` and per-channel layers (BatchNorm, activations) work on
  the column unchanged, so LCE can fuse them into the binary convolution.
- **bit-plane first layer.** After a ``k``-bit :class:`~edgebnn.layers.InputDiscretization`
  the input is ``d = (l + 1/2) / n`` with level ``l = sum_j 2**j b_j``, ``b_j`` in
  ``{0, 1}``, ``n = 2**k``. Writing ``s_j = 2 b_j - 1`` (a ``+-1`` plane),
  ``d = sum_j 2**(j-1)/n * s_j + 1/2 * 1``, so a first layer ``W`` with binary
  weights computes ``d * W = sum_j 2**(j-1)/n * (s_j * W) + 1/2 * (1 * W)``: ``k + 1``
  binary convolutions sharing one weight tensor (the last plane is all ones and
  carries the constant term, including the zero-padding border of a ``"same"``
  convolution). The planes are stacked along the batch axis so the converted model
  holds one ``LceBconv2d`` with one weight tensor. Every term is an integer times a
  power of two, so the result is exact in float32.
- **channel-packed bit planes** (convolutions with fewer than 32 input channels).
  LCE packs a binary kernel along input channels, 32 to a 32-bit word, so batch-stacked
  planes of a 1-channel image cost one word per tap: no smaller than float. Instead
  the planes go on the channel axis (:class:`PackedPlanes`, padded with ``-1``), and a
  strided convolution whose kernel the stride divides is rewritten by space-to-depth:
  Galloway's 8x8 stride-2 first layer becomes a 4x4 binary convolution over 28
  channels, one word per tap, 4x fewer bytes than float. Exact in float32 as well.
- **ReLU -> BatchNorm -> sign as a threshold.** When a ReLU feeds only a BatchNorm
  whose output feeds only layers that take its sign (a ``ste_sign`` input quantizer),
  ``sign(g * relu(z) + h)`` is ``sign(z - theta)`` with ``theta = -h / g`` for ``g > 0``
  and ``theta > 0`` (the opposite for ``g < 0``), or a constant ``+-1`` channel
  (``0 * z + 1``). The chain becomes that per-channel affine map, which LCE fuses
  into the preceding binary convolution as an output threshold, so the convolution
  writes bit-packed activations instead of a float tensor, a ReLU, a BatchNorm and a
  quantize op. Exact except when ``z`` lies within rounding of ``theta``; the
  converted model's agreement is measured by :func:`~edgebnn.deploy.verify.verify`.
- **XNOR scale folding.** An XNOR kernel (:class:`edgebnn.quantizers.XnorWeight` or
  Larq's ``magnitude_aware_sign``; XNOR-Net, Rastegari et al. 2016) is ``alpha_c * sign(W)`` with ``alpha_c`` the mean ``|W|`` of output
  channel ``c``. It becomes a ``ste_sign`` kernel followed by a per-channel
  multiplication by the constant ``alpha`` (which LCE fuses into the binary
  convolution's output transform) instead of a float convolution.
"""

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import quantizers
from edgebnn.layers import InputDiscretization
from edgebnn.ops import discretize_levels

import larq as lq
import tensorflow as tf

#: Larq quantizers whose forward pass is ``sign(x)`` with values in ``{-1, +1}``.
SIGN_QUANTIZERS = (lq.quantizers.SteSign, lq.quantizers.ApproxSign, lq.quantizers.SwishSign)
#: Layers that act on the last (channel) axis only, so they accept a column tensor.
_CHANNELWISE = (
    tf.keras.layers.BatchNormalization,
    tf.keras.layers.Activation,
    tf.keras.layers.ReLU,
    tf.keras.layers.Dropout,
)
#: Layers that only reshape each example, so they accept batch-stacked bit planes.
_PER_EXAMPLE_RESHAPE = (tf.keras.layers.Flatten, tf.keras.layers.Reshape)


def is_sign(quantizer):
    """True if a Larq quantizer's forward pass is plain ``sign`` (values ``+-1``)."""
    return isinstance(quantizer, SIGN_QUANTIZERS)


def _is_xnor(quantizer):
    """XNOR-Net kernels ``alpha_c * sign(W)``: edgebnn's ``XnorWeight`` or Larq's ``magnitude_aware_sign``."""
    return isinstance(quantizer, (quantizers.XnorWeight, lq.quantizers.MagnitudeAwareSign))


def _is_quant_linear(layer):
    return isinstance(layer, (lq.layers.QuantDense, lq.layers.QuantConv2D))


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class BitPlanes(tf.keras.layers.Layer):
    """``[0, 1]`` pixels -> ``bits`` ``+-1`` bit planes (and an all-ones plane), stacked on the batch axis.

    Output shape ``(bits + ones) * batch`` x the input's example shape; plane ``j < bits``
    is ``2 * b_j - 1`` for bit ``j`` of :func:`edgebnn.ops.discretize_levels`. The ones
    plane is computed as ``plane_0 ** 2`` so that the converter cannot fold it into a
    stored constant image.
    """

    def __init__(self, bits, ones=True, **kwargs):
        super().__init__(**kwargs)
        self.bits, self.ones = bits, bool(ones)

    def call(self, inputs):
        levels = discretize_levels(inputs, self.bits)
        planes = [2.0 * tf.math.floormod(tf.floor(levels / 2.0**j), 2.0) - 1.0 for j in range(self.bits)]
        if self.ones:
            planes.append(planes[0] * planes[0])
        return tf.concat(planes, axis=0) if len(planes) > 1 else planes[0]

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "ones": self.ones}


def plane_coefficients(bits):
    """Weights of the planes of :class:`BitPlanes`: ``2**(j-1) / 2**bits``, and ``1/2`` for the ones plane."""
    return [2.0 ** (j - 1) / 2.0**bits for j in range(bits)] + [0.5]


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class ChannelBias(tf.keras.layers.Layer):
    """Add a constant vector on the last axis (the bit-plane constant term)."""

    def __init__(self, bias, **kwargs):
        super().__init__(**kwargs)
        self.bias = [float(b) for b in np.ravel(bias)]

    def call(self, inputs):
        return inputs + tf.constant(self.bias, dtype=inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "bias": self.bias}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class MergePlanes(tf.keras.layers.Layer):
    """Weighted sum over the batch-stacked planes: ``(P * batch, ...) -> (batch, ...)``."""

    def __init__(self, coefficients, **kwargs):
        super().__init__(**kwargs)
        self.coefficients = [float(c) for c in coefficients]

    def call(self, inputs):
        parts = tf.split(inputs, len(self.coefficients), axis=0)
        out = parts[0] * self.coefficients[0]
        for part, c in zip(parts[1:], self.coefficients[1:]):
            out = out + part * c
        return out

    def get_config(self):
        return {**super().get_config(), "coefficients": self.coefficients}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class ChannelScale(tf.keras.layers.Layer):
    """Multiply the last axis by a constant vector (folded XNOR scales)."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(s) for s in np.ravel(scale)]

    def call(self, inputs):
        return inputs * tf.constant(self.scale, dtype=inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def packed_plane_count(bits):
    """Channels per input channel of :class:`PackedPlanes`: ``2**(bits + 1) - 1``."""
    return 2 ** (bits + 1) - 1


def packed_plane_coefficients(bits):
    """``(a, c)`` with ``d = c + a * S`` (see :class:`PackedPlanes`): ``a = 2**-(bits + 2)``, ``c = (2**(bits + 1) - 1) a``."""
    a = 2.0 ** -(bits + 2)
    return a, (2.0 ** (bits + 1) - 1.0) * a


#: Added to a pixel to make :class:`PackedPlanes`' ones plane: positive for any finite input.
ONES_PLANE_SHIFT = 2.0**100


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class PackedPlanes(tf.keras.layers.Layer):
    """``[0, 1]`` pixels -> thermometer planes of the discretized input on the channel axis, with a ones plane.

    With ``n = 2**bits`` levels and level ``t = floor(n x)`` (clamped to ``[0, n - 1]``
    as :func:`edgebnn.ops.discretize_levels`), plane ``q = 1 .. n - 1`` is ``+1`` where
    ``t >= q`` and ``-1`` elsewhere (a thermometer code); each comes twice, followed by
    one plane of ones: ``P = 2 n - 1`` channels per input channel, in the order
    ``channel * P + plane``. Their sum ``S = 4 t - 2 (n - 1) + 1`` gives the discretized
    input exactly, ``d = (t + 1/2) / n = c + a S`` (:func:`packed_plane_coefficients`),
    and padding with ``-1`` on every plane gives ``S = -P``, i.e. ``d = 0``: a binary
    convolution over these channels, padded with ``-1``, equals the zero-padded
    convolution of ``d`` up to the per-channel map ``a * out + c * sum(W)``. (The
    factor 2 in the copies is what lets ``-P`` land on ``d = 0``.)

    The output is not yet ``+-1``: it is ``x - q / n`` for plane ``q`` and
    ``x + 2**100`` for the ones plane (positive for every finite pixel, and not a
    constant the converter could fold into a stored image): one broadcast ``ADD`` in
    the converted graph. The binary convolution's ``ste_sign`` input quantizer takes
    the sign. ``x - q / n >= 0`` exactly when ``t >= q``: a float subtraction is zero
    only for equal operands and never rounds across zero, and at the boundary
    ``x = q / n`` both Larq's ``ste_sign`` and LCE's bit packing give ``+1``, as
    ``floor(n x) = q`` does. Inputs outside ``[0, 1]`` saturate to the first or last
    level, as :func:`~edgebnn.ops.discretize_levels` clamps them.
    """

    def __init__(self, bits, **kwargs):
        super().__init__(**kwargs)
        self.bits = bits

    def _shift(self):
        n = 2**self.bits
        return np.array([-q / n for q in range(1, n) for _ in range(2)] + [ONES_PLANE_SHIFT], np.float32)

    def call(self, inputs):
        shift = self._shift()
        if inputs.shape[-1] == 1:  # broadcast over the channel axis: no reshape op
            return inputs + shift
        planes = inputs[..., None] + shift
        return tf.reshape(planes, (-1, *inputs.shape[1:-1], inputs.shape[-1] * len(shift)))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] * packed_plane_count(self.bits))

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class ConstantPad2D(tf.keras.layers.Layer):
    """Pad height and width with a constant: ``padding = ((top, bottom), (left, right))``."""

    def __init__(self, padding, value, **kwargs):
        super().__init__(**kwargs)
        self.padding = [[int(a), int(b)] for a, b in padding]
        self.value = float(value)

    def call(self, inputs):
        return tf.pad(inputs, [[0, 0], *self.padding, [0, 0]], constant_values=self.value)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        grow = lambda n, a, b: None if n is None else n + a + b  # noqa: E731
        return (input_shape[0], grow(input_shape[1], top, bottom), grow(input_shape[2], left, right),
                input_shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class SpaceToDepth(tf.keras.layers.Layer):
    """``tf.nn.space_to_depth``: ``(H, W, C) -> (H/b, W/b, b*b*C)``, channel ``(ry * b + rx) * C + c``."""

    def __init__(self, block, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, inputs):
        return tf.nn.space_to_depth(inputs, self.block)

    def compute_output_shape(self, input_shape):
        b = self.block
        return (input_shape[0], input_shape[1] // b, input_shape[2] // b, input_shape[3] * b * b)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


class _Value:
    """A tensor of the rewritten graph and how it represents the original tensor.

    ``kind``: ``"plain"`` (same as the original), ``"column"`` (a 2-D tensor carried as
    ``(batch, 1, 1, channels)``), ``"planes"`` (bit planes of a discretized input, made
    on use) or ``"merge"`` (per-plane outputs of the first layer, summed on use).
    """

    def __init__(self, tensor, kind="plain", coefficients=None, bits=None, pending=(), merged_kind=None,
                 ones_term=0.0, source=None):
        self.tensor, self.kind, self.coefficients = tensor, kind, coefficients
        # "planes": ``tensor`` is the discretization's input, the planes are made on use
        # (:func:`_planes`), then the per-example reshapes in ``pending`` are replayed.
        self.bits, self.pending, self.source = bits, tuple(pending), source
        # "merge": ``tensor`` holds the per-plane outputs of the bit-plane layer, to be
        # combined with ``coefficients`` plus ``ones_term``; the result is ``merged_kind``.
        self.merged_kind, self.ones_term = merged_kind, ones_term


def _discretized(value):
    """Materialize a ``"planes"`` value as the original discretized input (a copy of the layer)."""
    t = _call_copy(value.source, value.tensor)
    for layer in value.pending:
        t = _call_copy(layer, t)
    return t


def _planes(value, *, ones):
    """Materialize a ``"planes"`` value: the stacked bit planes after its pending reshapes."""
    t = BitPlanes(value.bits, ones=ones)(value.tensor)
    for layer in value.pending:
        t = _call_copy(layer, t)
    return t


def _copy_layer(layer, name=None, **overrides):
    """A fresh layer of the same class and config (weights copied after building)."""
    if isinstance(layer, tf.keras.Model):
        return tf.keras.models.clone_model(layer)
    config = {**layer.get_config(), **overrides}
    if name is not None:
        config["name"] = name
    return layer.__class__.from_config(config)


def _plain(value):
    """The original tensor's value: merge planes, flatten a column."""
    if value.kind == "planes":
        return _discretized(value)
    if value.kind == "merge":
        return _plain(_merged(value))
    if value.kind == "column":
        return tf.keras.layers.Reshape((value.tensor.shape[-1],))(value.tensor)
    return value.tensor


def _call_copy(layer, tensor, **overrides):
    new = _copy_layer(layer, **overrides)
    out = new(tensor)
    new.set_weights(layer.get_weights())
    return out


def _effective_kernel(layer):
    """The kernel ``layer`` computes with (quantizer applied), as a 4-D conv kernel."""
    kernel = np.asarray(layer.kernel_quantizer(tf.constant(layer.get_weights()[0])))
    return kernel.reshape(1, 1, *kernel.shape) if kernel.ndim == 2 else kernel


def _xnor_alpha(layer):
    """Per-output-channel XNOR scale ``mean(|W|)`` of the latent kernel."""
    kernel = layer.get_weights()[0]
    return np.mean(np.abs(kernel), axis=tuple(range(kernel.ndim - 1)))


def _lce_linear(layer, tensor, *, conv, input_quantizer=None):
    """Call a copy of quantized linear ``layer`` on ``tensor`` with a ``+-1`` kernel (LCE target).

    ``conv``: express a ``QuantDense`` as a 1x1 ``QuantConv2D`` (``tensor`` is 4-D).
    XNOR (magnitude-aware) kernels become ``ste_sign`` kernels and a :class:`ChannelScale`.
    ``input_quantizer`` overrides the copy's input quantizer.
    """
    config = layer.get_config()
    xnor = _is_xnor(layer.kernel_quantizer)
    if xnor and layer.use_bias:
        return None
    overrides = {"kernel_quantizer": "ste_sign"} if xnor else {}
    if input_quantizer is not None:
        overrides["input_quantizer"] = input_quantizer
    weights = layer.get_weights()
    if conv and isinstance(layer, lq.layers.QuantDense):
        keep = ("name", "use_bias", "kernel_constraint", "bias_initializer", "kernel_initializer")
        new = lq.layers.QuantConv2D(
            config["units"], 1,
            input_quantizer=overrides.get("input_quantizer", config["input_quantizer"]),
            kernel_quantizer=overrides.get("kernel_quantizer", config["kernel_quantizer"]),
            **{k: config[k] for k in keep},
        )
        weights = [weights[0].reshape(1, 1, *weights[0].shape)] + weights[1:]
    else:
        new = _copy_layer(layer, **overrides)
    out = new(tensor)
    new.set_weights(weights)
    if xnor:
        out = ChannelScale(_xnor_alpha(layer), name=f"{layer.name}_xnor_scale")(out)
    return out


#: Width of LCE's bitpacking words: binary layers pack input channels 32 to a word.
LCE_BITPACK_WIDTH = 32
_BIT_PLANES = (True, False, "auto")


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
    inputs = [tf.keras.Input(type_spec=t.type_spec, name=t.name.split(":")[0]) for t in model.inputs]
    values = {}
    usage = model._tensor_usage_count
    for ref, new in zip(model.inputs, inputs):
        values[str(id(ref))] = _Value(new)

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            layer = node.layer
            ids = node.flat_input_ids
            if node._single_positional_tensor_passed and not node.call_kwargs:
                out = _rewrite_node(layer, values[ids[0]], opts, single_use=usage[ids[0]] == 1)
            else:
                plain = {i: [_plain(values[i])] * usage[i] for i in ids}
                args, kwargs = node.map_arguments(plain)
                new = _copy_layer(layer)
                out = _Value(new(*args, **kwargs))
                new.set_weights(layer.get_weights())
            outputs = tf.nest.flatten(out.tensor) if out.kind == "plain" else [out.tensor]
            for x_id, y in zip(node.flat_output_ids, outputs):
                values[x_id] = _Value(y, out.kind, out.coefficients, out.bits, out.pending, out.merged_kind,
                                      out.ones_term, out.source)
    outputs = [_plain(values[str(id(t))]) for t in model.outputs]
    outputs = tf.nest.pack_sequence_as(model._nested_outputs, outputs)
    return tf.keras.Model(inputs, outputs, name=f"{model.name}_rewritten")


class _Options:
    def __init__(self, dense_to_conv, bit_planes, fold_xnor, sign_chains=frozenset()):
        self.dense_to_conv, self.bit_planes, self.fold_xnor = dense_to_conv, bit_planes, fold_xnor
        self.sign_chains = sign_chains


def _is_relu(layer):
    if isinstance(layer, tf.keras.layers.ReLU):
        plain = layer.max_value is None and float(layer.threshold) == 0.0
        return plain and float(layer.negative_slope) == 0.0
    return isinstance(layer, tf.keras.layers.Activation) and layer.get_config()["activation"] == "relu"


def _single_inbound(layer):
    nodes = layer._inbound_nodes
    if len(nodes) != 1:
        return None
    inbound = nodes[0].inbound_layers
    return inbound if isinstance(inbound, tf.keras.layers.Layer) else None


def sign_threshold_chains(model):
    """Names of the ReLU and BatchNorm layers of ReLU -> BatchNorm -> sign chains in ``model``.

    A chain qualifies when the ReLU's only consumer is the BatchNorm (on the last
    axis) and every consumer of the BatchNorm takes the sign of its input
    (a ``ste_sign``-like input quantizer).
    """
    names = set()
    for bn in model.layers:
        if not isinstance(bn, tf.keras.layers.BatchNormalization) or not _last_axis(bn):
            continue
        relu = _single_inbound(bn)
        if relu is None or not _is_relu(relu) or len(relu._outbound_nodes) != 1 or len(bn._inbound_nodes) != 1:
            continue
        consumers = [node.outbound_layer for node in bn._outbound_nodes]
        if consumers and all(is_sign(getattr(layer, "input_quantizer", None)) for layer in consumers):
            names |= {relu.name, bn.name}
    return frozenset(names)


def _batch_norm_affine(bn):
    """Inference-time BatchNorm as ``g * x + h`` per channel (arrays over the channels)."""
    gamma = bn.gamma.numpy() if bn.gamma is not None else 1.0
    beta = bn.beta.numpy() if bn.beta is not None else 0.0
    g = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon) * np.ones_like(bn.moving_mean.numpy())
    return g, beta - g * bn.moving_mean.numpy()


def _sign_threshold(bn):
    """``(scale, bias)`` per channel with ``sign(scale * z + bias) == sign(bn(relu(z)))``."""
    g, h = _batch_norm_affine(bn)
    scale, bias = np.zeros_like(g), np.where(h >= 0, 1.0, -1.0).astype(np.float32)  # g == 0: sign(h)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(g != 0, -h / g, 0.0)
    up, down = g > 0, g < 0
    # g > 0: +1 iff relu(z) >= theta: always if theta <= 0, else iff z >= theta
    scale = np.where(up & (theta > 0), 1.0, np.where(up, 0.0, scale))
    bias = np.where(up & (theta > 0), -theta, np.where(up, 1.0, bias))
    # g < 0: +1 iff relu(z) <= theta: never if theta < 0, else iff z <= theta
    scale = np.where(down & (theta >= 0), -1.0, np.where(down, 0.0, scale))
    bias = np.where(down & (theta >= 0), theta, np.where(down, -1.0, bias))
    return scale.astype(np.float32), bias.astype(np.float32)


def _binary_kernel(layer, opts):
    quantizer = getattr(layer, "kernel_quantizer", None)
    return _is_quant_linear(layer) and (is_sign(quantizer) or (opts.fold_xnor and _is_xnor(quantizer)))


def _binary_linear(layer, t, opts, *, source):
    """Rewritten binary linear ``layer`` on ``t`` (4-D if it was a dense layer), or ``None``."""
    return _lce_linear(layer, t, conv=isinstance(layer, lq.layers.QuantDense),
                       input_quantizer="ste_sign" if source == "planes" else None)


def _as_column(t):
    return tf.keras.layers.Reshape((1, 1, t.shape[-1]))(t)


def _last_axis(layer):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return len(axis) == 1 and axis[0] in (-1, len(layer.input_shape) - 1)


def _merged(value):
    """Materialize a ``"merge"`` value: weighted sum of the plane outputs plus the constant term."""
    out = MergePlanes(value.coefficients)(value.tensor)
    if np.any(np.asarray(value.ones_term) != 0):
        out = ChannelBias(value.ones_term)(out)
    return _Value(out, value.merged_kind)


def _fuse_batch_norm(bn, value):
    """BatchNorm after the bit-plane layer, folded into the per-plane outputs (LCE fuses it into the bconv).

    ``BN(sum_j c_j o_j + K) = A sum_j c_j o_j + A K + B = sum_j c_j (A o_j + D)`` with
    ``D = (A K + B) / sum_j c_j``.
    """
    a, b = _batch_norm_affine(bn)
    d = (a * value.ones_term + b) / sum(value.coefficients)
    out = ChannelScale(a, name=f"{bn.name}_scale")(value.tensor)
    out = ChannelBias(d, name=f"{bn.name}_bias")(out)
    return _Value(MergePlanes(value.coefficients, name=f"{bn.name}_merge_planes")(out), value.merged_kind)


def _same_padding(size, kernel, stride):
    """TensorFlow's ``"same"`` padding: output size and ``(before, after)`` padding."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, (total // 2, total - total // 2)


def _packed_layout(layer, bits):
    """``(block, packed_words, float_words)`` of conv ``layer`` as a :class:`PackedPlanes` binary convolution.

    ``block``: the space-to-depth block (the stride, when both strides are equal and
    divide the kernel; else 1). ``packed_words``: 32-bit words per output channel of the
    binary kernel (LCE packs input channels 32 to a word); ``float_words``: float32
    weights per output channel of the original layer.
    """
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    channels = layer.input_spec.axes[-1]
    block = sh if sh == sw and sh > 1 and kh % sh == 0 and kw % sw == 0 else 1
    packed_channels = channels * packed_plane_count(bits) * block * block
    packed = (kh // block) * (kw // block) * -(-packed_channels // LCE_BITPACK_WIDTH)
    return block, packed, kh * kw * channels


def _packed_eligible(layer, value, opts):
    """Whether the first layer ``layer`` on bit planes ``value`` takes the channel-packed form."""
    if not isinstance(layer, lq.layers.QuantConv2D) or value.pending or not _binary_kernel(layer, opts):
        return False
    if layer.input_quantizer is not None or layer.use_bias or tuple(layer.dilation_rate) != (1, 1):
        return False
    if layer.data_format != "channels_last" or None in value.tensor.shape[1:]:
        return False
    if layer.input_spec.axes[-1] >= LCE_BITPACK_WIDTH:
        return False  # the batch-stacked planes share one kernel without copies
    _, packed, float_words = _packed_layout(layer, value.bits)
    return opts.bit_planes is True or packed < float_words


def _packed_plane_conv(layer, value):
    """First binary convolution ``layer`` on a discretized input as one binary conv over :class:`PackedPlanes`.

    The planes are padded with ``-1`` (which stands for a zero pixel) and, for a
    strided layer whose kernel the stride divides, rearranged by space-to-depth so
    that the ``s x s`` phases of the stride become channels: an ``8x8`` stride-2
    kernel over one channel becomes a ``4x4`` stride-1 kernel over ``4 P`` channels,
    which LCE packs into one word per tap. Returns ``None`` if the kernel is not
    ``+-alpha_c`` (sign or XNOR).
    """
    bits, x = value.bits, value.tensor
    height, width = x.shape[1:3]
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    block, _, _ = _packed_layout(layer, bits)
    if layer.padding == "same":
        out_h, (top, bottom) = _same_padding(height, kh, sh)
        out_w, (left, right) = _same_padding(width, kw, sw)
    else:
        out_h, out_w, top, bottom, left, right = (height - kh) // sh + 1, (width - kw) // sw + 1, 0, 0, 0, 0
    bottom += -(height + top + bottom) % block
    right += -(width + left + right) % block
    kernel = _effective_kernel(layer)
    alpha = np.max(np.abs(kernel), axis=(0, 1, 2))
    signs = np.sign(kernel)
    if np.any(signs == 0) or not np.array_equal(signs * alpha, kernel):
        return None
    t = PackedPlanes(bits, name=f"{layer.name}_packed_planes")(x)
    if top or bottom or left or right:
        t = ConstantPad2D(((top, bottom), (left, right)), -1.0, name=f"{layer.name}_pad")(t)
    packed = np.repeat(signs, packed_plane_count(bits), axis=2)
    if block > 1:
        t = SpaceToDepth(block, name=f"{layer.name}_space_to_depth")(t)
        cin, cout = packed.shape[2:]
        packed = packed.reshape(kh // block, block, kw // block, block, cin, cout).transpose(0, 2, 1, 3, 4, 5)
        packed = packed.reshape(kh // block, kw // block, block * block * cin, cout)
    conv = lq.layers.QuantConv2D(
        kernel.shape[-1], packed.shape[:2], strides=1 if block > 1 else layer.strides, padding="valid",
        input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False, name=layer.name,
    )
    out = conv(t)
    conv.set_weights([packed.astype(np.float32)])
    a, c = packed_plane_coefficients(bits)
    out = ChannelScale(a * alpha, name=f"{layer.name}_plane_scale")(out)
    out = ChannelBias(c * kernel.sum(axis=(0, 1, 2)), name=f"{layer.name}_plane_bias")(out)
    extra_h, extra_w = out.shape[1] - out_h, out.shape[2] - out_w
    if extra_h or extra_w:
        out = tf.keras.layers.Cropping2D(((0, extra_h), (0, extra_w)), name=f"{layer.name}_crop")(out)
    return out


def _rewrite_node(layer, value, opts, *, single_use=False):
    """The rewritten output of single-input ``layer`` applied to ``value``."""
    if value.kind == "merge":
        if single_use and isinstance(layer, tf.keras.layers.BatchNormalization) and _last_axis(layer):
            return _fuse_batch_norm(layer, value)
        value = _merged(value)
    if layer.name in opts.sign_chains:
        if value.kind == "planes":
            value = _Value(_plain(value))
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            scale, bias = _sign_threshold(layer)
            out = ChannelScale(scale, name=f"{layer.name}_sign_scale")(value.tensor)
            return _Value(ChannelBias(bias, name=f"{layer.name}_sign_bias")(out), value.kind)
        return value  # the ReLU: folded into the BatchNorm's threshold
    t = value.tensor
    dense = isinstance(layer, lq.layers.QuantDense)
    if isinstance(layer, InputDiscretization) and opts.bit_planes and value.kind == "plain":
        return _Value(t, "planes", plane_coefficients(layer.bits), bits=layer.bits, source=layer)
    if value.kind == "planes":
        if isinstance(layer, _PER_EXAMPLE_RESHAPE):
            return _Value(t, "planes", value.coefficients, bits=value.bits, pending=(*value.pending, layer),
                          source=value.source)
        if _packed_eligible(layer, value, opts):
            out = _packed_plane_conv(layer, value)
            if out is not None:
                return _Value(out)
        worth_it = dense or opts.bit_planes is True or layer.input_spec.axes[-1] >= LCE_BITPACK_WIDTH
        if _binary_kernel(layer, opts) and layer.input_quantizer is None and not layer.use_bias and worth_it and (
            not dense or opts.dense_to_conv
        ):
            # Without spatial padding the ones plane's output is a per-channel constant:
            # add it as a bias instead of convolving an all-ones plane.
            unpadded = dense or layer.padding == "valid" or tuple(layer.kernel_size) == (1, 1)
            t = _planes(value, ones=not unpadded)
            out = _binary_linear(layer, _as_column(t) if dense else t, opts, source="planes")
            if out is not None:
                coefficients = value.coefficients[:-1] if unpadded else value.coefficients
                ones_term = value.coefficients[-1] * _effective_kernel(layer).sum(axis=(0, 1, 2)) if unpadded else 0.0
                return _Value(out, "merge", coefficients, merged_kind="column" if dense else "plain",
                              ones_term=ones_term)
        value = _Value(_plain(value))
        t = value.tensor
    if value.kind == "column":
        if isinstance(layer, _CHANNELWISE):
            overrides = {"axis": -1} if isinstance(layer, tf.keras.layers.BatchNormalization) else {}
            return _Value(_call_copy(layer, t, **overrides), "column")
    binary_input = is_sign(getattr(layer, "input_quantizer", None))
    if value.kind == "column" and not (dense and _binary_kernel(layer, opts) and binary_input):
        value = _Value(_plain(value))
        t = value.tensor
    if _binary_kernel(layer, opts) and binary_input and (not dense or opts.dense_to_conv):
        column = value.kind == "column"
        out = _binary_linear(layer, t if (column or not dense) else _as_column(t), opts, source="sign")
        if out is not None:
            return _Value(out, "column" if dense else "plain")
        if column:
            t = _plain(value)
    if opts.fold_xnor and _is_quant_linear(layer) and _is_xnor(layer.kernel_quantizer) and not layer.use_bias:
        return _Value(_lce_linear(layer, t, conv=False))
    return _Value(_call_copy(layer, t))
