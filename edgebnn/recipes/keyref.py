"""The recipe key reference: every key of a recipe file, its type, default and meaning.

Keys, types and defaults are read from the pydantic schema (:func:`edgebnn.recipes.config.recipe_model`
with every evaluation kind's section, and the study keys); meanings from :data:`MEANINGS`.
:func:`markdown` refuses a schema key without a meaning, so a key added to the schema
without a line here fails the documentation build and ``tests/test_docs.py``.

Example:
    >>> text = markdown()  # the page docs/recipe-keys.md (written by the docs build's hook)
"""

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from edgebnn.recipes.schema import OpenSection

#: Dotted key -> what it means. Tables of arrays (``[[attacks]]``) name their entries' keys
#: ``attacks.eps``.
MEANINGS = {
    "name": "Name of the study (default: the recipe file's name).",
    "description": "One line saying what the recipe shows; printed at the top of `report.md`.",
    "data": "Where the images come from: a built-in dataset, a tensorflow-datasets name, or your `.npz` file.",
    "data.dataset": "A built-in dataset (`mnist`, `fashion_mnist`, `cifar10`, `cifar100`, `imagenet2012`) read "
                    "offline from `data_dir` / `$EDGEBNN_DATA_DIR`, or any tensorflow-datasets image "
                    "classification name (downloaded when online).",
    "data.data_dir": "Folder holding `<dataset>/` with the dataset's files (default `$EDGEBNN_DATA_DIR`).",
    "data.train_limit": "Train on a seeded random subset of this many training images (default: all).",
    "data.test_limit": "Test on a seeded random subset of this many test images (default: all).",
    "data.seed": "Seed of the `train_limit` / `test_limit` subsets.",
    "data.split": "Carve a class-stratified train and test part out of one official split (offline MNIST: "
                  "its test set).",
    "data.split.source": "The official split carved: `train` or `test`.",
    "data.split.train": "Images in the carved training part.",
    "data.split.test": "Images in the carved test part (disjoint from the training part).",
    "data.split.seed": "Seed of the carve.",
    "data.files": "Your own images: an `.npz` file with `x_train`, `y_train`, `x_test`, `y_test` (uint8 pixels "
                  "or floats in [0, 1], any image shape, labels 0..classes-1), instead of `dataset`. A "
                  "relative path is read from the recipe's folder (from the working directory with `--set`).",
    "model": "The model: a zoo family, your builder function, or your saved model file.",
    "model.family": "A model family of `edgebnn.zoo` (`panda_fcn2`, `galloway_cnn`, `guan_lenet`, ...) or one "
                    "registered by another package in the entry point group `edgebnn.families`.",
    "model.precision": "The family's precision (`float`, `binary`, `xnor`, `A`..`C`, `2bit`, ...).",
    "model.input_bits": "Reduce the input pixels to `2**input_bits` levels inside the model (1..8; default: none).",
    "model.options": "Keyword options of the family's builder, or of your `model.builder` function.",
    "model.file": "Your saved Keras model (`.keras` or `.h5`; Larq and edgebnn layers allowed), mapping [0, 1] "
                  "pixels to logits. Used as saved unless the recipe has a `[train]` table (then fine-tuned).",
    "model.builder": "`\"package.module:function\"` returning your uncompiled Keras model (logits out), called "
                     "with `model.options` and seeded with `train.seed`.",
    "train": "Training (a `model.file` model is trained only when the recipe has this table).",
    "train.epochs": "Training epochs.",
    "train.batch_size": "Training batch size.",
    "train.optimizer": "`adam` or `sgd`.",
    "train.learning_rate": "Initial learning rate.",
    "train.momentum": "SGD momentum.",
    "train.nesterov": "Nesterov momentum (SGD).",
    "train.weight_decay": "Decoupled weight decay.",
    "train.schedule": "Learning-rate schedule: `constant`, `step` (at `decay_epochs`) or `cosine`.",
    "train.decay_epochs": "Epochs after which the step schedule multiplies the rate by `decay_factor`.",
    "train.decay_factor": "Factor of each step of the step schedule.",
    "train.seed": "Seed of weight initialization, shuffling and dropout (repeats add 0, 1, ...).",
    "train.adversarial": "Adversarial training: part of every batch replaced by (or augmented with) adversarial "
                         "examples.",
    "train.adversarial.method": "The training adversary: `fgsm`, `fgsm_random_eps`, `rfgsm` or `pgd`.",
    "train.adversarial.eps": "L-inf budget of the training adversary.",
    "train.adversarial.steps": "PGD steps of the training adversary.",
    "train.adversarial.step_size": "PGD step size (default 2.5 eps / steps, at most eps).",
    "train.adversarial.fraction": "Fraction of every batch replaced by adversarial examples (`replace` mode).",
    "train.adversarial.start_epoch": "First (0-based) epoch with adversarial examples.",
    "train.adversarial.mode": "`replace` (a fraction of the batch) or `augment` (every image and its adversary).",
    "train.adversarial.label_source": "Attack the `true` labels or the model's `predicted` ones (no label leaking).",
    "train.adversarial.eot_samples": "Passes averaged per attack gradient for models random at inference.",
    "train.adversarial.rfgsm_variant": "R-FGSM variant: `tramer` or `panda` (method `rfgsm` only).",
    "train.strategy": "`tf.distribute` strategy: `default`, `mirrored` (this machine's devices) or "
                      "`multi_worker` (the machines in `TF_CONFIG`).",
    "train.tensorboard": "Write TensorBoard logs of every cell trained in this run to `tensorboard/<cell id>/` "
                         "in the run folder (loss, accuracy, adversarial accuracy per epoch). Changes no store "
                         "key and no weight.",
    "train.calibrate_batch_norm": "After training, set every BatchNorm's moving mean and variance to the exact "
                                  "statistics of its inputs over the training images; the stored model is the "
                                  "calibrated one (part of the model's store key when true).",
    "train.xla": "Compile part of every training step with XLA: `off`, `update` (the optimizer's update of "
                 "each weight; faster for large dense models such as FCN1) or `step` (the whole step; refused "
                 "when training draws random numbers, whose seeds XLA ignores). Weights differ from `off` by "
                 "float rounding, so it is part of the model's store key unless `off`.",
    "evaluation": "Settings shared by every evaluation of a cell.",
    "evaluation.limit": "Test images attacked (the first `limit`; the clean accuracy uses the whole test part).",
    "evaluation.batch_size": "Batch size of attacks and predictions.",
    "evaluation.labels": "Attack the `true` labels or the model's `predicted` ones.",
    "evaluation.mc_passes": "Monte-Carlo passes averaged per prediction for models random at inference (0: one).",
    "evaluation.eot_samples": "Passes averaged per attack gradient for models random at inference.",
    "evaluation.seed": "Seed of the evaluations' randomness.",
    "deploy": "Conversion to TFLite, its verification against Keras and the device bundle.",
    "deploy.enabled": "Convert the trained model.",
    "deploy.target": "`lce` (Larq Compute Engine, bit-packed binary kernels) or `portable` (stock TFLite).",
    "deploy.weights": "How weights are stored: `exact` or a smaller form the target allows.",
    "deploy.strip": "Strip training-only parts (e.g. dropout) before converting.",
    "deploy.verify": "Compare the `.tflite` with Keras on the test images and the attacks' adversarial examples.",
    "deploy.bundle": "Also write the device bundle (model, uint8 test set, manifest) into the run folder.",
    "attacks": "`[[attacks]]`: white-box, black-box and transfer attacks; other keys are the attack's options.",
    "attacks.name": "The attack (`fgsm`, `pgd`, `cw_l2`, `jsma`, `square`, `transfer`, ...).",
    "attacks.eps": "Budget(s): one number or a list (one result each).",
    "attacks.labels": "Override `evaluation.labels` for this attack.",
    "attacks.targets": "Targeted attacks: `random` target classes or `all` of them.",
    "attacks.source": "Transfer attacks: the cell whose model crafts the examples.",
    "attacks.holdout": "Black-box substitute attacks: test images held out for the substitute's training.",
    "attacks.gradient": "Randomized models: `eot` (expectation over the randomness) or `single` (one pass).",
    "attacks.backend": "Implementation: `edgebnn` or `cleverhans` (cross-checks).",
    "certify": "`[[certify]]`: exact robustness of a binary network with discretized input (MILP or SAT).",
    "certify.eps": "L-inf budgets certified (one result each).",
    "certify.time_limit": "Solver seconds per example; beyond it the answer is unknown.",
    "certify.limit": "Examples certified (default: `evaluation.limit`).",
    "certify.processes": "Solver processes in parallel.",
    "certify.solver": "`milp` (HiGHS) or a SAT solver of `edgebnn.certify.solvers`.",
    "certify.attack_steps": "PGD steps of the attack run before the solver.",
    "certify.attack_restarts": "PGD restarts of that attack.",
    "certify.export_counterexamples": "Hand the counterexamples to `[deploy]`, whose `verify` then compares the "
                                      "deployed model with Keras on them too (part of the result's store key).",
    "detection": "`[[detection]]`: detecting adversarial examples from the model's uncertainty.",
    "detection.attack": "The attack whose examples are detected.",
    "detection.eps": "Its budget.",
    "detection.fit": "Images used to fit the detector's threshold.",
    "detection.samples": "Stochastic passes per image (default: `evaluation.mc_passes`).",
    "detection.gradient": "Randomized models: `eot` or `single` gradients for the attack.",
    "probes": "`[[probes]]`: a layer's activations on clean and adversarial images.",
    "probes.layer": "Name of the probed layer.",
    "probes.attack": "The attack making the adversarial images.",
    "probes.eps": "Its budget.",
    "robustness": "`[[robustness]]`: the strong evaluation (PGD per gradient surrogate, APGD-CE, APGD-T, "
                  "Square, AutoAttack) with its gradient-masking checks.",
    "robustness.eps": "Budgets evaluated (one result each).",
    "robustness.limit": "Images evaluated (default: `evaluation.limit`).",
    "robustness.norm": "Threat model: `inf` or `2`.",
    "robustness.surrogates": "Gradient surrogates of the sign (default: clipped, identity, smooth).",
    "robustness.steps": "Steps of APGD and of the strongest PGD.",
    "robustness.pgd_steps": "Steps of the plain PGD.",
    "robustness.restarts": "Random restarts.",
    "robustness.target_classes": "Target classes of APGD-T.",
    "robustness.square_queries": "Queries of the Square attack.",
    "robustness.large_eps": "Budget of the masking check that a large eps reaches 0% accuracy.",
    "grid": "Dotted keys mapped to lists of values: one cell per combination.",
    "cells": "`[[cells]]`: named cells, each a `name` plus dotted-key overrides (`grid = false` keeps it "
             "out of the grid).",
    "repeats": "Train every cell this many times with consecutive `train.seed`.",
    "tables": "`[[tables]]`: the tables of `report.md`.",
    "tables.title": "The table's title.",
    "tables.metric": "The metric in its cells.",
    "tables.evaluation": "The evaluation kind whose records it shows.",
    "tables.rows": "Record keys forming the rows.",
    "tables.columns": "Record keys forming the columns.",
    "tables.where": "Keep only the records matching these keys.",
    "tables.format": "Number format: `percent`, `fixed2`, `fixed3`, `fixed4` or `scientific`.",
    "tables.paper": "Values reported by the paper, shown beside ours.",
    "tables.paper.match": "The table cell's keys the value belongs to.",
    "tables.paper.value": "The paper's value.",
    "tables.paper_source": "Where the paper's values come from.",
    "figures": "`[[figures]]`: figures drawn into `figures/`; other keys are the drawer's options.",
    "figures.kind": "The drawer of `edgebnn.recipes.figures`.",
    "figures.name": "File name of the figure.",
    "figures.title": "The figure's title.",
    "paper": "The paper the recipe reproduces (its section of the results page): `guan`, `galloway` or `panda`.",
    "claims": "`[[claims]]`: the paper's claims and the comparisons that decide them.",
    "claims.id": "Short identifier of the claim.",
    "claims.claim": "The claim in the paper's words.",
    "claims.criterion": "What we check, in words.",
    "claims.require": "How many comparisons must hold: `all`, `any` or a number.",
    "claims.compare": "The comparisons (`left op right + margin`).",
    "claims.compare.left": "A number of the report: `metric` of the records `match` selects.",
    "claims.compare.left.metric": "The metric.",
    "claims.compare.left.match": "Record keys selecting the records (mean over repeats).",
    "claims.compare.left.minus": "Subtract another such number (same keys as `left`), paired by repeat.",
    "claims.compare.op": "The comparison operator.",
    "claims.compare.right": "The other number (same keys as `left`), or give `value`.",
    "claims.compare.right.metric": "The metric.",
    "claims.compare.right.match": "Record keys selecting the records.",
    "claims.compare.right.minus": "Subtract another such number (same keys as `left`).",
    "claims.compare.value": "A constant instead of `right`.",
    "claims.compare.margin": "Added to the right side.",
    "claims.extension": "A claim beyond the paper (our extension).",
}


