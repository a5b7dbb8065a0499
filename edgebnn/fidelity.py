"""Training fidelity: does each model of the paper recipes reach the paper's clean accuracy?

A robustness verdict means little on a model that trained far below the paper's clean
accuracy. This module trains every family x precision the paper recipes use, at the
training settings of the recipe cell that uses it (data, model, train sections, adversarial
training included), measures its clean accuracy on the recipe's test images, and sets it
beside the paper's clean accuracy, read from the recipe's own ``[[tables]]`` (never typed
here). Models go through the studies store (:meth:`edgebnn.recipes.store.Store.trained_weights`)
with per-epoch checkpoints, so an interrupted table resumes where it stopped.

:data:`MODELS` lists the models (an explicit tuple); :func:`measure` trains and measures one;
:func:`to_markdown` and :func:`to_json` turn the rows into the generated table.
"""

import json
import math
import shutil
import time
from dataclasses import dataclass, field

from edgebnn import _io, data, recipes, zoo
from edgebnn.recipes import config
from edgebnn.recipes.evaluations.common import default_eot_samples
from edgebnn.recipes.store import Store, weights_key

#: Accuracy (%) below the paper's beyond which a model counts as under-trained.
GAP_LIMIT = 3.0


@dataclass(frozen=True)
class Entry:
    """One model of the table.

    Attributes:
        paper: ``"guan"``, ``"galloway"`` or ``"panda"``.
        label: the model as the paper names it.
        recipe: the recipe whose cell ``cell`` gives the training settings.
        cell: the cell's id in that recipe (grid cells carry their grid values: ``"B,kernels=64"``).
        paper_match: the ``match`` of the paper's clean value in a ``[[tables]]`` entry of
            ``paper_recipe`` (default: ``recipe``), with that table's ``metric``; ``None`` when the
            paper prints none (a plot).
        paper_recipe: the recipe holding the paper's value, when not ``recipe``.
        metric: the metric of the paper's table (``"accuracy"``: one pass).
        note: what differs between the paper's model and ours, if anything.
    """

    paper: str
    label: str
    recipe: str
    cell: str
    paper_match: dict | None = field(hash=False)
    paper_recipe: str | None = None
    metric: str = "accuracy"
    note: str = ""


def _guan(label, cell):
    return Entry("guan", label, "guan/table1", cell, {"cell": cell, "attack": "clean"})


def _galloway(label, recipe, cell, paper_cell=None, note=""):
    paper_cell = paper_cell or cell
    return Entry("galloway", label, recipe, f"{cell},kernels=64", {"cell": f"{paper_cell},kernels=64", "attack": "clean"},
                 paper_recipe="galloway/table6", note=note)


_GALLOWAY_DATA = ("the paper trains on MNIST's 60,000 training images (7,035 Adam steps in 15 epochs), the carve "
                  "has 9,000 (1,065 steps); what was tried: galloway/table1's training-fidelity note")
_PANDA_DATA = ("the paper trains on MNIST's 60,000 training images, the carve has 9,000; what was tried: "
               "panda/table2_mnist's training-fidelity note")

