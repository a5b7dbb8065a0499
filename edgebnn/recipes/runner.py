"""Run a validated :class:`~edgebnn.recipes.config.Recipe`: train, attack, convert, verify.

A run writes to its output folder, each file atomically:
``model.keras``, ``model.tflite``, ``report.json``, ``report.md``, and per-epoch
checkpoints under ``checkpoints/`` from which an interrupted run resumes.
"""

import platform
import time
from pathlib import Path

import numpy as np

import edgebnn
from edgebnn import _io, data, zoo
from edgebnn.evaluation import predict_labels, report as report_lib, robustness_curve
from edgebnn.training import train

import tensorflow as tf


def _log(message):
    print(f"[edgebnn] {message}", flush=True)


def _load_data(config):
    x_train, y_train = data.load(
        config.dataset, "train", data_dir=config.data_dir, limit=config.train_limit, seed=config.seed
    )
    x_test, y_test = data.load(
        config.dataset, "test", data_dir=config.data_dir, limit=config.test_limit, seed=config.seed
    )
    return x_train, y_train, x_test, y_test


def _build_model(config, dataset):
    info = data.get_info(dataset)
    builder = zoo.get(config.family)
    return builder(
        precision=config.precision, input_bits=config.input_bits,
        num_classes=info.num_classes, input_shape=info.image_shape, **config.options,
    )


def _deploy(recipe, model, out, x_test, y_test, x_adv, y_adv):
    from edgebnn.deploy.convert import convert, float_reference  # noqa: PLC0415
    from edgebnn.deploy.report import layer_ops, weight_storage  # noqa: PLC0415
    from edgebnn.deploy.verify import verify  # noqa: PLC0415

    _log(f"converting with target {recipe.deploy.target!r}")
    flatbuffer = convert(model, target=recipe.deploy.target, weights=recipe.deploy.weights, strip=recipe.deploy.strip)
    _io.write_bytes(out / "model.tflite", flatbuffer)
    deployed = {
        "target": recipe.deploy.target,
        "weights": recipe.deploy.weights,
        "strip": recipe.deploy.strip,
        "tflite_bytes": len(flatbuffer),
        "float_tflite_bytes": len(float_reference(model)),
        "layer_ops": layer_ops(flatbuffer),
        "weight_storage": weight_storage(flatbuffer),
    }
    if recipe.deploy.verify:
        _log(f"verifying the .tflite on {len(x_test)} clean and {len(x_adv)} adversarial inputs")
        result = verify(
            flatbuffer, keras_model=model, x=x_test, y=y_test,
            x_adv=x_adv if len(x_adv) else None, y_adv=y_adv,
        )
        clean, adversarial = result["clean"], result["adversarial"]
        deployed.update(
            accuracy_clean=clean["accuracy_tflite"],
            agreement_clean=clean["agreement"],
            accuracy_adversarial=None if adversarial is None else adversarial["accuracy_tflite"],
            agreement_adversarial=None if adversarial is None else adversarial["agreement"],
            adversarial_examples=len(x_adv),
            max_abs_prob_diff=max(clean["max_abs_prob_diff"], 0.0 if adversarial is None else adversarial["max_abs_prob_diff"]),
            kernels=result.get("kernels"),
        )
    return deployed


def run(recipe, out):
    """Run ``recipe``, writing its artifacts to folder ``out``; return the report dict."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _log(f"recipe {recipe.name!r} -> {out}")
    x_train, y_train, x_test, y_test = _load_data(recipe.data)
    _log(f"{recipe.data.dataset}: {len(x_train)} train / {len(x_test)} test images")

    tf.keras.utils.set_random_seed(recipe.train.seed)
    model = _build_model(recipe.model, recipe.data.dataset)
    _log(f"model {model.name}: {model.count_params():,} parameters; training {recipe.train.epochs} epoch(s)")
    train(
        model, x_train, y_train, epochs=recipe.train.epochs, batch_size=recipe.train.batch_size,
        learning_rate=recipe.train.learning_rate, seed=recipe.train.seed,
        checkpoint_dir=out / "checkpoints",
    )
    with _io.atomic_path(out / "model.keras") as tmp:
        model.save(tmp)

    batch = recipe.evaluation.batch_size
    clean_accuracy = float(np.mean(predict_labels(model, x_test, batch_size=batch) == y_test))
    _log(f"clean accuracy {clean_accuracy:.4f}")

    n_attack = len(x_test) if recipe.evaluation.limit is None else min(recipe.evaluation.limit, len(x_test))
    x_eval, y_eval = x_test[:n_attack], y_test[:n_attack]
    rows, adversarial_sets = [], []
    for attack in recipe.attacks:
        curve, adversarial = robustness_curve(
            model, x_eval, y_eval, attack=attack.name, eps_list=attack.eps, batch_size=batch, **attack.options
        )
        for row in curve:
            budget = "" if row["eps"] is None else f" eps={row['eps']:g}"
            _log(f"{row['name']}{budget}: accuracy {row['accuracy']:.4f}")
        rows += [{**row, **attack.options} for row in curve]
        adversarial_sets += [x_adv for eps, x_adv in adversarial.items() if eps is None or eps > 0]
    x_adv = np.concatenate(adversarial_sets) if adversarial_sets else x_eval[:0]
    y_adv = np.tile(y_eval, len(adversarial_sets))

    deployed = _deploy(recipe, model, out, x_test, y_test, x_adv, y_adv)
    report = {
        "recipe": recipe.name,
        "dataset": {
            "name": recipe.data.dataset, "train_size": len(x_train),
            "test_size": len(x_test), "attack_size": n_attack,
        },
        "model": {
            "name": model.name, "family": recipe.model.family, "precision": recipe.model.precision,
            "input_bits": recipe.model.input_bits, "parameters": int(model.count_params()),
        },
        "clean_accuracy": clean_accuracy,
        "attacks": rows,
        "deployed": deployed,
        "config": recipe.to_dict(),
        "versions": {
            "edgebnn": edgebnn.__version__, "tensorflow": tf.__version__,
            "python": platform.python_version(),
        },
        "seconds": time.perf_counter() - start,
    }
    _io.write_json(out / "report.json", report)
    _io.write_text(out / "report.md", report_lib.to_markdown(report))
    _log(f"done in {report['seconds']:.1f} s: {out / 'report.md'}")
    return report
