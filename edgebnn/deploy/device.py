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
        [--threads N] [--limit N]

Exit status: 0 within the manifest's tolerance, 1 outside it, 2 for every failure to
run (bad arguments, bundle, manifest, evaluation set or runtime; one line on stderr),
130 after Ctrl-C. The arguments, the manifest and the evaluation set are checked before
the model runs.
"""

import argparse
import hashlib
import importlib
import importlib.util
import json
import math
import os
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

import edgebnn
from edgebnn import _io
from edgebnn.deploy.opcodes import FlatbufferError, custom_op_names
from edgebnn.deploy.tflite import PIXEL_MAX, uses_lce_ops

RUNTIMES = ("auto", "lce", "ai_edge_litert", "tflite_runtime")
KERNELS = ("default", "reference", "indirect_bgemm")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
#: Input dtypes a bundle's model may take (``preprocess`` turns uint8 pixels into them).
INPUT_DTYPES = ("uint8", "float32")
#: Arrays of ``eval.npz``: the pixels, labels and host predictions (``host_logits`` optional).
EVAL_ARRAYS = ("x", "y", "host_predictions")
#: Exit status of ``verify``: within tolerance, outside it, failed to run, interrupted.
EXIT_PASSED, EXIT_OUT_OF_TOLERANCE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


class BundleError(ValueError):
    """The bundle is missing, malformed, or does not match its manifest."""


def sha256(data):
    """Hex sha256 of ``bytes``."""
    return hashlib.sha256(data).hexdigest()


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
        return pixels.astype(np.float32) / np.float32(input_spec.get("scale_divisor", PIXEL_MAX))
    raise BundleError(f"manifest input dtype must be 'uint8' or 'float32', got {input_spec['dtype']!r}")


# --- the manifest schema -------------------------------------------------------------


def _number(value, key, *, low, high, low_open=False):
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    interval = f"{'(' if low_open else '['}{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
        (low < value if low_open else low <= value) and value <= high
    ):
        raise BundleError(f"{MANIFEST}: `{key}` must be a number in {interval}, got {value!r}")
    return float(value)


def _file_name(value, key, bundle_dir):
    """A plain file name inside the bundle folder (no folders, no ``..``, not absolute)."""
    if (not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value
            or "\0" in value):
        raise BundleError(f"{MANIFEST}: `{key}` must be a file name inside the bundle (no folders), got {value!r}")
    path = Path(bundle_dir) / value
    if not path.is_file():
        raise BundleError(f"{MANIFEST}: `{key}` names {value!r}, which is not a file in {bundle_dir}")
    return path


def _sha(value, key):
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise BundleError(f"{MANIFEST}: `{key}` must be 64 lowercase hex digits, got {value!r}")
    return value


def _table(manifest, key):
    value = manifest.get(key)
    if not isinstance(value, dict):
        what = "missing" if value is None else f"a {type(value).__name__}"
        raise BundleError(f"{MANIFEST}: `{key}` must be a JSON object, got {what}")
    return value


def validate_manifest(manifest, bundle_dir):
    """Check a parsed manifest against the bundle schema; return the paths of its files.

    Schema (other keys are descriptive and not checked): ``format_version`` =
    :data:`FORMAT_VERSION`; ``model`` and ``eval_set``: ``file`` (a file name inside the
    bundle) and ``sha256``; ``input``: ``dtype`` in :data:`INPUT_DTYPES`, ``shape`` (a
    list of positive ints, batch first), optional ``scale_divisor`` > 0;
    ``expected.accuracy`` in [0, 1]; ``tolerance.accuracy_abs`` in [0, 1] and
    ``tolerance.min_agreement_with_host`` in (0, 1], finite.

    Returns:
        ``{"model": path, "eval_set": path}``.

    Raises:
        BundleError: the first key that does not fit, named.
    """
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST} must hold a JSON object, got a {type(manifest).__name__}")
    version = manifest.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise BundleError(f"{MANIFEST}: `format_version` must be {FORMAT_VERSION}, got {version!r}")
    files = {}
    for key in ("model", "eval_set"):
        entry = _table(manifest, key)
        files[key] = _file_name(entry.get("file"), f"{key}.file", bundle_dir)
        _sha(entry.get("sha256"), f"{key}.sha256")
    if files["model"].resolve() == files["eval_set"].resolve():
        raise BundleError(f"{MANIFEST}: `model.file` and `eval_set.file` must be two files, both are "
                          f"{files['model'].name!r}")
    spec = _table(manifest, "input")
    if spec.get("dtype") not in INPUT_DTYPES:
        raise BundleError(f"{MANIFEST}: `input.dtype` must be one of {list(INPUT_DTYPES)}, got {spec.get('dtype')!r}")
    shape = spec.get("shape")
    if (not isinstance(shape, list) or len(shape) < 2
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)):
        raise BundleError(f"{MANIFEST}: `input.shape` must be a list of positive ints (batch first), got {shape!r}")
    if "scale_divisor" in spec:
        _number(spec["scale_divisor"], "input.scale_divisor", low=0, high=math.inf, low_open=True)
    _number(_table(manifest, "expected").get("accuracy"), "expected.accuracy", low=0, high=1)
    tolerance = _table(manifest, "tolerance")
    _number(tolerance.get("accuracy_abs"), "tolerance.accuracy_abs", low=0, high=1)
    _number(tolerance.get("min_agreement_with_host"), "tolerance.min_agreement_with_host", low=0, high=1,
            low_open=True)
    return files


def _read_eval_set(path, manifest):
    """The arrays of ``eval.npz``, checked against each other and the manifest's input."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise BundleError(f"{path.name} is not a readable .npz archive ({type(e).__name__}: {e})") from e
    missing = [k for k in EVAL_ARRAYS if k not in arrays]
    if missing:
        raise BundleError(f"{path.name} lacks the array(s) {missing}; it holds {sorted(arrays)}")
    x, y, host = arrays["x"], arrays["y"], arrays["host_predictions"]
    example = tuple(manifest["input"]["shape"][1:])
    if x.dtype != np.uint8 or tuple(x.shape[1:]) != example:
        raise BundleError(f"{path.name}: `x` must be uint8 pixels of shape (n, {', '.join(map(str, example))}), "
                          f"got {x.dtype} {tuple(x.shape)}")
    for name, array in (("y", y), ("host_predictions", host)):
        if array.ndim != 1 or len(array) != len(x) or not np.issubdtype(array.dtype, np.integer):
            raise BundleError(f"{path.name}: `{name}` must be {len(x)} integer labels, got {array.dtype} "
                              f"{tuple(array.shape)}")
    if "host_logits" in arrays and arrays["host_logits"].shape[:1] != (len(x),):
        raise BundleError(f"{path.name}: `host_logits` must have {len(x)} rows, got {tuple(arrays['host_logits'].shape)}")
    n = manifest["eval_set"].get("n")
    if n is not None and n != len(x):
        raise BundleError(f"{path.name} holds {len(x)} examples, {MANIFEST} says `eval_set.n` = {n!r}")
    return arrays


