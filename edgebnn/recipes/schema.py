"""The base of every recipe section: a pydantic model with unknown keys forbidden.

Recipe values come from TOML, so validation is strict (no string-to-number coercion,
no ``true`` for ``1``); ints are accepted where a float is expected.
"""

from pydantic import BaseModel, ConfigDict

from edgebnn import EdgebnnError


class RecipeError(EdgebnnError):
    """A recipe file or override is invalid."""


class Section(BaseModel):
    """A table of a recipe file: typed keys with defaults, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)


class OpenSection(BaseModel):
    """A table whose extra keys are options passed on (e.g. an attack's keyword arguments)."""

    model_config = ConfigDict(extra="allow", strict=True, validate_default=False)

    @property
    def options(self):
        """The extra keys, in file order."""
        return dict(self.model_extra or {})
