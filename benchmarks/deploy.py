"""Conversion time of every deploy target, and ``.tflite`` latency of every target, against
plain float TFLite (``tf.lite.TFLiteConverter`` on the Keras graph).

Models: Panda FCN2 and Galloway CNN B (K=32), binary weights and activations, untrained with
random BatchNorm statistics (conversion and latency do not depend on the weights' values).
Conversions are timed interleaved target by target; latency is the mean milliseconds per
image (batch size 1, one thread) over ``images`` images, median of ``repeats`` interleaved
rounds after a warm-up, every target on the interpreter edgebnn's verification uses for it
(LCE's for ``lce``).
"""

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from benchmarks.common import Figure, Result
from edgebnn import testing, zoo
from edgebnn.deploy import convert as cv
from edgebnn.deploy.latency import interleaved, latency_ms
from edgebnn.deploy.verify import interpreter

MODELS = {
    "Panda FCN2 binary": ("panda_fcn2", dict(precision="binary")),
    "Galloway CNN B K=32": ("galloway_cnn", dict(precision="B", kernels=32)),
}
FLOAT = "float TFLite"


def run(*, quick=False):
    repeats, images = (1, 20) if quick else (3, 300)
    x = np.random.default_rng(0).random((images, 28, 28, 1)).astype(np.float32)
    figures, convert_rows, latency_rows = [], [], []
    for name, (family, options) in MODELS.items():
        model = zoo.get(family)(**options)
        testing.randomize_batch_norm(model)
        converters = {FLOAT: lambda: cv.float_reference(model)}
        for target in cv.TARGETS:
            converters[target] = lambda t=target: cv.convert(model, target=t)
        flatbuffers = {k: fn() for k, fn in converters.items()}  # warm-up (first conversion traces the model)
        seconds = interleaved({k: (lambda k=k, fn=fn: flatbuffers.__setitem__(k, fn())) for k, fn in
                               converters.items()}, repeats)
        conv = {k: float(np.median(s)) for k, s in seconds.items()}
        ms = latency_ms({k: interpreter(fb) for k, fb in flatbuffers.items()}, x, repeats)
        for target in cv.TARGETS:
            convert_rows.append(f"| {name} | `{target}` | {conv[target]:.2f} | {conv[FLOAT]:.2f} | "
                                f"{conv[target] / conv[FLOAT]:.2f}x |")
            latency_rows.append(f"| {name} | `{target}` | {len(flatbuffers[target]):,} | {ms[target]:.3f} | "
                                f"{len(flatbuffers[FLOAT]):,} | {ms[FLOAT]:.3f} | {ms[target] / ms[FLOAT]:.2f}x |")
            figures.append(Figure(f"conversion time, {name}, `{target}` / float TFLiteConverter",
                                  conv[target] / conv[FLOAT], conv[target], conv[FLOAT], "s (median)",
                                  "edgebnn.deploy.convert (graph rewrites + converter) against the plain converter"))
            figures.append(Figure(f".tflite latency, {name}, `{target}` / float TFLite", ms[target] / ms[FLOAT],
                                  ms[target], ms[FLOAT], "ms/image (median)",
                                  "< 1: the target runs faster than the float model"))
    details = "\n".join([
        f"Untrained models with random BatchNorm statistics, float32 input; median of {repeats} interleaved "
        f"conversions; latency over {images} random images per round, batch size 1, one thread.", "",
        "| model | target | convert (s) | float TFLiteConverter (s) | ratio |", "|---|---|---:|---:|---:|",
        *convert_rows, "",
        "| model | target | bytes | ms/image | float bytes | float ms/image | latency ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
        *latency_rows,
    ])
    return Result("Conversion time and .tflite latency against float TFLite", figures, details)
