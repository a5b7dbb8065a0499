"""Recipe files: TOML validated with pydantic, expanded into the cells of a study.

A recipe describes one experiment: a dataset (``[data]``), a model from
:mod:`edgebnn.zoo` (``[model]``), training (``[train]``, optionally
``[train.adversarial]``), evaluation settings (``[evaluation]``), evaluations (the
top-level arrays of :data:`edgebnn.recipes.evaluations.KINDS`: ``[[attacks]]``,
``[[detection]]``, ``[[probes]]``) and deployment (``[deploy]``).

A recipe is also a *study*: it may add

- ``[grid]``: dotted keys mapped to lists of values; their cartesian product gives
  one cell per combination (named ``key=value,...`` from the keys' last parts);
- ``[[cells]]``: named cells, each a ``name`` plus dotted-key overrides; with a grid
  too, every named cell is crossed with every grid combination, except cells that
  set ``grid = false`` (one cell each, e.g. a transfer source or a one-off variant);
  when no named cell is crossed with the grid, the grid's combinations (or, without
  a grid, the base recipe) are cells of their own;
- ``repeats = N``: every cell trained N times with consecutive ``train.seed``;
- ``[[tables]]`` and ``[[figures]]``: how ``report.md`` lays out the results.
- ``paper`` and ``[[claims]]``: which paper the recipe reproduces (its section of the
  results page) and the paper's claims with the comparisons that decide them
  (:mod:`edgebnn.recipes.claims`).

Every cell is the base recipe plus its overrides, validated as a whole recipe before
anything runs; an error names the cell and the key.

Examples:
    >>> study = load("recipes/fcn2_discretization.toml", overrides=["train.epochs=1"])
    >>> [cell.name for cell in study.cells]
    ['precision=float,input_bits=2', 'precision=float,input_bits=8', ...]
"""

import copy
import functools
import itertools
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, create_model, model_serializer, model_validator

from edgebnn.choices import (
    ADVERSARIAL_METHODS, ADVERSARIAL_MODES, LABEL_SOURCES, OPTIMIZERS, RANDOM_ADVERSARIAL_METHODS, RFGSM_VARIANTS,
    SCHEDULES, STRATEGIES, XLA_MODES,
)
from edgebnn.recipes import claims as claims_lib
from edgebnn.recipes import sources
from edgebnn.recipes.evaluations import KINDS, entries
from edgebnn.recipes.schema import OpenSection, RecipeError, Section

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib

__all__ = ["Cell", "Recipe", "RecipeError", "Study", "apply_override", "expand", "load", "parse_override"]

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
#: Seeds go to NumPy and TensorFlow, which take 0 <= seed < 2**32.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class SplitConfig(Section):
    """A seeded, class-stratified carve of one official split (see :func:`edgebnn.data.carve`)."""

    source: Literal["train", "test"] = "test"
    train: PositiveInt
    test: PositiveInt
    seed: Seed = 0


def _drop_when(out, defaults):
    """``out`` without the keys whose value is ``defaults[key]``: keys added later leave the dumps
    (and so the store keys) of recipes that do not set them as they were."""
    for key, default in defaults.items():
        if key in out and out[key] == default:
            del out[key]
    return out


