"""Per-cell evaluations of a study: one module per kind, in an explicit registry.

A recipe lists evaluations in top-level arrays named after their kind
(``[[attacks]]``, ``[[detection]]``, ``[[probes]]``, ``[[robustness]]``, ``[[certify]]``);
``clean`` runs once in every cell without a section. Each kind is a
:class:`~edgebnn.recipes.evaluations.base.Kind`: its recipe entry and checks, its
units, how it computes one, its console line, its ``report.md`` lines, its results
page section and its part in figures and deployment verification.

Adding a kind is its module and one entry in :data:`KINDS`; the recipe format, the
planner, the cache, the report, the console, the results page and the figures pick
it up (``tests/test_kinds.py`` adds one).
"""

from edgebnn.recipes.evaluations import attack, certify, clean, detection, probe, robustness
from edgebnn.recipes.evaluations.base import Kind, Result

#: Recipe key (a record's ``evaluation``) -> evaluation kind, in report order.
KINDS = {
    "clean": clean.KIND,
    "attacks": attack.KIND,
    "certify": certify.KIND,
    "detection": detection.KIND,
    "probes": probe.KIND,
    "robustness": robustness.KIND,
}



def entries(recipe):
    """``[(kind name, where, spec)]`` of a recipe's evaluations in registry order: a kind
    without a recipe section (clean) once with ``spec=None``, every other kind once per
    entry of its section (``where`` is ``"attacks.0"``)."""
    out = []
    for name, kind in KINDS.items():
        if kind.Spec is None:
            out.append((name, name, None))
        else:
            out += [(name, f"{name}.{i}", spec) for i, spec in enumerate(getattr(recipe, name))]
    return out


__all__ = ["KINDS", "Kind", "Result", "entries"]
