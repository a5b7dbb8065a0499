"""Single-bit flips of a bundle's model, run through the device runner: never a signal, a memory blow-up or a traceback.

Each flip writes a copy of the bundle whose ``model.tflite`` differs from the original
in one bit, with the manifest's sha256 updated to match (what a faulty flash or a
careless rebuild produces), and runs ``python -m edgebnn.deploy.device verify`` on it.
Every run must end with exit status 0, 1 (a flipped weight changed the results) or 2
(refused or failed: exactly one ``error:`` line on stderr), within the runner's memory
cap and time limit.

Positions (``--positions``): ``structure`` flips one seeded bit in every byte outside
the buffers' data (tables, vtables, shapes, indices, names: what can mislead an
interpreter), ``all-structure`` every bit of those bytes, ``data`` a seeded sample of
``--data-flips`` bits in the weights, ``sample`` ``--data-flips`` seeded bits anywhere
in the file. Runs in-process by default (the runner forks its interpreter process, so
a crash there cannot take this script down); ``--subprocess`` runs each flip as its own
``python -m edgebnn.deploy.device`` process and also measures that process's peak memory.

Usage:
    PYTHONPATH=. python scripts/fuzz_device.py BUNDLE [BUNDLE ...] [--positions structure]
        [--max-flips N] [--header-bits 64] [--data-flips 200] [--limit 20] [--memory-mb 2048]
        [--timeout 60] [--subprocess] [--json out.json]
"""

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edgebnn.deploy import device
from edgebnn.deploy.flatbuffer import buffer_data_ranges

POSITIONS = ("structure", "all-structure", "data", "sample")
#: Exit statuses a flip may end with: passed, out of tolerance, refused or failed with one line.
ALLOWED_EXITS = (device.EXIT_PASSED, device.EXIT_OUT_OF_TOLERANCE, device.EXIT_ERROR)
_BITS_PER_BYTE = 8
#: How a failure line reads, by what ended the run: (kind, text the line contains), first match wins.
FAILURE_KINDS = (
    ("refused: model structure", "error: model.tflite: "),
    ("refused: bundle", "error: "),
)
INTERPRETER_KINDS = (
    ("interpreter crashed (signal)", "interpreter crashed with"),
    ("interpreter out of memory", "interpreter ran out of memory"),
    ("interpreter timed out", "did not finish within"),
    ("interpreter failed (error)", "interpreter failed:"),
)


def failure_kind(line):
    """What a runner's first stderr line says ended the run (``"out of tolerance"`` for ``FAILED:``)."""
    if line.startswith("FAILED:"):
        return "out of tolerance"
    for kind, text in (*INTERPRETER_KINDS, *FAILURE_KINDS):
        if text in line:
            return kind
    return "other"