def read_bundle(bundle_dir):
    """``(manifest, model bytes, eval arrays)`` of a bundle, checking the schema and sha256 sums.

    Raises:
        BundleError: missing files, a manifest that does not fit the schema
            (:func:`validate_manifest`), a sha256 mismatch, an unreadable evaluation set
            or a model that is not a TFLite flatbuffer.
    """
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"no {MANIFEST} in {bundle_dir}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{manifest_path} is not valid JSON: {e}") from e
    files = validate_manifest(manifest, bundle_dir)
    contents = {}
    for key, path in files.items():
        data = path.read_bytes()
        if sha256(data) != manifest[key]["sha256"]:
            raise BundleError(f"sha256 of {path.name} is {sha256(data)}, manifest says {manifest[key]['sha256']}: "
                              f"refusing to run it")
        contents[key] = data
    try:
        custom_op_names(contents["model"])
    except FlatbufferError as e:
        raise BundleError(f"{files['model'].name}: {e}") from e
    return manifest, contents["model"], _read_eval_set(files["eval_set"], manifest)


def _validate_run(*, num_threads, limit):
    for value, name in ((num_threads, "threads"), (limit, "limit")):
        if value is None and name == "limit":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


def verify_bundle(bundle_dir, *, runtime="auto", num_threads=1, limit=None):
    """Run a bundle's evaluation set and compare with its manifest.

    Args:
        bundle_dir: the bundle folder.
        runtime: one of :data:`RUNTIMES`.
        num_threads: interpreter threads (>= 1).
        limit: only the first ``limit`` (>= 1) examples; the accuracy is then not
            compared with the manifest (it describes the whole set), only the agreement.

    Returns:
        The report dict; ``report["passed"]`` says whether accuracy and agreement with
        the host predictions are within the manifest's tolerance.

    Raises:
        BundleError: see :func:`read_bundle`.
        ValueError, TypeError: bad ``runtime``, ``num_threads`` or ``limit``, or inputs
            that do not fit the model.
        ImportError: no usable TFLite runtime.
    """
    _validate_run(num_threads=num_threads, limit=limit)
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
        "accuracy_abs_tolerance": tol["accuracy_abs"],
        "agreement_with_host": agreement,
        "min_agreement_with_host": tol["min_agreement_with_host"],
        "disagreements": int(np.sum(pred != host_pred)),
        "ms_per_image": 1000.0 * seconds / max(len(y), 1),
        "accuracy_checked": limit is None,
    }
    if "host_logits" in arrays:
        host_logits = arrays["host_logits"][: len(y)]
        if host_logits.shape == logits.shape:
            report["max_abs_logit_diff_vs_host"] = float(np.max(np.abs(logits - host_logits), initial=0.0))
    report["passed"] = bool(accuracy_ok and agreement >= tol["min_agreement_with_host"])
    return report


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error:`` line and exit status :data:`EXIT_ERROR`."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {value}")
    return value