#: Every family x precision the offline paper recipes train (MNIST carve; K = 64 for Galloway).
MODELS = (
    _guan("Rand BNN, dropout 0.05", "rand_bnn_0.05"),
    _guan("Rand BNN, dropout 0", "rand_bnn_0"),
    _guan("BNN, dropout 0.5", "bnn"),
    _guan("2bit Quantized, dropout 0.5", "2bit"),
    _guan("3bit Quantized, dropout 0.5", "3bit"),
    _guan("4bit Quantized, dropout 0.5", "4bit"),
    _guan("Full Precision, dropout 0.5", "float"),
    _galloway("A64", "galloway/table1", "A"),
    _galloway("B64", "galloway/table1", "B", note=_GALLOWAY_DATA),
    _galloway("C64", "galloway/table1", "C", note=_GALLOWAY_DATA),
    _galloway("A64+ (FGSM, random eps)", "galloway/table1", "A+"),
    _galloway("B64+ (FGSM, random eps)", "galloway/table1", "B+"),
    _galloway("C64+ (FGSM, random eps)", "galloway/table1", "C+"),
    _galloway("A64+* (PGD-40)", "galloway/table2", "A+pgd", "A+",
              note="paper value: Table 6's A+ (its caption: PGD-trained)"),
    _galloway("C64+* (PGD-40)", "galloway/table2", "C+pgd", "C+",
              note="paper value: Table 6's C+ (its caption: PGD-trained)"),
    Entry("panda", "FCN2 float, 8-bit input", "panda/fig5b", "FCN2-Full", None,
          note="Fig. 5(b) prints no values; the paper's float FCN2 is above its BNN"),
    Entry("panda", "FCN2 BNN, 8-bit input", "panda/fig5b", "FCN2-BNN", None,
          note="Fig. 5(b) prints no values; the paper's float FCN2 is above its BNN"),
    Entry("panda", "FCN2 float, 8-bit input, R-FGSM trained", "panda/table2_mnist", "input_bits=8",
          {"model.input_bits": 8, "attack": "clean"}, note=_PANDA_DATA),
    Entry("panda", "FCN2 float, 2-bit input, R-FGSM trained", "panda/table2_mnist", "input_bits=2",
          {"model.input_bits": 2, "attack": "clean"}, note=_PANDA_DATA),
    Entry("panda", "FCN1 float, 2-bit input", "panda/table5", "Full-2b", {"cell": "Full-2b", "attack": "clean"}),
    Entry("panda", "FCN1 BNN, 2-bit input", "panda/table5", "BNN-2b", {"cell": "BNN-2b", "attack": "clean"}),
    Entry("panda", "FCN1 float, 8-bit input", "panda/table5", "Full-8b", {"cell": "Full-8b", "attack": "clean"}),
    Entry("panda", "FCN1 BNN, 8-bit input", "panda/table5", "BNN-8b", {"cell": "BNN-8b", "attack": "clean"}),
)


def study(name, overrides=()):
    """The expanded recipe ``name`` (a name of :func:`edgebnn.recipes.available`)."""
    found = recipes.available()
    if name not in found:
        raise ValueError(f"`recipe`: no recipe named {name!r}.")
    return config.load(found[name], overrides=overrides)


def cell_recipe(entry, overrides=()):
    """The validated recipe of ``entry``'s cell (its first repeat)."""
    s = study(entry.recipe, overrides)
    for cell in s.cells:
        if cell.id == entry.cell or (cell.name == entry.cell and cell.repeat == 0):
            return cell.recipe
    raise ValueError(f"`cell`: recipe {entry.recipe!r} has no cell {entry.cell!r}; "
                     f"cells: {[c.id for c in s.cells]}")


def paper_value(entry):
    """The paper's clean accuracy (%) of ``entry`` (the leading number of ``"98.8±0.2"``), or None if it prints none."""
    if entry.paper_match is None:
        return None
    s = study(entry.paper_recipe or entry.recipe)
    for table in s.tables:
        if table.metric != entry.metric:
            continue
        for value in table.paper:
            if value.match == entry.paper_match:
                return float(str(value.value).split("±")[0])
    raise ValueError(f"`paper_match`: no paper value {entry.paper_match} in the {entry.metric!r} tables of "
                     f"{entry.paper_recipe or entry.recipe!r}.")


def load_data(recipe):
    """``(x_train, y_train, x_test, y_test, caption)`` of a recipe's data section."""
    d = recipe.data
    if d.split is not None:
        return data.carve(d.dataset, d.split.source, train_size=d.split.train, test_size=d.split.test,
                          seed=d.split.seed, data_dir=d.data_dir)
    x, y = data.load(d.dataset, "train", data_dir=d.data_dir, limit=d.train_limit, seed=d.seed)
    xt, yt = data.load(d.dataset, "test", data_dir=d.data_dir, limit=d.test_limit, seed=d.seed)
    return x, y, xt, yt, f"{d.dataset} official train / test splits"


def payload(recipe):
    """What decides a model's weights: the recipe's data (not where the files are), model and train sections."""
    data_part = recipe.data.model_dump(mode="json")
    data_part.pop("data_dir")
    return {"fidelity": 1, "data": data_part, "model": recipe.model.model_dump(mode="json"),
            "train": recipe.train.model_dump(mode="json")}