def flip_bundle(source, target, bit):
    """Copy bundle ``source`` to ``target`` with bit ``bit`` of its model flipped and the manifest's sha256 updated."""
    source, target = Path(source), Path(target)
    manifest = json.loads((source / device.MANIFEST).read_text())
    model = bytearray((source / manifest["model"]["file"]).read_bytes())
    model[bit // _BITS_PER_BYTE] ^= 1 << (bit % _BITS_PER_BYTE)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy(source / manifest["eval_set"]["file"], target / manifest["eval_set"]["file"])
    (target / manifest["model"]["file"]).write_bytes(bytes(model))
    manifest["model"]["sha256"] = device.sha256(bytes(model))
    (target / device.MANIFEST).write_text(json.dumps(manifest))
    return target


def flip_positions(model, kind, *, data_flips, seed=0):
    """Bit positions of ``model`` (bytes) to flip, sorted: see the module docstring for ``kind``."""
    if kind not in POSITIONS:
        raise ValueError(f"`kind` must be one of {list(POSITIONS)}, got {kind!r}.")
    rng = np.random.default_rng(seed)
    in_data = np.zeros(len(model), bool)
    for start, end in buffer_data_ranges(model):
        in_data[start:end] = True
    structure = np.flatnonzero(~in_data)
    if kind == "structure":
        bits = structure * _BITS_PER_BYTE + rng.integers(0, _BITS_PER_BYTE, len(structure))
    elif kind == "all-structure":
        bits = (structure[:, None] * _BITS_PER_BYTE + np.arange(_BITS_PER_BYTE)).ravel()
    else:
        pool = np.flatnonzero(in_data) if kind == "data" else np.arange(len(model))
        chosen = rng.choice(len(pool), size=min(data_flips, len(pool)), replace=False)
        bits = pool[chosen] * _BITS_PER_BYTE + rng.integers(0, _BITS_PER_BYTE, len(chosen))
    return sorted(int(b) for b in bits)


def run_in_process(bundle_dir, args):
    """``(exit status, stderr lines, None)`` of the runner's ``main`` on ``bundle_dir``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = device.main(["verify", os.fspath(bundle_dir), *args])
        except SystemExit as e:
            code = e.code
    return code, err.getvalue().splitlines(), None


def run_subprocess(bundle_dir, args, *, timeout):
    """``(exit status, stderr lines, peak RSS MiB of the runner and its interpreter)`` of a runner process."""
    env = {**os.environ, "PYTHONPATH": os.fspath(Path(__file__).resolve().parents[1])}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "edgebnn.deploy.device", "verify", os.fspath(bundle_dir), *args],
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read().decode(errors="replace").splitlines(), usage.ru_maxrss / 1024


def fuzz(bundle_dir, bits, *, limit=20, memory_mb=device.DEFAULT_MEMORY_MB, timeout=60, in_process=True,
         work_dir=None):
    """Run the runner on one flipped copy of ``bundle_dir`` per bit of ``bits``.

    Returns:
        dict: ``flips``, ``exit_codes`` (status -> count; a signal is a negative
        status), ``max_stderr_lines``, ``failures`` (count by :func:`failure_kind`), ``bad`` (flips that ended with a signal, another
        status, or not exactly one stderr line on failure: ``[{bit, exit, stderr}]``),
        ``first_lines`` (the most common failure lines), ``peak_rss_mb`` (largest
        resident memory of any interpreter process, or runner process with
        ``in_process=False``) and ``seconds``.
    """
    args = ["--limit", str(limit), "--memory-mb", str(memory_mb), "--timeout", str(timeout)]
    start, codes, lines, kinds, bad, peak = time.perf_counter(), Counter(), Counter(), Counter(), [], 0.0
    max_lines = 0
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for bit in bits:
            flipped = flip_bundle(bundle_dir, Path(tmp) / "flipped", bit)
            if in_process:
                code, err, rss = run_in_process(flipped, args)
            else:
                code, err, rss = run_subprocess(flipped, args, timeout=2 * timeout)
            peak = max(peak, rss or 0.0)
            codes[code] += 1
            max_lines = max(max_lines, len(err))
            if code != device.EXIT_PASSED and err:
                lines[err[0][:120]] += 1
                kinds[failure_kind(err[0])] += 1
            if code not in ALLOWED_EXITS or (code != device.EXIT_PASSED and len(err) != 1):
                bad.append({"bit": bit, "exit": code, "stderr": err[:5]})
    if in_process:
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return {"bundle": os.fspath(bundle_dir), "flips": len(bits), "exit_codes": dict(sorted(codes.items())),
            "max_stderr_lines": max_lines, "bad": bad,
            "failures": dict(kinds.most_common()), "first_lines": lines.most_common(8),
            "peak_rss_mb": round(peak, 1), "seconds": round(time.perf_counter() - start, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--positions", default="structure", choices=POSITIONS)
    parser.add_argument("--data-flips", type=int, default=200, help="bits for --positions data / sample")
    parser.add_argument("--max-flips", type=int, default=None,
                        help="at most this many flips per bundle, evenly spaced over the chosen positions")
    parser.add_argument("--header-bits", type=int, default=0,
                        help="also flip every bit of the first N bytes (root offset, identifier, root table)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=20, help="evaluation images per run")
    parser.add_argument("--memory-mb", type=int, default=device.DEFAULT_MEMORY_MB)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--subprocess", action="store_true", help="one runner process per flip")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = []
    for bundle_dir in args.bundles:
        model = (Path(bundle_dir) / "model.tflite").read_bytes()
        bits = flip_positions(model, args.positions, data_flips=args.data_flips, seed=args.seed)
        if args.max_flips and len(bits) > args.max_flips:
            bits = bits[:: -(-len(bits) // args.max_flips)]
        bits = sorted({*bits, *range(args.header_bits * _BITS_PER_BYTE)})
        result = fuzz(bundle_dir, bits, limit=args.limit, memory_mb=args.memory_mb, timeout=args.timeout,
                      in_process=not args.subprocess)
        result["positions"] = args.positions
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(r["bad"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
