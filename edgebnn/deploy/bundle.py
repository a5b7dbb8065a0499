"""Deployment bundles: model, uint8 evaluation set and manifest, for :mod:`edgebnn.deploy.device`."""

import io
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

import edgebnn
from edgebnn import _io
from edgebnn.deploy import device
from edgebnn.deploy.tflite import PIXEL_MAX
from edgebnn.deploy.verify import compare, interpreter, to_pixels

MODEL_FILE = "model.tflite"
EVAL_FILE = "eval.npz"
#: Default largest |device accuracy - host accuracy| accepted on the full evaluation set.
ACCURACY_TOLERANCE = 0.002
#: Default smallest fraction of device predictions equal to the host's.
MIN_AGREEMENT = 0.999
#: Default largest |device logit - host logit| a bundle promises on its kernel set: float32
#: sums taken in another order (another build of the same kernels), not other arithmetic.
LOGIT_TOLERANCE = 1e-4
#: The kernel set that a bundle's host logits are computed with and that its exactness
#: promise holds for: TFLite's builtin kernels. XNNPACK, the stock runtimes' default
#: delegate, sums in another order, and a binary network turns a pre-activation within
#: float rounding of zero into a flipped sign and a jump in the next layer's output.
EXACT_KERNELS = "builtin"


def _validate(tflite, x, y, accuracy_tolerance, min_agreement, logit_tolerance):
    if not isinstance(tflite, (bytes, bytearray)):
        raise TypeError(f"`tflite` must be the flatbuffer bytes, got {type(tflite).__name__}.")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"`x` and `y` must be non-empty and of equal length, got {len(x)} and {len(y)}.")
    if not 0 <= accuracy_tolerance <= 1:
        raise ValueError(f"`accuracy_tolerance` must be in [0, 1], got {accuracy_tolerance!r}.")
    if not 0 <= min_agreement <= 1:
        raise ValueError(f"`min_agreement` must be in [0, 1], got {min_agreement!r}.")
    if not logit_tolerance >= 0 or logit_tolerance == float("inf"):
        raise ValueError(f"`logit_tolerance` must be a finite number >= 0, got {logit_tolerance!r}.")


