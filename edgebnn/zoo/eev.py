"""Binary networks trained to be verifiable exactly: an MLP and the conv-small network of EEV.

Reference: K. Jia and M. Rinard, "Efficient exact verification of binarized neural
networks", NeurIPS 2020. Their conv-small (after Wong and Kolter's small MNIST
network) is two binary 4x4 stride-2 convolutions with 16 and 32 channels, a binary
dense layer of 100 units and a binary output layer, each followed by BatchNorm.

What makes these networks easy to verify, besides adversarial training (the
recipe's ``[train.adversarial]``) and input discretization (``input_bits``):

- ``precision="ternary"``: :class:`~edgebnn.quantizers.TernaryWeight` kernels, binary
  weights with a balanced layer-wise fraction of zeros, so every neuron counts fewer
  inputs (EEV's "balanced layer-wise sparsity");
- ``stability_weight > 0``: :class:`VerifiableModel` adds, in training, a loss on the
  sign neurons whose sign interval bounds over the L-infinity ball of radius
  ``stability_eps`` are not decided (Xiao et al. 2019's ReLU-stability loss, which EEV
  applies to BNNs as ``1 - tanh(1 + lo * hi)``). The bounds are the exact interval
  propagation the verifier starts from (:func:`interval_bounds`), so fewer unstable
  neurons are fewer constraints left for the solver.

The models are single chains of Larq layers that :func:`edgebnn.certify.extract` reads.
"""

import larq as lq
import tensorflow as tf

from edgebnn import _validate
from edgebnn.layers import InputDiscretization
from edgebnn.quantizers import TERNARY_THRESHOLD_RATIO, TernaryWeight
from edgebnn.zoo.common import BATCH_NORM, model_input

ARCHITECTURES = ("mlp", "conv_small")
PRECISIONS = ("binary", "ternary")
#: EEV conv-small: channels of the two convolutions, their kernel size and stride, the dense width.
CONV_SMALL_CHANNELS = (16, 32)
CONV_SMALL_KERNEL = 4
CONV_SMALL_STRIDE = 2
CONV_SMALL_UNITS = 100
#: The MLP: hidden layers of this width (the binary 784-100x3-10 of the certification baseline).
MLP_UNITS = 100
MLP_LAYERS = 3


def _pre_sign_layers(model):
    """The BatchNorm layers whose outputs feed a sign (every one but the last)."""
    norms = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    return norms[:-1]


def _affine_bounds(layer, lo, hi):
    """Interval image of a Larq ``QuantDense`` / ``QuantConv2D`` (no bias) on ``[lo, hi]``."""
    if layer.input_quantizer is not None:  # a sign: monotone
        lo, hi = layer.input_quantizer(lo), layer.input_quantizer(hi)
    kernel = layer.kernel_quantizer(layer.kernel) if layer.kernel_quantizer is not None else layer.kernel
    center, radius = (lo + hi) / 2, (hi - lo) / 2
    if isinstance(layer, lq.layers.QuantDense):
        mid, spread = tf.matmul(center, kernel), tf.matmul(radius, tf.abs(kernel))
    else:
        conv = lambda t, k: tf.nn.convolution(  # noqa: E731
            t, k, strides=layer.strides, padding=layer.padding.upper(), dilations=layer.dilation_rate)
        mid, spread = conv(center, kernel), conv(radius, tf.abs(kernel))
    return mid - spread, mid + spread


def _batch_norm_affine(layer):
    """Inference BatchNorm as ``gain * z + shift`` per channel, held constant for the loss's gradient.

    Constant, so that the stability loss cannot make neurons stable by shifting their
    BatchNorm until they are constant (which keeps every bound decided and the network
    useless); it acts on the binary weights only.
    """
    gain = tf.math.rsqrt(layer.moving_variance + layer.epsilon)
    if layer.gamma is not None:
        gain = gain * layer.gamma
    shift = -layer.moving_mean * gain
    if layer.beta is not None:
        shift = shift + layer.beta
    return tf.stop_gradient(gain), tf.stop_gradient(shift)


