"""On-device runner: verify a deployment bundle with NumPy and a TFLite interpreter only.

This module imports neither TensorFlow nor Keras (a test enforces it), so it runs on a
Raspberry Pi with ``numpy`` and one of:

- ``ai_edge_litert`` (LiteRT, ``pip install ai-edge-litert``; aarch64 wheels on PyPI),
- ``tflite_runtime`` (the older stock runtime),
- Larq Compute Engine's interpreter (needed for models with ``Lce*`` ops; on PyPI for
  x86-64 only, build it from source for aarch64). Its extension module is loaded
  directly, without ``larq_compute_engine/__init__.py`` (which imports TensorFlow).

Usage::

    python -m edgebnn.deploy.device verify BUNDLE_DIR [--report out.json] [--runtime auto]

Exit status: 0 within the manifest's tolerance, 1 outside it, 2 bad bundle or arguments
(one-line message on stderr).
"""

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import edgebnn

RUNTIMES = ("auto", "lce", "ai_edge_litert", "tflite_runtime")
KERNELS = ("default", "reference", "indirect_bgemm")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
#: Custom op names of Larq Compute Engine, as stored in a flatbuffer's operator codes.
LCE_OP_NAMES = (b"LceBconv2d", b"LceQuantize", b"LceDequantize", b"LceBMaxPool2d")


class BundleError(ValueError):
    """The bundle is missing, malformed, or does not match its manifest."""


def sha256(data):
    """Hex sha256 of ``bytes``."""
    return hashlib.sha256(data).hexdigest()


def uses_lce_ops(flatbuffer):
    """True if the flatbuffer names one of Larq Compute Engine's custom ops."""
    return any(name in flatbuffer for name in LCE_OP_NAMES)


def _lce_wrapper():
    """LCE's pybind interpreter module, loaded without importing ``larq_compute_engine``."""
    spec = importlib.util.find_spec("larq_compute_engine")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("larq_compute_engine is not installed")
    folder = Path(list(spec.submodule_search_locations)[0]) / "tflite" / "python"
    candidates = sorted(folder.glob("interpreter_wrapper_lite*.so"))
    if not candidates:
        raise ImportError(f"no interpreter_wrapper_lite extension in {folder}")
    ext = importlib.util.spec_from_file_location("interpreter_wrapper_lite", candidates[0])
    module = importlib.util.module_from_spec(ext)
    ext.loader.exec_module(module)
    return module


class _LceRunner:
    runtime = "lce"

    def __init__(self, flatbuffer, *, num_threads, kernel):
        self._it = _lce_wrapper().LiteInterpreter(
            flatbuffer, num_threads, kernel == "reference", kernel == "indirect_bgemm", False
        )
        self.input_dtype = np.dtype(self._it.input_types[0])
        self.input_shape = tuple(self._it.input_shapes[0])

    def predict_one(self, x):
        return self._it.predict([x])[0]


class _StockRunner:
    def __init__(self, interpreter_cls, runtime, flatbuffer, *, num_threads):
        self.runtime = runtime
        self._it = interpreter_cls(model_content=flatbuffer, num_threads=num_threads)
        self._it.allocate_tensors()
        inp = self._it.get_input_details()[0]
        self._in, self._out = inp["index"], self._it.get_output_details()[0]["index"]
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_shape = tuple(int(d) for d in inp["shape"])

    def predict_one(self, x):
        self._it.set_tensor(self._in, x)
        self._it.invoke()
        return self._it.get_tensor(self._out).copy()


def _stock_interpreter(runtime):
    module = {"ai_edge_litert": "ai_edge_litert.interpreter", "tflite_runtime": "tflite_runtime.interpreter"}[runtime]
    return importlib.import_module(module).Interpreter


