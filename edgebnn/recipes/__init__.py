"""Recipes: TOML files that drive the pipeline, and the ``python -m edgebnn.recipes`` CLI.

A recipe is a study: one or more cells (a grid, named cells, repeats), each trained,
evaluated and optionally deployed, with a cached, resumable run folder and a report
laid out as the recipe says (:mod:`~edgebnn.recipes.config`, :mod:`~edgebnn.recipes.runner`).

Recipe files live in the top-level ``recipes/`` folder of the repository (or any
folder named by ``EDGEBNN_RECIPES_DIR``), in subfolders too: ``recipes/guan/table1.toml``
is the recipe ``guan/table1``; ``run`` also accepts a path to a file. An installed
wheel carries a copy of that folder as the package resource ``edgebnn.recipes/shipped``
(copied by ``setup.py`` at build time), so ``list`` and ``run`` work from any folder.
"""

import os
from importlib import resources
from pathlib import Path

RECIPES_DIR_ENV = "EDGEBNN_RECIPES_DIR"
#: Package resource folder holding the recipes shipped in a wheel.
SHIPPED = "shipped"


def _shipped_dir():
    """The recipes shipped with an installed package, or ``None`` (a checkout has none).

    Wheels install as plain folders, so the resource is a real path.
    """
    folder = resources.files(__name__) / SHIPPED
    return Path(str(folder)) if folder.is_dir() else None


def recipe_dirs():
    """Folders searched for recipe files, in order."""
    dirs = []
    if os.environ.get(RECIPES_DIR_ENV):
        dirs.append(Path(os.environ[RECIPES_DIR_ENV]))
    dirs += [Path.cwd() / "recipes", Path(__file__).resolve().parents[2] / "recipes"]
    shipped = _shipped_dir()
    if shipped is not None:
        dirs.append(shipped)
    unique = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def available():
    """``{name: path}`` of every recipe file found in :func:`recipe_dirs` (first one wins).

    A recipe's name is its path below the folder, without ``.toml``, with ``/`` between
    subfolders (``guan/table1``).
    """
    found = {}
    for folder in recipe_dirs():
        for path in sorted(folder.rglob("*.toml")):
            found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    return found


def find(name_or_path):
    """Path of the recipe called ``name_or_path`` (or that file); raises listing valid names."""
    from edgebnn.recipes.config import RecipeError  # noqa: PLC0415

    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        return path
    recipes = available()
    if name_or_path not in recipes:
        raise RecipeError(f"unknown recipe {name_or_path!r}; available: {sorted(recipes)}")
    return recipes[name_or_path]
