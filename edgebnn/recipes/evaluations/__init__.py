"""Per-cell evaluations of a study: one module per kind, in an explicit registry.

A recipe lists evaluations in top-level arrays named after their kind
(``[[attacks]]``, ``[[detection]]``, ``[[probes]]``, ``[[robustness]]``, ``[[certify]]``). A kind is a module with:

- ``Spec``: the pydantic model of one entry (unknown keys forbidden, or passed on as
  options where the kind says so);
- ``check(spec, *, recipe, cells, cell, where)``: checks against registries and other
  cells, raising :class:`~edgebnn.recipes.schema.RecipeError` naming ``where.key``;
  optionally ``check_model(spec, model, *, where)`` against the cell's built model;
- ``units(spec, *, recipe)``: JSON-able parameters of each separately cached result
  (e.g. one per eps);
- ``run(unit, ctx)``: compute one unit from an
  :class:`~edgebnn.recipes.evaluations.common.EvalContext`, returning
  ``{"labels": {...}, "metrics": {...}, "arrays": {...}}``;
- ``label(unit)``, ``cost(unit, *, recipe, n_eval)`` and ``pool_size(unit)`` (test
  images it needs apart from the evaluated ones).

Adding a kind (a masking check, a certification) is one module and one entry in
:data:`KINDS`; the recipe format, cache, report and console pick it up.
"""

from edgebnn.recipes.evaluations import attack, certify, clean, detection, probe, robustness

#: Recipe key -> evaluation kind module.
KINDS = {
    "attacks": attack,
    "certify": certify,
    "detection": detection,
    "probes": probe,
    "robustness": robustness,
}

__all__ = ["KINDS", "clean"]
