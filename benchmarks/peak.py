"""PGD and training throughput of four model families as a fraction of the machine's matmul peak.

The peak is a ``2048^3`` float32 matmul (``2 * 2048^3`` FLOP) timed in this process,
right before the models. A model's FLOP per image are counted from its layers:
``2 * inputs * units`` per dense layer, ``2 * kh * kw * c_in * c_out * h_out * w_out``
per convolution (BatchNorm, activations, pooling and the quantizers are left out, so
the fractions are lower bounds). One PGD iteration is a forward pass and a backward
pass to the input (2x the forward FLOP); one training step a forward pass and a
backward pass to the inputs and the weights (3x). Models are untrained: speed does not
depend on the weights' values.

Usage (alone; ``python -m benchmarks`` runs it with the defaults of :func:`run`):
    PYTHONPATH=. python -m benchmarks.peak [--quick]
"""

import argparse
import time

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from benchmarks.common import Figure, Result
from edgebnn import zoo
from edgebnn.evaluation.robustness import craft
from edgebnn.training import compile_for_classification

import tensorflow as tf

#: Side of the square float32 matmul that measures the peak.
PEAK_SIZE = 2048
#: Forward-pass multiples of one PGD iteration (forward + backward to the input) and of
#: one training step (forward + backward to the inputs and to the weights).
PGD_PASSES, TRAINING_PASSES = 2, 3
#: family label -> (zoo family, builder options, attacked images, training images). Panda's FCN1
#: (118M weights, 236 MFLOP per forward pass) is left out: attacking it took a 5.6 GiB process
#: and training it (weights, gradients, Adam's two moments) more, beyond what a benchmark may
#: take on this shared 24 GiB machine (one run was killed by the out-of-memory killer).
MODELS = {
    "Panda FCN2 binary": ("panda_fcn2", dict(precision="binary"), 500, 3000),
    "Galloway CNN B K=64": ("galloway_cnn", dict(precision="B", kernels=64), 200, 1000),
    "Guan LeNet binary": ("guan_lenet", dict(precision="binary"), 500, 3000),
}
#: PGD iterations and the batch of both PGD and training (Panda's and Galloway's batch size).
PGD_STEPS, BATCH = 20, 128


def matmul_peak(*, size=PEAK_SIZE, repeats=5):
    """Best-of-``repeats`` float32 GFLOP/s of a ``size^3`` matmul in this process."""
    a = tf.random.uniform([size, size])
    b = tf.random.uniform([size, size])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    matmul().numpy()  # warm-up: tracing
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        seconds.append(time.perf_counter() - start)
    return 2.0 * size**3 / min(seconds) / 1e9


def forward_flop(model):
    """FLOP of one forward pass of one image through ``model``'s dense and convolution layers."""
    total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        if len(kernel.shape) == 2:
            total += 2 * int(kernel.shape[0]) * int(kernel.shape[1])
        elif len(kernel.shape) == 4:
            h_out, w_out = layer.output_shape[1:3]
            total += 2 * int(np.prod(kernel.shape)) * int(h_out) * int(w_out)
    return total


def _median_seconds(fn, repeats):
    fn()  # warm-up: tracing
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def measure(*, quick=False):
    """``(peak GFLOP/s, rows)``: per family its FLOP per image and PGD / training GFLOP/s."""
    repeats = 1 if quick else 3
    peak = matmul_peak(repeats=2 if quick else 5)
    rows = []
    rng = np.random.default_rng(0)
    for label, (family, options, attacked, trained) in MODELS.items():
        if quick:
            attacked, trained = min(attacked, 32), min(trained, 2 * BATCH)
        model = zoo.get(family)(**options)
        shape = model.input_shape[1:]
        x = rng.uniform(0.0, 1.0, (max(attacked, trained), *shape)).astype(np.float32)
        y = rng.integers(0, 10, len(x))
        flop = forward_flop(model)
        steps = 2 if quick else PGD_STEPS
        pgd_s = _median_seconds(lambda m=model: craft(m, x[:attacked], y[:attacked], attack="pgd", eps=0.1, steps=steps,
                                                      batch_size=BATCH), repeats)
        compile_for_classification(model)
        fit_s = _median_seconds(lambda m=model: m.fit(x[:trained], y[:trained], batch_size=BATCH, epochs=1, verbose=0,
                                                      shuffle=False), repeats)
        rows.append(dict(label=label, flop=flop, params=model.count_params(),
                         pgd_gflops=attacked * steps * PGD_PASSES * flop / pgd_s / 1e9, pgd_images=attacked / pgd_s,
                         train_gflops=trained * TRAINING_PASSES * flop / fit_s / 1e9, train_images=trained / fit_s))
        del model
    return peak, rows


def run(*, quick=False):
    """The benchmark at its defaults (tiny sizes with ``quick``)."""
    peak, rows = measure(quick=quick)
    figures, table = [], [
        "| model | weights | forward MFLOP / image | PGD images/s | PGD GFLOP/s | PGD / peak | "
        "training images/s | training GFLOP/s | training / peak |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['label']} | {r['params']:,} | {r['flop'] / 1e6:.2f} | {r['pgd_images']:.0f} | "
                     f"{r['pgd_gflops']:.1f} | {r['pgd_gflops'] / peak:.0%} | {r['train_images']:.0f} | "
                     f"{r['train_gflops']:.1f} | {r['train_gflops'] / peak:.0%} |")
        figures.append(Figure(f"PGD throughput / matmul peak, {r['label']}", r["pgd_gflops"] / peak, r["pgd_gflops"],
                              peak, "GFLOP/s", f"PGD-{PGD_STEPS} via `craft`, batch {BATCH}, dense/conv FLOP only"))
        figures.append(Figure(f"training throughput / matmul peak, {r['label']}", r["train_gflops"] / peak,
                              r["train_gflops"], peak, "GFLOP/s", f"`model.fit`, batch {BATCH}, dense/conv FLOP only"))
    details = "\n".join([
        f"Peak: {peak:.1f} GFLOP/s, the best of the timed float32 {PEAK_SIZE}^3 matmuls (`tf.matmul` in a "
        f"`tf.function`), measured in this process right before the models.", "",
        f"PGD-{PGD_STEPS} (L-inf eps=0.1) through `craft`, batch {BATCH}, {PGD_PASSES}x the forward FLOP per "
        f"iteration; one `model.fit` epoch, batch {BATCH}, {TRAINING_PASSES}x the forward FLOP per image; median of "
        f"{1 if quick else 3} timed runs after a warm-up, on uniform random images (untrained models). FLOP count "
        "dense and convolution layers only. Panda's FCN1 (118M weights) is left out: attacking it took a "
        "5.6 GiB process, more than a benchmark may take on this shared machine (see `MODELS`).", "", *table])
    return Result("Attack and training throughput against the matmul peak", figures, details)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    print(run(quick=parser.parse_args().quick).details)


if __name__ == "__main__":
    main()