class DataConfig(Section):
    dataset: str | None = "fashion_mnist"
    data_dir: str | None = None
    train_limit: PositiveInt | None = None
    test_limit: PositiveInt | None = None
    seed: Seed = 0
    split: SplitConfig | None = None
    #: Your own images: an ``.npz`` file (:func:`edgebnn.data.load_npz`) instead of ``dataset``.
    files: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if self.files is not None:
            if "dataset" in self.model_fields_set:
                raise ValueError("files: give either `data.dataset` or `data.files`, not both")
            self.dataset = None
        elif self.dataset is None:
            raise ValueError("dataset: a dataset name is required (or `data.files`)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return _drop_when(handler(self), {"files": None})


class ModelConfig(Section):
    family: str | None = "panda_fcn2"
    precision: str | None = "binary"
    input_bits: Annotated[int, Field(ge=1, le=8)] | None = None
    options: dict[str, Any] = {}
    #: Your own saved model (``.keras`` / ``.h5``) instead of a family (:mod:`edgebnn.recipes.sources`).
    file: str | None = None
    #: ``"package.module:function"`` returning your uncompiled Keras model, called with ``options``.
    builder: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        own = [key for key in ("file", "builder") if getattr(self, key) is not None]
        if not own:
            if self.family is None or self.precision is None:
                raise ValueError("family: a model family and precision are required (or `model.file` / "
                                 "`model.builder`)")
            return self
        if len(own) > 1:
            raise ValueError("file: give one of `model.file` and `model.builder`, not both")
        given = sorted({"family", "precision", "input_bits"} & self.model_fields_set)
        if self.file is not None and self.options:
            given.append("options")
        if given:
            raise ValueError(f"{own[0]}: `model.{given[0]}` applies to zoo families only; your model is "
                             f"used as it is (remove `model.{given[0]}`)")
        self.family = self.precision = None
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return _drop_when(handler(self), {"file": None, "builder": None})


class AdversarialConfig(Section):
    """Adversarial training (:class:`edgebnn.training.AdversarialModel`)."""

    method: Literal[ADVERSARIAL_METHODS]
    eps: NonNegativeFloat
    steps: PositiveInt = 40
    step_size: PositiveFloat | None = None
    fraction: Fraction = 0.5
    start_epoch: NonNegativeInt = 0
    mode: Literal[ADVERSARIAL_MODES] = "replace"
    label_source: Literal[LABEL_SOURCES] = "true"
    eot_samples: PositiveInt | None = None
    rfgsm_variant: Literal[tuple(RFGSM_VARIANTS)] = "tramer"

    @model_validator(mode="after")
    def _variant_needs_rfgsm(self):
        if self.rfgsm_variant != "tramer" and self.method != "rfgsm":
            raise ValueError(f"rfgsm_variant: applies to method 'rfgsm' only, got method {self.method!r}")
        return self


class TrainConfig(Section):
    epochs: PositiveInt = 1
    batch_size: PositiveInt = 128
    optimizer: Literal[OPTIMIZERS] = "adam"
    learning_rate: PositiveFloat = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0
    schedule: Literal[SCHEDULES] = "constant"
    decay_epochs: list[PositiveInt] = []
    decay_factor: Annotated[float, Field(gt=0, le=1)] = 0.1
    seed: Seed = 0
    adversarial: AdversarialConfig | None = None
    #: ``tf.distribute`` strategy (:mod:`edgebnn.training.distribute`): "mirrored" for the
    #: devices of one machine, "multi_worker" for the machines in ``TF_CONFIG``.
    strategy: Literal[STRATEGIES] = "default"
    #: TensorBoard logs of every trained cell in the run folder (``tensorboard/<cell id>/``).
    tensorboard: bool = True
    #: XLA for the optimizer's update or the whole step (:func:`edgebnn.training.compile_for_classification`):
    #: other float rounding, so part of the model's store key unless "off".
    xla: Literal[XLA_MODES] = "off"
    #: After training, set every BatchNorm's moving mean and variance to the exact statistics of
    #: its inputs over the cell's training images (:func:`edgebnn.zoo.eev.calibrate_batch_norm`);
    #: the stored, evaluated and deployed model is the calibrated one.
    calibrate_batch_norm: bool = False

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return _drop_when(handler(self), {"tensorboard": True, "xla": "off", "calibrate_batch_norm": False})

    @model_validator(mode="after")
    def _consistent(self):
        if self.schedule == "step" and (
            not self.decay_epochs or self.decay_epochs != sorted(set(self.decay_epochs))
            or self.decay_epochs[-1] >= self.epochs
        ):
            raise ValueError(f"decay_epochs: the step schedule needs increasing epochs in [1, {self.epochs}), "
                             f"got {self.decay_epochs}")
        random_attack = self.adversarial is not None and self.adversarial.method in RANDOM_ADVERSARIAL_METHODS
        if self.xla == "step" and random_attack:
            raise ValueError(f"xla: 'step' ignores op seeds and adversarial method {self.adversarial.method!r} "
                             "draws random numbers; use 'update'")
        if self.adversarial is not None and self.adversarial.start_epoch >= self.epochs:
            raise ValueError(f"adversarial.start_epoch: {self.adversarial.start_epoch} leaves no adversarial "
                             f"epoch in {self.epochs} (0-based)")
        return self


class EvaluationConfig(Section):
    limit: PositiveInt | None = 1000
    batch_size: PositiveInt = 500
    labels: Literal["true", "predicted"] = "true"
    mc_passes: NonNegativeInt = 0
    eot_samples: PositiveInt | None = None
    seed: Seed = 0


class DeployConfig(Section):
    enabled: bool = True
    target: str = "lce"
    weights: str = "exact"
    strip: bool = False
    verify: bool = True
    #: Also write the device bundle of :func:`edgebnn.deploy.bundle.bundle` (model, the
    #: test set as uint8 pixels, manifest) into the run folder: ``bundle/`` for a single
    #: run, ``bundles/<cell id>/`` for each cell of a study.
    bundle: bool = False

    @model_validator(mode="after")
    def _bundle_needs_a_deployment(self):
        if self.bundle and not self.enabled:
            raise ValueError("bundle: needs `deploy.enabled = true` (a bundle holds the converted model)")
        return self


class _RecipeBase(Section):
    name: str
    description: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    deploy: DeployConfig = DeployConfig()


@functools.cache
def _recipe_model(sections):
    return create_model("Recipe", __base__=_RecipeBase, **{key: (list[spec], []) for key, spec in sections})


def recipe_model():
    """The pydantic model of one cell's recipe: the base sections plus one array per
    evaluation kind of :data:`~edgebnn.recipes.evaluations.KINDS` that has a recipe section."""
    return _recipe_model(tuple((key, kind.Spec) for key, kind in KINDS.items() if kind.Spec is not None))


class PaperValue(Section):
    """A value reported by a paper, shown beside ours in the table cell whose keys match."""

    match: dict[str, Any]
    value: float | str


class TableSpec(Section):
    """A ``report.md`` table: one metric, rows and columns from record keys.

    Keys are config keys of the cells (``model.precision``), ``cell``, ``repeat``,
    ``evaluation`` (the kind) and the labels of an evaluation (``attack``, ``eps``,
    ``targets``, ``source``, ``layer``). ``where`` keeps only matching records.
    """

    title: str
    metric: str = "accuracy"
    evaluation: str = "attacks"
    rows: list[str] = ["cell"]
    columns: list[str] = ["attack", "eps"]
    where: dict[str, Any] = {}
    format: Literal["percent", "fixed2", "fixed3", "fixed4", "scientific"] = "percent"
    paper: list[PaperValue] = []
    paper_source: str = ""


#: The table of a recipe without ``[[tables]]``: accuracy per cell, clean and per attack and eps.
DEFAULT_TABLE = TableSpec(title="Accuracy (%), clean and under attack", metric="accuracy",
                          rows=["cell"], columns=["attack", "eps"])


class FigureSpec(OpenSection):
    """A figure; ``kind`` picks the drawer in :mod:`edgebnn.recipes.figures`, the other keys are its options."""

    kind: str
    name: str
    title: str = ""


_STUDY_KEYS = ("grid", "cells", "repeats", "tables", "figures", "paper", "claims")


class _StudyKeys(Section):
    grid: dict[str, list] = {}
    cells: list[dict[str, Any]] = []
    repeats: PositiveInt = 1
    tables: list[TableSpec] = []
    figures: list[FigureSpec] = []
    paper: Literal[tuple(claims_lib.PAPERS)] | None = None
    claims: list[claims_lib.ClaimSpec] = []


@dataclass(frozen=True)
class Cell:
    """One trained model of a study and its evaluations.

    Attributes:
        name: unique within the study (repeats of a cell share it).
        repeat: 0-based repeat index; ``train.seed`` is the base seed plus ``repeat``.
        repeats: how many repeats the study has.
        overrides: the dotted keys this cell sets over the base recipe.
        recipe: the cell's validated recipe (:func:`recipe_model`).
    """

    name: str
    repeat: int
    repeats: int
    overrides: dict
    recipe: Any

    @property
    def id(self):
        """``name`` plus the repeat (``name#r1``) when the study repeats."""
        return self.name if self.repeats == 1 else f"{self.name}#r{self.repeat}"


@dataclass
class Study:
    """A validated recipe expanded into cells."""

    name: str
    description: str
    repeats: int
    cells: list
    tables: list
    figures: list
    base: Any
    single: bool = field(default=True)
    paper: str | None = None
    claims: list = field(default_factory=list)
    recipe_dataset: str | None = None
    budget: str | None = None

    def report_tables(self):
        """The tables of ``report.md``: the recipe's, else :data:`DEFAULT_TABLE`."""
        return self.tables or [DEFAULT_TABLE]

    def to_dict(self):
        return {
            "name": self.name, "description": self.description, "repeats": self.repeats,
            "cells": [{"name": c.name, "repeat": c.repeat, "overrides": c.overrides} for c in self.cells],
            "tables": [t.model_dump() for t in self.tables], "figures": [f.model_dump() for f in self.figures],
            "base": self.base.model_dump(mode="json"), "paper": self.paper, "recipe_dataset": self.recipe_dataset,
            "budget": self.budget,
            "claims": [c.model_dump(mode="json") for c in self.claims],
        }


# --- errors -------------------------------------------------------------------------


def _unwrap(annotation):
    """The pydantic model inside ``X | None`` / ``list[X]`` / ``Annotated[X, ...]``, else None."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is not None:
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if found is not None:
                return found
        return None
    return annotation if isinstance(annotation, type) and issubclass(annotation, (Section, OpenSection)) else None


def _valid_keys(model_cls, loc):
    """Field names of the section that holds the key at ``loc`` (for 'unknown key' messages)."""
    node = model_cls
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = node.model_fields.get(part) if node is not None else None
        node = _unwrap(info.annotation) if info is not None else None
        if node is None:
            return None
    return sorted(node.model_fields) if node is not None else None


def _messages(error, model_cls, prefix=""):
    out = []
    errors = sorted(error.errors(), key=lambda err: err["type"] != "extra_forbidden")  # typos first
    for err in errors:
        loc = tuple(err["loc"])
        key = prefix + ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(model_cls, loc)
            where = f" in [{'.'.join(str(p) for p in loc[:-1])}]" if len(loc) > 1 else " at the top level"
            out.append(f"unknown key `{key}`" + (f"; valid keys{where}: {valid}" if valid else ""))
        elif err["type"] == "missing":
            out.append(f"`{key}` is required")
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):  # a model validator: "field: reason"
                field_name, _, reason = msg[len("Value error, "):].partition(": ")
                key = f"{key}.{field_name}" if key else field_name
                out.append(f"`{key}`: {reason}")
                continue
            out.append(f"`{key}`: {msg[0].lower() + msg[1:]}, got {err['input']!r}")
    return out


def _validate(model_cls, table, *, where=""):
    try:
        return model_cls.model_validate(table)
    except ValidationError as e:
        messages = _messages(e, model_cls)
        more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
        raise RecipeError(f"{where}{messages[0]}{more}.") from None


# --- names checked against the registries ------------------------------------------


def _check_names(recipe, *, cells, cell, where=""):
    _check_data(recipe.data, where=where)
    if recipe.data.split is not None and (recipe.data.train_limit or recipe.data.test_limit):
        raise RecipeError(f"{where}`data.split` carves exact sizes; remove `data.train_limit` / `data.test_limit`.")
    if sources.model_source(recipe.model) != "family":
        sources.check(recipe.model, where=where)
    else:
        _check_family(recipe, where=where)
    _check_deploy_and_entries(recipe, cells=cells, cell=cell, where=where)


def _check_data(config, *, where):
    from edgebnn import data  # noqa: PLC0415

    if config.files is not None:
        sources.check_data_file(config, where=where)
    elif config.dataset not in data.DATASETS:
        try:
            data.tfds_info(config.dataset)
        except ValueError as e:
            raise RecipeError(f"{where}`data.dataset` must be one of {sorted(data.DATASETS)} or a "
                              f"tensorflow-datasets image classification name: {e}") from None
        if config.split is not None:
            raise RecipeError(f"{where}`data.split` carves a built-in dataset ({sorted(data.DATASETS)}), "
                              f"not {config.dataset!r}; use `data.train_limit` / `data.test_limit`.")


def _check_family(recipe, *, where):
    from edgebnn import zoo  # noqa: PLC0415

    import inspect  # noqa: PLC0415

    try:
        precisions = zoo.precisions(recipe.model.family)
    except ValueError as e:
        raise RecipeError(f"{where}`model.family`: {e}") from None
    if recipe.model.precision not in precisions:
        raise RecipeError(f"{where}`model.precision` must be one of {list(precisions)} for "
                          f"{recipe.model.family}, got {recipe.model.precision!r}.")
    builder = zoo.get(recipe.model.family)
    accepted = {p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY}
    accepted -= set(sources.FAMILY_KEYWORDS)
    unknown = sorted(set(recipe.model.options) - accepted)
    if unknown:
        raise RecipeError(f"{where}unknown key `model.options.{unknown[0]}` for {recipe.model.family}; "
                          f"valid keys: {sorted(accepted)}.")


def _check_deploy_and_entries(recipe, *, cells, cell, where):
    from edgebnn.deploy import convert  # noqa: PLC0415 (TensorFlow)

    if recipe.deploy.target not in convert.TARGETS:
        raise RecipeError(f"{where}`deploy.target` must be one of {list(convert.TARGETS)}, got {recipe.deploy.target!r}.")
    if recipe.deploy.weights not in convert.WEIGHTS:
        raise RecipeError(f"{where}`deploy.weights` must be one of {list(convert.WEIGHTS)}, got {recipe.deploy.weights!r}.")
    for key, where_, spec in entries(recipe):
        if spec is not None:
            try:
                KINDS[key].check(spec, recipe=recipe, cells=cells, cell=cell, where=where_)
            except RecipeError as e:
                raise RecipeError(f"{where}{e}") from None


# --- metrics the claims and tables name -------------------------------------------


def _produced(cells):
    """``[(cell name, flat configuration, kind, metric names)]`` of every evaluation entry of ``cells``
    (their first repeats: repeats run the same entries)."""
    out = []
    for cell in cells:
        if cell.repeat == 0:
            flat = flatten(cell.recipe.model_dump(mode="json"))
            out += [(cell.name, flat, key, tuple(KINDS[key].metrics(spec, recipe=cell.recipe)))
                    for key, _, spec in entries(cell.recipe)]
    return out


def _check_tables(tables, produced):
    """Every table's ``metric`` is carried by the records it shows: its evaluation's (``where`` kept)
    and those of kinds in every table."""
    for i, table in enumerate(tables):
        if table.evaluation not in KINDS:
            raise RecipeError(f"`tables.{i}.evaluation` must be one of {list(KINDS)}, got {table.evaluation!r}.")
        kinds = {table.evaluation} | {key for key, kind in KINDS.items() if kind.in_every_table}
        available = claims_lib.metrics_matching(produced, table.where, kinds=kinds)
        if table.metric not in available:
            raise RecipeError(f"`tables.{i}.metric`: table {table.title!r} names the metric {table.metric!r}, which "
                              f"no record it shows will carry; {claims_lib.carried(available)}.")


# --- overrides and expansion --------------------------------------------------------


def parse_override(assignment):
    """Parse ``key.path=value``; the value is read as TOML (``1``, ``0.5``, ``[0.1, 0.2]``, ``"s"``) or else as a string."""
    if "=" not in assignment:
        raise RecipeError(f"--set expects key=value, got {assignment!r}.")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    if not key:
        raise RecipeError(f"--set expects key=value, got {assignment!r}.")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_override(table, key, value, *, what="--set"):
    """Set ``table[a][b]... = value`` for ``key = "a.b..."``; list items by index (``attacks.0.eps``)."""
    parts = key.split(".")
    node = table
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(f"{what} {key}: `{'.'.join(parts[:i + 1])}` is not an index of a list of {len(node)}.")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise RecipeError(f"{what} {key}: `{'.'.join(parts[:i + 1])}` is not a table.")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise RecipeError(f"{what} {key}: `{last}` is not an index of a list of {len(node)}.")
        node[int(last)] = value
    else:
        node[last] = value


def flatten(table, prefix=""):
    """``{"model": {"precision": "binary"}}`` -> ``{"model.precision": "binary"}`` (keys
    already dotted stay as they are; empty tables are kept as values)."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _format_value(value):
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    return str(value)


_CELL_NAME = re.compile(r"^[A-Za-z0-9_.+\-=,\[\]]+$")


def _grid_combinations(grid):
    for key, values in grid.items():
        if not values:
            raise RecipeError(f"`grid.{key}` must be a non-empty list of values.")
    keys = list(grid)
    for combination in itertools.product(*(grid[k] for k in keys)):
        overrides = dict(zip(keys, combination))
        name = ",".join(f"{k.rsplit('.', 1)[-1]}={_format_value(v)}" for k, v in overrides.items())
        yield name, overrides


def _named_cells(cells):
    """``[(name, overrides, crossed with the grid)]`` of the ``[[cells]]`` entries."""
    out = []
    for i, entry in enumerate(cells):
        if "name" not in entry or not isinstance(entry["name"], str) or not _CELL_NAME.match(entry["name"]):
            raise RecipeError(f"`cells.{i}.name` is required: letters, digits and _.+-=,[] only, got {entry.get('name')!r}.")
        crossed = entry.get("grid", True)
        if not isinstance(crossed, bool):
            raise RecipeError(f"`cells.{i}.grid` must be true or false, got {crossed!r}.")
        overrides = flatten({k: v for k, v in entry.items() if k not in ("name", "grid")})
        out.append((entry["name"], overrides, crossed))
    return out


def expand(table, *, name, known_cells=(), base_dir=None, check_names=True):
    """Validate a parsed recipe table and expand it into a :class:`Study`.

    ``known_cells`` are cells (:class:`Cell`) claims may name besides the study's own: the
    cells of the recipe at its defaults, when a budget or ``--set`` leaves some out (their
    claims are then not evaluated, not an error); the metrics their evaluations produce
    count as produced too. Relative ``model.file`` and
    ``data.files`` paths are read from ``base_dir`` (the recipe file's folder), else
    from the working directory. ``check_names=False`` skips the checks against the
    registries and files (for the cell names of a recipe at its defaults, whose files
    an override may replace).

    Raises:
        RecipeError: the first bad key or value, naming the cell (when the recipe has
            several) and the key.
    """
    if not isinstance(table, dict):
        raise RecipeError("a recipe must be a TOML table.")
    study_part = {k: table[k] for k in _STUDY_KEYS if k in table}
    base_table = {k: v for k, v in table.items() if k not in _STUDY_KEYS}
    base_table.setdefault("name", name)
    keys = _validate(_StudyKeys, study_part)
    recipe_cls = recipe_model()
    unknown = sorted(set(base_table) - set(recipe_cls.model_fields))
    if unknown:
        valid = sorted([*recipe_cls.model_fields, *_STUDY_KEYS])
        raise RecipeError(f"unknown key `{unknown[0]}`; valid top-level keys: {valid}.")
    base = _validate(recipe_cls, base_table)

    named = _named_cells(keys.cells)
    grid = list(_grid_combinations(keys.grid)) if keys.grid else [(None, {})]
    if not any(crossed for _, _, crossed in named):
        named = [(None, {}, True)] + named  # the grid (or the base recipe) is a cell set of its own
    variants = []
    for cell_name, cell_overrides, crossed in named:
        for grid_name, grid_overrides in grid if crossed else [(None, {})]:
            parts = [p for p in (cell_name, grid_name) if p]
            variants.append((",".join(parts) or base.name, {**cell_overrides, **grid_overrides}))
    names = [v[0] for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RecipeError(f"cell names must be unique; repeated: {duplicates}.")
    single = len(variants) == 1 and keys.repeats == 1

    cells = []
    for cell_name, overrides in variants:
        where = "" if single else f"cell {cell_name!r}: "
        cell_table = copy.deepcopy(base_table)
        for key, value in overrides.items():
            apply_override(cell_table, key, copy.deepcopy(value), what=f"{where}override")
        recipe = _validate(recipe_cls, cell_table, where=where)
        sources.resolve_paths(recipe, base_dir)
        for repeat in range(keys.repeats):
            repeated = recipe.model_copy(deep=True)
            repeated.train.seed = recipe.train.seed + repeat
            cells.append(Cell(name=cell_name, repeat=repeat, repeats=keys.repeats, overrides=dict(overrides),
                              recipe=repeated))
    # Everything above and the claims' and tables' checks read the recipe alone; the registry
    # checks below import TensorFlow, so a schema error is reported without it.
    config_keys = set()
    for cell in cells:
        config_keys |= set(flatten(cell.recipe.model_dump(mode="json")))
    claims_lib.check(keys.claims, cell_names=set(names) | {c.name for c in known_cells}, config_keys=config_keys)
    produced = _produced([*cells, *known_cells])
    claims_lib.check_metrics(keys.claims, produced)
    _check_tables(keys.tables, produced)
    if check_names:
        for cell in cells:
            if cell.repeat == 0:
                _check_names(cell.recipe, cells=names, cell=cell.name, where="" if single else f"cell {cell.name!r}: ")
    for i, figure in enumerate(keys.figures):
        from edgebnn.recipes import figures  # noqa: PLC0415 (matplotlib only when drawing)

        try:
            figures.check(figure, names=names)
        except RecipeError as e:
            raise RecipeError(f"`figures.{i}`: {e}") from None
    return Study(
        name=base.name, description=base.description, repeats=keys.repeats, cells=cells,
        tables=list(keys.tables), figures=list(keys.figures), base=base, single=single,
        paper=keys.paper, claims=list(keys.claims),
    )


def _override(table, assignment):
    """Apply one ``key.path=value`` (or ``(key, value)``) to a recipe table (grid keys are dotted themselves)."""
    key, value = parse_override(assignment) if isinstance(assignment, str) else assignment
    if key.startswith("grid.") and isinstance(table.get("grid"), dict):
        table["grid"][key[len("grid."):]] = value
    else:
        apply_override(table, key, value)


def _budget_overrides(table, budget, path):
    """The ``[budgets.NAME]`` overrides of a recipe table (the table loses its ``budgets``)."""
    budgets = table.pop("budgets", {})
    if not isinstance(budgets, dict) or not all(isinstance(b, dict) for b in budgets.values()):
        raise RecipeError(f"{path.name}: `budgets` must be tables of overrides, e.g. [budgets.quick] with "
                          f'"train.epochs" = 1.')
    if budget is None:
        return []
    if budget not in budgets:
        raise RecipeError(f"{path.name}: no budget named {budget!r}; the recipe's budgets: "
                          f"{sorted(budgets) or 'none (it runs at its defaults only)'}.")
    return list(budgets[budget].items())


#: Override keys holding file paths: relative values given on the command line are read from
#: the working directory (those in the recipe file from the file's folder).
_PATH_KEYS = (("model", "file"), ("data", "files"))


def _from_working_dir(assignment):
    """``assignment`` with a relative ``model.file`` / ``data.files`` path made absolute from the working directory."""
    key, value = parse_override(assignment) if isinstance(assignment, str) else assignment
    if tuple(key.split(".")[-2:]) in _PATH_KEYS and isinstance(value, str) and not Path(value).is_absolute():
        value = str(Path(value).expanduser().resolve())
    return key, value


def load(path, *, overrides=(), budget=None):
    """Read, override and validate the recipe file at ``path`` into a :class:`Study`.

    Args:
        path: a ``.toml`` recipe file.
        overrides: ``"key.path=value"`` strings applied to the file's table before
            validation (so ``grid.model.input_bits=[4]`` changes a grid, and
            ``train.epochs=1`` the base of every cell).
        budget: a named smaller budget of the recipe (its ``[budgets.NAME]`` table of
            overrides, applied before ``overrides``); ``None`` runs the recipe's defaults
            (a paper recipe's defaults are the paper's budget).

    Raises:
        RecipeError: unreadable TOML, unknown keys or bad values (naming cell and key).
    """
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: not valid TOML ({e}).") from e
    if not table:
        raise RecipeError(f"{path}: the recipe file is empty (no keys); a recipe sets at least its [data], "
                          f"[model] and [train] sections.")
    dataset = (table.get("data") or {}).get("dataset")  # the recipe's own data, before any --set
    changes = [*_budget_overrides(table, budget, path), *overrides]
    try:
        known = expand(copy.deepcopy(table), name=path.stem, base_dir=path.parent,
                       check_names=False).cells if changes else ()
    except RecipeError as e:
        raise RecipeError(f"{path.name}: {e}") from e
    for assignment in changes:
        _override(table, _from_working_dir(assignment))
    try:
        study = expand(table, name=path.stem, known_cells=known, base_dir=path.parent)
    except RecipeError as e:
        raise RecipeError(f"{path.name}: {e}") from e
    study.recipe_dataset, study.budget = dataset, budget
    return study
