"""Shared tooling of the benchmarks: the machine description, interleaved timing, peak RSS
of a child process and the markdown rendering of the results."""

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = os.environ.get("EDGEBNN_DATA_DIR", os.fspath(REPO.parent / "shared" / "data"))


@dataclasses.dataclass
class Figure:
    """One ratio of the summary table: ``ratio = numerator / denominator`` (both in ``unit``)."""

    name: str
    ratio: float
    numerator: float
    denominator: float
    unit: str
    meaning: str


@dataclasses.dataclass
class Result:
    """A benchmark's figures and its detail section (markdown)."""

    title: str
    figures: list
    details: str


def cpu_model():
    """The CPU model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall through to platform's answer
    return platform.processor() or "unknown"


def ram_gib():
    """Physical memory in GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def machine():
    """``{field: value}`` describing this machine and the software versions."""
    import larq_compute_engine as lce  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    return {
        "CPU": cpu_model(), "cores": os.cpu_count(), "RAM": f"{ram_gib():.1f} GiB",
        "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "Python": platform.python_version(), "TensorFlow": tf.__version__, "LCE": lce.__version__,
    }


def load_average():
    """The 1-, 5- and 15-minute load averages, as a string."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def trained_fcn2(args, *, precision="float", input_bits=None):
    """Panda FCN2 trained ``args.epochs`` epochs on ``args.train_limit`` seeded Fashion-MNIST images.

    Returns:
        ``(model, xt, yt, clean)``: the model, ``args.n`` seeded test images and labels, and
        its clean accuracy on them.
    """
    import numpy as np  # noqa: PLC0415

    from edgebnn import data, zoo  # noqa: PLC0415
    from edgebnn.evaluation.robustness import predict_labels  # noqa: PLC0415
    from edgebnn.training import train  # noqa: PLC0415

    x, y = data.load("fashion_mnist", "train", data_dir=args.data_dir, limit=args.train_limit, seed=args.seed)
    xt, yt = data.load("fashion_mnist", "test", data_dir=args.data_dir, limit=args.n, seed=args.seed)
    model = zoo.get("panda_fcn2")(precision=precision, input_bits=input_bits)
    train(model, x, y, epochs=args.epochs, seed=args.seed, verbose=0)
    return model, xt, yt, float(np.mean(predict_labels(model, xt) == yt))


def interleaved(paths, repeats):
    """``{name: [seconds, ...]}``: every path of ``{name: fn}`` timed ``repeats`` times,
    round by round, so that load from other processes hits every path alike (warm up first)."""
    seconds = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def peak_rss_mib():
    """This process' peak resident set size so far, in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process' own
    memory map. ``ru_maxrss`` would be wrong in a child: it keeps the parent's peak across
    ``fork`` and ``exec``. Elsewhere: ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass  # no /proc: fall back to getrusage
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024


def child(module, *args):
    """Run ``python -m module *args`` in a fresh process; its last stdout line is JSON, returned parsed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.fspath(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"`python -m {module} {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _number(value):
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def render(results, *, machine_info, load_before, load_after, command, seconds):
    """The ``BENCHMARKS.md`` text of ``results``."""
    lines = [
        "# Benchmarks", "",
        f"Generated by `{command}` (see `benchmarks/`); do not edit by hand. Every figure is a ratio of two",
        "paths measured in the same run (timed paths interleaved round by round), so that the load of this",
        "shared machine hits both sides alike; absolute numbers are given for context only.", "",
        "## Machine", "",
        "| | |", "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine_info.items()),
        f"| load average (1, 5, 15 min) | {load_before} at the start, {load_after} at the end |",
        f"| generation time | {seconds:.0f} s |", "",
        "## Summary", "",
        "| figure | ratio | numerator | denominator | unit | meaning |", "|---|---:|---:|---:|---|---|",
    ]
    for result in results:
        for f in result.figures:
            lines.append(f"| {f.name} | **{f.ratio:.2f}x** | {_number(f.numerator)} | {_number(f.denominator)} | "
                         f"{f.unit} | {f.meaning} |")
    for result in results:
        lines += ["", f"## {result.title}", "", result.details.strip()]
    return "\n".join(lines) + "\n"
