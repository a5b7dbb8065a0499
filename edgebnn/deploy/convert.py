"""Conversion of Keras models to TFLite flatbuffers, after the graph rewrites of :mod:`.rewrite`.

Two targets:

- ``"lce"``: Larq Compute Engine's converter. With the rewrites, binary dense layers
  and the bit-plane first layer become ``LceBconv2d`` ops (1 bit per weight). Runs on
  LCE's interpreter (x86 wheels on PyPI; aarch64 only when built from source).
- ``"portable"``: TensorFlow's stock converter with only builtin ops, so the model runs
  on the stock TFLite / LiteRT interpreters (``ai-edge-litert`` has aarch64 wheels).

Weight storage (``weights``, both targets; :mod:`edgebnn.deploy.storage`): float32
weight tensors that are exactly ``scale * int8`` (``+-1`` kernels, XNOR ``+-alpha_c``,
BatchNorm-folded binary dense weights) are stored as int8 plus a builtin
``DEQUANTIZE``, bit-identical after dequantization, so ``"exact"`` (the default) makes a
binary portable model ~4x smaller with unchanged outputs. ``"float16"`` and ``"int8"``
also store the remaining float weights (e.g. a float first layer or classifier)
approximately; :func:`~edgebnn.deploy.verify.verify` measures the effect and bundles
record it. ``"float32"`` leaves the converter's output as it is. ``"packed"`` (portable target
only; :mod:`edgebnn.deploy.packing`) stores every ``+-g_c`` weight (``+-1`` kernels,
BatchNorm-folded binary dense weights, XNOR kernels) as sign bits, 15 per int16 word,
unpacked by builtin ``GATHER``/``TILE``/``RESHAPE`` ops that stock TFLite evaluates
once, when the interpreter allocates its tensors; the other weights as ``"exact"``.
Before packing, binary dense layers between two ``SIGN`` ops get ``+-1`` weights and a
half-integer bias for every channel whose sign decision provably survives float32
rounding (:mod:`edgebnn.deploy.thresholds`), so that they need no per-channel magnitudes.
The layers compute with bit-identical weights, so outputs equal the ``"exact"``
model's on the same kernels (with XNNPACK, layers with unpacked weights run on the
builtin kernels, whose float sums may round differently). Arithmetic stays
float32 in every case: stock dynamic-range ("hybrid") int8 kernels are not used,
because with TF 2.16 they are not exact for binary layers (per-channel hybrid
``CONV_2D`` returned all zeros for ``+-1`` kernels on x86; ``FULLY_CONNECTED``
quantizes ``+-1`` inputs asymmetrically, 94% arg-max agreement on Fashion-MNIST).

``strip=True`` drops tensor names and signature definitions
(``flatbuffer_utils.strip_strings``): a smaller file whose inputs and outputs are
addressed by index, as :mod:`edgebnn.deploy.device` does.
"""

import tempfile

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _quiet
from edgebnn.deploy import packing as _packing
from edgebnn.deploy import rewrite as _rewrite
from edgebnn.deploy import storage as _storage
from edgebnn.deploy import thresholds as _thresholds
from edgebnn.deploy.tflite import PIXEL_MAX
from edgebnn.introspect import random_inference_layers

import tensorflow as tf

TARGETS = ("lce", "portable")
INPUT_DTYPES = ("float32", "uint8")
WEIGHTS = ("exact", "float32", "float16", "int8", "packed")
#: Weight storage modes that only the portable target takes.
PORTABLE_ONLY_WEIGHTS = ("packed",)


class NotDeployableError(ValueError):
    """The model's inference is random (stochastic quantizers, MC dropout): no faithful single graph."""