def interval_bounds(model, x, eps):
    """Interval bounds of every pre-sign value (after BatchNorm, inference mode) over the ball around ``x``.

    The ball is clipped to ``[0, 1]`` and pushed through the input discretization
    (monotone), then through each binary layer by center / radius interval
    arithmetic and through each BatchNorm in inference mode (an affine map per
    channel, a constant for the gradient; its sign is taken into account).

    Args:
        model: a chain of ``InputDiscretization`` / ``Flatten`` / ``Reshape`` / Larq
            ``QuantDense`` / ``QuantConv2D`` / ``BatchNormalization`` layers.
        x: inputs in ``[0, 1]``.
        eps: L-infinity radius.

    Returns:
        A list of ``(lo, hi)`` tensors, one per BatchNorm whose output feeds a sign.

    Raises:
        ValueError: a layer outside that list, or a convolution padded with nonzero values.
    """
    lo, hi = tf.clip_by_value(x - eps, 0.0, 1.0), tf.clip_by_value(x + eps, 0.0, 1.0)
    hidden = {id(layer) for layer in _pre_sign_layers(model)}
    bounds = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        if isinstance(layer, (InputDiscretization, tf.keras.layers.Flatten, tf.keras.layers.Reshape)):
            lo, hi = layer(lo), layer(hi)
        elif isinstance(layer, (lq.layers.QuantDense, lq.layers.QuantConv2D)):
            if isinstance(layer, lq.layers.QuantConv2D) and layer.pad_values != 0:
                raise ValueError(f"interval_bounds: layer {layer.name!r} pads with {layer.pad_values}, not 0.")
            lo, hi = _affine_bounds(layer, lo, hi)
        elif isinstance(layer, tf.keras.layers.BatchNormalization):
            gain, shift = _batch_norm_affine(layer)
            a, b = lo * gain + shift, hi * gain + shift
            lo, hi = tf.minimum(a, b), tf.maximum(a, b)
            if id(layer) in hidden:
                bounds.append((lo, hi))
        else:
            raise ValueError(f"interval_bounds: unsupported layer {layer.name!r} ({type(layer).__name__}).")
    return bounds


def stability_loss(bounds):
    """Mean of ``1 - tanh(1 + lo * hi)`` over every hidden neuron: large where the sign is undecided (``lo < 0 <= hi``)."""
    terms = [tf.reshape(1.0 - tf.tanh(1.0 + lo * hi), [tf.shape(lo)[0], -1]) for lo, hi in bounds]
    return tf.reduce_mean(tf.concat(terms, axis=1))


def unstable_fraction(model, x, eps):
    """Fraction of hidden sign neurons whose interval bounds over the ball straddle 0, per example."""
    flags = [tf.reshape(tf.cast((lo < 0) & (hi >= 0), tf.float32), [tf.shape(lo)[0], -1])
             for lo, hi in interval_bounds(model, x, eps)]
    return tf.reduce_mean(tf.concat(flags, axis=1), axis=1)


def check_batch_norm_calibration(model):
    """Check that :func:`calibrate_batch_norm` can calibrate ``model``.

    Args:
        model: a functional Keras model.

    Raises:
        ValueError: ``model`` has no ``BatchNormalization`` among its layers, or one that is
            called more than once (its inputs are then not one tensor of the graph).
    """
    norms = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    if not norms:
        raise ValueError(f"calibrate_batch_norm: model {model.name!r} has no BatchNormalization layer to calibrate.")
    shared = [layer.name for layer in norms if len(layer.inbound_nodes) != 1]
    if shared:
        raise ValueError(f"calibrate_batch_norm: BatchNormalization layers {shared} of model {model.name!r} are "
                         f"called more than once; their inputs are not one tensor to take statistics of.")


def calibrate_batch_norm(model, x, *, batch_size=500):
    """Set every BatchNorm's moving mean and variance to the statistics of its inputs over ``x``, layer by layer.

    The moving averages of training lag behind weights that keep changing: with sparse
    ternary kernels a weight entering or leaving the zero band shifts a neuron's whole
    sum distribution, so the inference-mode network can be far worse than in training.
    EEV recomputes the statistics on training data before choosing its model
    (``calib_bn``); this does the same exactly, each layer after the ones before it are
    calibrated, in inference mode.

    Args:
        model: a chain model with ``BatchNormalization`` layers (changed in place).
        x: inputs, e.g. the training images.
        batch_size: inputs per forward pass.

    Returns:
        ``model``.

    Raises:
        ValueError: ``batch_size`` is not a positive integer, ``x`` is empty, or
            :func:`check_batch_norm_calibration` refuses ``model``.
    """
    _validate.positive_int(batch_size, "batch_size")
    if len(x) == 0:
        raise ValueError("calibrate_batch_norm: `x` is empty.")
    check_batch_norm_calibration(model)
    for layer in model.layers:
        if not isinstance(layer, tf.keras.layers.BatchNormalization):
            continue
        probe = tf.keras.Model(model.inputs, layer.input)
        z = probe.predict(x, batch_size=batch_size, verbose=0).astype("float64")
        axes = tuple(range(z.ndim - 1))
        layer.moving_mean.assign(z.mean(axis=axes).astype("float32"))
        layer.moving_variance.assign(z.var(axis=axes).astype("float32"))
    return model


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class VerifiableModel(tf.keras.Model):
    """A functional chain model that adds :func:`stability_loss` over the ``stability_eps`` ball in training.

    Inference is the chain itself; the loss is added with ``add_loss`` on every
    training call, so ``fit`` (also through :class:`~edgebnn.training.AdversarialModel`,
    where it is taken around the adversarial inputs) minimizes it with the task loss.

    Args:
        inputs, outputs: as for a functional ``tf.keras.Model``.
        stability_eps: radius of the ball the bounds are taken over (>= 0).
        stability_weight: weight of the loss (>= 0; 0 turns it off).
    """

    # the positional arguments are exactly Functional's, so Keras saves and revives the graph
    def __init__(self, inputs, outputs, name=None, trainable=True, *, stability_eps=0.0, stability_weight=0.0):
        super().__init__(inputs, outputs, name=name, trainable=trainable)
        self.stability_eps = _validate.number(stability_eps, "stability_eps", low=0, high=1)
        self.stability_weight = _validate.number(stability_weight, "stability_weight", low=0)

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        if training and self.stability_weight > 0:
            bounds = interval_bounds(self, inputs, self.stability_eps)
            self.add_loss(self.stability_weight * stability_loss(bounds))
        return outputs

    def get_config(self):
        return {**super().get_config(), "stability_eps": self.stability_eps,
                "stability_weight": self.stability_weight}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        options = {key: config.pop(key) for key in ("stability_eps", "stability_weight") if key in config}
        model = super().from_config(config, custom_objects=custom_objects)
        model.stability_eps = options.get("stability_eps", 0.0)
        model.stability_weight = options.get("stability_weight", 0.0)
        return model


