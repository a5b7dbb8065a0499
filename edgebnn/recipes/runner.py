"""Run a :class:`~edgebnn.recipes.config.Study`: train every cell, evaluate, deploy, report.

Everything is cached in the run folder under keys derived from the configuration
that produced it (see :mod:`edgebnn.recipes.store`): rerunning a command after a
kill recomputes nothing that had finished, an interrupted training resumes from its
last finished epoch (only with the same configuration), and an added evaluation
computes only itself. The report is rewritten after every result, so whatever has
finished reaches ``report.json`` / ``report.md`` even if a later step fails.
"""

import json
import math
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import edgebnn
from edgebnn import _io, data
from edgebnn.recipes import claims as claims_lib
from edgebnn.recipes import figures as figures_lib
from edgebnn.recipes import report as report_lib
from edgebnn.recipes.config import flatten
from edgebnn.recipes.console import Console, quiet_tensorflow
from edgebnn.recipes.evaluations import KINDS, clean
from edgebnn.recipes.evaluations.common import DEFAULT_EOT_SAMPLES, EvalContext
from edgebnn.recipes.schema import RecipeError
from edgebnn.recipes.store import RunLock, Store, key_of

#: Top-level files a run regenerates; removed when a run starts so that a failed run
#: never leaves a previous run's report or model beside its own.
_OUTPUTS = ("report.json", "report.md", "model.keras", "model.tflite")
#: Folder of a deployment's device bundle (``deploy.bundle``), in the cache and in a single run's folder.
_BUNDLE = "bundle"


@dataclass
class _Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple
    caption: str


@dataclass
class _Unit:
    kind: str  # "clean" or a key of KINDS
    module: object
    params: dict
    where: str
    key: str = ""
    source: str | None = None


def _plural(n, word):
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _load_data(config):
    info = data.get_info(config.dataset)
    if config.split is not None:
        split = config.split
        x_train, y_train, x_test, y_test, caption = data.carve(
            config.dataset, split.source, train_size=split.train, test_size=split.test, seed=split.seed,
            data_dir=config.data_dir,
        )
    else:
        x_train, y_train = data.load(config.dataset, "train", data_dir=config.data_dir, limit=config.train_limit,
                                     seed=config.seed)
        x_test, y_test = data.load(config.dataset, "test", data_dir=config.data_dir, limit=config.test_limit,
                                   seed=config.seed)

        def part(split, n, limit):
            return (f"a seeded subset (seed {config.seed}) of {n:,} images of the official {split} split"
                    if limit else f"the official {split} split ({n:,} images)")

        caption = (f"{config.dataset}: trained on {part('train', len(x_train), config.train_limit)}, "
                   f"tested on {part('test', len(x_test), config.test_limit)}")
    return _Data(x_train, y_train, x_test, y_test, info.num_classes, info.image_shape, caption)


def _build_model(recipe, dataset):
    import tensorflow as tf  # noqa: PLC0415

    from edgebnn import zoo  # noqa: PLC0415

    tf.keras.utils.set_random_seed(recipe.train.seed)
    builder = zoo.get(recipe.model.family)
    return builder(precision=recipe.model.precision, input_bits=recipe.model.input_bits,
                   num_classes=dataset.num_classes, input_shape=dataset.image_shape, **recipe.model.options)


def _build_checked(recipe, dataset, *, prefix):
    """:func:`_build_model`, its argument errors raised as a :class:`RecipeError` naming the recipe key."""
    try:
        return _build_model(recipe, dataset)
    except (ValueError, TypeError) as e:
        named = [key for key in recipe.model.options if f"`{key}`" in str(e)]
        key = f"model.options.{named[0]}" if named else "model"
        raise RecipeError(f"{prefix}`{key}`: {e}") from None


def _randomized(model):
    from edgebnn.deploy.convert import random_inference_layers  # noqa: PLC0415

    return bool(random_inference_layers(model))


