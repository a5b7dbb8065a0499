"""Where a cell's model and data come from, besides the zoo's families and the built-in datasets.

A recipe's ``[model]`` takes one of three sources (:func:`model_source`):

- ``family``: a builder of :mod:`edgebnn.zoo` (or of another package, through the
  entry point group :data:`edgebnn.zoo.ENTRY_POINT_GROUP`), called with ``precision``,
  ``input_bits``, the data's class count and image shape, and ``model.options``;
- ``builder = "package.module:function"``: your function returning an uncompiled Keras
  model that maps ``[0, 1]`` pixels to logits, called with ``model.options`` only;
- ``file = "my.keras"``: your saved model (``.keras`` or ``.h5``), loaded with Larq's and
  edgebnn's layers registered. It is trained (fine-tuned, from its saved weights) only
  when the recipe has a ``[train]`` table; otherwise it is evaluated, attacked,
  certified and deployed as saved.

A recipe's ``[data]`` takes a built-in dataset, any tensorflow-datasets image
classification name (``data.dataset``), or ``data.files = "data.npz"`` (arrays
``x_train``, ``y_train``, ``x_test``, ``y_test``; see :func:`edgebnn.data.load_npz`).

Relative paths are read from the recipe file's folder. Store keys hold the files' sha256,
not their paths, so a moved file still hits the cache and a changed one does not.
"""

import functools
import importlib
import inspect
from pathlib import Path

from edgebnn.recipes.schema import RecipeError
from edgebnn.recipes.store import file_sha256

#: File suffixes a saved model may have.
MODEL_SUFFIXES = (".keras", ".h5")
#: File suffix of a data file.
DATA_SUFFIX = ".npz"
#: The zoo builders' keywords the runner passes itself (not ``model.options``).
FAMILY_KEYWORDS = ("precision", "input_bits", "num_classes", "input_shape")


def model_source(model):
    """``"file"``, ``"builder"`` or ``"family"``: where the ``[model]`` section ``model`` takes its model."""
    if model.file is not None:
        return "file"
    if model.builder is not None:
        return "builder"
    return "family"


def trains(recipe):
    """Whether the runner trains ``recipe``'s model: always, except a saved model without a ``[train]`` table."""
    return recipe.model.file is None or "train" in recipe.model_fields_set


@functools.lru_cache(maxsize=64)
def _sha256(path, mtime_ns, size):  # noqa: ARG001 (the file's stamp invalidates the cache)
    return file_sha256(path)


def sha256(path):
    """The sha256 of the file at ``path`` (hashed again when the file changes)."""
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_mtime_ns, stat.st_size)


def model_part(recipe):
    """The ``[model]`` section as it enters store keys: a file model by its sha256, not its path."""
    part = recipe.model.model_dump(mode="json")
    if recipe.model.file is not None:
        part["file_sha256"] = sha256(part.pop("file"))
    return part


def data_part(recipe):
    """The ``[data]`` section as it enters store keys: not where the files are (``data_dir``), and a
    data file by its sha256."""
    part = recipe.data.model_dump(mode="json")
    part.pop("data_dir")
    if recipe.data.files is not None:
        part["files_sha256"] = sha256(part.pop("files"))
    return part


def resolve_paths(recipe, base_dir):
    """Make ``recipe``'s ``model.file`` and ``data.files`` absolute, relative ones read from ``base_dir``."""
    if base_dir is None:
        return
    for section, key in ((recipe.model, "file"), (recipe.data, "files")):
        value = getattr(section, key)
        if value is not None and not Path(value).expanduser().is_absolute():
            setattr(section, key, str((Path(base_dir) / value).resolve()))
        elif value is not None:
            setattr(section, key, str(Path(value).expanduser()))


