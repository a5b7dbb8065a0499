"""Ships the top-level ``recipes/`` folder inside the package (everything else is in pyproject.toml).

``recipes/`` stays the one source of the recipe files; building copies every ``*.toml``
below it, subfolders included, to ``edgebnn/recipes/shipped/`` in the wheel, where
:func:`edgebnn.recipes.recipe_dirs` finds them with ``importlib.resources``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RECIPES = Path(__file__).resolve().parent / "recipes"
SHIPPED = Path("edgebnn", "recipes", "shipped")


class BuildWithRecipes(build_py):
    """``build_py`` that also copies ``recipes/**/*.toml`` into the built package."""

    def run(self):
        super().run()
        for source in sorted(RECIPES.rglob("*.toml")):
            target = Path(self.build_lib) / SHIPPED / source.relative_to(RECIPES)
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildWithRecipes})
