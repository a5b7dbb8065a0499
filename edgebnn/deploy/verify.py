"""Re-verification of a converted model against its Keras original (host side)."""

import os
from pathlib import Path

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.deploy import device
from edgebnn.deploy.tflite import PIXEL_MAX

#: Host runtimes: the device runtimes plus TensorFlow's own stock TFLite interpreter.
RUNTIMES = (*device.RUNTIMES, "tensorflow")


def lce_interpreter(flatbuffer, *, num_threads=1, kernel="default"):
    """LCE's interpreter for ``flatbuffer`` as a :class:`~edgebnn.deploy.device.Runner`.

    Args:
        kernel: ``"default"`` (optimized), ``"reference"`` (reference bconv) or
            ``"indirect_bgemm"``.
    """
    return device.load_interpreter(flatbuffer, runtime="lce", num_threads=num_threads, kernel=kernel)


def interpreter(flatbuffer, *, runtime="auto", kernel="default", num_threads=1, kernels=None):
    """A runner for ``flatbuffer``; ``runtime="tensorflow"`` uses ``tf.lite.Interpreter`` (stock TFLite).

    Args:
        kernels: ``"builtin"`` (TFLite's builtin kernels only) or ``"delegate"`` (the
            runtime's default delegate), see :data:`edgebnn.deploy.device.KERNEL_SETS`.
            Default: ``"delegate"`` for ``runtime="tensorflow"`` (as a plain
            ``tf.lite.Interpreter`` runs), ``"builtin"`` for the device runtimes (as the
            device runner runs).
    """
    if kernels is None:
        kernels = "delegate" if runtime == "tensorflow" else "builtin"
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {list(RUNTIMES)}, got {runtime!r}.")
    if runtime != "tensorflow":
        return device.load_interpreter(flatbuffer, runtime=runtime, kernel=kernel, num_threads=num_threads,
                                       kernels=kernels)
    if kernel != "default":
        raise ValueError(f"`kernel` {kernel!r} needs runtime 'lce', got runtime 'tensorflow'.")
    if kernels not in device.KERNEL_SETS:
        raise ValueError(f"`kernels` must be one of {list(device.KERNEL_SETS)}, got {kernels!r}.")
    import tensorflow as tf  # noqa: PLC0415

    return device.stock_runner(tf.lite.Interpreter, tf.lite.experimental.OpResolverType, "tensorflow", flatbuffer,
                               num_threads=num_threads, kernels=kernels)


def to_pixels(x):
    """``[0, 1]`` floats -> the nearest uint8 pixels (what a uint8-input model can receive)."""
    return np.clip(np.round(np.asarray(x, np.float32) * PIXEL_MAX), 0, PIXEL_MAX).astype(np.uint8)


def model_input(x, dtype):
    """``x`` (``[0, 1]`` floats or uint8 pixels) in the form a model with input ``dtype`` takes."""
    x = np.asarray(x)
    if np.dtype(dtype) == np.uint8:
        return x if x.dtype == np.uint8 else to_pixels(x)
    return x.astype(np.float32) / np.float32(PIXEL_MAX) if x.dtype == np.uint8 else x.astype(np.float32)


