"""Size table and x86 latency of deployed models, in one run.

For each architecture: plain float TFLite of the same Keras graph, Larq Compute Engine
as is, LCE after edgebnn's graph rewrites (with the default exact weight storage, and
with the remaining float layers stored as float16 or int8), and the portable
(builtin-ops) target. Prints markdown tables: bytes, ratio vs float TFLite, the op
histogram (binary / int8 / float layer ops, weights by stored dtype), the agreement of
every variant with Keras on the random latency images (arg-max and max |probability
difference|; the approximate storage modes are the ones that can differ), and
per-image latency with 1 thread.

Sizes do not depend on training, so the models are untrained; their BatchNorm
statistics are set to seeded random values (as after training) so that no constant
is deduplicated because it happens to equal another.

Usage:
    PYTHONPATH=. python scripts/size_table.py [--latency-images 300] [--json out.json]
"""

import argparse
import json

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import testing, zoo
from edgebnn.deploy import convert as cv
from edgebnn.deploy import latency, report
from edgebnn.deploy.verify import compare, interpreter

import tensorflow as tf



#: (label, builder) of every architecture in the table.
MODELS = (
    ("FCN2 BNN, 2-bit input", lambda: zoo.get("panda_fcn2")(precision="binary", input_bits=2)),
    ("FCN2 BNN, float input", lambda: zoo.get("panda_fcn2")(precision="binary")),
    ("Galloway CNN B-64", lambda: zoo.get("galloway_cnn")(precision="B", kernels=64)),
    ("Galloway CNN B-64, 2-bit input", lambda: zoo.get("galloway_cnn")(precision="B", kernels=64, input_bits=2)),
    ("Galloway CNN B-64, 2-bit input, binary first layer (binary_first=True, not in the paper)",
     lambda: zoo.get("galloway_cnn")(precision="B", kernels=64, input_bits=2, binary_first=True)),
    ("Galloway CNN B-64, 2-bit input, binary first layer, 7-bit classifier (not in the paper)",
     lambda: zoo.get("galloway_cnn")(precision="B", kernels=64, input_bits=2, binary_first=True, classifier_bits=7)),
    ("XNOR ResNet-20, CIFAR-100 shape", lambda: zoo.get("panda_resnet20_cifar100")(precision="xnor")),
)
#: (label, convert keyword arguments) of every deployed variant.
VARIANTS = (
    ("LCE as is", dict(target="lce", rewrites=False, weights="float32")),
    ("LCE + rewrites", dict(target="lce")),
    ("LCE + rewrites, uint8 input", dict(target="lce", input_dtype="uint8")),
    ("LCE + rewrites, float16 float layers", dict(target="lce", weights="float16")),
    ("LCE + rewrites, int8 float layers, stripped", dict(target="lce", weights="int8", strip=True)),
    ("portable float32", dict(target="portable", weights="float32")),
    ("portable, exact int8 storage", dict(target="portable")),
    ("portable, float16 float layers", dict(target="portable", weights="float16")),
    ("portable, int8 float layers", dict(target="portable", weights="int8")),
)
LATENCY_VARIANTS = ("float TFLite", "LCE as is", "LCE + rewrites")


def latency_ms(flatbuffer, x, *, runtime="lce", repeats=3):
    """Median over ``repeats`` of the mean milliseconds per image, batch 1, 1 thread."""
    return latency.latency_ms({"model": interpreter(flatbuffer, runtime=runtime, num_threads=1)}, x, repeats)["model"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-images", type=int, default=300)
    parser.add_argument("--json", help="also write all rows here")
    args = parser.parse_args()
    rows, latency_rows, agreement_rows = [], [], []
    for label, build in MODELS:
        model = testing.randomize_batch_norm(build())
        float_fb = cv.float_reference(model)
        flatbuffers = {"float TFLite": float_fb}
        rows.append(report.conversion_report(float_fb, float_bytes=len(float_fb), name=label, target="float TFLite"))
        for variant, options in VARIANTS:
            fb = cv.convert(model, **options)
            flatbuffers[variant] = fb
            rows.append(report.conversion_report(fb, float_bytes=len(float_fb), name=label, target=variant))
        x = np.random.default_rng(0).random((args.latency_images, *model.input_shape[1:])).astype(np.float32)
        labels = np.zeros(len(x), np.int64)  # only agreement and differences are used
        for variant, fb in flatbuffers.items():
            # compare() feeds a uint8 model and Keras the same pixel-rounded images
            result = compare(model, fb, x, labels)
            agreement_rows.append((label, variant, result["agreement"], result["max_abs_prob_diff"]))
        entry = {"name": label}
        for variant in LATENCY_VARIANTS:
            entry[f"{variant} (LCE interpreter)"] = latency_ms(flatbuffers[variant], x)
        entry["float TFLite (tf.lite.Interpreter, XNNPACK)"] = latency_ms(float_fb, x, runtime="tensorflow")
        latency_rows.append(entry)
        print(f"done: {label}", flush=True)

    print("\n## Sizes (bytes; ratio = float TFLite bytes / bytes)\n")
    print(report.markdown_table(rows))
    print(f"\n## Agreement with Keras on {args.latency_images} random images\n")
    print("| model | variant | arg-max agreement | max abs probability difference |")
    print("|---|---|---:|---:|")
    for label, variant, agreement, diff in agreement_rows:
        print(f"| {label} | {variant} | {agreement:.4f} | {diff:.2e} |")
    print(f"\n## x86 latency, ms per image, batch 1, 1 thread ({args.latency_images} random images, median of 3)\n")
    keys = [k for k in latency_rows[0] if k != "name"]
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for entry in latency_rows:
        print(f"| {entry['name']} | " + " | ".join(f"{entry[k]:.3f}" for k in keys) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sizes": rows, "latency": latency_rows, "agreement": agreement_rows}, f, indent=2)


if __name__ == "__main__":
    main()
