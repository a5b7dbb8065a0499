"""Conversion of Keras models to TFLite flatbuffers, after the graph rewrites of :mod:`.rewrite`.

Two targets:

- ``"lce"``: Larq Compute Engine's converter. With the rewrites, binary dense layers
  and the bit-plane first layer become ``LceBconv2d`` ops (1 bit per weight). Runs on
  LCE's interpreter (x86 wheels on PyPI; aarch64 only when built from source).
- ``"portable"``: TensorFlow's stock converter with only builtin ops, so the model runs
  on the stock TFLite / LiteRT interpreters (``ai-edge-litert`` has aarch64 wheels).
  Weights are stored as float32 (``weights="float32"``, the default: exact) or float16
  (``weights="float16"``: 2x smaller, approximate), computed in float32. int8 is not used: measured with TF 2.16, stock
  dynamic-range ("hybrid") int8 kernels are not exact for binary layers. Per-channel
  hybrid ``CONV_2D`` returned all zeros for ``+-1`` kernels, and ``FULLY_CONNECTED``
  quantizes per tensor after BatchNorm is folded into its weights and quantizes ``+-1``
  inputs asymmetrically, which gave only 94% arg-max agreement on Fashion-MNIST. A
  float16 weight ``g * (+-1)`` is ``g`` rounded once (relative error <= 2**-11), so a
  prediction changes only when a pre-activation is within that of zero;
  :func:`~edgebnn.deploy.verify.verify` measures it and bundles record it.
"""

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy import rewrite as _rewrite

import tensorflow as tf

TARGETS = ("lce", "portable")
INPUT_DTYPES = ("float32", "uint8")
PORTABLE_WEIGHTS = ("float16", "float32")
#: Value of the brightest uint8 pixel: ``x = pixel / PIXEL_MAX`` (as :func:`edgebnn.data.load`).
PIXEL_MAX = 255.0


class NotDeployableError(ValueError):
    """The model's inference is random (stochastic quantizers, MC dropout): no faithful single graph."""


def _validate_options(model, target, input_dtype="float32"):
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a tf.keras.Model, got {type(model).__name__}.")
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {list(TARGETS)}, got {target!r}.")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"`input_dtype` must be one of {list(INPUT_DTYPES)}, got {input_dtype!r}.")


def _is_stochastic(obj):
    """Quantizers/layers whose forward pass samples at inference (by name, class or config)."""
    if obj is None:
        return False
    names = [type(obj).__name__, getattr(obj, "__name__", ""), getattr(obj, "name", "") or ""]
    return any("stochastic" in str(n).lower() for n in names)


def random_inference_layers(model):
    """Names and reasons of the layers of ``model`` whose inference output is random.

    Detected: quantizers named ``*stochastic*`` (stochastic binarization samples
    ``+-1`` with probability ``hard_sigmoid(x)``), layers called with
    ``training=True`` (Monte-Carlo dropout kept on at inference), and layers whose
    class name says Monte-Carlo (:class:`edgebnn.layers.MCDropout` unless
    ``always_on=False``, ``MonteCarlo...``).
    """
    found = []
    for layer in _all_layers(model):
        for attr in ("input_quantizer", "kernel_quantizer", "quantizer", "activation"):
            if _is_stochastic(getattr(layer, attr, None)):
                found.append((layer.name, f"{attr} is stochastic ({_name_of(getattr(layer, attr))})"))
        cls = type(layer).__name__.lower()
        if ("mcdropout" in cls and getattr(layer, "always_on", True)) or "montecarlo" in cls:
            found.append((layer.name, f"Monte-Carlo layer {type(layer).__name__} is active at inference"))
        elif "stochastic" in cls:
            found.append((layer.name, f"stochastic layer {type(layer).__name__}"))
        for node in layer._inbound_nodes:
            if node.call_kwargs.get("training") is True:
                found.append((layer.name, "called with training=True (random at inference)"))
                break
    return found


def _name_of(obj):
    return getattr(obj, "__name__", None) or type(obj).__name__


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf.keras.Model):
            yield from _all_layers(layer)