def _kernel_quantizer(precision, threshold_ratio):
    return TernaryWeight(threshold_ratio) if precision == "ternary" else "ste_sign"


def build_verifiable(
    *,
    architecture="mlp",
    precision="ternary",
    hidden_units=MLP_UNITS,
    hidden_layers=MLP_LAYERS,
    threshold_ratio=TERNARY_THRESHOLD_RATIO,
    stability_eps=0.0,
    stability_weight=0.0,
    input_bits=None,
    num_classes=10,
    input_shape=(28, 28, 1),
    name=None,
):
    """A binary network built for exact verification (see the module docstring).

    Args:
        architecture: ``"mlp"`` (``hidden_layers`` x ``hidden_units``) or ``"conv_small"`` (EEV).
        precision: ``"binary"`` (``+-1`` weights) or ``"ternary"`` (``+-1`` and 0).
        hidden_units, hidden_layers: the MLP's shape (ignored by ``conv_small``).
        threshold_ratio: ternary threshold, see :class:`~edgebnn.quantizers.TernaryWeight`.
        stability_eps, stability_weight: the training loss on unstable sign neurons (:class:`VerifiableModel`).
        input_bits, num_classes, input_shape, name: the arguments every builder shares (:mod:`edgebnn.zoo`).

    Returns:
        An uncompiled :class:`VerifiableModel` mapping ``[0, 1]`` pixels to logits.
    """
    family = "eev_bnn"
    inputs, x = model_input(
        family, precision, PRECISIONS, input_bits=input_bits, num_classes=num_classes, input_shape=input_shape)
    _validate.one_of(architecture, "architecture", ARCHITECTURES, prefix=f"{family}: ")
    _validate.positive_int(hidden_units, "hidden_units", prefix=f"{family}: ")
    _validate.positive_int(hidden_layers, "hidden_layers", prefix=f"{family}: ")
    quant = lambda first: dict(  # noqa: E731
        kernel_quantizer=_kernel_quantizer(precision, threshold_ratio), kernel_constraint="weight_clip",
        input_quantizer=None if first else "ste_sign", use_bias=False)
    if architecture == "conv_small":
        if len(input_shape) != 3:
            raise ValueError(f"{family}: conv_small needs `input_shape` (height, width, channels), got {input_shape!r}.")
        for i, channels in enumerate(CONV_SMALL_CHANNELS):
            x = lq.layers.QuantConv2D(channels, CONV_SMALL_KERNEL, strides=CONV_SMALL_STRIDE, padding="same",
                                      **quant(i == 0), name=f"conv_{i}")(x)
            x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_conv_{i}")(x)
        x = tf.keras.layers.Flatten()(x)
        widths = [CONV_SMALL_UNITS]
    else:
        x = tf.keras.layers.Flatten()(x)
        widths = [hidden_units] * hidden_layers
    first = architecture == "mlp"
    for i, units in enumerate(widths):
        x = lq.layers.QuantDense(units, **quant(first and i == 0), name=f"dense_{i}")(x)
        x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_{i}")(x)
    x = lq.layers.QuantDense(num_classes, **quant(False), name="dense_out")(x)
    logits = tf.keras.layers.BatchNormalization(**BATCH_NORM, name="logits")(x)
    bits = "" if input_bits is None else f"_in{input_bits}"
    return VerifiableModel(inputs, logits, stability_eps=stability_eps, stability_weight=stability_weight,
                           name=name or f"eev_{architecture}_{precision}{bits}")
