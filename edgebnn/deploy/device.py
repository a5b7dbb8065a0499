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
        [--kernels auto] [--threads N] [--limit N] [--memory-mb N] [--timeout S]
    python -m edgebnn.deploy.device files    # the files to copy to a device, one a line

Exit status: 0 within the manifest's tolerance (accuracy, agreement with the host and,
when the manifest promises it, the logits' exactness), 1 outside it, 2 for every
failure to run (bad arguments, bundle, manifest, evaluation set, model structure or
runtime; one line on stderr), 130 after Ctrl-C.

Nothing the bundle holds reaches an interpreter unchecked: the arguments, the manifest,
the evaluation set and the model's flatbuffer structure (:mod:`edgebnn.deploy.flatbuffer`)
are checked first. The interpreter then runs in a child process with an address-space
cap and a time limit (:mod:`edgebnn.deploy.isolation`), so a model that still crashes it, allocates without bound or
hangs ends as one ``error:`` line and exit status 2, never as a signal or a machine out
of memory.
"""

import argparse
import ast
import hashlib
import importlib
import importlib.metadata
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
from edgebnn.deploy.flatbuffer import FlatbufferError, verify_model
from edgebnn.deploy.isolation import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, MIB, one_line, run_isolated
from edgebnn.deploy.isolation import InterpreterFailure  # noqa: F401  (what verify_bundle raises, for callers)
from edgebnn.deploy.tflite import PIXEL_MAX, uses_lce_ops

RUNTIMES = ("auto", "lce", "ai_edge_litert", "tflite_runtime")
KERNELS = ("default", "reference", "indirect_bgemm")
#: Kernel sets: ``"builtin"`` runs TFLite's builtin kernels only (LCE's kernels for its
#: ops); ``"delegate"`` lets the runtime apply its default delegate (XNNPACK), which sums
#: in another order (in a binary network, enough to flip the sign of a pre-activation near 0).
KERNEL_SETS = ("builtin", "delegate")
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

    def __init__(self, wrapper, flatbuffer, *, num_threads, kernel, kernels):
        self._it = wrapper.LiteInterpreter(
            flatbuffer, num_threads, kernel == "reference", kernel == "indirect_bgemm", kernels == "delegate"
        )
        self.input_dtype = np.dtype(self._it.input_types[0])
        self.input_shape = tuple(self._it.input_shapes[0])

    def predict_one(self, x):
        return self._it.predict([x])[0]


class _StockRunner:
    def __init__(self, interpreter_cls, runtime, flatbuffer, *, num_threads, op_resolver=None):
        self.runtime = runtime
        options = {} if op_resolver is None else {"experimental_op_resolver_type": op_resolver}
        self._it = interpreter_cls(model_content=flatbuffer, num_threads=num_threads, **options)
        self._it.allocate_tensors()
        inp = self._it.get_input_details()[0]
        self._in, self._out = inp["index"], self._it.get_output_details()[0]["index"]
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_shape = tuple(int(d) for d in inp["shape"])

    def predict_one(self, x):
        self._it.set_tensor(self._in, x)
        self._it.invoke()
        return self._it.get_tensor(self._out).copy()


#: Distribution (pip) names of the runtimes, for their versions in the report.
_DISTRIBUTIONS = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "lce": "larq-compute-engine"}


def runtime_version(runtime):
    """The installed version of ``runtime``'s package, or ``None`` when it cannot be told."""
    try:
        return importlib.metadata.version(_DISTRIBUTIONS[runtime])
    except (KeyError, importlib.metadata.PackageNotFoundError):
        return None


def _stock_interpreter(runtime):
    """``(Interpreter class, OpResolverType enum or None)`` of a stock runtime's Python module."""
    module = {"ai_edge_litert": "ai_edge_litert.interpreter", "tflite_runtime": "tflite_runtime.interpreter"}[runtime]
    module = importlib.import_module(module)
    return module.Interpreter, getattr(module, "OpResolverType", None)