def load_interpreter(flatbuffer, *, runtime="auto", num_threads=1, kernel="default"):
    """A runner with ``predict(x)``, ``input_dtype``, ``input_shape`` and ``runtime`` for ``flatbuffer``.

    Args:
        flatbuffer: model bytes.
        runtime: one of :data:`RUNTIMES`. ``"auto"``: LCE's interpreter for models with
            ``Lce*`` ops, otherwise the first installed of ``ai_edge_litert``,
            ``tflite_runtime``, ``lce``.
        num_threads: interpreter threads.
        kernel: LCE only: ``"default"``, ``"reference"`` (reference bconv) or
            ``"indirect_bgemm"``.

    Raises:
        ValueError: bad ``runtime``/``kernel``, or ``kernel`` given for a stock runtime.
        ImportError: the requested runtime (or, with ``"auto"``, any usable one) is not installed.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {list(RUNTIMES)}, got {runtime!r}.")
    if kernel not in KERNELS:
        raise ValueError(f"`kernel` must be one of {list(KERNELS)}, got {kernel!r}.")
    flatbuffer = bytes(flatbuffer)
    if runtime == "auto":
        order = ["lce"] if uses_lce_ops(flatbuffer) else ["ai_edge_litert", "tflite_runtime", "lce"]
        errors = []
        for candidate in order:
            try:
                return load_interpreter(flatbuffer, runtime=candidate, num_threads=num_threads, kernel=kernel)
            except ImportError as e:
                errors.append(f"{candidate}: {e}")
        raise ImportError(f"no TFLite runtime usable for this model ({'; '.join(errors)})")
    if runtime == "lce":
        return Runner(_LceRunner(flatbuffer, num_threads=num_threads, kernel=kernel))
    if kernel != "default":
        raise ValueError(f"`kernel` {kernel!r} needs runtime 'lce', got runtime {runtime!r}.")
    if uses_lce_ops(flatbuffer):
        raise ValueError(f"this model uses Larq Compute Engine ops; runtime {runtime!r} cannot run it, use 'lce'.")
    return Runner(_StockRunner(_stock_interpreter(runtime), runtime, flatbuffer, num_threads=num_threads))


class Runner:
    """Batch prediction over a single-example interpreter."""

    def __init__(self, impl):
        self._impl = impl
        self.runtime, self.input_dtype, self.input_shape = impl.runtime, impl.input_dtype, impl.input_shape

    def predict(self, x):
        """Model outputs for every example of ``x`` (run one at a time, batch size 1)."""
        x = np.asarray(x)
        if x.dtype != self.input_dtype:
            raise TypeError(f"`x` must have dtype {self.input_dtype} for this model, got {x.dtype}.")
        if tuple(x.shape[1:]) != self.input_shape[1:]:
            raise ValueError(f"`x` examples must have shape {self.input_shape[1:]}, got {x.shape[1:]}.")
        outputs = [self._impl.predict_one(np.ascontiguousarray(x[i : i + 1])) for i in range(len(x))]
        return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


def preprocess(pixels, input_spec):
    """uint8 pixels -> the model's input as described by the manifest's ``input`` entry."""
    if input_spec["dtype"] == "uint8":
        return pixels.astype(np.uint8)
    if input_spec["dtype"] == "float32":
        return pixels.astype(np.float32) / np.float32(input_spec.get("scale_divisor", 255.0))
    raise BundleError(f"manifest input dtype must be 'uint8' or 'float32', got {input_spec['dtype']!r}")


def read_bundle(bundle_dir):
    """``(manifest, model bytes, eval arrays)`` of a bundle, checking sha256 sums.

    Raises:
        BundleError: missing files, bad manifest, or a sha256 mismatch.
    """
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"no {MANIFEST} in {bundle_dir}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{manifest_path} is not valid JSON: {e}") from e
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"manifest format_version must be {FORMAT_VERSION}, got {manifest.get('format_version')!r}")
    files = {}
    for key in ("model", "eval_set"):
        entry = manifest[key]
        path = bundle_dir / entry["file"]
        if not path.is_file():
            raise BundleError(f"{key} file {path} is missing")
        data = path.read_bytes()
        if sha256(data) != entry["sha256"]:
            raise BundleError(f"sha256 of {path.name} is {sha256(data)}, manifest says {entry['sha256']}: refusing to run it")
        files[key] = path
    with np.load(files["eval_set"], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return manifest, files["model"].read_bytes(), arrays


def verify_bundle(bundle_dir, *, runtime="auto", num_threads=1, limit=None):
    """Run a bundle's evaluation set and compare with its manifest.

    Returns:
        The report dict; ``report["passed"]`` says whether accuracy and agreement with
        the host predictions are within the manifest's tolerance.
    """
    manifest, flatbuffer, arrays = read_bundle(bundle_dir)
    x, y, host_pred = arrays["x"], arrays["y"], arrays["host_predictions"]
    if limit is not None:
        x, y, host_pred = x[:limit], y[:limit], host_pred[:limit]
    runner = load_interpreter(flatbuffer, runtime=runtime, num_threads=num_threads)
    start = time.perf_counter()
    logits = runner.predict(preprocess(x, manifest["input"]))
    seconds = time.perf_counter() - start
    pred = logits.argmax(-1)
    accuracy = float(np.mean(pred == y))
    agreement = float(np.mean(pred == host_pred))
    expected, tol = manifest["expected"], manifest["tolerance"]
    accuracy_ok = abs(accuracy - expected["accuracy"]) <= tol["accuracy_abs"] if limit is None else True
    report = {
        "bundle": os.fspath(bundle_dir),
        "model_sha256": manifest["model"]["sha256"],
        "runtime": runner.runtime,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "edgebnn_version": edgebnn.__version__,
        "n": int(len(y)),
        "accuracy": accuracy,
        "expected_accuracy": expected["accuracy"],
        "agreement_with_host": agreement,
        "min_agreement_with_host": tol["min_agreement_with_host"],
        "disagreements": int(np.sum(pred != host_pred)),
        "ms_per_image": 1000.0 * seconds / max(len(y), 1),
        "accuracy_checked": limit is None,
    }
    if "host_logits" in arrays:
        report["max_abs_logit_diff_vs_host"] = float(np.max(np.abs(logits - arrays["host_logits"][: len(y)]), initial=0.0))
    report["passed"] = bool(accuracy_ok and agreement >= tol["min_agreement_with_host"])
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m edgebnn.deploy.device", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="run a bundle's evaluation set and check it against the manifest")
    v.add_argument("bundle_dir")
    v.add_argument("--report", help="write the JSON report here")
    v.add_argument("--runtime", default="auto", choices=RUNTIMES)
    v.add_argument("--threads", type=int, default=1)
    v.add_argument("--limit", type=int, default=None, help="only the first N examples (skips the accuracy check)")
    args = parser.parse_args(argv)
    try:
        report = verify_bundle(args.bundle_dir, runtime=args.runtime, num_threads=args.threads, limit=args.limit)
    except (BundleError, ImportError, ValueError, TypeError, KeyError, OSError) as e:
        detail = f"missing manifest key {e}" if isinstance(e, KeyError) else str(e)
        print(f"error: {detail}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    if args.report:
        Path(args.report).write_text(text + "\n")
    print(text)
    if not report["passed"]:
        print(
            f"FAILED: accuracy {report['accuracy']:.4f} (expected {report['expected_accuracy']:.4f}), "
            f"agreement with host {report['agreement_with_host']:.4f} (min {report['min_agreement_with_host']})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
