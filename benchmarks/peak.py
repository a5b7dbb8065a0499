"""PGD and training throughput of four model families as a fraction of the machine's matmul peak,
and training with XLA (``xla="update"`` / ``"step"`` of ``compile_for_classification``) against the
plain training step.

The peak is a ``2048^3`` float32 matmul (``2 * 2048^3`` FLOP) timed in this process, before
the models and again before every round of training; the best time counts. A model's FLOP
per image are counted from its layers:
``2 * inputs * units`` per dense layer, ``2 * kh * kw * c_in * c_out * h_out * w_out``
per convolution (BatchNorm, activations, pooling and the quantizers are left out, so
the fractions are lower bounds). One PGD iteration is a forward pass and a backward
pass to the input (2x the forward FLOP); one training step a forward pass and a
backward pass to the inputs and the weights (3x). Models are untrained: speed does not
depend on the weights' values. Training modes are timed interleaved, round by round, on
one model recompiled for each mode (its warm-up batches, which trace and compile for the data's
spec, untimed: a timed epoch whose last batch is partial would otherwise include a retrace);
besides the XLA modes, the plain step with Keras' own Adam (``KERAS_ADAM``) measures what
edgebnn's :class:`~edgebnn.training.optim.InPlaceAdam` (same weights, bit for bit) gains.

Usage (alone; ``python -m benchmarks`` runs it with the defaults of :func:`run`):
    PYTHONPATH=. python -m benchmarks.peak [--quick] [--only LABEL ...]
"""

import argparse
import time

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from benchmarks.common import Figure, Result
from edgebnn import zoo
from edgebnn.evaluation.robustness import craft
from edgebnn.training import compile_for_classification
from edgebnn.training.fit import XLA_MODES, random_training_ops
from edgebnn.training.optim import InPlaceAdam

import tensorflow as tf

#: Side of the square float32 matmul that measures the peak.
PEAK_SIZE = 2048
#: Forward-pass multiples of one PGD iteration (forward + backward to the input) and of
#: one training step (forward + backward to the inputs and to the weights).
PGD_PASSES, TRAINING_PASSES = 2, 3
#: family label -> (zoo family, builder options, attacked images, training images). Panda's FCN1
#: (118M weights, 236 MFLOP per forward pass, about 5 GB to train) gets a few batches only.
MODELS = {
    "Panda FCN2 binary": ("panda_fcn2", dict(precision="binary"), 500, 3000),
    "Panda FCN2 float": ("panda_fcn2", dict(precision="float"), 500, 3000),
    "Panda FCN1 binary": ("panda_fcn1", dict(precision="binary"), 32, 384),
    "Panda FCN1 float": ("panda_fcn1", dict(precision="float"), 32, 384),
    "Galloway CNN A K=64": ("galloway_cnn", dict(precision="A", kernels=64), 200, 1000),
    "Galloway CNN B K=64": ("galloway_cnn", dict(precision="B", kernels=64), 200, 1000),
    "Guan LeNet binary": ("guan_lenet", dict(precision="binary"), 500, 3000),
}
#: PGD iterations and the batch of both PGD and training (Panda's and Galloway's batch size).
PGD_STEPS, BATCH = 20, 128
#: Training mode of :func:`training_speeds`: the plain step with Keras' Adam instead of edgebnn's.
KERAS_ADAM = "keras_adam"


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


def warm_up(model, x, y):
    """Fit ``model`` on the first batch of ``(x, y)`` and, when ``len(x)`` leaves a partial last batch, on
    that many images more: the training function is then traced for every batch shape an epoch on
    ``(x, y)`` feeds it (Keras traces again for the first partial batch)."""
    warm = BATCH + len(x) % BATCH
    model.fit(x[:warm], y[:warm], batch_size=BATCH, epochs=1, verbose=0, shuffle=False)


def training_speeds(model, x, y, *, modes, repeats):
    """``({mode: median images/s}, best peak GFLOP/s seen)``: one epoch on ``(x, y)`` per mode and
    round, the modes interleaved; the peak is measured again before every round.

    ``modes``: XLA modes (with edgebnn's Adam) and :data:`KERAS_ADAM`. Every XLA mode recompiles
    ``model`` with the same Adam instance (and :data:`KERAS_ADAM` with one Keras Adam): a new
    optimizer per compile would add its moments (twice the weights) each time, while old
    training functions keep the previous ones alive.
    """
    speeds, peaks = {mode: [] for mode in modes}, []
    optimizer, keras_adam = InPlaceAdam(), tf.keras.optimizers.Adam()
    for _ in range(repeats):
        peaks.append(matmul_peak(repeats=1))
        for mode in modes:
            optimizer.jit_compile = False  # "update" turns it on; the other modes leave it as it is
            if mode == KERAS_ADAM:
                compile_for_classification(model, optimizer=keras_adam)
            else:
                compile_for_classification(model, optimizer=optimizer, xla=mode)
            warm_up(model, x, y)
            start = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
            speeds[mode].append(len(x) / (time.perf_counter() - start))
    return {mode: float(np.median(v)) for mode, v in speeds.items()}, max(peaks)