def stock_runner(interpreter_cls, op_resolver_type, runtime, flatbuffer, *, num_threads=1, kernels="builtin"):
    """A :class:`Runner` over a stock TFLite ``Interpreter`` class, with the kernel set ``kernels``.

    Args:
        interpreter_cls, op_resolver_type: the runtime's ``Interpreter`` and ``OpResolverType``.
        runtime: the name the runner reports.
        kernels: one of :data:`KERNEL_SETS`.

    Raises:
        ImportError: ``kernels="builtin"`` for a runtime too old to leave out its delegate.
    """
    if kernels == "builtin" and op_resolver_type is None:
        raise ImportError(f"this {runtime} cannot leave out its default delegate (it has no OpResolverType); "
                          f"upgrade it or use --kernels delegate")
    resolver = op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES if kernels == "builtin" else None
    return Runner(_StockRunner(interpreter_cls, runtime, bytes(flatbuffer), num_threads=num_threads,
                               op_resolver=resolver))


def resolve_runtime(runtime, flatbuffer):
    """Import the runtime that will run ``flatbuffer``; return a function that builds its :class:`Runner`.

    Args:
        runtime: one of :data:`RUNTIMES`. ``"auto"``: LCE's interpreter for models with
            ``Lce*`` ops, otherwise the first installed of ``ai_edge_litert``,
            ``tflite_runtime``, ``lce``.
        flatbuffer: the model bytes.

    Returns:
        ``(name, build)``: the runtime's name and ``build(flatbuffer, *, num_threads,
        kernel, kernels)``, which creates the interpreter (in whichever process calls it).

    Raises:
        ValueError: bad ``runtime``, or a model with LCE ops for a stock runtime.
        ImportError: the requested runtime (or, with ``"auto"``, any usable one) is not installed.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {list(RUNTIMES)}, got {runtime!r}.")
    lce_model = uses_lce_ops(flatbuffer)
    if runtime == "auto":
        order = ["lce"] if lce_model else ["ai_edge_litert", "tflite_runtime", "lce"]
        errors = []
        for candidate in order:
            try:
                return resolve_runtime(candidate, flatbuffer)
            except ImportError as e:
                errors.append(f"{candidate}: {e}")
        raise ImportError(f"no TFLite runtime usable for this model ({'; '.join(errors)})")
    if runtime == "lce":
        wrapper = _lce_wrapper()

        def build_lce(fb, *, num_threads, kernel, kernels):
            return Runner(_LceRunner(wrapper, fb, num_threads=num_threads, kernel=kernel, kernels=kernels))

        return "lce", build_lce
    if lce_model:
        raise ValueError(f"this model uses Larq Compute Engine ops; runtime {runtime!r} cannot run it, use 'lce'.")
    interpreter_cls, op_resolver_type = _stock_interpreter(runtime)

    def build_stock(fb, *, num_threads, kernel, kernels):
        if kernel != "default":
            raise ValueError(f"`kernel` {kernel!r} needs runtime 'lce', got runtime {runtime!r}.")
        return stock_runner(interpreter_cls, op_resolver_type, runtime, fb, num_threads=num_threads, kernels=kernels)

    return runtime, build_stock


def _check_kernels(kernel, kernels):
    if kernel not in KERNELS:
        raise ValueError(f"`kernel` must be one of {list(KERNELS)}, got {kernel!r}.")
    if kernels not in KERNEL_SETS:
        raise ValueError(f"`kernels` must be one of {list(KERNEL_SETS)}, got {kernels!r}.")


def load_interpreter(flatbuffer, *, runtime="auto", num_threads=1, kernel="default", kernels="builtin"):
    """A runner with ``predict(x)``, ``input_dtype``, ``input_shape`` and ``runtime`` for ``flatbuffer``.

    The interpreter runs in this process: use it for models you trust (the host side);
    :func:`verify_bundle` checks a bundle's model and runs it in a child process.

    Args:
        flatbuffer: model bytes.
        runtime: one of :data:`RUNTIMES`, see :func:`resolve_runtime`.
        num_threads: interpreter threads.
        kernel: LCE only: ``"default"``, ``"reference"`` (reference bconv) or
            ``"indirect_bgemm"``.
        kernels: one of :data:`KERNEL_SETS`: ``"builtin"`` (default; the kernels a
            bundle's host logits were computed with) or ``"delegate"``.

    Raises:
        ValueError: bad ``runtime``/``kernel``/``kernels``, or ``kernel`` given for a stock runtime.
        ImportError: the requested runtime (or, with ``"auto"``, any usable one) is not installed.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {list(RUNTIMES)}, got {runtime!r}.")
    _check_kernels(kernel, kernels)
    flatbuffer = bytes(flatbuffer)
    _, build = resolve_runtime(runtime, flatbuffer)
    return build(flatbuffer, num_threads=num_threads, kernel=kernel, kernels=kernels)


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
    ``tolerance.min_agreement_with_host`` in (0, 1], finite; optional ``exactness``:
    ``kernels`` in :data:`KERNEL_SETS` and ``max_abs_logit_diff`` >= 0, finite (the
    promise that the device's logits on those kernels are the host's within it).

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
    if "exactness" in manifest:
        exactness = _table(manifest, "exactness")
        if exactness.get("kernels") not in KERNEL_SETS:
            raise BundleError(f"{MANIFEST}: `exactness.kernels` must be one of {list(KERNEL_SETS)}, got "
                              f"{exactness.get('kernels')!r}")
        _number(exactness.get("max_abs_logit_diff"), "exactness.max_abs_logit_diff", low=0, high=math.inf)
    return files


def _read_eval_set(path, manifest, classes):
    """The arrays of ``eval.npz``, checked against each other, the manifest's input and the model's classes."""
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
        outside = array[(array < 0) | (array >= classes)]
        if len(outside):
            raise BundleError(f"{path.name}: `{name}` holds {len(outside)} label(s) outside the model's {classes} "
                              f"classes [0, {classes - 1}], e.g. {int(outside[0])}")
    if "host_logits" in arrays and arrays["host_logits"].shape != (len(x), classes):
        raise BundleError(f"{path.name}: `host_logits` must have shape ({len(x)}, {classes}), got "
                          f"{tuple(arrays['host_logits'].shape)}")
    if "exactness" in manifest and "host_logits" not in arrays:
        raise BundleError(f"{MANIFEST} promises exact logits (`exactness`) but {path.name} has no `host_logits` to "
                          f"check them against")
    n = manifest["eval_set"].get("n")
    if n is not None and n != len(x):
        raise BundleError(f"{path.name} holds {len(x)} examples, {MANIFEST} says `eval_set.n` = {n!r}")
    return arrays


def _check_model(flatbuffer, manifest, name, *, memory_bytes):
    """Verify the model's structure; return its number of classes.

    The model must take one input of the manifest's dtype and shape and give one float32
    output of shape ``(batch, classes)``.
    """
    try:
        summary = verify_model(flatbuffer, max_tensor_bytes=memory_bytes)
    except FlatbufferError as e:
        raise BundleError(f"{name}: {e}") from e
    if len(summary.inputs) != 1 or len(summary.outputs) != 1:
        raise BundleError(f"{name}: the runner runs models with one input and one output, this one has "
                          f"{len(summary.inputs)} and {len(summary.outputs)}")
    (given,), (output,) = summary.inputs, summary.outputs
    spec = manifest["input"]
    if given.dtype != spec["dtype"] or list(given.shape) != spec["shape"]:
        raise BundleError(f"{name}: its input is {given.dtype} {list(given.shape)}, {MANIFEST} says "
                          f"{spec['dtype']} {spec['shape']}")
    if output.dtype != "float32" or len(output.shape) != 2 or output.shape[1] < 1:
        raise BundleError(f"{name}: its output must be float32 of shape (batch, classes), got {output.dtype} "
                          f"{list(output.shape)}")
    return output.shape[1]


def read_bundle(bundle_dir, *, memory_mb=DEFAULT_MEMORY_MB):
    """``(manifest, model bytes, eval arrays)`` of a bundle, checking everything before a model runs.

    Args:
        bundle_dir: the bundle folder.
        memory_mb: the memory the model's tensors may declare, in MiB.

    Raises:
        BundleError: missing files, a manifest that does not fit the schema
            (:func:`validate_manifest`), a sha256 mismatch, a model whose flatbuffer
            structure is unsound (:func:`edgebnn.deploy.flatbuffer.verify_model`) or does
            not fit the manifest's input, an unreadable evaluation set, or labels outside
            the model's classes.
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
    classes = _check_model(contents["model"], manifest, files["model"].name, memory_bytes=memory_mb * MIB)
    return manifest, contents["model"], _read_eval_set(files["eval_set"], manifest, classes)


def _validate_run(*, num_threads, limit, kernels, memory_mb, timeout):
    for value, name in ((num_threads, "threads"), (limit, "limit"), (memory_mb, "memory_mb")):
        if value is None and name == "limit":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if kernels != "auto" and kernels not in KERNEL_SETS:
        raise ValueError(f"`kernels` must be 'auto' or one of {list(KERNEL_SETS)}, got {kernels!r}.")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ValueError(f"`timeout` must be a positive number of seconds, got {timeout!r}.")


# --- verify ---------------------------------------------------------------------------


def _exactness(manifest, arrays, logits, kernels):
    """The exactness entry of the report: what the manifest promises and whether it held."""
    promise = manifest.get("exactness")
    measured = None
    if "host_logits" in arrays:
        host_logits = arrays["host_logits"][: len(logits)]
        measured = float(np.max(np.abs(logits.astype(np.float64) - host_logits), initial=0.0))
    if promise is None:
        return {"promised": False, "max_abs_logit_diff": measured, "met": True}
    return {"promised": True, "kernels": kernels, "promised_kernels": promise["kernels"],
            "max_abs_logit_diff": measured, "promised_max_abs_logit_diff": promise["max_abs_logit_diff"],
            "met": bool(measured <= promise["max_abs_logit_diff"])}


def verify_bundle(bundle_dir, *, runtime="auto", num_threads=1, limit=None, kernels="auto",
                  memory_mb=DEFAULT_MEMORY_MB, timeout=DEFAULT_TIMEOUT_S):
    """Run a bundle's evaluation set and compare with its manifest.

    Everything is checked first (:func:`read_bundle`); the interpreter then runs in a
    child process (:func:`run_isolated`).

    Args:
        bundle_dir: the bundle folder.
        runtime: one of :data:`RUNTIMES`.
        num_threads: interpreter threads (>= 1).
        limit: only the first ``limit`` (>= 1) examples; the accuracy is then not
            compared with the manifest (it describes the whole set), only the agreement
            and the exactness.
        kernels: ``"auto"`` (the kernel set the manifest's exactness promise names,
            else ``"builtin"``) or one of :data:`KERNEL_SETS`.
        memory_mb: memory the interpreter process may add to this one's, in MiB.
        timeout: seconds the interpreter process may run.

    Returns:
        The report dict; ``report["passed"]`` says whether accuracy, agreement with the
        host predictions and, when promised, the logits' exactness are within the
        manifest's tolerance.

    Raises:
        BundleError: see :func:`read_bundle`.
        ValueError, TypeError: bad options, or inputs that do not fit the model.
        ImportError: no usable TFLite runtime.
        InterpreterFailure: the interpreter failed, crashed, or ran out of memory or time.
    """
    _validate_run(num_threads=num_threads, limit=limit, kernels=kernels, memory_mb=memory_mb, timeout=timeout)
    manifest, flatbuffer, arrays = read_bundle(bundle_dir, memory_mb=memory_mb)
    x, y, host_pred = arrays["x"], arrays["y"], arrays["host_predictions"]
    if limit is not None:
        x, y, host_pred = x[:limit], y[:limit], host_pred[:limit]
    if kernels == "auto":
        kernels = manifest.get("exactness", {}).get("kernels", "builtin")
    name, build = resolve_runtime(runtime, flatbuffer)
    inputs = preprocess(x, manifest["input"])

    def work():
        runner = build(flatbuffer, num_threads=num_threads, kernel="default", kernels=kernels)
        start = time.perf_counter()
        logits = runner.predict(inputs)
        return {"logits": logits, "seconds": np.float64(time.perf_counter() - start)}

    out, peak_mb = run_isolated(work, what=name, memory_mb=memory_mb, timeout=timeout)
    logits, seconds = out["logits"], float(out["seconds"])
    pred = logits.argmax(-1)
    accuracy = float(np.mean(pred == y))
    agreement = float(np.mean(pred == host_pred))
    expected, tol = manifest["expected"], manifest["tolerance"]
    accuracy_ok = abs(accuracy - expected["accuracy"]) <= tol["accuracy_abs"] if limit is None else True
    exactness = _exactness(manifest, arrays, logits, kernels)
    report = {
        "bundle": os.fspath(bundle_dir),
        "model_sha256": manifest["model"]["sha256"],
        "runtime": name,
        "runtime_version": runtime_version(name),
        "kernels": kernels,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "edgebnn_version": edgebnn.__version__,
        "n": int(len(y)),
        "accuracy": accuracy,
        "expected_accuracy": expected["accuracy"],
        "accuracy_abs_tolerance": tol["accuracy_abs"],
        "agreement_with_host": agreement,
        "min_agreement_with_host": tol["min_agreement_with_host"],
        "disagreements": int(np.sum(pred != host_pred)),
        "ms_per_image": 1000.0 * seconds / max(len(y), 1),
        "interpreter_peak_rss_mb": round(peak_mb, 1),
        "accuracy_checked": limit is None,
        "exactness": exactness,
    }
    if exactness["max_abs_logit_diff"] is not None:
        report["max_abs_logit_diff_vs_host"] = exactness["max_abs_logit_diff"]
    report["passed"] = bool(accuracy_ok and agreement >= tol["min_agreement_with_host"] and exactness["met"])
    return report


def _failure_line(report):
    """The one ``FAILED:`` line of a report outside its tolerance, naming each check that failed."""
    reasons = []
    if report["accuracy_checked"] and abs(report["accuracy"] - report["expected_accuracy"]) > report[
            "accuracy_abs_tolerance"]:
        reasons.append(f"accuracy {report['accuracy']:.4f} (expected {report['expected_accuracy']:.4f} "
                       f"+- {report['accuracy_abs_tolerance']})")
    if report["agreement_with_host"] < report["min_agreement_with_host"]:
        reasons.append(f"agreement with host {report['agreement_with_host']:.4f} "
                       f"(min {report['min_agreement_with_host']})")
    exactness = report["exactness"]
    if not exactness["met"]:
        reasons.append(f"max |logit - host logit| {exactness['max_abs_logit_diff']:.3g} on {exactness['kernels']} "
                       f"kernels (promised <= {exactness['promised_max_abs_logit_diff']:.3g} on "
                       f"{exactness['promised_kernels']} kernels)")
    return "FAILED: " + "; ".join(reasons)


# --- the files a device needs ---------------------------------------------------------


def _top_level_imports(tree):
    """Module names imported at module level (not inside functions or classes) of a parsed module."""
    names, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return names


def runner_files():
    """The files of this package the device runner imports, relative to the folder holding ``edgebnn/``.

    Found by following the module-level ``edgebnn`` imports of this module (and of the
    package ``__init__`` files on the way); copy exactly these, in their layout, to run
    ``python -m edgebnn.deploy.device`` on a device.
    """
    top = Path(edgebnn.__file__).resolve().parent.parent
    seen, todo = set(), [__spec__.name if __spec__ else "edgebnn.deploy.device"]
    files = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        base = top.joinpath(*parts)
        path = base / "__init__.py" if (base / "__init__.py").is_file() else base.with_suffix(".py")
        if not path.is_file():
            continue  # a name imported from a module, not a module
        files.add(path.relative_to(top).as_posix())
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=os.fspath(path))
        todo.extend(name for name in _top_level_imports(tree) if name.split(".")[0] == "edgebnn")
    return sorted(files)


# --- the command line ------------------------------------------------------------------


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


def _positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
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
    v.add_argument("--kernels", default="auto", choices=("auto", *KERNEL_SETS),
                   help="auto: those the manifest's exactness promise names (else builtin)")
    v.add_argument("--threads", type=_positive_int, default=1, help="interpreter threads (>= 1)")
    v.add_argument("--limit", type=_positive_int, default=None,
                   help="only the first N (>= 1) examples (skips the accuracy check)")
    v.add_argument("--memory-mb", type=_positive_int, default=DEFAULT_MEMORY_MB,
                   help=f"memory the interpreter may use beyond the runner's own (default {DEFAULT_MEMORY_MB})")
    v.add_argument("--timeout", type=_positive_seconds, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds the interpreter may run (default {DEFAULT_TIMEOUT_S})")
    sub.add_parser("files", help="print the files to copy to a device to run this runner, one a line")
    args = parser.parse_args(argv)
    if args.command == "files":
        print("\n".join(runner_files()))
        return EXIT_PASSED
    try:
        if args.report:
            _check_report_path(args.report)
        report = verify_bundle(args.bundle_dir, runtime=args.runtime, num_threads=args.threads, limit=args.limit,
                               kernels=args.kernels, memory_mb=args.memory_mb, timeout=args.timeout)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BundleError, ImportError, ValueError, TypeError, KeyError, OSError, RuntimeError, MemoryError) as e:
        # RuntimeError: InterpreterFailure, and the TFLite interpreters' failures to allocate or invoke.
        detail = f"missing key {e}" if isinstance(e, KeyError) else one_line(e)
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
        print(_failure_line(report), file=sys.stderr)
        return EXIT_OUT_OF_TOLERANCE
    return EXIT_PASSED


if __name__ == "__main__":
    sys.exit(main())