def _versions():
    import tensorflow as tf  # noqa: PLC0415

    import larq  # noqa: PLC0415

    return {"edgebnn": edgebnn.__version__, "tensorflow": tf.__version__, "larq": larq.__version__,
            "python": platform.python_version()}


class _Runner:
    def __init__(self, study, out, console, *, cache=None):
        self.study, self.out, self.console = study, Path(out), console
        self.store = Store(out, cache=cache)
        self._data = {}
        self._models = {}  # model key -> (model, randomized, train info)
        self.results = {}  # result key -> stored result
        self.deployed = {}  # cell id -> deploy result
        self.computed_seconds = 0.0
        self.status, self.error = "running", None
        self.figure_reports = []

    # --- planning ------------------------------------------------------------------

    def data_for(self, recipe):
        key = key_of({"data": recipe.data.model_dump(mode="json")})
        if key not in self._data:
            self._data[key] = _load_data(recipe.data)
        return self._data[key]

    def _eval_split(self, recipe):
        d = self.data_for(recipe)
        n = len(d.x_test) if recipe.evaluation.limit is None else min(recipe.evaluation.limit, len(d.x_test))
        return n, len(d.x_test) - n

    def model_key(self, cell):
        r = cell.recipe
        data_part = r.data.model_dump(mode="json")
        data_part.pop("data_dir")  # where the files are, not what they hold
        train_part = r.train.model_dump(mode="json")
        if train_part["strategy"] == "default":
            del train_part["strategy"]  # the keys of models trained before strategies existed
        return key_of({"data": data_part, "model": r.model.model_dump(mode="json"), "train": train_part})

    def _cell_of(self, name, repeat):
        for cell in self.study.cells:
            if cell.name == name and cell.repeat == repeat:
                return cell
        raise RecipeError(f"no cell named {name!r}")  # config.expand checked the names

    def _plan(self):
        """Units of every cell with their keys; checks that need data or a built model."""
        import tensorflow as tf  # noqa: PLC0415

        plans = {}
        built = set()
        for cell in self.study.cells:
            recipe, prefix = cell.recipe, "" if self.study.single else f"cell {cell.name!r}: "
            d = self.data_for(recipe)
            n_eval, n_pool = self._eval_split(recipe)
            model_key = self.model_key(cell)
            if model_key not in built:
                model = _build_checked(recipe, d, prefix=prefix)
                built.add(model_key)
                for key, kind in KINDS.items():
                    if hasattr(kind, "check_model"):
                        for i, spec in enumerate(getattr(recipe, key)):
                            try:
                                kind.check_model(spec, model, where=f"{key}.{i}")
                            except RecipeError as e:
                                raise RecipeError(f"{prefix}{e}") from None
                del model
                tf.keras.backend.clear_session()
            units = [_Unit("clean", clean, p, "clean") for p in clean.units(recipe)]
            for key, kind in KINDS.items():
                for i, spec in enumerate(getattr(recipe, key)):
                    for params in kind.units(spec, recipe=recipe):
                        unit = _Unit(key, kind, params, f"{key}.{i}", source=params.get("source"))
                        need = kind.pool_size(params)
                        if need > n_pool:
                            raise RecipeError(
                                f"{prefix}`{unit.where}` needs {need:,} test images apart from the {n_eval:,} "
                                f"evaluated ones, but only {n_pool:,} remain; lower `evaluation.limit` or use "
                                f"a larger test part.")
                        units.append(unit)
            data_part = recipe.data.model_dump(mode="json")
            data_part.pop("data_dir")
            for unit in units:
                source_key = None
                if unit.source is not None:
                    source_key = self.model_key(self._cell_of(unit.source, cell.repeat))
                unit.key = key_of({
                    "model": model_key, "source_model": source_key, "data": data_part,
                    "evaluation": recipe.evaluation.model_dump(mode="json"), "kind": unit.kind, "unit": unit.params,
                })
            plans[cell.id] = (model_key, units)
        return plans

    def _work(self, cell, units):
        recipe = cell.recipe
        n_train = len(self.data_for(recipe).x_train)
        adv = recipe.train.adversarial
        adv_factor = 0 if adv is None else (adv.steps if adv.method == "pgd" else 1) * (
            1.0 if adv.mode == "augment" else adv.fraction)
        train_work = recipe.train.epochs * n_train * (1 + adv_factor)
        n_eval, _ = self._eval_split(recipe)
        return train_work, {u.key: u.module.cost(u.params, recipe=recipe, n_eval=n_eval) for u in units}

    # --- training ------------------------------------------------------------------

    def trained(self, cell):
        """``(model, randomized, info)`` of ``cell``, trained now unless stored under its key."""
        import tensorflow as tf  # noqa: PLC0415

        key = self.model_key(cell)
        if key in self._models:
            return self._models[key]
        folder = self.store.model_dir(key)
        path = folder / "model.keras"
        trained_now = False
        if not path.is_file():
            with self.store.lock(key, on_wait=lambda: self.console.line(
                    f"cell {cell.id!r}: another run is training this model ({key}); waiting for it")):
                if not path.is_file():
                    self._train(cell, key, folder)
                    trained_now = True
        if not trained_now:
            self.console.line(f"cell {cell.id!r}: trained model found in the cache ({key})")
        model = tf.keras.models.load_model(path, compile=False)
        info = _io_json(folder / "train.json")
        self._models[key] = (model, _randomized(model), info)
        return self._models[key]

    def _train(self, cell, key, folder):
        import tensorflow as tf  # noqa: PLC0415

        from edgebnn.training import (  # noqa: PLC0415
            AdversarialModel, compile_for_classification, learning_rate_schedule, make_optimizer, train,
        )

        recipe, t = cell.recipe, cell.recipe.train
        d = self.data_for(recipe)
        _io.write_json(folder / "config.json", {"cell": cell.id, **recipe.model_dump(mode="json")})
        resumed = (folder / "checkpoints" / "resume").exists()
        self.console.line(f"cell {cell.id!r}: training {_plural(t.epochs, 'epoch')} on {len(d.x_train):,} images"
                          + (" (resuming from the last finished epoch)" if resumed else ""))
        start = time.perf_counter()
        with self.strategy.scope():  # variables of the model and the optimizer are mirrored
            model = _build_model(recipe, d)
            fit_model = model
            if t.adversarial is not None:
                a = t.adversarial
                eot = a.eot_samples or (DEFAULT_EOT_SAMPLES if _randomized(model) else 1)
                fit_model = AdversarialModel(
                    model, method=a.method, eps=a.eps, steps=a.steps, step_size=a.step_size, fraction=a.fraction,
                    start_epoch=a.start_epoch, label_source=a.label_source, mode=a.mode, eot_samples=eot,
                    rfgsm_variant=a.rfgsm_variant,
                )
            steps_per_epoch = math.ceil(len(d.x_train) / t.batch_size)
            lr = learning_rate_schedule(t.learning_rate, schedule=t.schedule, steps_per_epoch=steps_per_epoch,
                                        epochs=t.epochs, decay_epochs=t.decay_epochs, decay_factor=t.decay_factor)
            optimizer = make_optimizer(t.optimizer, learning_rate=lr, momentum=t.momentum, nesterov=t.nesterov,
                                       weight_decay=t.weight_decay)
            compile_for_classification(fit_model, optimizer=optimizer)
        per_epoch = len(d.x_train) * (self._epoch_work(recipe))
        logger = _epoch_logger(self.console, cell.id, t.epochs, per_epoch)
        history = train(fit_model, d.x_train, d.y_train, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed,
                        checkpoint_dir=folder / "checkpoints", callbacks=[logger], verbose=0)
        with _io.atomic_path(folder / "model.keras") as tmp:
            _save_without_optimizer(model, tmp)
        seconds = time.perf_counter() - start
        self.computed_seconds += seconds
        _io.write_json(folder / "train.json", {
            "key": key, "epochs": t.epochs, "seed": t.seed, "epochs_run_last": logger.epochs_run,
            "strategy": t.strategy, "replicas": int(self.strategy.num_replicas_in_sync),
            "seconds_last": seconds, "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "adversarial": None if t.adversarial is None else t.adversarial.model_dump(mode="json"),
            "adversarial_linf_bound": None if t.adversarial is None else _training_linf_bound(t.adversarial),
        })
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        del fit_model, model
        tf.keras.backend.clear_session()

    @staticmethod
    def _epoch_work(recipe):
        adv = recipe.train.adversarial
        if adv is None:
            return 1.0
        steps = adv.steps if adv.method == "pgd" else 1
        return 1.0 + steps * (1.0 if adv.mode == "augment" else adv.fraction)

    # --- evaluation ----------------------------------------------------------------

    def _context(self, cell, model, randomized):
        recipe = cell.recipe
        d = self.data_for(recipe)
        n_eval, _ = self._eval_split(recipe)

        def model_of(name):
            other, other_randomized, _ = self.trained(self._cell_of(name, cell.repeat))
            return other, other_randomized

        return EvalContext(
            cell=cell.id, model=model, randomized=randomized, model_of=model_of,
            x_eval=d.x_test[:n_eval], y_eval=d.y_test[:n_eval], x_pool=d.x_test[n_eval:], y_pool=d.y_test[n_eval:],
            x_test=d.x_test, y_test=d.y_test, num_classes=d.num_classes, evaluation=recipe.evaluation,
            progress=self.console.progress,
        )

    def _evaluate(self, cell, unit, ctx, work, keep_examples):
        name = unit.module.label(unit.params)
        stored = self.store.load_result(unit.key)
        if stored is None:
            with self.store.lock(unit.key, on_wait=lambda: self.console.line(
                    f"cell {cell.id!r}: {name}: another run is computing this result; waiting for it")):
                stored = self.store.load_result(unit.key)
                if stored is None:
                    self._compute(cell, unit, ctx, work, keep_examples, name)
                    return
        self.console.skip(work)
        self.results[unit.key] = stored
        self.console.line(f"cell {cell.id!r}: {name}: {_summary(stored)} (cached)")

    def _compute(self, cell, unit, ctx, work, keep_examples, name):
        import tensorflow as tf  # noqa: PLC0415

        self.console.line(f"cell {cell.id!r}: {name} ...")
        tf.keras.utils.set_random_seed(int(unit.key[:8], 16) % (2**31 - 1))
        start = time.perf_counter()
        result = unit.module.run(unit.params, ctx)
        seconds = time.perf_counter() - start
        self.computed_seconds += seconds
        self.console.done(work, seconds)
        arrays = dict(result.get("arrays") or {})
        if not keep_examples:
            arrays.pop("x_adv", None)
        stored = {"key": unit.key, "cell": cell.id, "evaluation": unit.kind, "unit": unit.params,
                  "labels": result["labels"], "metrics": result["metrics"], "seconds": seconds,
                  "arrays": sorted(arrays)}
        self.store.save_result(unit.key, stored, arrays)
        self.results[unit.key] = stored
        self.console.line(f"cell {cell.id!r}: {name}: {_summary(stored)} ({seconds:.1f} s)")

    # --- deployment ----------------------------------------------------------------

    def _deploy(self, cell, model, units):
        from edgebnn.deploy.convert import NotDeployableError, check_deployable, convert, float_reference  # noqa: PLC0415
        from edgebnn.deploy.report import layer_ops, weight_storage  # noqa: PLC0415
        from edgebnn.deploy.verify import verify  # noqa: PLC0415

        recipe, cfg = cell.recipe, cell.recipe.deploy
        key = key_of({"model": self.model_key(cell), "deploy": cfg.model_dump(mode="json"),
                      "results": [u.key for u in units if u.kind == "attacks" and u.source is None]})
        folder = self.store.deploy_dir(key)
        self.deployed_dirs[cell.id] = folder
        if (folder / "deploy.json").is_file():
            self.deployed[cell.id] = _io_json(folder / "deploy.json")
            self.console.line(f"cell {cell.id!r}: deployment found in the cache")
            self._publish_bundle(cell, folder)
            return
        try:
            check_deployable(model)
        except NotDeployableError as e:
            result = {"deployed": False, "reason": str(e)}
            _io.write_json(folder / "deploy.json", result)
            self.deployed[cell.id] = result
            self.console.line(f"cell {cell.id!r}: not deployed (random at inference)")
            return
        start = time.perf_counter()
        self.console.line(f"cell {cell.id!r}: converting with target {cfg.target!r}")
        flatbuffer = convert(model, target=cfg.target, weights=cfg.weights, strip=cfg.strip)
        deployed = {
            "deployed": True, "target": cfg.target, "weights": cfg.weights, "strip": cfg.strip,
            "tflite_bytes": len(flatbuffer), "float_tflite_bytes": len(float_reference(model)),
            "layer_ops": layer_ops(flatbuffer), "weight_storage": weight_storage(flatbuffer),
        }
        if cfg.verify:
            d = self.data_for(recipe)
            adversarial = [self.store.load_arrays(u.key) for u in units if u.kind == "attacks" and u.source is None]
            adversarial = [a for a in adversarial if a is not None and "x_adv" in a]
            x_adv = np.concatenate([a["x_adv"] for a in adversarial]) if adversarial else None
            y_adv = np.concatenate([a["y"] for a in adversarial]) if adversarial else None
            self.console.line(f"cell {cell.id!r}: verifying the .tflite on {len(d.x_test):,} clean and "
                              f"{0 if x_adv is None else len(x_adv):,} adversarial inputs")
            result = verify(flatbuffer, keras_model=model, x=d.x_test, y=d.y_test, x_adv=x_adv, y_adv=y_adv)
            clean_r, adv_r = result["clean"], result["adversarial"]
            deployed.update(
                accuracy_clean=clean_r["accuracy_tflite"], agreement_clean=clean_r["agreement"],
                accuracy_adversarial=None if adv_r is None else adv_r["accuracy_tflite"],
                agreement_adversarial=None if adv_r is None else adv_r["agreement"],
                adversarial_examples=0 if x_adv is None else int(len(x_adv)),
                max_abs_prob_diff=max(clean_r["max_abs_prob_diff"], 0.0 if adv_r is None else adv_r["max_abs_prob_diff"]),
                kernels=result.get("kernels"),
            )
        if cfg.bundle:
            from edgebnn.deploy.bundle import bundle  # noqa: PLC0415

            d = self.data_for(recipe)
            self.console.line(f"cell {cell.id!r}: writing the device bundle ({len(d.x_test):,} test images)")
            manifest = bundle(flatbuffer, d.x_test, d.y_test, folder / _BUNDLE, keras_model=model, name=recipe.name,
                              description=recipe.description or None)
            deployed["bundle"] = {"examples": manifest["eval_set"]["n"], "accuracy": manifest["expected"]["accuracy"],
                                  "needs_lce_runtime": manifest["model"]["needs_lce_runtime"]}
        _io.write_bytes(folder / "model.tflite", flatbuffer)
        deployed["seconds"] = time.perf_counter() - start
        self.computed_seconds += deployed["seconds"]
        _io.write_json(folder / "deploy.json", deployed)
        self.deployed[cell.id] = deployed
        self._publish_bundle(cell, folder)

    def _publish_bundle(self, cell, folder):
        """Copy the cell's cached device bundle into the run folder (``deploy.bundle = true``)."""
        if not (cell.recipe.deploy.bundle and self.deployed[cell.id].get("deployed")):
            return
        from edgebnn.deploy.bundle import copy_bundle  # noqa: PLC0415

        target = self.out / _BUNDLE if self.study.single else self.out / "bundles" / cell.id
        copy_bundle(folder / _BUNDLE, target)
        self.console.line(f"cell {cell.id!r}: device bundle in {target}")

    # --- reporting -----------------------------------------------------------------

    def records(self, plans):
        out = []
        for cell in self.study.cells:
            _, units = plans[cell.id]
            for unit in units:
                stored = self.results.get(unit.key)
                if stored is None:
                    continue
                out.append({"cell": cell.name, "repeat": cell.repeat, "evaluation": unit.kind,
                            **stored["labels"], **stored["metrics"], "key": unit.key})
        return out

    def _arrays(self, record, name):
        arrays = self.store.load_arrays(record["key"])
        return None if arrays is None else arrays.get(name)

    def write_report(self, plans, *, with_figures):
        study = self.study
        records = self.records(plans)
        configs = {c.name: flatten(c.recipe.model_dump(mode="json")) for c in study.cells
                   if c.repeat == 0}
        if with_figures and study.figures:
            self.figure_reports = []
            for spec in study.figures:
                figure = figures_lib.draw(spec, records, configs, self._arrays, self.out / "figures")
                figure["caption"] = f"{figure['title']}. Data: {self._caption()}."
                self.figure_reports.append(figure)
        tables = []
        for spec in study.tables or [report_lib.default_table(study)]:
            markdown, table = report_lib.render_table(spec, records, configs, caption=self._caption())
            tables.append({**table, "markdown": markdown})
        cells = []
        for cell in study.cells:
            model_key, units = plans[cell.id]
            entry = self._models.get(model_key)
            cell_report = {"id": cell.id, "name": cell.name, "repeat": cell.repeat, "overrides": cell.overrides,
                           "seed": cell.recipe.train.seed, "config": cell.recipe.model_dump(mode="json"),
                           "model_key": model_key,
                           "results": [r for r in records if r["cell"] == cell.name and r["repeat"] == cell.repeat]}
            if entry is not None:
                model, randomized, info = entry
                cell_report["model"] = {"name": model.name, "parameters": int(model.count_params()),
                                        "randomized": randomized}
                cell_report["train"] = info
                cell_report["eot_samples"] = (cell.recipe.evaluation.eot_samples or
                                              (DEFAULT_EOT_SAMPLES if randomized else 1))
            if cell.id in self.deployed:
                cell_report["deployed"] = self.deployed[cell.id]
            cells.append(cell_report)
        report = {
            "recipe": study.name, "description": study.description, "status": self.status, "error": self.error,
            "data_caption": self._caption(), "study": study.to_dict(), "cells": cells, "records": records,
            "tables": tables, "figures": [{k: v for k, v in f.items()} for f in self.figure_reports],
            "paper": study.paper, "claims": self._claims(records, configs),
            "versions": self.versions, "seconds": self.console.elapsed(), "computed_seconds": self.computed_seconds,
            "work_seconds": self._work_seconds(records, cells),
        }
        if study.single:
            report.update(self._legacy(cells[0]) or {})
        _io.write_json(self.out / "report.json", report)
        _io.write_text(self.out / "report.md", report_lib.to_markdown(report, study))
        return report

    def _claims(self, records, configs):
        """The study's claims judged on ``records``, with the paper's clean accuracies and chance as gates."""
        classes = {d.num_classes for d in self._data.values()}
        return claims_lib.evaluate_all(self.study.claims, records, configs,
                                       paper_clean=claims_lib.paper_clean(self.study.tables, configs),
                                       chance=1 / classes.pop() if len(classes) == 1 else 0.1)

    def _work_seconds(self, records, cells):
        """Compute time behind the report's numbers (training and every result), whichever run spent it."""
        train = {c["model_key"]: (c.get("train") or {}).get("seconds_last") or 0.0 for c in cells}
        return float(sum(train.values()) + sum(self.results[r["key"]].get("seconds", 0.0) for r in records))

    def _legacy(self, cell_report):
        """The single-run report keys (``dataset``, ``model``, ``clean_accuracy``, ``attacks``, ``deployed``)."""
        if "model" not in cell_report:
            return None
        cell = self.study.cells[0]
        d = self.data_for(cell.recipe)
        n_eval, _ = self._eval_split(cell.recipe)
        results = cell_report["results"]
        clean_rows = [r for r in results if r["evaluation"] == "clean"]
        return {
            "recipe": self.study.name,
            "dataset": {"name": cell.recipe.data.dataset, "train_size": len(d.x_train), "test_size": len(d.x_test),
                        "attack_size": n_eval},
            "model": {"name": cell_report["model"]["name"], "family": cell.recipe.model.family,
                      "precision": cell.recipe.model.precision, "input_bits": cell.recipe.model.input_bits,
                      "parameters": cell_report["model"]["parameters"]},
            "clean_accuracy": clean_rows[0]["accuracy"] if clean_rows else None,
            "attacks": [{"name": r["attack"], **{k: v for k, v in r.items()
                                                 if k not in ("cell", "repeat", "evaluation", "attack", "key")}}
                        for r in results if r["evaluation"] == "attacks"],
            "deployed": {k: v for k, v in cell_report.get("deployed", {}).items() if k != "seconds"} or None,
            "config": cell.recipe.model_dump(mode="json"),
            "versions": self.versions,
            "seconds": self.console.elapsed(),
        }

    def _caption(self):
        captions = []
        for cell in self.study.cells:
            d = self.data_for(cell.recipe)
            n_eval, _ = self._eval_split(cell.recipe)
            text = f"{d.caption}; evaluations on the first {n_eval:,} images of the test part"
            if text not in captions:
                captions.append(text)
        return " | ".join(captions)

    # --- the run -------------------------------------------------------------------

    def _make_strategy(self):
        """The study's ``tf.distribute`` strategy, created before TensorFlow runs an op (as a
        multi-worker strategy must be); one strategy for every cell."""
        from edgebnn.training.distribute import is_chief, make_strategy  # noqa: PLC0415

        names = sorted({cell.recipe.train.strategy for cell in self.study.cells})
        if len(names) > 1:
            raise RecipeError(f"`train.strategy` must be the same in every cell of a study, got {names}.")
        try:
            self.strategy = make_strategy(names[0])
        except ValueError as e:
            raise RecipeError(f"`train.strategy`: {e}") from None
        self.chief = is_chief(self.strategy)

    def run(self):
        self._make_strategy()
        quiet_tensorflow()
        self.versions = _versions()
        self.deployed_dirs = {}
        for name in _OUTPUTS:
            (self.out / name).unlink(missing_ok=True)
        for folder in ("figures", _BUNDLE, "bundles"):
            shutil.rmtree(self.out / folder, ignore_errors=True)
        study = self.study
        self.console.note(f"recipe {study.name!r} -> {self.out}: {_plural(len(study.cells), 'cell')}")
        plans = self._plan()
        self.console.note(f"data: {self._caption()}")
        work = {}
        for cell in study.cells:
            _, units = plans[cell.id]
            train_work, unit_work = self._work(cell, units)
            work[cell.id] = (train_work, unit_work)
            self.console.total_work += train_work + sum(unit_work.values())
        try:
            for index, cell in enumerate(study.cells, 1):
                model_key, units = plans[cell.id]
                train_work, unit_work = work[cell.id]
                self.console.line(f"cell {index}/{len(study.cells)} {cell.id!r}")
                if (self.store.model_dir(model_key) / "model.keras").is_file():
                    self.console.skip(train_work)  # (trained epochs are accounted one by one)
                model, randomized, _ = self.trained(cell)
                if not self.chief:
                    continue  # a multi-worker run: the chief (worker 0) evaluates, deploys and reports
                ctx = self._context(cell, model, randomized)
                keep = cell.recipe.deploy.enabled and cell.recipe.deploy.verify
                for unit in units:
                    self._evaluate(cell, unit, ctx, unit_work[unit.key], keep)
                    self.write_report(plans, with_figures=False)
                if cell.recipe.deploy.enabled:
                    self._deploy(cell, model, units)
                self.write_report(plans, with_figures=False)
            self.status = "complete"
        except BaseException as e:
            interrupted = isinstance(e, KeyboardInterrupt)
            self.status = "interrupted" if interrupted else "failed"
            self.error = "interrupted (Ctrl-C)" if interrupted else f"{type(e).__name__}: {e}"
            self.write_report(plans, with_figures=True)
            raise
        report = self.write_report(plans, with_figures=True)
        if study.single:
            self._copy_single(plans)
        self.console.note(f"done in {report['seconds']:.1f} s ({self.computed_seconds:.1f} s computed): "
                          f"{self.out / 'report.md'}")
        return report

    def _copy_single(self, plans):
        cell = self.study.cells[0]
        model_key, _ = plans[cell.id]
        _copy(self.store.model_dir(model_key) / "model.keras", self.out / "model.keras")
        deployed = self.deployed.get(cell.id, {})
        if deployed.get("deployed"):
            _copy(self.deployed_dirs[cell.id] / "model.tflite", self.out / "model.tflite")