def type_name(annotation):
    """A short readable name of a field's type (``int >= 1 or none``, ``list of float``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _with_bounds(type_name(args[0]), annotation.__metadata__)
    if origin is Literal:
        return " / ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or none" if type(None) in args else "")
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "table"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return getattr(annotation, "__name__", str(annotation))


def _with_bounds(name, metadata):
    """``name`` with the bounds pydantic keeps in a field's metadata (``int >= 1``)."""
    flat = [inner for m in metadata for inner in (getattr(m, "metadata", None) or [m])]  # FieldInfo wraps its own
    bounds = [f"{op} {getattr(m, attr)}" for m in flat
              for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if hasattr(m, attr)]
    return " ".join([name, *bounds])


def _default(field):
    if field.is_required():
        return "required"
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(table)"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    return f"`{value}`"


def rows():
    """``[(key, type, default, meaning, open)]`` of every recipe key in schema order; ``open`` marks
    tables taking further keys (an attack's options). A table whose model repeats an outer one
    (``claims.compare.left.minus``) is listed once, not expanded again.

    Raises:
        KeyError: a schema key without a meaning in :data:`MEANINGS`.
    """
    from edgebnn.recipes import config  # noqa: PLC0415

    out = []

    def walk(cls, prefix, seen):
        for name, field in cls.model_fields.items():
            key = prefix + name
            if key not in MEANINGS:
                raise KeyError(f"recipe key `{key}` has no meaning in edgebnn.recipes.keyref.MEANINGS; add one.")
            sub = config._unwrap(field.annotation)
            out.append((key, _with_bounds(type_name(field.annotation), field.metadata), _default(field), MEANINGS[key],
                        sub is not None and issubclass(sub, OpenSection)))
            if sub is not None and sub not in seen:
                walk(sub, key + ".", seen | {sub})

    walk(config.recipe_model(), "", frozenset())
    walk(config._StudyKeys, "", frozenset())
    return out


def markdown():
    """The recipe key reference page (Markdown)."""
    lines = [
        "# Recipe key reference",
        "",
        "Every key of a recipe file, generated from the recipe schema (`edgebnn.recipes.config`) when the",
        "documentation is built. Keys are dotted: `data.dataset` is `dataset` in the `[data]` table;",
        "`attacks.eps` is `eps` in each `[[attacks]]` entry. Any key can also be set on the command line",
        "with `--set key=value` (`--set attacks.0.eps=[0.1]`). Unknown keys are errors, naming the valid",
        "ones; tables marked *open* pass further keys on as options.",
        "",
    ]
    section = None
    all_rows = rows()
    tables = {key.split(".")[0] for key, *_ in all_rows if "." in key}
    all_rows.sort(key=lambda row: row[0].split(".")[0] in tables)  # the top-level keys first, in one section
    for key, kind, default, meaning, is_open in all_rows:
        top = key.split(".")[0]
        title = f"`{top}`" if top in tables else "Top-level keys"
        if title != section:
            section = title
            lines += ["", f"## {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        cells = [f"`{key}`", kind + (" (open)" if is_open else ""), default, meaning]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