def check_deployable(model):
    """Raise :class:`NotDeployableError` if ``model`` samples at inference.

    A converter would silently freeze such a model into a deterministic one (a
    stochastic sign becomes a sign, MC dropout becomes the identity), which is a
    different model with a different robustness. Deploy its deterministic variant
    explicitly instead (e.g. rebuild it with ``ste_sign`` quantizers and plain dropout,
    copy the weights, and convert that), and report it as such.
    """
    found = random_inference_layers(model)
    if found:
        details = "; ".join(f"{name}: {why}" for name, why in found)
        raise NotDeployableError(
            f"`model` {model.name!r} is random at inference and cannot be converted into one "
            f"deterministic TFLite graph without changing what it computes ({details}). Convert an "
            f"explicit deterministic variant instead."
        )


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class PixelScale(tf.keras.layers.Layer):
    """uint8 pixels -> float32 in ``[0, 1]``: ``cast(p) / 255`` (as :func:`edgebnn.data.load`)."""

    def call(self, inputs):
        return tf.cast(inputs, tf.float32) / PIXEL_MAX


def with_uint8_input(model):
    """Wrap single-input ``model`` so that it takes raw uint8 pixels (0-255)."""
    if len(model.inputs) != 1:
        raise ValueError(f"`input_dtype='uint8'` needs a model with one input, got {len(model.inputs)}.")
    pixels = tf.keras.Input(shape=model.inputs[0].shape[1:], dtype=tf.uint8, name="pixels_uint8")
    return tf.keras.Model(pixels, model(PixelScale(name="pixel_scale")(pixels)), name=f"{model.name}_uint8")


def prepare(model, *, target="lce", input_dtype="float32", rewrites=True):
    """The Keras model that :func:`convert` actually converts (rewritten copy, uint8 stem).

    ``lce``: all rewrites; ``portable``: only XNOR scale folding (the other rewrites
    exist to reach LCE's binary kernels, which stock TFLite does not have).
    """
    _validate_options(model, target, input_dtype)
    check_deployable(model)
    deployable = model
    if rewrites:
        lce = target == "lce"
        deployable = _rewrite.rewrite(model, dense_to_conv=lce, bit_planes="auto" if lce else False, fold_xnor=True,
                                      sign_thresholds=lce)
    if input_dtype == "uint8":
        deployable = with_uint8_input(deployable)
    return deployable


def convert(model, *, target="lce", input_dtype="float32", rewrites=True, weights="float32"):
    """Convert ``model`` to a TFLite flatbuffer.

    Args:
        model: a functional Keras model (Larq layers allowed) mapping ``[0, 1]`` pixels to logits.
        target: ``"lce"`` (Larq Compute Engine ops, 1-bit weights) or ``"portable"``
            (builtin ops only; stock TFLite/LiteRT).
        input_dtype: ``"float32"`` (pixels in ``[0, 1]``) or ``"uint8"`` (raw 0-255
            pixels; scaling and discretization happen in the graph).
        rewrites: apply the graph rewrites of :mod:`edgebnn.deploy.rewrite` first
            (``False`` converts the model as is, e.g. to measure LCE alone).
        weights: ``"portable"`` only: ``"float16"`` or ``"float32"`` weight storage.

    Returns:
        The flatbuffer as ``bytes``.

    Raises:
        TypeError, ValueError: bad arguments.
        NotDeployableError: the model samples at inference (see :func:`check_deployable`).
    """
    if weights not in PORTABLE_WEIGHTS:
        raise ValueError(f"`weights` must be one of {list(PORTABLE_WEIGHTS)}, got {weights!r}.")
    deployable = prepare(model, target=target, input_dtype=input_dtype, rewrites=rewrites)
    if target == "lce":
        import larq_compute_engine as lce  # noqa: PLC0415 (heavy; only when converting)

        return lce.convert_keras_model(deployable)
    converter = tf.lite.TFLiteConverter.from_keras_model(deployable)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if weights == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def float_reference(model):
    """Stock TFLite conversion of the same Keras graph: every weight stored as float32.

    This is the size of "the same architecture in plain float TFLite" that binary
    conversions are compared against.
    """
    _validate_options(model, "lce")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return converter.convert()
