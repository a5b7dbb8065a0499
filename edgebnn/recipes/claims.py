"""A paper's claims as data in its recipe, and their verdicts on a run's records.

A recipe states each claim it tests and the criterion that decides it as
``[[claims]]`` (written before any number is seen)::

    paper = "guan"

    [[claims]]
    id = "C1"
    claim = "Monte-Carlo dropout raises accuracy under FGSM"
    criterion = "accuracy_mc - accuracy >= 2 points for at least 1 of bnn, 2bit"
    require = 1                      # "all" (default) | "any" | at least k comparisons
    [[claims.compare]]
    left  = { metric = "accuracy_mc", match = { cell = "bnn", attack = "fgsm" } }
    op    = ">="
    right = { metric = "accuracy", match = { cell = "bnn", attack = "fgsm" } }
    margin = 0.02                    # in the metric's unit: accuracies are fractions
    [[claims.compare]]
    left  = { metric = "accuracy", match = { cell = "2bit", attack = "fgsm" } }
    op    = ">="
    value = 0.10                     # a constant instead of `right`

A comparison holds when ``left op right + margin``. A reference ``{metric, match}``
selects records as a table's paper values do (record keys first, then the cell's
dotted configuration keys) and averages the metric over repeats; a reference that
matches no record, or records of more than one result (say both the single-sample
and the EOT attack), leaves its claim *not evaluated* instead of passing silently.

A claim **holds** when at least ``require`` comparisons hold, **holds in part** when
at least one but fewer hold, and **does not hold** when none does.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from edgebnn.recipes.records import lookup, same
from edgebnn.recipes.schema import RecipeError, Section

#: Papers with a section on the results page (``paper = ...`` in a recipe).
PAPERS = {"guan": "Guan", "galloway": "Galloway et al.", "panda": "Panda et al."}

#: Rounding slack of ``>=`` and ``<=``: metrics are ratios of counts, so a tie such as
#: 57/100 >= 55/100 + 0.02 is a tie, not a float rounding error away from one.
TIE = 1e-9

#: Comparison operators.
OPS = {">=": lambda a, b: a >= b - TIE, ">": lambda a, b: a > b + TIE,
       "<=": lambda a, b: a <= b + TIE, "<": lambda a, b: a < b - TIE}

#: Record keys that tell one result of a run from another (``repeat`` aside): a
#: reference must select records that agree on all of them.
IDENTITY_KEYS = ("cell", "evaluation", "attack", "eps", "targets", "source", "labels", "gradient", "iterations", "layer",
                 "implementation")

#: Keys every record may carry besides its metrics; a ``match`` may use these and
#: the cells' dotted configuration keys.
RECORD_KEYS = (*IDENTITY_KEYS, "repeat")

HOLDS, IN_PART, DOES_NOT_HOLD, NOT_EVALUATED = "holds", "holds in part", "does not hold", "not evaluated"


class Ref(Section):
    """One number of a report: ``metric`` of the records that ``match`` selects (mean over repeats)."""

    metric: str
    match: dict[str, Any]


class Comparison(Section):
    """``left op right + margin`` (``right`` a reference, or the constant ``value``)."""

    left: Ref
    op: Literal[tuple(OPS)]
    right: Ref | None = None
    value: Annotated[float, Field(allow_inf_nan=False)] | None = None
    margin: Annotated[float, Field(allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _one_right_side(self):
        if (self.right is None) == (self.value is None):
            raise ValueError("right: give exactly one of `right` (a reference) and `value` (a constant)")
        return self


class ClaimSpec(Section):
    """One claim of the paper, the criterion in words, and the comparisons that decide it."""

    id: Annotated[str, Field(min_length=1)]
    claim: Annotated[str, Field(min_length=1)]
    criterion: Annotated[str, Field(min_length=1)]
    require: Literal["all", "any"] | Annotated[int, Field(ge=1)] = "all"
    compare: Annotated[list[Comparison], Field(min_length=1)]

    @model_validator(mode="after")
    def _require_fits(self):
        if isinstance(self.require, int) and self.require > len(self.compare):
            raise ValueError(f"require: {self.require} comparisons required, but the claim has only "
                             f"{len(self.compare)}")
        return self

    @property
    def required(self):
        """How many comparisons must hold."""
        return {"all": len(self.compare), "any": 1}.get(self.require, self.require)


def check(claims, *, cell_names, config_keys):
    """Load-time checks across claims: unique ids, ``match`` keys records or configs carry, known cells.

    Args:
        claims: the recipe's :class:`ClaimSpec` list.
        cell_names: names of the study's cells.
        config_keys: dotted configuration keys of the cells (``model.precision``, ...).

    Raises:
        RecipeError: naming the claim (``claims.I``) and the key.
    """
    seen = set()
    allowed = set(RECORD_KEYS) | set(config_keys)
    for i, claim in enumerate(claims):
        if claim.id in seen:
            raise RecipeError(f"`claims.{i}.id`: {claim.id!r} is used by an earlier claim; ids must be unique.")
        seen.add(claim.id)
        for j, comparison in enumerate(claim.compare):
            for side in ("left", "right"):
                ref = getattr(comparison, side)
                if ref is None:
                    continue
                where = f"claims.{i}.compare.{j}.{side}.match"
                for key, value in ref.match.items():
                    if key not in allowed:
                        raise RecipeError(f"unknown key `{where}.{key}`; records carry {sorted(RECORD_KEYS)} and "
                                          f"the cells' configuration keys (e.g. `model.precision`).")
                    if key == "cell" and value not in cell_names:
                        raise RecipeError(f"`{where}.cell`: no cell named {value!r}; cells: {sorted(cell_names)}.")


def _describe(ref):
    return f"{ref.metric}[" + ", ".join(f"{k}={v}" for k, v in ref.match.items()) + "]"


def resolve(ref, records, configs):
    """``(mean, n, None)`` of ``ref`` over ``records``, or ``(None, 0, reason)`` when it selects no single result.

    Args:
        ref: a :class:`Ref`.
        records: a report's records.
        configs: ``{cell name: flat configuration}`` for dotted keys.
    """
    chosen = [r for r in records if r.get(ref.metric) is not None
              and all(same(lookup(r, k, configs), v) for k, v in ref.match.items())]
    if not chosen:
        return None, 0, f"{_describe(ref)} matched no record"
    identities = {tuple(repr(r.get(k)) for k in IDENTITY_KEYS) for r in chosen}
    if len(identities) > 1:
        differ = [k for i, k in enumerate(IDENTITY_KEYS) if len({ident[i] for ident in identities}) > 1]
        return None, 0, (f"{_describe(ref)} matched {len(identities)} different results (differing in "
                         f"{', '.join(differ)}); add those keys to `match`")
    values = [float(r[ref.metric]) for r in chosen]
    return sum(values) / len(values), len(values), None


def is_percent(metric):
    """Whether ``metric`` is a fraction the page shows in percent (accuracies, success rates)."""
    return "accuracy" in metric or metric == "success_rate"


def _fmt(value, percent):
    return f"{100 * value:.1f}%" if percent else f"{value:.4g}"


def _comparison_label(comparison):
    """``bnn fgsm single`` (the left match), plus `` vs 4bit`` where the right match differs."""
    def words(match, skip=()):
        ordered = ([match["cell"]] if "cell" in match else []) + [v for k, v in match.items() if k != "cell"]
        return [str(v) for v in ordered if v not in skip]

    left = words(comparison.left.match)
    label = " ".join(left) or comparison.left.metric
    if comparison.right is not None:
        differ = {k: v for k, v in comparison.right.match.items() if comparison.left.match.get(k) != v}
        if differ:
            label += " vs " + " ".join(words(differ))
    return label


def evaluate_comparison(comparison, records, configs):
    """One comparison's numbers and outcome: a dict with ``left``, ``right``, ``holds`` (or a ``reason``)."""
    left, n_left, reason = resolve(comparison.left, records, configs)
    right, n_right, right_reason = (comparison.value, None, None) if comparison.right is None else \
        resolve(comparison.right, records, configs)
    reason = reason or right_reason
    percent = is_percent(comparison.left.metric)
    entry = {"label": _comparison_label(comparison), "left_metric": comparison.left.metric,
             "left_match": comparison.left.match, "op": comparison.op,
             "right_metric": None if comparison.right is None else comparison.right.metric,
             "right_match": None if comparison.right is None else comparison.right.match,
             "margin": comparison.margin, "left": left, "right": right, "left_n": n_left, "right_n": n_right,
             "percent": percent}
    if reason is not None:
        return {**entry, "holds": None, "reason": reason, "text": f"{entry['label']}: not evaluated ({reason})"}
    holds = bool(OPS[comparison.op](left, right + comparison.margin))
    margin = ""
    if comparison.margin:
        sign = "+" if comparison.margin > 0 else "-"
        size = abs(comparison.margin) * (100 if percent else 1)
        margin = f" {sign} {size:.1f}" if percent else f" {sign} {size:.4g}"
    named = comparison.right is not None and comparison.right.metric != comparison.left.metric
    left_text = (f"{comparison.left.metric} " if named else "") + _fmt(left, percent)
    right_text = (f"{comparison.right.metric} " if named else "") + _fmt(right, percent)
    text = f"{entry['label']}: {left_text} {comparison.op} {right_text}{margin} -> {'yes' if holds else 'no'}"
    return {**entry, "holds": holds, "reason": None, "text": text}


