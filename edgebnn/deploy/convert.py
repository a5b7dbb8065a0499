"""Conversion of Keras models to TFLite flatbuffers (Larq Compute Engine)."""

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf

TARGETS = ("lce",)


def _validate_options(model, target):
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a tf.keras.Model, got {type(model).__name__}.")
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {list(TARGETS)}, got {target!r}.")


def convert(model, *, target="lce"):
    """Convert ``model`` to a TFLite flatbuffer.

    Args:
        model: a Keras model (Larq layers allowed).
        target: ``"lce"``: Larq Compute Engine's converter; binary convolutions become
            ``LceBconv2d`` ops. (Binary ``QuantDense`` layers stay float matrix
            multiplications in LCE 0.16.)

    Returns:
        The flatbuffer as ``bytes``.
    """
    _validate_options(model, target)
    import larq_compute_engine as lce  # noqa: PLC0415 (heavy; only when converting)

    return lce.convert_keras_model(model)


def float_reference(model):
    """Stock TFLite conversion of the same Keras graph: every weight stored as float32.

    This is the size of "the same architecture in plain float TFLite" that binary
    conversions are compared against.
    """
    _validate_options(model, "lce")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return converter.convert()