def _check_report_path(path):
    """Fail now, not after the run, if the report cannot be written to ``path``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--report {path}: is a folder; give a file name, e.g. {path / 'report.json'}")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"--report {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--report {path}: the folder {folder} is not writable")


def main(argv=None):
    parser = _Parser(prog="python -m edgebnn.deploy.device", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    v = sub.add_parser("verify", help="run a bundle's evaluation set and check it against the manifest")
    v.add_argument("bundle_dir")
    v.add_argument("--report", help="write the JSON report here (its folder must exist)")
    v.add_argument("--runtime", default="auto", choices=RUNTIMES)
    v.add_argument("--threads", type=_positive_int, default=1, help="interpreter threads (>= 1)")
    v.add_argument("--limit", type=_positive_int, default=None,
                   help="only the first N (>= 1) examples (skips the accuracy check)")
    args = parser.parse_args(argv)
    try:
        if args.report:
            _check_report_path(args.report)
        report = verify_bundle(args.bundle_dir, runtime=args.runtime, num_threads=args.threads, limit=args.limit)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BundleError, ImportError, ValueError, TypeError, KeyError, OSError, RuntimeError, MemoryError) as e:
        # RuntimeError: the TFLite interpreters report failures to allocate or invoke with it.
        detail = f"missing key {e}" if isinstance(e, KeyError) else " ".join(str(e).split())
        print(f"error: {detail}", file=sys.stderr)
        return EXIT_ERROR
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        try:
            _io.write_text(args.report, text + "\n")
        except OSError as e:
            print(f"error: could not write the report to {args.report}: {e}", file=sys.stderr)
            return EXIT_ERROR
    if not report["passed"]:
        print(
            f"FAILED: accuracy {report['accuracy']:.4f} (expected {report['expected_accuracy']:.4f} "
            f"+- {report['accuracy_abs_tolerance']}), agreement with host {report['agreement_with_host']:.4f} "
            f"(min {report['min_agreement_with_host']})",
            file=sys.stderr,
        )
        return EXIT_OUT_OF_TOLERANCE
    return EXIT_PASSED


if __name__ == "__main__":
    sys.exit(main())
