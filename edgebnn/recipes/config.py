"""Recipe files: TOML validated into dataclasses.

A recipe names a dataset, a model from :mod:`edgebnn.zoo`, a training budget, the
attacks to evaluate (names from :mod:`edgebnn.attacks`) and the deployment target.
Unknown keys and bad values are errors that name the key.
"""

import dataclasses
import inspect
import math
import sys
from pathlib import Path

from edgebnn import EdgebnnError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib


class RecipeError(EdgebnnError):
    """A recipe file or override is invalid."""


@dataclasses.dataclass
class DataConfig:
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    seed: int = 0


@dataclasses.dataclass
class ModelConfig:
    family: str = "panda_fcn2"
    precision: str = "binary"
    input_bits: int | None = None
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0


@dataclasses.dataclass
class AttackConfig:
    name: str
    eps: list
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class EvaluationConfig:
    limit: int | None = 1000
    batch_size: int = 500


@dataclasses.dataclass
class DeployConfig:
    target: str = "lce"
    weights: str = "exact"
    strip: bool = False
    verify: bool = True


@dataclasses.dataclass
class Recipe:
    name: str
    description: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    attacks: list = dataclasses.field(default_factory=list)
    deploy: DeployConfig = dataclasses.field(default_factory=DeployConfig)

    def to_dict(self):
        return dataclasses.asdict(self)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
             "evaluation": EvaluationConfig, "deploy": DeployConfig}
_POSITIVE_INTS = {"train_limit", "test_limit", "epochs", "batch_size", "limit"}


