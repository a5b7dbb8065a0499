"""Bytes, first-call and steady-state latency of 1-bit packed portable models (x86, 1 thread, one run).

For each model: plain float TFLite of the Keras graph, the ``lce`` target, the portable
target with exact int8 storage (``weights="exact"``) and with 1-bit packed storage
(``weights="packed"``), all with uint8 pixel input except float TFLite. Latency on
stock TFLite (``tf.lite.Interpreter``) with its default XNNPACK delegate and with the
builtin kernels only:

- first call: a fresh interpreter built, tensors allocated (the packed model unpacks
  its weights here) and one image run, median over ``--fresh`` interpreters;
- steady state: mean milliseconds per image over ``--images`` images after a warm-up,
  median of ``--repeats`` rounds; the variants are measured interleaved, round by round.

It also checks that the packed model's logits equal the int8-storage model's bit for
bit on the builtin kernels, on real Fashion-MNIST test images when available, and (``--layers``,
on by default) times every binary conv/dense layer alone with static float32, int8-stored and
packed weights: XNNPACK takes a layer only when its weights are static (in the file, or
dequantized from it), so with XNNPACK the packed layer runs on the builtin kernel.

Usage:
    PYTHONPATH=. nice python scripts/packed_benchmark.py [--cache-dir runs/deploy_fashion] [--json out.json]
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import data, testing, zoo
from edgebnn.deploy import convert as cv
from edgebnn.deploy import latency, packing, report, storage
from edgebnn.deploy.verify import interpreter, model_input
from edgebnn.recipes.store import Store

import deploy_fashion  # scripts/ is on sys.path when a script runs

import larq as lq
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
#: The models of scripts/deploy_fashion.py measured here (its third has no binary layer to pack but the ones
#: these two have).
MODELS = {name: deploy_fashion.MODELS[name] for name in ("fcn2_bnn_in2", "galloway_b64_in2")}
#: Kernel sets timed: name -> :func:`edgebnn.deploy.verify.interpreter`'s ``kernels`` (stock TFLite's
#: default XNNPACK delegate, or its builtin kernels alone).
RESOLVERS = {"xnnpack": "delegate", "builtin": "builtin"}


def _interpreter(flatbuffer, resolver):
    return interpreter(flatbuffer, runtime="tensorflow", kernels=RESOLVERS[resolver])


def _run(runner, x):
    return runner.predict(model_input(x, runner.input_dtype))


def first_call_ms(flatbuffer, x, resolver, fresh):
    """Median over ``fresh`` new interpreters of build + allocate + one invoke, in ms."""
    times = []
    for _ in range(fresh):
        start = time.perf_counter()
        _run(_interpreter(flatbuffer, resolver), x[:1])
        times.append(1000.0 * (time.perf_counter() - start))
    return float(np.median(times))


def steady_state_ms(flatbuffers, x, resolver, repeats):
    """``{variant: median ms per image}``, variants interleaved round by round."""
    its = {k: _interpreter(fb, resolver) for k, fb in flatbuffers.items()}
    for it in its.values():
        _run(it, x[:20])  # warm-up
    seconds = latency.interleaved({k: (lambda it=it: _run(it, x)) for k, it in its.items()}, repeats)
    return {k: 1000.0 * float(np.median(v)) / len(x) for k, v in seconds.items()}


def layer_models(model):
    """``{layer name: {variant: flatbuffer}}`` for every binary conv/dense layer of ``model`` on its own.

    Each layer (its +-1 kernel, its input shape, no BatchNorm) is converted alone with
    static float32 weights, exact int8 storage and 1-bit packed storage, to time the
    layer op on XNNPACK (static weights) and on the builtin kernels (unpacked weights).
    """
    layers = {}
    for layer in model.layers:
        if not isinstance(layer, (lq.layers.QuantConv2D, lq.layers.QuantDense)):
            continue
        kernel = tf.convert_to_tensor(layer.kernel)
        kernel = (layer.kernel_quantizer(kernel) if layer.kernel_quantizer else kernel).numpy()
        conv = isinstance(layer, lq.layers.QuantConv2D)
        plain = tf.keras.layers.Conv2D if conv else tf.keras.layers.Dense
        keys = ("filters", "kernel_size", "strides", "padding", "dilation_rate", "use_bias") if conv else ("units",
                                                                                                          "use_bias")
        config = {k: layer.get_config()[k] for k in keys}
        inputs = tf.keras.Input(layer.input_shape[1:])
        single = plain.from_config(config)
        outputs = single(inputs)
        single.set_weights([kernel] + [w.numpy() for w in layer.weights[1:2]] if layer.use_bias else [kernel])
        fb = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inputs, outputs)).convert()
        layers[f"{layer.name} {tuple(kernel.shape)}"] = {
            "static float32": fb,
            "portable int8": storage.store_weights(fb),
            "portable packed": packing.pack_weights(fb),
        }
    return layers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=os.fspath(REPO / "runs" / "deploy_fashion"),
                        help="store holding the weights scripts/deploy_fashion.py trained (same --epochs)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir",
                        default=os.environ.get("EDGEBNN_DATA_DIR", os.fspath(REPO.parent / "shared" / "data")))
    parser.add_argument("--images", type=int, default=500, help="images per steady-state round")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fresh", type=int, default=5, help="fresh interpreters for the first-call latency")
    parser.add_argument("--layers", action=argparse.BooleanOptionalAction, default=True,
                        help="also time every binary layer alone (static float32 / int8 / packed weights)")
    parser.add_argument("--json")
    args = parser.parse_args()
    try:
        xt, _ = data.load("fashion_mnist", "test", data_dir=args.data_dir, limit=args.images, seed=0)
        source = "Fashion-MNIST test images"
    except data.DatasetNotFoundError as e:
        print(f"no Fashion-MNIST ({e}); using random images")
        xt = np.random.default_rng(0).random((args.images, 28, 28, 1)).astype(np.float32)
        source = "random images"
    results = {}
    for name, (family, kwargs) in MODELS.items():
        model = zoo.get(family)(**kwargs)
        if Store(None, cache=args.cache_dir).load_weights(model, deploy_fashion.weights_payload(name, args.epochs)):
            trained = f"trained (store {args.cache_dir})"
        else:
            testing.randomize_batch_norm(model)
            trained = "untrained, random BatchNorm statistics"
        fbs = {
            "float TFLite": cv.float_reference(model),
            "lce": cv.convert(model, target="lce", input_dtype="uint8"),
            "portable int8": cv.convert(model, target="portable", input_dtype="uint8"),
            "portable packed": cv.convert(model, target="portable", input_dtype="uint8", weights="packed"),
        }
        entry = {"model": trained, "bytes": {k: len(v) for k, v in fbs.items()}}
        entry["packed_vs_lce"] = len(fbs["portable packed"]) / len(fbs["lce"])
        entry["float_vs_packed"] = len(fbs["float TFLite"]) / len(fbs["portable packed"])
        entry["int8_vs_packed"] = len(fbs["portable int8"]) / len(fbs["portable packed"])
        stock = {k: v for k, v in fbs.items() if k != "lce"}
        builtin = {k: _run(_interpreter(fb, "builtin"), xt) for k, fb in stock.items() if k != "float TFLite"}
        entry["packed_equals_int8_builtin_kernels"] = {
            "n": int(len(xt)), "images": source,
            "bit_identical": bool(np.array_equal(builtin["portable packed"], builtin["portable int8"])),
        }
        for resolver in RESOLVERS:
            entry[f"first_call_ms/{resolver}"] = {k: first_call_ms(fb, xt, resolver, args.fresh)
                                                  for k, fb in stock.items()}
            entry[f"steady_ms_per_image/{resolver}"] = steady_state_ms(stock, xt, resolver, args.repeats)
        entry["layer_weights_stored"] = {k: report.weight_storage(fb) for k, fb in stock.items()}
        if args.layers:
            rng = np.random.default_rng(0)
            entry["layers_steady_ms"] = {}
            for layer_name, variants in layer_models(model).items():
                shape = tf.lite.Interpreter(model_content=variants["static float32"]).get_input_details()[0]["shape"]
                x_layer = np.sign(rng.standard_normal((args.images, *shape[1:]))).astype(np.float32)
                entry["layers_steady_ms"][layer_name] = {
                    resolver: steady_state_ms(variants, x_layer, resolver, args.repeats) for resolver in RESOLVERS}
        results[name] = entry
        print(json.dumps({name: entry}, indent=2), flush=True)

    print("\n| model | float TFLite bytes | lce bytes | portable int8 bytes | portable packed bytes | packed / lce | "
          "float / packed | bit-identical to int8 (builtin kernels) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, e in results.items():
        b, same = e["bytes"], e["packed_equals_int8_builtin_kernels"]
        print(f"| {name} | {b['float TFLite']:,} | {b['lce']:,} | {b['portable int8']:,} | {b['portable packed']:,} | "
              f"{e['packed_vs_lce']:.3f} | {e['float_vs_packed']:.2f}x | "
              f"{same['bit_identical']} (n={same['n']}) |")
    print(f"\n| model | kernels | variant | first call (ms) | steady state (ms/image, {args.images} images, "
          f"median of {args.repeats}) |")
    print("|---|---|---|---:|---:|")
    for name, e in results.items():
        for resolver in RESOLVERS:
            for variant, ms in e[f"steady_ms_per_image/{resolver}"].items():
                print(f"| {name} | {resolver} | {variant} | {e[f'first_call_ms/{resolver}'][variant]:.2f} | {ms:.3f} |")
    if args.layers:
        print(f"\n| model | layer (kernel shape) | kernels | static float32 | portable int8 | portable packed "
              f"(ms per call, {args.images} calls, median of {args.repeats}) |")
        print("|---|---|---|---:|---:|---:|")
        for name, e in results.items():
            for layer_name, per_resolver in e["layers_steady_ms"].items():
                for resolver, ms in per_resolver.items():
                    print(f"| {name} | {layer_name} | {resolver} | {ms['static float32']:.4f} | "
                          f"{ms['portable int8']:.4f} | {ms['portable packed']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