def measure(*, quick=False, only=None):
    """``(peak GFLOP/s, rows)``: per family its FLOP per image, PGD GFLOP/s and training images/s
    per XLA mode (``"step"`` only where the training draws no random numbers)."""
    repeats = 1 if quick else 3
    peak = matmul_peak(repeats=2 if quick else 5)
    rows = []
    rng = np.random.default_rng(0)
    for label, (family, options, attacked, trained) in MODELS.items():
        if only and label not in only:
            continue
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
        random_ops = random_training_ops(model)
        modes = [KERAS_ADAM, *(m for m in XLA_MODES if m != "step" or not random_ops)]
        speeds, round_peak = training_speeds(model, x[:trained], y[:trained], modes=modes, repeats=repeats)
        peak = max(peak, round_peak)
        rows.append(dict(label=label, flop=flop, params=model.count_params(), pgd_images=attacked / pgd_s,
                         pgd_flops=attacked * steps * PGD_PASSES * flop / pgd_s, speeds=speeds,
                         step_refused=random_ops[0][1] if random_ops else None))
        del model
        tf.keras.backend.clear_session()
    return peak, rows


def _training_gflops(row, mode):
    return row["speeds"][mode] * TRAINING_PASSES * row["flop"] / 1e9


def run(*, quick=False, only=None):
    """The benchmark at its defaults (tiny sizes with ``quick``; only the families ``only`` names)."""
    peak, rows = measure(quick=quick, only=only)
    figures, table = [], [
        "| model | weights | forward MFLOP / image | PGD images/s | PGD / peak | training images/s: plain, Keras "
        "Adam | plain | XLA update | XLA step | training / peak: plain, Keras Adam | plain | XLA update | XLA step | "
        "plain / plain with Keras Adam | best XLA / plain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        pgd_gflops = r["pgd_flops"] / 1e9
        best = max(XLA_MODES, key=lambda m: r["speeds"].get(m, 0.0))
        cells = {mode: (f"{r['speeds'][mode]:.0f}", f"{_training_gflops(r, mode) / peak:.0%}") if mode in r["speeds"]
                 else ("refused", "--") for mode in (KERAS_ADAM, *XLA_MODES)}
        table.append(f"| {r['label']} | {r['params']:,} | {r['flop'] / 1e6:.2f} | {r['pgd_images']:.0f} | "
                     f"{pgd_gflops / peak:.0%} | {' | '.join(c[0] for c in cells.values())} | "
                     f"{' | '.join(c[1] for c in cells.values())} | "
                     f"{r['speeds']['off'] / r['speeds'][KERAS_ADAM]:.2f}x | "
                     f"{r['speeds'][best] / r['speeds']['off']:.2f}x |")
        figures.append(Figure(f"PGD throughput / matmul peak, {r['label']}", pgd_gflops / peak, pgd_gflops,
                              peak, "GFLOP/s", f"PGD-{PGD_STEPS} via `craft`, batch {BATCH}, dense/conv FLOP only"))
        for mode in r["speeds"]:
            gflops = _training_gflops(r, mode)
            setting = "plain step, Keras' Adam" if mode == KERAS_ADAM else f"xla={mode!r}"
            figures.append(Figure(f"training throughput / matmul peak, {r['label']}, {setting}", gflops / peak,
                                  gflops, peak, "GFLOP/s", f"`model.fit`, batch {BATCH}, dense/conv FLOP only"))
        figures.append(Figure(f"training throughput, {r['label']}, plain step: InPlaceAdam / Keras' Adam",
                              r["speeds"]["off"] / r["speeds"][KERAS_ADAM], r["speeds"]["off"], r["speeds"][KERAS_ADAM],
                              "images/s (median)", "same weights bit for bit; modes interleaved round by round"))
        for mode in r["speeds"]:
            if mode not in ("off", KERAS_ADAM):
                figures.append(Figure(f"training throughput, {r['label']}, xla={mode!r} / plain",
                                      r["speeds"][mode] / r["speeds"]["off"], r["speeds"][mode], r["speeds"]["off"],
                                      "images/s (median)", "same model and batches, modes interleaved round by round"))
    refused = [f"{r['label']} ({r['step_refused']})" for r in rows if r["step_refused"]]
    details = "\n".join([
        f"Peak: {peak:.1f} GFLOP/s, the best of the timed float32 {PEAK_SIZE}^3 matmuls (`tf.matmul` in a "
        f"`tf.function`), measured in this process before the models and before every training round.", "",
        f"PGD-{PGD_STEPS} (L-inf eps=0.1) through `craft`, batch {BATCH}, {PGD_PASSES}x the forward FLOP per "
        f"iteration; one `model.fit` epoch, batch {BATCH}, {TRAINING_PASSES}x the forward FLOP per image, with "
        "`compile_for_classification(model, xla=...)` and edgebnn's Adam (`InPlaceAdam`): `off` (the plain step), "
        "`update` (the optimizer's update of each weight compiled with XLA), `step` (the whole training step "
        "compiled with XLA); and the plain step with Keras' own Adam (the same weights, bit for bit); median of "
        f"{1 if quick else 3} timed runs after a warm-up, on uniform random images (untrained models). FLOP count "
        "dense and convolution layers only. XLA `step` is refused where the training draws random numbers "
        f"(XLA ignores op seeds): {', '.join(refused) or 'none here'}.", "", *table])
    return Result("Attack and training throughput against the matmul peak", figures, details)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=list(MODELS), help="measure only these families")
    args = parser.parse_args()
    print(run(quick=args.quick, only=args.only).details)


if __name__ == "__main__":
    main()