def _epoch_logger(console, cell_id, epochs, work):
    """A Keras callback printing one line per epoch (and counting the epochs run here)."""
    import tensorflow as tf  # noqa: PLC0415

    class Logger(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs_run = 0
            self._start = None

        def on_epoch_begin(self, epoch, logs=None):
            if self._start is None and epoch > 0:  # resumed: the earlier epochs are done
                console.skip(epoch * work)
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs_run += 1
            seconds = time.perf_counter() - self._start
            console.done(work, seconds)
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            console.line(f"cell {cell_id!r}: epoch {epoch + 1}/{epochs}: {metrics} ({seconds:.1f} s)")

    return Logger()


def _summary(stored):
    m = stored["metrics"]
    parts = []
    for key in ("accuracy", "accuracy_mc", "success_rate", "l2_mean", "detection_accuracy", "detection_auc",
                "l1_clean", "l1_adversarial"):
        if m.get(key) is not None:
            parts.append(f"{key} {m[key]:.4f}")
    return ", ".join(parts) or "done"


def _save_without_optimizer(model, path):
    """Save ``model`` as a ``.keras`` file without its optimizer state.

    Runs load stored models with ``compile=False``, so the optimizer's slots (twice the
    weights for Adam) are never read back; left in, they triple the file and the time
    to read its weights out of the zip archive. Training resumes from the checkpoints,
    not from this file.
    """
    optimizer = model.optimizer
    model.optimizer = None  # the saver walks the model's attributes; a missing optimizer is skipped
    try:
        model.save(path)
    finally:
        model.optimizer = optimizer


def _io_json(path):
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _copy(source, target):
    with _io.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def run(study, out, *, console=None, cache=None):
    """Run ``study`` into folder ``out`` (locked for the run); return the report dict.

    Args:
        study: a :class:`~edgebnn.recipes.config.Study`.
        out: the run folder (report, figures; the store unless ``cache`` is given).
        console: where progress goes (default: stderr).
        cache: a folder for trained models and results shared with other runs
            (see :mod:`edgebnn.recipes.store`); default ``out/store``.

    Raises:
        RecipeError: another run holds the folder, or a check that needs the data or
            a built model failed (before any training).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        return _Runner(study, out, console or Console(), cache=cache).run()


def _training_linf_bound(adversarial):
    """The largest L-inf distance of a training adversary from its clean image under ``adversarial``."""
    from edgebnn.attacks.rfgsm import max_linf  # noqa: PLC0415 (TensorFlow)

    if adversarial.method == "rfgsm":
        return max_linf(adversarial.eps, variant=adversarial.rfgsm_variant)
    return float(adversarial.eps)