def import_builder(spec):
    """The function named by ``"package.module:function"``.

    Raises:
        RecipeError: a malformed name, a module that cannot be imported, or no such function.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise RecipeError(f'`model.builder` must be "package.module:function", got {spec!r}.')
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RecipeError(f"`model.builder`: cannot import module {module_name!r} ({e}); is its folder on "
                          f"PYTHONPATH or its package installed?") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise RecipeError(f"`model.builder`: module {module_name!r} has no {attr!r}.")
        target = getattr(target, part)
    if not callable(target):
        raise RecipeError(f"`model.builder`: {spec!r} is not callable, got {type(target).__name__}.")
    return target


def check(model, *, where=""):
    """Check a ``file`` or ``builder`` ``[model]`` section before anything runs: the file exists and is a
    saved model, the function imports and takes ``model.options``.

    Raises:
        RecipeError: naming the key.
    """
    if model.file is not None:
        path = Path(model.file)
        if path.suffix not in MODEL_SUFFIXES:
            raise RecipeError(f"{where}`model.file` must be a {' or '.join(MODEL_SUFFIXES)} file, got {str(path)!r}.")
        if not path.is_file():
            raise RecipeError(f"{where}`model.file`: no model file at {str(path)!r}.")
        return
    try:
        function = import_builder(model.builder)
    except RecipeError as e:
        raise RecipeError(f"{where}{e}") from None
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    accepted = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    unknown = sorted(set(model.options) - accepted)
    if unknown:
        raise RecipeError(f"{where}unknown key `model.options.{unknown[0]}` for {model.builder}; "
                          f"valid keys: {sorted(accepted)}.")
    required = sorted(p.name for p in parameters if p.default is p.empty and p.kind is not p.VAR_POSITIONAL
                      and p.name not in model.options)
    if required:
        raise RecipeError(f"{where}`model.options.{required[0]}` is required by {model.builder}.")


def check_data_file(config, *, where=""):
    """Check ``data.files`` names an ``.npz`` file (its arrays are checked when loaded, before training)."""
    path = Path(config.files)
    if path.suffix != DATA_SUFFIX:
        raise RecipeError(f"{where}`data.files` must be an {DATA_SUFFIX} file, got {str(path)!r}.")
    if not path.is_file():
        raise RecipeError(f"{where}`data.files`: no data file at {str(path)!r}.")
    if config.split is not None:
        raise RecipeError(f"{where}`data.split` carves a built-in dataset; with `data.files` your file holds "
                          f"the split (use `data.train_limit` / `data.test_limit` for subsets).")


def load_file_model(path):
    """The saved model at ``path``, with Larq's and edgebnn's layers registered.

    Raises:
        RecipeError: Keras cannot read the file.
    """
    import edgebnn  # noqa: PLC0415

    try:
        return edgebnn.load_model(path)
    except (ValueError, TypeError, OSError, KeyError) as e:
        first_line = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise RecipeError(f"`model.file`: cannot load {str(path)!r} as a Keras model ({first_line}).") from None


def build(recipe, dataset):
    """The model of a ``file`` or ``builder`` ``[model]`` section (a builder's seeded by ``train.seed``).

    Raises:
        RecipeError: the file cannot be loaded, or the function does not return a Keras model.
    """
    import tensorflow as tf  # noqa: PLC0415

    if recipe.model.file is not None:
        return load_file_model(recipe.model.file)
    tf.keras.utils.set_random_seed(recipe.train.seed)
    model = import_builder(recipe.model.builder)(**recipe.model.options)
    if not isinstance(model, tf.keras.Model):
        raise RecipeError(f"`model.builder`: {recipe.model.builder} returned a {type(model).__name__}, "
                          f"not a tf.keras.Model (edgebnn needs Keras 2 / tf_keras models).")
    return model


def check_fits(model, dataset, *, key):
    """The model takes ``dataset``'s images and gives one logit per class.

    Raises:
        RecipeError: naming ``key`` (``model.file`` or ``model.builder``), the model's and the data's shapes.
    """
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise RecipeError(f"`{key}`: the model must have one input and one output (a built functional or "
                          f"Sequential model).")
    input_shape = tuple(model.input_shape[1:])
    if len(input_shape) != len(dataset.image_shape) or any(
            m is not None and m != d for m, d in zip(input_shape, dataset.image_shape)):
        raise RecipeError(f"`{key}`: the model takes inputs of shape {input_shape}, but the data's images are "
                          f"{tuple(dataset.image_shape)}.")
    output_shape = tuple(model.output_shape[1:])
    if output_shape != (dataset.num_classes,):
        raise RecipeError(f"`{key}`: the model's output has shape {output_shape}, but the data has "
                          f"{dataset.num_classes} classes (expected ({dataset.num_classes},), one logit per class).")
    last = model.layers[-1] if model.layers else None
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if activation == "softmax":
        raise RecipeError(f"`{key}`: the model ends in a softmax; edgebnn's losses and attacks take logits "
                          f"(save the model without its final softmax).")
