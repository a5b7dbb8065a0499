"""Bundles and the TF-free device runner.

The runner's CLI is called in-process through ``device.main(argv)``; the tests whose point is
that it never imports TensorFlow run it in a subprocess where TensorFlow cannot be imported.
"""

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from edgebnn.deploy import device, flatbuffer, isolation
from edgebnn.deploy.bundle import bundle

REPO = Path(__file__).resolve().parents[1]

#: Runs the device CLI with TensorFlow, Keras and Larq made unimportable, then checks
#: that LCE's Python package (whose __init__ imports TensorFlow) was never imported.
_POISONED_RUN = """
import importlib.abc, json, runpy, sys
BLOCKED = ("tensorflow", "tf_keras", "keras", "larq")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["device"] + sys.argv[1:]
try:
    runpy.run_module("edgebnn.deploy.device", run_name="__main__")
except SystemExit as e:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "larq",
                                                                 "larq_compute_engine") and sys.modules[m])
    print("LOADED=" + json.dumps(loaded), file=sys.stderr)
    raise
"""


def _run_device(*args):
    env = {**os.environ, "PYTHONPATH": os.fspath(REPO)}
    return subprocess.run([sys.executable, "-c", _POISONED_RUN, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def _main(capsys, *args):
    """``device.main(["verify", *args])`` in-process: ``(exit code, stdout, stderr lines)``."""
    return run_cli(device.main, ["verify", *args], capsys)


@pytest.fixture(scope="module")
def model_and_data(fcn_in2, fashion_small):
    _, _, xt, yt = fashion_small
    return fcn_in2, xt, yt


#: Bundled variants: name -> convert() options (``packed``: portable with 1-bit weight storage).
VARIANTS = {
    "lce": dict(target="lce", input_dtype="float32"),
    "portable": dict(target="portable", input_dtype="uint8"),
    "packed": dict(target="portable", input_dtype="uint8", weights="packed"),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def bundle_dir(request, model_and_data, fcn_in2_flatbuffer, tmp_path_factory):
    model, xt, yt = model_and_data
    input_dtype = VARIANTS[request.param]["input_dtype"]
    fb = fcn_in2_flatbuffer(**VARIANTS[request.param])
    out = tmp_path_factory.mktemp(request.param) / "bundle"
    manifest = bundle(fb, xt, yt, out, keras_model=model, name=f"fcn64-{request.param}")
    assert manifest["keras"]["agreement"] == 1.0
    assert manifest["input"]["dtype"] == input_dtype
    return out


def test_bundle_contents(bundle_dir, model_and_data):
    _, xt, yt = model_and_data
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    fb = (bundle_dir / "model.tflite").read_bytes()
    assert manifest["model"]["sha256"] == device.sha256(fb)
    with np.load(bundle_dir / "eval.npz", allow_pickle=False) as npz:
        assert npz["x"].dtype == np.uint8 and npz["x"].shape == xt.shape
        np.testing.assert_array_equal(npz["y"], yt)
        accuracy = float(np.mean(npz["host_predictions"] == yt))
    assert manifest["expected"]["accuracy"] == pytest.approx(accuracy)
    assert manifest["edgebnn_version"] and manifest["tolerance"]["min_agreement_with_host"] == 0.999
    assert not any(p.name.startswith(".") for p in bundle_dir.parent.iterdir())  # no temporary leftovers


def test_device_verify_passes_without_tensorflow(bundle_dir, tmp_path):
    out = tmp_path / "report.json"
    proc = _run_device("verify", os.fspath(bundle_dir), "--report", os.fspath(out))
    assert proc.returncode == 0, proc.stderr
    assert 'LOADED=[]' in proc.stderr  # neither TensorFlow, Keras, Larq nor LCE's package was imported
    report = json.loads(out.read_text())
    assert report["passed"] and report["agreement_with_host"] == 1.0
    assert report["accuracy"] == pytest.approx(report["expected_accuracy"])
    assert report["max_abs_logit_diff_vs_host"] < 1e-4


def test_device_refuses_tampered_model(bundle_dir, tmp_path, capsys):
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("manifest.json", "eval.npz", "model.tflite"):
        (tampered / name).write_bytes((bundle_dir / name).read_bytes())
    data = bytearray((tampered / "model.tflite").read_bytes())
    data[-100] ^= 0xFF
    (tampered / "model.tflite").write_bytes(bytes(data))
    code, out, err = _main(capsys, tampered)
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("error:") and "sha256" in err[0] and "refusing" in err[0], err


def test_device_fails_outside_tolerance(bundle_dir, tmp_path, capsys):
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("eval.npz", "model.tflite"):
        (moved / name).write_bytes((bundle_dir / name).read_bytes())
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["expected"]["accuracy"] += 0.05  # the device result is now 5 points off
    (moved / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = _main(capsys, moved)
    assert code == 1 and json.loads(out)["passed"] is False
    assert len(err) == 1 and err[0].startswith("FAILED: accuracy"), err


def test_device_errors_are_one_line(tmp_path, capsys):
    code, out, err = _main(capsys, tmp_path / "missing")
    assert code == 2 and out == ""
    assert err == [f"error: no manifest.json in {tmp_path / 'missing'}"]


def test_load_interpreter_validates():
    with pytest.raises(ValueError, match="`runtime` must be one of"):
        device.load_interpreter(b"", runtime="coral")
    with pytest.raises(ValueError, match="`kernel` must be one of"):
        device.load_interpreter(b"", kernel="fast")
    with pytest.raises(ValueError, match="`kernels` must be one of"):
        device.load_interpreter(b"", kernels="fast")


@pytest.mark.parametrize("options, message", [
    (dict(kernels="fast"), "`kernels` must be 'auto' or one of"),
    (dict(memory_mb=0), "`memory_mb` must be a positive int"),
    (dict(timeout=0), "`timeout` must be a positive number of seconds"),
    (dict(timeout=float("nan")), "`timeout` must be a positive number of seconds"),
])
def test_verify_bundle_validates_its_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        device.verify_bundle(tmp_path, **options)


# --- every failure to run is exit 2 with one line, checked before the model runs ------


@pytest.fixture(scope="module")
def flatbuffers(fcn_in2_flatbuffer):
    """The shared model converted for LCE and for the portable target (uint8 input)."""
    return {"lce": fcn_in2_flatbuffer(target="lce"),
            "portable": fcn_in2_flatbuffer(target="portable", input_dtype="uint8")}


@pytest.fixture(scope="module")
def portable_bundle(model_and_data, flatbuffers, tmp_path_factory):
    """One bundle (portable target, uint8 input) to copy and break."""
    _, xt, yt = model_and_data
    out = tmp_path_factory.mktemp("portable_for_bad_inputs") / "bundle"
    bundle(flatbuffers["portable"], xt, yt, out)
    return out


def _copy_bundle(source, target, *, manifest=None, files=None):
    """A copy of ``source`` with the manifest edited by ``manifest(dict)`` and files replaced (sha256 kept right)."""
    target.mkdir()
    for name in ("eval.npz", "model.tflite"):
        (target / name).write_bytes((files or {}).get(name, (source / name).read_bytes()))
    data = json.loads((source / "manifest.json").read_text())
    for key, name in (("model", "model.tflite"), ("eval_set", "eval.npz")):
        data[key]["sha256"] = device.sha256((target / name).read_bytes())
    if manifest is not None:
        data = manifest(data)
    (target / "manifest.json").write_text(json.dumps(data))
    return target


def _set(path, value):
    def edit(data):
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        return data

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set(["tolerance", "accuracy_abs"], 1.5), "`tolerance.accuracy_abs` must be a number in [0, 1], got 1.5"),
        (_set(["tolerance", "accuracy_abs"], -0.1), "`tolerance.accuracy_abs` must be a number in [0, 1], got -0.1"),
        (_set(["tolerance", "accuracy_abs"], "0.01"), "`tolerance.accuracy_abs` must be a number in [0, 1], got '0.01'"),
        (_set(["tolerance", "min_agreement_with_host"], 0), "`tolerance.min_agreement_with_host` must be a number in (0, 1], got 0"),
        (_set(["tolerance", "min_agreement_with_host"], float("nan")),
         "`tolerance.min_agreement_with_host` must be a number in (0, 1], got nan"),
        (_set(["tolerance", "min_agreement_with_host"], True),
         "`tolerance.min_agreement_with_host` must be a number in (0, 1], got True"),
        (_set(["expected", "accuracy"], 2), "`expected.accuracy` must be a number in [0, 1], got 2"),
        (lambda data: [], "manifest.json must hold a JSON object, got a list"),
        (lambda data: {k: v for k, v in data.items() if k != "tolerance"}, "`tolerance` must be a JSON object, got missing"),
        (_set(["format_version"], 2), "`format_version` must be 1, got 2"),
        (_set(["model", "file"], "../bundle/model.tflite"), "`model.file` must be a file name inside the bundle"),
        (_set(["model", "file"], "/etc/hostname"), "`model.file` must be a file name inside the bundle"),
        (_set(["eval_set", "file"], "model.tflite"), "`model.file` and `eval_set.file` must be two files"),
        (_set(["eval_set", "file"], "gone.npz"), "`eval_set.file` names 'gone.npz', which is not a file in"),
        (_set(["model", "sha256"], "abc"), "`model.sha256` must be 64 lowercase hex digits, got 'abc'"),
        (_set(["input", "dtype"], "int8"), "`input.dtype` must be one of ['uint8', 'float32'], got 'int8'"),
        (_set(["input", "shape"], [1, 0]), "`input.shape` must be a list of positive ints"),
        (_set(["eval_set", "n"], 7), "holds 300 examples, manifest.json says `eval_set.n` = 7"),
    ],
)
def test_bad_manifest_is_one_line_exit_2(portable_bundle, tmp_path, capsys, edit, message):
    broken = _copy_bundle(portable_bundle, tmp_path / "broken", manifest=edit)
    code, out, err = _main(capsys, broken)
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_truncated_eval_set_with_a_matching_sha256_is_one_line(portable_bundle, tmp_path, capsys):
    truncated = (portable_bundle / "eval.npz").read_bytes()[:-200]
    broken = _copy_bundle(portable_bundle, tmp_path / "broken", files={"eval.npz": truncated})
    code, out, err = _main(capsys, broken)
    assert code == 2 and out == "" and len(err) == 1
    assert err[0].startswith("error: eval.npz is not a readable .npz archive"), err


def test_eval_set_without_labels_is_one_line(portable_bundle, tmp_path, capsys):
    import io

    with np.load(portable_bundle / "eval.npz") as npz:
        buffer = io.BytesIO()
        np.savez(buffer, x=npz["x"], host_predictions=npz["host_predictions"])
    broken = _copy_bundle(portable_bundle, tmp_path / "broken", files={"eval.npz": buffer.getvalue()})
    code, _, err = _main(capsys, broken)
    assert code == 2 and err == ["error: eval.npz lacks the array(s) ['y']; it holds ['host_predictions', 'x']"]


def test_model_that_is_not_a_flatbuffer_is_one_line(portable_bundle, tmp_path, capsys):
    broken = _copy_bundle(portable_bundle, tmp_path / "broken", files={"model.tflite": b"\x00" * 64})
    code, _, err = _main(capsys, broken)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: model.tflite: not a TFLite flatbuffer"), err


@pytest.mark.parametrize(
    "args, message",
    [
        (("--limit", "-5"), "argument --limit: must be a positive int, got -5"),
        (("--limit", "0"), "argument --limit: must be a positive int, got 0"),
        (("--threads", "0"), "argument --threads: must be a positive int, got 0"),
        (("--threads", "two"), "argument --threads: must be a positive int, got 'two'"),
        (("--runtime", "coral"), "argument --runtime: invalid choice: 'coral'"),
        (("--kernels", "fast"), "argument --kernels: invalid choice: 'fast'"),
        (("--memory-mb", "0"), "argument --memory-mb: must be a positive int, got 0"),
        (("--timeout", "-1"), "argument --timeout: must be a positive number of seconds, got -1"),
        (("--timeout", "inf"), "argument --timeout: must be a positive number of seconds, got inf"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(portable_bundle, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        device.main(["verify", os.fspath(portable_bundle), *args])
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_report_folder_is_checked_before_running(portable_bundle, tmp_path, capsys):
    code, out, err = _main(capsys, portable_bundle, "--report", tmp_path / "missing" / "report.json")
    assert code == 2 and out == ""  # nothing ran
    assert err == [f"error: --report {tmp_path / 'missing' / 'report.json'}: the folder {tmp_path / 'missing'} "
                   f"does not exist"]
    code, _, err = _main(capsys, portable_bundle, "--report", tmp_path)
    assert code == 2 and len(err) == 1 and "is a folder" in err[0]


def test_limit_checks_that_many_and_writes_the_report(portable_bundle, tmp_path, capsys):
    out = tmp_path / "report.json"
    code, _, _ = _main(capsys, portable_bundle, "--limit", "5", "--threads", "2", "--report", out)
    report = json.loads(out.read_text())
    assert code == 0 and report["n"] == 5 and report["accuracy_checked"] is False


def test_bad_manifest_is_one_line_without_tensorflow(portable_bundle, tmp_path):
    broken = _copy_bundle(portable_bundle, tmp_path / "broken", manifest=_set(["tolerance", "accuracy_abs"], 1.5))
    proc = _run_device("verify", os.fspath(broken))
    assert proc.returncode == 2 and 'LOADED=[]' in proc.stderr
    assert [line for line in proc.stderr.splitlines() if not line.startswith("LOADED=")] == [
        "error: manifest.json: `tolerance.accuracy_abs` must be a number in [0, 1], got 1.5"]


# --- LCE ops from the operator codes ---------------------------------------------------


def test_operator_codes_match_the_tensorflow_schema(flatbuffers):
    from edgebnn.deploy.opcodes import custom_op_names, operator_codes
    from edgebnn.deploy.report import op_histogram

    for target, fb in flatbuffers.items():
        ops = set(op_histogram(fb))
        assert set(custom_op_names(fb)) == {name for name in ops if name.startswith("Lce")}
        assert len(operator_codes(fb)) >= len(ops)
        assert device.uses_lce_ops(fb) == (target == "lce")


def test_lce_ops_are_not_found_by_a_byte_search(flatbuffers):
    from edgebnn.deploy.opcodes import FlatbufferError

    fb = flatbuffers["portable"]
    description = b"MLIR Converted."
    assert description in fb  # the converter's Model.description; overwrite it with an op's name
    named = fb.replace(description, b"LceBconv2d" + b"." * (len(description) - len(b"LceBconv2d")), 1)
    assert b"LceBconv2d" in named and not device.uses_lce_ops(named)
    with pytest.raises(FlatbufferError, match="not a TFLite flatbuffer"):
        device.uses_lce_ops(b"LceBconv2d" * 4)
    with pytest.raises(FlatbufferError, match="outside"):
        device.uses_lce_ops(fb[:64])


# --- the model's structure is verified before any interpreter reads it ---------------


def _tensors(fb):
    """``(reader, tensor tables, operator tables)`` of the model's one subgraph."""
    reader, model = flatbuffer.root(fb)
    (subgraph,) = reader.tables(reader.child(model, flatbuffer._MODEL["subgraphs"]))
    return (reader, reader.tables(reader.child(subgraph, flatbuffer._SUBGRAPH["tensors"])),
            reader.tables(reader.child(subgraph, flatbuffer._SUBGRAPH["operators"])))


def _patched(fb, pos, fmt, value):
    data = bytearray(fb)
    struct.pack_into(fmt, data, pos, value)
    return bytes(data)


def _shape_pos(reader, tensor):
    """Position of the first dimension of a tensor's shape."""
    return reader.child(tensor, flatbuffer._TENSOR["shape"]) + 4


def _constant_tensor(reader, tensors, fb):
    sizes = [0 if reader.child(b, 0) is None else reader.vector(reader.child(b, 0), 1)[1]
             for b in reader.tables(reader.child(flatbuffer.root(fb)[1], flatbuffer._MODEL["buffers"]))]
    return next(t for t in tensors if sizes[reader.scalar(t, flatbuffer._TENSOR["buffer"], "<I")] > 0
                and reader.vector(reader.child(t, flatbuffer._TENSOR["shape"]), 4)[1] > 0)


def _corrupt_constant_shape(fb):
    reader, tensors, _ = _tensors(fb)
    tensor = _constant_tensor(reader, tensors, fb)
    pos = _shape_pos(reader, tensor)
    return _patched(fb, pos, "<i", 2 * reader.unpack("<i", pos))


def _corrupt_activation_size(fb):
    reader, tensors, _ = _tensors(fb)
    return _patched(fb, _shape_pos(reader, tensors[0]), "<i", 2**30)  # the input, (1, 28, 28, 1)


def _corrupt_buffer_index(fb):
    reader, tensors, _ = _tensors(fb)
    tensor = _constant_tensor(reader, tensors, fb)
    return _patched(fb, tensor.fields[flatbuffer._TENSOR["buffer"]], "<I", 10**6)


def _corrupt_operator_input(fb):
    reader, _, operators = _tensors(fb)
    return _patched(fb, reader.child(operators[0], flatbuffer._OPERATOR["inputs"]) + 4, "<i", 10**6)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_corrupt_constant_shape, "its buffer"),
        (_corrupt_activation_size, "more than the"),
        (_corrupt_buffer_index, "'s buffer refers to index 1000000, the model has"),
        (_corrupt_operator_input, "operator 0's inputs refers to index 1000000"),
        (lambda fb: fb[: len(fb) // 2], "is outside the"),
        (lambda fb: _patched(fb, 0, "<I", len(fb) + 8), "outside"),
    ],
    ids=["constant-shape", "activation-size", "buffer-index", "operator-input", "truncated", "root-offset"],
)
def test_unsound_model_structure_is_one_line_before_any_interpreter(portable_bundle, tmp_path, capsys, monkeypatch,
                                                                    corrupt, message):
    def no_interpreter(*args, **kwargs):
        raise AssertionError("an interpreter was asked for")

    monkeypatch.setattr(device, "resolve_runtime", no_interpreter)
    model = corrupt((portable_bundle / "model.tflite").read_bytes())
    broken = _copy_bundle(portable_bundle, tmp_path / "broken", files={"model.tflite": model})
    code, out, err = _main(capsys, broken)
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("error: model.tflite: ") and message in err[0], err


def test_verify_model_summarises_the_shipped_layout(flatbuffers):
    for target, fb in flatbuffers.items():
        summary = flatbuffer.verify_model(fb, max_tensor_bytes=2**30)
        assert [(t.dtype, t.shape) for t in summary.outputs] == [("float32", (1, 10))]
        assert summary.inputs[0].shape == (1, 28, 28, 1)
        assert summary.constant_bytes > 0 and summary.tensors > summary.operators > 0
        data = sum(end - start for start, end in flatbuffer.buffer_data_ranges(fb))
        assert summary.constant_bytes <= data < len(fb)


def test_model_input_must_match_the_manifest(portable_bundle, tmp_path, capsys):
    broken = _copy_bundle(portable_bundle, tmp_path / "broken", manifest=_set(["input", "dtype"], "float32"))
    code, _, err = _main(capsys, broken)
    assert code == 2 and err == ["error: model.tflite: its input is uint8 [1, 28, 28, 1], manifest.json says "
                                 "float32 [1, 28, 28, 1]"]


@pytest.mark.parametrize("name, value", [("y", 42), ("y", -1), ("host_predictions", 10)])
def test_labels_outside_the_model_classes_are_one_line(portable_bundle, tmp_path, capsys, name, value):
    with np.load(portable_bundle / "eval.npz") as npz:
        labels = npz[name].copy()
    labels[3] = value
    broken = _copy_bundle(portable_bundle, tmp_path / "broken", files={"eval.npz": _eval_set(portable_bundle,
                                                                                             **{name: labels})})
    code, out, err = _main(capsys, broken)
    assert code == 2 and out == ""
    assert err == [f"error: eval.npz: `{name}` holds 1 label(s) outside the model's 10 classes [0, 9], e.g. {value}"]


def _eval_set(bundle_dir, **changes):
    """``eval.npz`` bytes of ``bundle_dir`` with arrays replaced (``None``: removed)."""
    import io

    with np.load(bundle_dir / "eval.npz") as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    arrays.update(changes)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if v is not None})
    return buffer.getvalue()


def test_the_exactness_promise_is_checked(portable_bundle, tmp_path, capsys):
    code, out, _ = _main(capsys, portable_bundle)
    exactness = json.loads(out)["exactness"]
    assert code == 0 and exactness["promised"] and exactness["met"] and exactness["kernels"] == "builtin"
    assert exactness["max_abs_logit_diff"] <= exactness["promised_max_abs_logit_diff"] == 1e-4
    with np.load(portable_bundle / "eval.npz") as npz:
        shifted = npz["host_logits"] + np.float32(1e-3)  # the same predictions, logits off the promise
    broken = _copy_bundle(portable_bundle, tmp_path / "broken", files={"eval.npz": _eval_set(portable_bundle,
                                                                                             host_logits=shifted)})
    code, out, err = _main(capsys, broken)
    report = json.loads(out)
    assert code == 1 and report["exactness"]["met"] is False and report["agreement_with_host"] == 1.0
    assert len(err) == 1 and err[0].startswith("FAILED: max |logit - host logit| 0.001 on builtin kernels "
                                               "(promised <= 0.0001 on builtin kernels)"), err


def test_an_exactness_promise_without_host_logits_is_one_line(portable_bundle, tmp_path, capsys):
    broken = _copy_bundle(portable_bundle, tmp_path / "broken",
                          files={"eval.npz": _eval_set(portable_bundle, host_logits=None)})
    code, out, err = _main(capsys, broken)
    assert code == 2 and out == "" and err == [
        "error: manifest.json promises exact logits (`exactness`) but eval.npz has no `host_logits` to check them "
        "against"]


# --- the interpreter runs in a child process: failures are one line, never a signal -----


def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def _allocate():
    return {"x": np.ones(2**31, np.uint8)}  # 2 GiB, above a 256 MiB cap


def _hang():
    time.sleep(60)


def _raise():
    raise RuntimeError("Node number 3 (FULLY_CONNECTED) failed\nto prepare.")


@pytest.mark.parametrize(
    "work, message",
    [
        (_segfault, "the test interpreter crashed with SIGSEGV"),
        (_allocate, "the test interpreter ran out of memory (peak"),
        (_hang, "the test interpreter did not finish within 1 s (--timeout) and was stopped"),
        (_raise, "the test interpreter failed: RuntimeError: Node number 3 (FULLY_CONNECTED) failed to prepare."),
    ],
    ids=["signal", "memory", "timeout", "exception"],
)
def test_run_isolated_turns_every_failure_into_one_message(work, message):
    with pytest.raises(isolation.InterpreterFailure) as info:
        isolation.run_isolated(work, what="test", memory_mb=256, timeout=1)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_run_isolated_returns_the_arrays_and_the_peak_memory():
    arrays, peak_mb = isolation.run_isolated(lambda: {"x": np.arange(3)}, what="test")
    np.testing.assert_array_equal(arrays["x"], np.arange(3))
    assert peak_mb > 0


def test_an_interpreter_crash_is_one_line_exit_2(portable_bundle, capsys, monkeypatch):
    def crashing(runtime, fb):
        return "ai_edge_litert", lambda *args, **kwargs: _segfault()

    monkeypatch.setattr(device, "resolve_runtime", crashing)
    code, out, err = _main(capsys, portable_bundle)
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("error: the ai_edge_litert interpreter crashed with SIGSEGV"), err


# --- single-bit flips: the runner answers every one with 0, 1 or 2 and one line -------------


@pytest.fixture(scope="module")
def fuzz_device():
    sys.path.insert(0, os.fspath(REPO / "scripts"))
    import fuzz_device  # noqa: PLC0415

    return fuzz_device


def test_bit_flips_never_crash_the_runner(bundle_dir, fuzz_device):
    model = (bundle_dir / "model.tflite").read_bytes()
    structure = fuzz_device.flip_positions(model, "structure", data_flips=0)
    data = fuzz_device.flip_positions(model, "data", data_flips=4)
    bits = sorted({*range(0, 64, 9), *structure[:: max(1, len(structure) // 24)], *data})
    result = fuzz_device.fuzz(bundle_dir, bits, limit=5, timeout=60)
    assert result["bad"] == [], result
    assert result["flips"] == len(bits) and sum(result["exit_codes"].values()) == len(bits)
    assert result["exit_codes"].get(2, 0) > 0  # most structure flips are refused
    assert result["max_stderr_lines"] == 1


@pytest.mark.slow  # one flip in every structure byte (a few thousand runs per bundle)
def test_bit_flips_in_every_structure_byte_never_crash_the_runner(bundle_dir, fuzz_device):
    model = (bundle_dir / "model.tflite").read_bytes()
    bits = fuzz_device.flip_positions(model, "structure", data_flips=0)
    result = fuzz_device.fuzz(bundle_dir, bits, limit=5, timeout=60)
    assert result["bad"] == [], result


# --- the runner runs from exactly the files the Raspberry Pi guide copies ---------------

GUIDE = REPO / "docs" / "raspberry-pi.md"


def guide_files():
    """The runner files the guide's ``rsync -R ... pi:edgebnn-runner/`` line copies."""
    import re

    (line,) = [line for line in GUIDE.read_text().splitlines() if re.match(r"rsync -R .* pi:edgebnn-runner/$", line)]
    return line.split()[2:-1]


def copy_runner(target):
    """Copy the files the guide names, in their layout, into the empty folder ``target``."""
    for name in guide_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes((REPO / name).read_bytes())
    return target


def test_the_guide_copies_exactly_the_runner_files(capsys):
    assert guide_files() == device.runner_files()
    code, out, _ = run_cli(device.main, ["files"], capsys)
    assert code == 0 and out.split() == device.runner_files()
    assert {"edgebnn/deploy/device.py", "edgebnn/deploy/flatbuffer.py", "edgebnn/deploy/isolation.py",
            "edgebnn/__init__.py"} <= set(guide_files())


def test_the_copied_runner_verifies_a_bundle_without_tensorflow(bundle_dir, tmp_path):
    runner = copy_runner(tmp_path / "runner")
    probe = _POISONED_RUN.replace("    raise\n", "    print('EDGEBNN=' + sys.modules['edgebnn'].__file__, file=sys.stderr)\n"
                                                "    raise\n")
    proc = subprocess.run([sys.executable, "-c", probe, "verify", os.fspath(bundle_dir)], capture_output=True,
                          text=True, cwd=runner, env={**os.environ, "PYTHONPATH": os.fspath(runner)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"EDGEBNN={runner / 'edgebnn' / '__init__.py'}" in proc.stderr and "LOADED=[]" in proc.stderr
    assert json.loads(proc.stdout)["exactness"]["met"] is True