def build(recipe, num_classes, image_shape):
    """The recipe's model, built as the recipe runner builds it (seeded by ``train.seed``)."""
    import tensorflow as tf  # noqa: PLC0415

    tf.keras.utils.set_random_seed(recipe.train.seed)
    m = recipe.model
    return zoo.get(m.family)(precision=m.precision, input_bits=m.input_bits, num_classes=num_classes,
                             input_shape=image_shape, **m.options)


def fit(model, recipe, x, y, *, checkpoint_dir=None):
    """Train ``model`` in place with the recipe's train section (optimizer, schedule, adversarial training)."""
    from edgebnn.introspect import random_inference_layers  # noqa: PLC0415
    from edgebnn.training import (  # noqa: PLC0415
        AdversarialModel, compile_for_classification, learning_rate_schedule, make_optimizer, train,
    )

    t = recipe.train
    fit_model = model
    if t.adversarial is not None:
        options = t.adversarial.model_dump()  # the section's keys are AdversarialModel's arguments
        options["eot_samples"] = options["eot_samples"] or default_eot_samples(bool(random_inference_layers(model)))
        fit_model = AdversarialModel(model, **options)
    lr = learning_rate_schedule(t.learning_rate, schedule=t.schedule, steps_per_epoch=math.ceil(len(x) / t.batch_size),
                                epochs=t.epochs, decay_epochs=t.decay_epochs, decay_factor=t.decay_factor)
    compile_for_classification(fit_model, optimizer=make_optimizer(
        t.optimizer, learning_rate=lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay),
        xla=t.xla)
    return train(fit_model, x, y, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed,
                 checkpoint_dir=checkpoint_dir, verbose=0)


def accuracy(model, x, y, *, batch_size=500):
    """Clean accuracy (%) of one forward pass at inference (one stochastic pass for randomized models)."""
    import numpy as np  # noqa: PLC0415

    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return 100.0 * float(np.mean(np.argmax(logits, axis=1) == y))


def measure(entry, *, store_dir, overrides=()):
    """Train (or load) ``entry``'s model at its recipe's settings and measure its clean accuracy.

    Args:
        entry: an :class:`Entry`.
        store_dir: the studies store folder holding the trained weights.
        overrides: ``--set``-style assignments applied to the recipe (e.g. ``"train.epochs=1"``).

    Returns:
        A JSON-able dict: the entry, the training budget, ours and the paper's accuracy, the gap.
    """
    import tensorflow as tf  # noqa: PLC0415

    recipe = cell_recipe(entry, overrides)
    x, y, xt, yt, caption = load_data(recipe)
    info = data.get_info(recipe.data.dataset)
    store = Store(None, cache=store_dir)
    key_payload = payload(recipe)
    key = weights_key(key_payload)
    model = build(recipe, info.num_classes, info.image_shape)

    history_path = store.model_dir(key) / "history.json"

    def train_fn(m):
        start = time.perf_counter()
        history = fit(m, recipe, x, y, checkpoint_dir=store.model_dir(key) / "checkpoints")
        _io.write_json(history_path, {
            "seconds_per_epoch": round((time.perf_counter() - start) / recipe.train.epochs, 1),
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}})

    store.trained_weights(model, key_payload, train_fn)
    shutil.rmtree(store.model_dir(key) / "checkpoints", ignore_errors=True)  # the weights are stored: no resume needed
    logged = json.loads(history_path.read_text(encoding="utf-8")) if history_path.is_file() else {}
    history = logged.get("history", {})
    tf.keras.utils.set_random_seed(recipe.train.seed)  # the one stochastic pass of a randomized model, reproducibly
    ours = accuracy(model, xt, yt)
    paper = paper_value(entry)
    tf.keras.backend.clear_session()
    t = recipe.train
    return {
        "paper": entry.paper, "model": entry.label, "recipe": entry.recipe, "cell": entry.cell, "key": key,
        "data": recipe.data.dataset, "data_caption": caption, "train_images": int(len(x)),
        "test_images": int(len(xt)), "epochs": t.epochs, "optimizer": t.optimizer,
        "learning_rate": t.learning_rate, "adversarial": None if t.adversarial is None else t.adversarial.method,
        "ours": round(ours, 2), "paper_value": paper, "gap": None if paper is None else round(ours - paper, 2),
        "train_seconds_per_epoch": logged.get("seconds_per_epoch"),
        "train_accuracy_per_epoch": [round(100.0 * a, 1) for a in history.get("accuracy", [])],
        "overrides": list(overrides), "note": entry.note,
    }