def _check_type(key, value, annotation):
    """Check ``value`` against a field annotation such as ``int | None``."""
    allowed = getattr(annotation, "__args__", (annotation,))
    if value is None:
        if type(None) not in allowed:
            raise RecipeError(f"`{key}` must not be empty.")
        return value
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not any(t is not type(None) and isinstance(value, t) and not (t is int and isinstance(value, bool))
               for t in allowed):
        names = " or ".join("none" if t is type(None) else t.__name__ for t in allowed)
        raise RecipeError(f"`{key}` must be {names}, got {value!r}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(f"`{key}` must be finite, got {value!r}.")
    if key.rsplit(".", 1)[-1] in _POSITIVE_INTS and value < 1:
        raise RecipeError(f"`{key}` must be >= 1, got {value!r}.")
    return value


def _build(cls, table, prefix):
    if not isinstance(table, dict):
        raise RecipeError(f"`{prefix}` must be a table, got {table!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise RecipeError(f"unknown key `{prefix}.{unknown[0]}`; valid keys in [{prefix}]: {sorted(fields)}.")
    values = {}
    for name, value in table.items():
        values[name] = _check_type(f"{prefix}.{name}", value, fields[name].type)
    try:
        return cls(**values)
    except TypeError as e:
        raise RecipeError(f"[{prefix}]: {e}.") from e


def _validate_attack(index, table):
    from edgebnn import attacks  # noqa: PLC0415 (imports TensorFlow)

    prefix = f"attacks.{index}"
    if not isinstance(table, dict):
        raise RecipeError(f"`{prefix}` must be a table, got {table!r}.")
    if "name" not in table:
        raise RecipeError(f"`{prefix}` needs `name`.")
    name = table["name"]
    try:
        fn = attacks.get(name)
    except ValueError as e:
        raise RecipeError(f"`{prefix}.name`: {e}") from e
    options = {k: v for k, v in table.items() if k not in ("name", "eps")}
    if name in attacks.NO_EPS:
        if "eps" in table:
            raise RecipeError(f"`{prefix}.eps`: attack {name!r} has no eps budget; remove the key.")
        return AttackConfig(name=name, eps=[None], options=_check_options(prefix, name, fn, options))
    if "eps" not in table:
        raise RecipeError(f"`{prefix}` needs `eps` (a list of numbers).")
    eps = table["eps"]
    if isinstance(eps, (int, float)) and not isinstance(eps, bool):
        eps = [eps]
    if not isinstance(eps, list) or not eps or not all(
        isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) and e >= 0 for e in eps
    ):
        raise RecipeError(f"`{prefix}.eps` must be a non-empty list of numbers >= 0, got {table['eps']!r}.")
    return AttackConfig(name=name, eps=[float(e) for e in eps], options=_check_options(prefix, name, fn, options))


def _check_options(prefix, name, fn, options):
    accepted = {p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}
    accepted -= {"eps", "y"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise RecipeError(f"unknown key `{prefix}.{unknown[0]}` for attack {name!r}; valid keys: {sorted(accepted)}.")
    return options


def _validate_names(recipe):
    from edgebnn import data, zoo  # noqa: PLC0415 (imports TensorFlow)

    if recipe.data.dataset not in data.DATASETS:
        raise RecipeError(f"`data.dataset` must be one of {sorted(data.DATASETS)}, got {recipe.data.dataset!r}.")
    try:
        precisions = zoo.precisions(recipe.model.family)
    except ValueError as e:
        raise RecipeError(f"`model.family`: {e}") from e
    if recipe.model.precision not in precisions:
        raise RecipeError(
            f"`model.precision` must be one of {list(precisions)} for {recipe.model.family}, got {recipe.model.precision!r}."
        )
    builder = zoo.get(recipe.model.family)
    accepted = {p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY}
    accepted -= {"precision", "input_bits", "num_classes", "input_shape"}
    unknown = sorted(set(recipe.model.options) - accepted)
    if unknown:
        raise RecipeError(
            f"unknown key `model.options.{unknown[0]}` for {recipe.model.family}; valid keys: {sorted(accepted)}."
        )
    bits = recipe.model.input_bits
    if bits is not None and not 1 <= bits <= 8:
        raise RecipeError(f"`model.input_bits` must be in [1, 8] or absent, got {bits}.")
    from edgebnn.deploy import convert  # noqa: PLC0415

    if recipe.deploy.target not in convert.TARGETS:
        raise RecipeError(f"`deploy.target` must be one of {list(convert.TARGETS)}, got {recipe.deploy.target!r}.")
    if recipe.deploy.weights not in convert.WEIGHTS:
        raise RecipeError(f"`deploy.weights` must be one of {list(convert.WEIGHTS)}, got {recipe.deploy.weights!r}.")


def from_dict(table, *, name):
    """Validate a parsed recipe table into a :class:`Recipe`."""
    allowed = {"name", "description", "attacks", *_SECTIONS}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RecipeError(f"unknown key `{unknown[0]}`; valid top-level keys: {sorted(allowed)}.")
    sections = {key: _build(cls, table.get(key, {}), key) for key, cls in _SECTIONS.items()}
    attacks_table = table.get("attacks", [])
    if not isinstance(attacks_table, list):
        raise RecipeError("`attacks` must be an array of tables ([[attacks]]).")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise RecipeError(f"`description` must be a string, got {description!r}.")
    recipe = Recipe(
        name=table.get("name", name),
        description=description,
        attacks=[_validate_attack(i, a) for i, a in enumerate(attacks_table)],
        **sections,
    )
    _validate_names(recipe)
    return recipe


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


def apply_override(table, key, value):
    """Set ``table[a][b]... = value`` for ``key = "a.b..."``; list items by index (``attacks.0.eps``)."""
    parts = key.split(".")
    node = table
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(f"--set {key}: `{'.'.join(parts[:i + 1])}` is not an index of a list of {len(node)}.")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise RecipeError(f"--set {key}: `{'.'.join(parts[:i + 1])}` is not a table.")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise RecipeError(f"--set {key}: `{last}` is not an index of a list of {len(node)}.")
        node[int(last)] = value
    else:
        node[last] = value


def load(path, *, overrides=()):
    """Read, override and validate the recipe file at ``path``.

    Args:
        path: a ``.toml`` recipe file.
        overrides: ``"key.path=value"`` strings applied before validation.

    Raises:
        RecipeError: unreadable TOML, unknown keys or bad values (the message names the key).
    """
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: not valid TOML ({e}).") from e
    for assignment in overrides:
        apply_override(table, *parse_override(assignment))
    try:
        return from_dict(table, name=path.stem)
    except RecipeError as e:
        raise RecipeError(f"{path.name}: {e}") from e
