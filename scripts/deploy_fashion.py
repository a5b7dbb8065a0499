"""Train, deploy and re-verify models on the full Fashion-MNIST test set.

For every model: train on the 60,000 training images, craft PGD examples against the
Keras model on the 10,000 test images, convert to every target, and compare Keras and
the deployed model on clean and adversarial inputs (accuracy of each, arg-max
agreement, max |probability difference|, LCE kernel-path cross-check), with the
default exact weight storage and with the compact one (float layers as int8, names
stripped). Prints a markdown table. With ``--ship``, writes device bundles to ``tflite_models/<name>-<target>``
(uint8 input, a seeded 1,000-image evaluation subset, and the full-test-set numbers in
the manifest).

Usage:
    PYTHONPATH=. nice -n 10 python scripts/deploy_fashion.py [--epochs 3] [--ship] [--json out.json]
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import data
from edgebnn.deploy import convert as cv
from edgebnn.deploy import report
from edgebnn.deploy.bundle import bundle
from edgebnn.deploy.verify import builtin_identical, verify
from edgebnn.evaluation.robustness import craft
from edgebnn.recipes import store

import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
#: name -> (zoo family, builder arguments)
MODELS = {
    "fcn2_bnn_in2": ("panda_fcn2", dict(precision="binary", input_bits=2)),
    "galloway_b64_in2": ("galloway_cnn", dict(precision="B", kernels=64, input_bits=2)),
    # not in the paper: binary first layer (bit planes on the device) and a 7-bit classifier (exactly int8)
    "galloway_b64bf_cls7_in2": ("galloway_cnn", dict(precision="B", kernels=64, input_bits=2, binary_first=True,
                                                     classifier_bits=7)),
}
#: Storage options: exact (the default: int8 only where bit-exact) and compact (the float
#: layers left after the rewrites stored as int8, names stripped: approximate, verified here).
STORAGE = {"exact": {}, "compact": dict(weights="int8", strip=True), "packed": dict(weights="packed")}
#: (target, input dtype, storage) of every deployed variant that is verified (1-bit packed
#: storage is for the portable target only).
VARIANTS = tuple((target, input_dtype, storage) for target in ("lce", "portable")
                 for input_dtype in ("float32", "uint8") for storage in STORAGE
                 if not (target == "lce" and storage == "packed"))
#: Variants written to tflite_models/ with --ship (raw-pixel input for devices), per model.
SHIPPED = {
    "fcn2_bnn_in2": (("lce", "uint8", "exact"), ("portable", "uint8", "exact"), ("portable", "uint8", "packed")),
    "galloway_b64_in2": (("lce", "uint8", "exact"), ("portable", "uint8", "exact"), ("portable", "uint8", "packed")),
    "galloway_b64bf_cls7_in2": (("lce", "uint8", "compact"), ("portable", "uint8", "exact")),
}
SHIPPED_EVAL_IMAGES = 1000


#: Training schedule of every model (the store key holds it).
BATCH_SIZE, SEED = 128, 0
#: What the store key says of the training data.
TRAIN_DATA = "fashion_mnist/train (all 60,000)"


def weights_payload(name, epochs):
    """What decides the trained weights of model ``name`` (its store payload): family, options, data, schedule."""
    family, kwargs = MODELS[name]
    return store.training_payload(family, options=kwargs, data=TRAIN_DATA, epochs=epochs, batch_size=BATCH_SIZE,
                                  seed=SEED)


def _trained(name, x, y, *, epochs, cache_dir):
    family, kwargs = MODELS[name]
    start = time.time()
    trained = store.trained_model(family, options=kwargs, data=TRAIN_DATA, train_data=lambda: (x, y), epochs=epochs,
                                  batch_size=BATCH_SIZE, seed=SEED, cache=cache_dir, verbose=2)
    print(f"{name}: " + (f"loaded from {cache_dir}" if trained.stored else f"trained {epochs} epochs in "
                         f"{time.time() - start:.0f} s"), flush=True)
    return trained.model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {list(MODELS)}")
    parser.add_argument("--eps", type=float, default=0.1, help="PGD L-inf radius")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps")
    parser.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    parser.add_argument("--cache-dir", default=os.fspath(REPO / "runs" / "deploy_fashion"),
                        help="studies store holding the trained weights (reused by scripts/packed_benchmark.py)")
    parser.add_argument("--data-dir", default=os.environ.get("EDGEBNN_DATA_DIR", os.fspath(REPO.parent / "shared" / "data")))
    parser.add_argument("--variants", default=None,
                        help="comma-separated subset of target/input_dtype/storage (default: all), "
                             "e.g. lce/uint8/exact,portable/uint8/packed")
    parser.add_argument("--ship", action="store_true", help="write bundles to tflite_models/ (or --ship-dir)")
    parser.add_argument("--ship-dir", default=os.fspath(REPO / "tflite_models"), help="folder of the shipped bundles")
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args()

    variants = VARIANTS
    if args.variants:
        wanted = args.variants.split(",")
        unknown = sorted(set(wanted) - {"/".join(v) for v in VARIANTS})
        if unknown:
            parser.error(f"--variants: unknown {unknown}; valid: {['/'.join(v) for v in VARIANTS]}")
        variants = tuple(v for v in VARIANTS if "/".join(v) in wanted)
    x, y = data.load("fashion_mnist", "train", data_dir=args.data_dir)
    xt, yt = data.load("fashion_mnist", "test", data_dir=args.data_dir, limit=args.limit)
    results, rows = {}, []
    for name in args.models.split(","):
        family, kwargs = MODELS[name]
        model = _trained(name, x, y, epochs=args.epochs, cache_dir=args.cache_dir)
        start = time.time()
        x_adv = craft(model, xt, yt, attack="pgd", eps=args.eps, steps=args.steps)
        print(f"{name}: PGD eps={args.eps} steps={args.steps} on {len(xt)} images in {time.time() - start:.0f} s",
              flush=True)
        float_bytes = len(cv.float_reference(model))
        for target, input_dtype, storage in variants:
            fb = cv.convert(model, target=target, input_dtype=input_dtype, **STORAGE[storage])
            runtime = "lce" if target == "lce" else "tensorflow"  # portable: stock TFLite interpreter
            result = verify(fb, keras_model=model, x=xt, y=yt, x_adv=x_adv, runtime=runtime)
            result["conversion"] = report.conversion_report(fb, float_bytes=float_bytes, name=name,
                                                            target=f"{target}/{input_dtype}/{storage}")
            if storage == "packed":  # same numbers as the int8-storage model, on the same (builtin) kernels
                exact = cv.convert(model, target=target, input_dtype=input_dtype, **STORAGE["exact"])
                result["identical_to_exact_builtin"] = {
                    "clean": builtin_identical(fb, exact, xt), "adversarial": builtin_identical(fb, exact, x_adv)}
                print(f"{name} {target}/{input_dtype}/packed vs exact on builtin kernels: "
                      f"{json.dumps(result['identical_to_exact_builtin'])}", flush=True)
            results[f"{name}/{target}/{input_dtype}/{storage}"] = result
            rows.append((name, f"{target} ({storage})", input_dtype, runtime, result))
            print(f"{name} {target}/{input_dtype}/{storage} ({len(fb):,} bytes, {float_bytes / len(fb):.2f}x "
                  f"smaller than float TFLite's {float_bytes:,}): "
                  f"{json.dumps({k: result[k] for k in ('clean', 'adversarial')})}", flush=True)
            if args.ship and (target, input_dtype, storage) in SHIPPED[name]:
                rng = np.random.default_rng(0)
                subset = np.sort(rng.choice(len(xt), size=min(SHIPPED_EVAL_IMAGES, len(xt)), replace=False))
                full = {"dataset": "fashion_mnist", "split": "test", "n": int(len(xt)),
                        "accuracy": result["clean"]["accuracy_tflite"], "keras": result["clean"],
                        "pgd": {"eps": args.eps, "steps": args.steps, **result["adversarial"]}}
                if "identical_to_exact_builtin" in result:
                    full["identical_to_exact_builtin"] = result["identical_to_exact_builtin"]
                # packed storage is a second portable bundle; the other storages replace the default one
                out = Path(args.ship_dir) / (f"{name}-{target}" + ("-packed" if storage == "packed" else ""))
                bundle(fb, xt[subset], yt[subset], out, keras_model=model, name=out.name,
                       description=f"{family} {kwargs}, trained {args.epochs} epochs on the 60,000 Fashion-MNIST "
                                   f"training images by scripts/deploy_fashion.py; eval set: {len(subset)} test "
                                   f"images (numpy default_rng(0) choice)",
                       extra={"full_test_set": full, "conversion": result["conversion"]})
                print(f"shipped {out}", flush=True)

    print("\n| model | target (storage) | input | runtime | n | Keras acc clean | TFLite acc clean | agreement clean | "
          "max prob diff clean | Keras acc PGD | TFLite acc PGD | agreement PGD | max prob diff PGD | "
          "kernel paths agree |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, target, input_dtype, runtime, r in rows:
        c, a = r["clean"], r["adversarial"]
        kernels = r.get("kernels")
        k = "n/a" if kernels is None else (
            f"{min(kernels[p]['agreement_with_reference'] for p in ('default', 'indirect_bgemm')):.4f} "
            f"(max diff {max(kernels[p]['max_abs_diff_vs_reference'] for p in ('default', 'indirect_bgemm')):.1e}, "
            f"n={kernels['n']})")
        print(f"| {name} | {target} | {input_dtype} | {runtime} | {c['n']} | {c['accuracy_keras']:.4f} | "
              f"{c['accuracy_tflite']:.4f} | {c['agreement']:.4f} | {c['max_abs_prob_diff']:.1e} | "
              f"{a['accuracy_keras']:.4f} | {a['accuracy_tflite']:.4f} | {a['agreement']:.4f} | "
              f"{a['max_abs_prob_diff']:.1e} | {k} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