def _validate_options(model, target, input_dtype="float32"):
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a tf.keras.Model, got {type(model).__name__}.")
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {list(TARGETS)}, got {target!r}.")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"`input_dtype` must be one of {list(INPUT_DTYPES)}, got {input_dtype!r}.")


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

    The rewrites are the target's pipeline, :data:`edgebnn.deploy.rewrite.PIPELINES`.
    """
    _validate_options(model, target, input_dtype)
    check_deployable(model)
    deployable = model
    if rewrites:
        deployable = _rewrite.for_target(model, target)
    if input_dtype == "uint8":
        deployable = with_uint8_input(deployable)
    return deployable


def convert(model, *, target="lce", input_dtype="float32", rewrites=True, weights="exact", strip=False):
    """Convert ``model`` to a TFLite flatbuffer.

    Args:
        model: a functional Keras model (Larq layers allowed) mapping ``[0, 1]`` pixels to logits.
        target: ``"lce"`` (Larq Compute Engine ops, 1-bit weights) or ``"portable"``
            (builtin ops only; stock TFLite/LiteRT).
        input_dtype: ``"float32"`` (pixels in ``[0, 1]``) or ``"uint8"`` (raw 0-255
            pixels; scaling and discretization happen in the graph).
        rewrites: apply the graph rewrites of :mod:`edgebnn.deploy.rewrite` first
            (``False`` converts the model as is, e.g. to measure LCE alone).
        weights: weight storage (module docstring): ``"exact"`` (int8 where bit-exact,
            else float32), ``"float32"``, ``"float16"``, ``"int8"`` (approximate for
            weights that are not exactly int8) or ``"packed"`` (portable target only:
            1-bit signs for ``+-g_c`` weights, exact).
        strip: drop tensor names and signature definitions.

    Returns:
        The flatbuffer as ``bytes``.

    Raises:
        TypeError, ValueError: bad arguments.
        NotDeployableError: the model samples at inference (see :func:`check_deployable`).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"`weights` must be one of {list(WEIGHTS)}, got {weights!r}.")
    if weights in PORTABLE_ONLY_WEIGHTS and target != "portable":
        raise ValueError(
            f"`weights={weights!r}` needs target 'portable' (LCE stores binary kernels as bits itself), "
            f"got target {target!r}."
        )
    if not isinstance(strip, bool):
        raise TypeError(f"`strip` must be a bool, got {strip!r}.")
    _quiet.filter_tensorflow_logs()
    deployable = prepare(model, target=target, input_dtype=input_dtype, rewrites=rewrites)
    if target == "lce":
        with _quiet.filtered_stderr():
            flatbuffer = _lce_convert(deployable)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(deployable)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        with _quiet.filtered_stderr():
            flatbuffer = converter.convert()
    if weights == "packed":
        flatbuffer = _thresholds.sign_thresholds(flatbuffer)
        flatbuffer = _storage.store_weights(_packing.pack_weights(flatbuffer), mode="exact")
    elif weights != "float32":
        flatbuffer = _storage.store_weights(flatbuffer, mode=weights)
    return _storage.strip_strings(flatbuffer) if strip else flatbuffer


def _lce_convert(model):
    """``larq_compute_engine.convert_keras_model(model)`` (target ARM), without tracing every layer.

    LCE converts the SavedModel that Keras writes for ``model``. By default Keras also traces
    the call functions of every layer into it, which only reloading the model in Keras needs
    and which costs most of a conversion's time. Saved without them (``save_traces=False``)
    and with the serving signature Keras exports by default, the SavedModel holds the same
    serving graph and the converter writes the same flatbuffer (a test compares the bytes with
    ``convert_keras_model``'s). Where Keras cannot save the model, the error is raised: LCE's
    ``convert_keras_model`` would warn and fall back to converting a frozen graph instead.
    """
    import larq_compute_engine as lce  # noqa: PLC0415 (heavy; only when converting)
    from tf_keras.src.saving.legacy.saving_utils import trace_model_call  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as saved_model_dir:
        model.save(saved_model_dir, save_format="tf", save_traces=False, signatures=trace_model_call(model))
        return lce.convert_saved_model(saved_model_dir)


def float_reference(model):
    """Stock TFLite conversion of the same Keras graph: every weight stored as float32.

    This is the size of "the same architecture in plain float TFLite" that binary
    conversions are compared against.
    """
    _validate_options(model, "lce")
    _quiet.filter_tensorflow_logs()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with _quiet.filtered_stderr():
        return converter.convert()
