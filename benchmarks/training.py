"""Training throughput (images/s) of binary models against the same architecture in float.

Pairs built by the same zoo builder: Panda FCN2 binary vs float, Galloway CNN B (binary
layers 2-3) vs A (full precision). Each model is compiled as edgebnn compiles it and
warmed up with one short epoch (tracing); then one epoch per model is timed, interleaved
pair by pair, ``repeats`` times, on the same seeded Fashion-MNIST images.
"""

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from benchmarks.common import DATA_DIR, Figure, Result
from edgebnn.deploy.latency import interleaved
from edgebnn import data, zoo
from edgebnn.training import compile_for_classification

#: name -> ((family, binary builder options), (family, float builder options))
PAIRS = {
    "Panda FCN2": (("panda_fcn2", dict(precision="binary")), ("panda_fcn2", dict(precision="float"))),
    "Galloway CNN K=32": (("galloway_cnn", dict(precision="B", kernels=32)),
                          ("galloway_cnn", dict(precision="A", kernels=32))),
}


def run(*, quick=False):
    n, batch, repeats = (256, 128, 1) if quick else (3000, 128, 3)
    x, y = data.load("fashion_mnist", "train", data_dir=DATA_DIR, limit=n, seed=0)
    models = {}
    for pair, specs in PAIRS.items():
        for side, (family, options) in zip(("binary", "float"), specs):
            model = zoo.get(family)(**options)
            compile_for_classification(model)
            model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)  # warm-up: tracing
            models[(pair, side)] = model
    seconds = interleaved({key: (lambda m=m: m.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False))
                           for key, m in models.items()}, repeats)
    speed = {key: n / float(np.median(s)) for key, s in seconds.items()}
    rows = ["| model | binary images/s | float images/s | binary / float |", "|---|---:|---:|---:|"]
    figures = []
    for pair in PAIRS:
        b, f = speed[(pair, "binary")], speed[(pair, "float")]
        rows.append(f"| {pair} | {b:.0f} | {f:.0f} | {b / f:.2f}x |")
        figures.append(Figure(f"training throughput, {pair} binary / float", b / f, b, f, "images/s (median)",
                              "Larq quantizers (straight-through estimators) against plain Keras float layers"))
    details = (f"One epoch of `model.fit` on {n} Fashion-MNIST images, batch {batch}, Adam (edgebnn's "
               f"`compile_for_classification`), median of {repeats} interleaved epochs after a warm-up.\n\n"
               + "\n".join(rows))
    return Result("Training throughput: binary against float", figures, details)