def evaluate(claim, records, configs):
    """The verdict of one claim on a report's records.

    Returns:
        A JSON-able dict: ``id``, ``claim``, ``criterion``, ``require`` (the number of
        comparisons required), ``held`` (how many held), ``verdict`` (``holds``,
        ``holds in part``, ``does not hold``, or ``not evaluated: <reason>``) and
        ``comparisons`` (each with its values and a one-line ``text``).
    """
    comparisons = [evaluate_comparison(c, records, configs) for c in claim.compare]
    held = sum(1 for c in comparisons if c["holds"])
    missing = [c["reason"] for c in comparisons if c["holds"] is None]
    if missing:
        verdict = f"{NOT_EVALUATED}: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    elif held >= claim.required:
        verdict = HOLDS
    elif held > 0:
        verdict = IN_PART
    else:
        verdict = DOES_NOT_HOLD
    return {"id": claim.id, "claim": claim.claim, "criterion": claim.criterion, "require": claim.required,
            "of": len(comparisons), "held": held, "verdict": verdict, "comparisons": comparisons}


def evaluate_all(claims, records, configs):
    """:func:`evaluate` of every claim, in recipe order."""
    return [evaluate(c, records, configs) for c in claims]


def to_markdown(results, *, heading="## Claims"):
    """Markdown lines of evaluated claims: the claim, its criterion, the verdict, each comparison."""
    lines = [heading, ""] if heading else []
    if not results:
        return lines + ["(the recipe states no claims)", ""]
    for r in results:
        lines += [f"- **{r['id']}** {r['claim']}", f"  - criterion: {r['criterion']}",
                  f"  - verdict: **{r['verdict']}** ({r['held']} of {r['of']} comparisons hold, "
                  f"{r['require']} required)"]
        lines += [f"    - {c['text']}" for c in r["comparisons"]]
    return lines + [""]