def bundle(
    tflite,
    x,
    y,
    out_dir,
    *,
    keras_model=None,
    name=None,
    accuracy_tolerance=ACCURACY_TOLERANCE,
    min_agreement=MIN_AGREEMENT,
    logit_tolerance=LOGIT_TOLERANCE,
    description=None,
    extra=None,
):
    """Write a deployment bundle to ``out_dir`` (atomically: a complete bundle or none).

    Contents: ``model.tflite``; ``eval.npz`` (no pickle) with ``x`` uint8 pixels,
    ``y`` labels, ``host_predictions`` and ``host_logits`` of the model on this
    host; ``manifest.json`` with sha256 sums, the input spec and preprocessing, the
    host accuracy, the tolerance, the exactness promise and the edgebnn version.

    The host logits come from TFLite's builtin kernels (:data:`EXACT_KERNELS`):
    TensorFlow's stock interpreter for models with builtin ops only, LCE's interpreter
    (without XNNPACK) for models with LCE ops. The manifest's ``exactness`` entry
    promises that a device running the same kernel set reproduces them within
    ``logit_tolerance``; the device runner uses that kernel set and checks the promise.

    Args:
        tflite: flatbuffer bytes.
        x: images, uint8 pixels or floats in ``[0, 1]`` on the 1/255 grid.
        y: integer labels.
        out_dir: bundle folder (replaced if it exists).
        keras_model: optional Keras original; its accuracy and agreement with the
            flatbuffer on the set are recorded.
        name, description: labels stored in the manifest.
        extra: optional dict of further manifest entries (e.g. full-test-set results).
        accuracy_tolerance: accepted |device accuracy - host accuracy|.
        min_agreement: accepted minimum fraction of device predictions equal to the host's.
        logit_tolerance: promised largest |device logit - host logit| on the builtin kernels.

    Returns:
        The manifest (dict).
    """
    _validate(tflite, x, y, accuracy_tolerance, min_agreement, logit_tolerance)
    tflite = bytes(tflite)
    pixels = np.asarray(x) if np.asarray(x).dtype == np.uint8 else to_pixels(x)
    if np.asarray(x).dtype != np.uint8 and not np.allclose(pixels / PIXEL_MAX, x, atol=1e-6):
        raise ValueError("`x` must be uint8 pixels or floats on the 1/255 grid (e.g. from edgebnn.data.load).")
    y = np.asarray(y).astype(np.int64)
    runner = interpreter(tflite, runtime="lce" if device.uses_lce_ops(tflite) else "tensorflow",
                         kernels=EXACT_KERNELS)
    input_spec = {
        "dtype": str(runner.input_dtype),
        "shape": [int(d) for d in runner.input_shape],
        "preprocessing": (
            "raw uint8 pixels 0-255 (scaling and discretization are in the graph)"
            if runner.input_dtype == np.uint8
            else "float32 pixels / 255 (scaling to [0, 1] on the host side; discretization is in the graph)"
        ),
    }
    if runner.input_dtype != np.uint8:
        input_spec["scale_divisor"] = PIXEL_MAX
    logits = runner.predict(device.preprocess(pixels, input_spec)).astype(np.float32)
    pred = logits.argmax(-1)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=pixels, y=y, host_predictions=pred.astype(np.int64), host_logits=logits)
    eval_bytes = buffer.getvalue()
    manifest = {
        "format_version": device.FORMAT_VERSION,
        "name": name,
        "description": description,
        "edgebnn_version": edgebnn.__version__,
        "model": {"file": MODEL_FILE, "sha256": device.sha256(tflite), "bytes": len(tflite),
                  "needs_lce_runtime": device.uses_lce_ops(tflite)},
        "input": input_spec,
        "eval_set": {"file": EVAL_FILE, "sha256": device.sha256(eval_bytes), "n": int(len(y))},
        "expected": {"accuracy": float(np.mean(pred == y)), "host_runtime": runner.runtime,
                     "host_machine": platform.machine()},
        "tolerance": {"accuracy_abs": float(accuracy_tolerance), "min_agreement_with_host": float(min_agreement)},
        "exactness": {"kernels": EXACT_KERNELS, "max_abs_logit_diff": float(logit_tolerance)},
    }
    if extra:
        clash = sorted(set(extra) & set(manifest))
        if clash:
            raise ValueError(f"`extra` must not override manifest keys, got {clash}.")
        manifest.update(extra)
    if keras_model is not None:
        manifest["keras"] = compare(keras_model, tflite, pixels.astype(np.float32) / np.float32(PIXEL_MAX), y)
    _write_atomically(Path(out_dir), {MODEL_FILE: tflite, EVAL_FILE: eval_bytes,
                                       device.MANIFEST: (json.dumps(manifest, indent=2) + "\n").encode()})
    return manifest


def copy_bundle(bundle_dir, out_dir):
    """Copy the bundle in ``bundle_dir`` to ``out_dir`` (atomically, as :func:`bundle` writes it).

    The copy is checked against its manifest first (files present, sha256 sums), so a
    damaged bundle is never published.

    Raises:
        edgebnn.deploy.device.BundleError: ``bundle_dir`` is not a complete bundle.
    """
    bundle_dir = Path(bundle_dir)
    device.read_bundle(bundle_dir)
    files = {name: (bundle_dir / name).read_bytes() for name in (MODEL_FILE, EVAL_FILE, device.MANIFEST)}
    _write_atomically(Path(out_dir), files)


def _write_atomically(out_dir, files):
    """Write ``files`` into a temporary sibling folder, then swap it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        _io.publish_mode(tmp, folder=True)
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