def tflite_predict(flatbuffer, x, *, batch_size=1000, kernel="default", runtime="auto"):
    """Outputs of a TFLite flatbuffer on ``x`` (``[0, 1]`` floats; rounded to pixels for uint8 models).

    Args:
        batch_size: examples per call into the runner (the interpreter itself runs one at a time).
        kernel: LCE bconv path, see :func:`lce_interpreter`.
        runtime: ``"auto"`` (LCE for LCE models, else a stock runtime if installed),
            ``"lce"``, ``"ai_edge_litert"``, ``"tflite_runtime"`` or ``"tensorflow"``.
    """
    runner = interpreter(flatbuffer, runtime=runtime, kernel=kernel)
    x = model_input(x, runner.input_dtype)
    return np.concatenate([runner.predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def tflite_model_fn(model, *, batch_size=1000, runtime="auto"):
    """A callable ``x -> logits`` (NumPy) over a deployed model, for black-box attacks.

    Args:
        model: flatbuffer ``bytes`` or the path of a ``.tflite`` file.
        batch_size, runtime: as in :func:`tflite_predict`.

    Example:
        >>> x_adv = edgebnn.attacks.substitute(tflite_model_fn("model.tflite"), x, eps=0.1, x_holdout=h)
    """
    if isinstance(model, (str, os.PathLike)):
        model = Path(model).read_bytes()
    if not isinstance(model, (bytes, bytearray)):
        raise TypeError(f"`model` must be flatbuffer bytes or a .tflite path, got {type(model).__name__}.")
    flatbuffer = bytes(model)
    return lambda x: tflite_predict(flatbuffer, x, batch_size=batch_size, runtime=runtime)


def _softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _input_dtype(flatbuffer):
    return device.load_interpreter(flatbuffer, runtime="lce").input_dtype


def compare(keras_model, flatbuffer, x, y, *, batch_size=1000, runtime="auto", kernel="default"):
    """Accuracy of the Keras model and of the flatbuffer on ``(x, y)``, and their agreement.

    For a uint8-input flatbuffer both models see ``x`` rounded to the pixel grid (a
    uint8 model cannot receive anything else), so adversarial examples are compared
    after that rounding.

    Returns:
        dict with ``n``, ``accuracy_keras``, ``accuracy_tflite``, ``agreement`` (fraction
        of equal arg-max predictions), ``max_abs_prob_diff`` (max |softmax difference|).
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` differ in length: {len(x)} vs {len(y)}.")
    if _input_dtype(flatbuffer) == np.uint8:
        x = to_pixels(x).astype(np.float32) / np.float32(PIXEL_MAX)
    keras_logits = keras_model.predict(x, batch_size=batch_size, verbose=0)
    tflite_logits = tflite_predict(flatbuffer, x, batch_size=batch_size, runtime=runtime, kernel=kernel)
    keras_pred, tflite_pred = keras_logits.argmax(-1), tflite_logits.argmax(-1)
    return {
        "n": int(len(x)),
        "accuracy_keras": float(np.mean(keras_pred == y)),
        "accuracy_tflite": float(np.mean(tflite_pred == y)),
        "agreement": float(np.mean(keras_pred == tflite_pred)),
        "max_abs_prob_diff": float(np.max(np.abs(_softmax(keras_logits) - _softmax(tflite_logits)), initial=0.0)),
    }


def builtin_identical(flatbuffer, reference, x, *, batch_size=1000):
    """Whether two stock-TFLite models give bit-identical outputs on ``x``, on TFLite's builtin kernels.

    Both run on ``tf.lite.Interpreter`` without the default XNNPACK delegate, so that
    layers compute with the same kernels in both (e.g. ``weights="packed"`` against
    ``weights="exact"``, see :mod:`edgebnn.deploy.convert`).

    Returns:
        dict with ``n``, ``identical`` (every output bit equal) and ``max_abs_diff``.
    """
    def predict(fb):
        runner = interpreter(fb, runtime="tensorflow", kernels="builtin")
        xs = model_input(x, runner.input_dtype)
        return np.concatenate([runner.predict(xs[i : i + batch_size]) for i in range(0, len(xs), batch_size)])

    a, b = predict(flatbuffer), predict(reference)
    identical = a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))
    return {"n": int(len(a)), "identical": bool(identical), "max_abs_diff": float(np.max(np.abs(a - b), initial=0.0))}


def kernel_agreement(flatbuffer, x):
    """Cross-check LCE's bconv kernel paths on ``x``: reference vs default vs indirect BGEMM.

    Returns:
        dict with ``n``, per path ``{"agreement_with_reference", "max_abs_diff_vs_reference"}``
        (arg-max agreement and max |logit difference| against the reference kernels).
    """
    outputs = {k: tflite_predict(flatbuffer, x, kernel=k, runtime="lce") for k in device.KERNELS}
    ref = outputs["reference"]
    result = {"n": int(len(x))}
    for k in ("default", "indirect_bgemm"):
        result[k] = {
            "agreement_with_reference": float(np.mean(outputs[k].argmax(-1) == ref.argmax(-1))),
            "max_abs_diff_vs_reference": float(np.max(np.abs(outputs[k] - ref), initial=0.0)),
        }
    return result


def verify(
    flatbuffer, *, keras_model, x, y, x_adv=None, y_adv=None, batch_size=1000, runtime="auto", kernel_check=256
):
    """Compare a converted model with its Keras original on clean and adversarial inputs.

    Args:
        flatbuffer: the converted model (``bytes``).
        keras_model: the Keras model it was converted from.
        x, y: clean inputs (``[0, 1]``) and labels.
        x_adv: adversarial examples crafted against ``keras_model``.
        y_adv: their labels (default ``y``: one adversarial example per clean input).
        runtime: interpreter, see :func:`tflite_predict`.
        kernel_check: for models with LCE ops, cross-check the bconv kernel paths on the
            first ``kernel_check`` clean inputs (0 to skip).

    Returns:
        ``{"clean": compare(...), "adversarial": compare(...) or None}``, plus
        ``"kernels": kernel_agreement(...)`` for LCE models when ``kernel_check > 0``.
    """
    result = {
        "clean": compare(keras_model, flatbuffer, x, y, batch_size=batch_size, runtime=runtime),
        "adversarial": None
        if x_adv is None
        else compare(keras_model, flatbuffer, x_adv, y if y_adv is None else y_adv, batch_size=batch_size, runtime=runtime),
    }
    if kernel_check and device.uses_lce_ops(bytes(flatbuffer)):
        result["kernels"] = kernel_agreement(flatbuffer, np.asarray(x)[:kernel_check])
    return result