def verdict(row):
    """``"ok"`` within :data:`GAP_LIMIT` points of the paper (or above it), ``"under-trained"`` below that,
    ``"no paper value"`` when the paper prints none."""
    if row["gap"] is None:
        return "no paper value"
    return "ok" if row["gap"] >= -GAP_LIMIT else "under-trained"


def to_json(rows, entries=MODELS):
    """The compact JSON of the table: measured rows, and the entries not run yet."""
    done = {(r["recipe"], r["cell"]) for r in rows}
    return {
        "gap_limit": GAP_LIMIT,
        "rows": [{**r, "verdict": verdict(r)} for r in rows],
        "not_run": [{"paper": e.paper, "model": e.label, "recipe": e.recipe, "cell": e.cell}
                    for e in entries if (e.recipe, e.cell) not in done],
    }


def _number(value, spec):
    return "-" if value is None else format(value, spec)


def to_markdown(table, *, command):
    """The docs page of :func:`to_json`'s ``table``, with the command that made it."""
    lines = [
        "# Training fidelity",
        "",
        "Clean accuracy of every model the offline paper recipes train, at the recipe's training settings, "
        "beside the paper's clean accuracy (read from the recipe's paper values). A model more than "
        f"{table['gap_limit']:g} points below the paper's is marked under-trained. Generated by",
        "",
        f"    {command}",
        "",
        "| paper | model | recipe / cell | data | train images | epochs | train acc (%) | ours (%) | paper (%) | "
        "gap | s / epoch | verdict |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in table["rows"]:
        per_epoch = "" if r["train_seconds_per_epoch"] is None else f"{r['train_seconds_per_epoch']:g}"
        adv = "" if r["adversarial"] is None else f", adversarial: {r['adversarial']}"
        history = r.get("train_accuracy_per_epoch") or []
        lines.append(
            f"| {r['paper']} | {r['model']} | `{r['recipe']}` / `{r['cell']}` | {r['data']}{adv} | "
            f"{r['train_images']:,} | {r['epochs']} | {_number(history[-1] if history else None, '.1f')} | "
            f"{r['ours']:.1f} | {_number(r['paper_value'], '.1f')} | {_number(r['gap'], '+.1f')} | {per_epoch} | "
            f"{r['verdict']} |")
    if table["not_run"]:
        lines += ["", "Not run yet (the table is resumable: the same command continues it):", ""]
        lines += [f"- {e['paper']}: {e['model']} (`{e['recipe']}` / `{e['cell']}`)" for e in table["not_run"]]
    overrides = sorted({o for r in table["rows"] for o in r["overrides"]})
    notes = [f"- {r['model']}: {r['note']}" for r in table["rows"] if r["note"]]
    if overrides:
        lines += ["", "Recipe settings overridden: " + ", ".join(f"`{o}`" for o in overrides) + "."]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "Clean accuracy is one forward pass over the recipe's whole test part (one stochastic pass "
              "for models that sample at inference, as the papers' single-pass columns); train acc is the "
              "training accuracy of the last epoch as Keras logs it (training mode, on the batches as trained: "
              "with adversarial training, clean and adversarial examples together; \"-\" when no history was "
              "kept), which tells a model that under-fits (low) from one that fits its training images but "
              "generalizes worse (high); s / epoch is the wall time of the training that ran (empty when the "
              "weights came from the store)."]
    return "\n".join(lines) + "\n"


__all__ = ["Entry", "GAP_LIMIT", "MODELS", "accuracy", "cell_recipe", "fit", "measure", "paper_value", "to_json",
           "to_markdown", "verdict"]
