"""Re-verification of a converted model against its Keras original."""

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


def lce_interpreter(flatbuffer, *, num_threads=1, kernel="default"):
    """LCE's Python interpreter for ``flatbuffer``; ``kernel`` picks the bconv path.

    Args:
        kernel: ``"default"`` (optimized), ``"reference"`` (reference bconv) or
            ``"indirect_bgemm"``.
    """
    from larq_compute_engine.tflite.python.interpreter import Interpreter  # noqa: PLC0415

    kernels = {"default": {}, "reference": {"use_reference_bconv": True}, "indirect_bgemm": {"use_indirect_bgemm": True}}
    if kernel not in kernels:
        raise ValueError(f"`kernel` must be one of {list(kernels)}, got {kernel!r}.")
    return Interpreter(flatbuffer, num_threads=num_threads, **kernels[kernel])


def tflite_predict(flatbuffer, x, *, batch_size=1000, kernel="default"):
    """Outputs of a TFLite flatbuffer on ``x`` with LCE's interpreter (runs LCE and builtin ops)."""
    interpreter = lce_interpreter(flatbuffer, kernel=kernel)
    x = np.asarray(x, dtype=np.float32)
    return np.concatenate([interpreter.predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def compare(keras_model, flatbuffer, x, y, *, batch_size=1000):
    """Accuracy of the Keras model and of the flatbuffer on ``(x, y)``, and their agreement.

    Returns:
        dict with ``n``, ``accuracy_keras``, ``accuracy_tflite``, ``agreement`` (fraction
        of equal arg-max predictions), ``max_abs_prob_diff`` (max |softmax difference|).
    """
    x = np.asarray(x, dtype=np.float32)
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` differ in length: {len(x)} vs {len(y)}.")
    keras_logits = keras_model.predict(x, batch_size=batch_size, verbose=0)
    tflite_logits = tflite_predict(flatbuffer, x, batch_size=batch_size)
    keras_pred, tflite_pred = keras_logits.argmax(-1), tflite_logits.argmax(-1)
    return {
        "n": int(len(x)),
        "accuracy_keras": float(np.mean(keras_pred == y)),
        "accuracy_tflite": float(np.mean(tflite_pred == y)),
        "agreement": float(np.mean(keras_pred == tflite_pred)),
        "max_abs_prob_diff": float(np.max(np.abs(_softmax(keras_logits) - _softmax(tflite_logits)), initial=0.0)),
    }


def verify(flatbuffer, *, keras_model, x, y, x_adv=None, batch_size=1000):
    """Compare a converted model with its Keras original on clean and adversarial inputs.

    Args:
        flatbuffer: the converted model (``bytes``).
        keras_model: the Keras model it was converted from.
        x, y: clean inputs and labels.
        x_adv: adversarial examples crafted against ``keras_model`` (same labels ``y``).

    Returns:
        ``{"clean": compare(...), "adversarial": compare(...) or None}``.
    """
    return {
        "clean": compare(keras_model, flatbuffer, x, y, batch_size=batch_size),
        "adversarial": None if x_adv is None else compare(keras_model, flatbuffer, x_adv, y, batch_size=batch_size),
    }
