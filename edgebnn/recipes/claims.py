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
and the EOT attack), leaves its claim *not evaluated* instead of passing silently. A
reference naming a metric that no evaluation of the cells it may match produces
(each evaluation kind declares its metrics) is an error when the recipe loads
(:func:`check_metrics`), before anything is trained.

Every comparison carries a 95% interval on ``left - (right + margin)`` (see
:func:`interval`): a paired bootstrap over the evaluated images when both sides'
per-image outcomes are known, else over the repeats (``repeats`` > 1), else the
binomial interval of a proportion over the images it was measured on. A comparison
**holds** when its whole interval is on the holding side, **fails** when the whole
interval is on the other side, and is **undecided** when the interval straddles the
bound. A claim **holds** when at least ``require`` comparisons hold; it **does not hold
(k of n, r required)** when even the undecided ones could not make up the required
count; otherwise it is **inconclusive**.

Quality gates come first: a claim whose numbers come from a model whose clean accuracy
is more than :data:`UNDERTRAINED_POINTS` below the paper's, or near chance, is **not
evaluated: under-trained** (the model is named with ours and the paper's clean accuracy).

A claim marked ``extension = true`` is not one of the paper's own (a PGD or strong-attack
variant, a masking or EOT check): the results page counts it apart.
"""

import math
import re
import statistics
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from edgebnn.recipes.records import could_match, lookup, same
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

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_EVALUATED = "holds", "does not hold", "inconclusive", "not evaluated"

#: Verdicts in the order a summary counts them.
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_EVALUATED)

#: Coverage of every comparison's interval.
CONFIDENCE = 0.95

#: Resamples of the paired bootstrap over images (seeded: the same records give the same verdicts).
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0

#: A model this many points (as a fraction) below the paper's clean accuracy is under-trained.
UNDERTRAINED_POINTS = 0.05

#: A model within this many points of chance (1 / classes) is near chance.
CHANCE_POINTS = 0.10

#: Record keys holding the number of images a proportion metric was measured on.
COUNT_KEYS = {"accuracy": "images", "accuracy_eval": "images_eval", "accuracy_mc": "images",
              "success_rate": "attempted", "accuracy_tflite": "images"}


class Ref(Section):
    """One number of a report: ``metric`` of the records that ``match`` selects (mean over repeats).

    With ``minus``, the difference of two such numbers (``metric[match] - minus``), paired
    by repeat: what a claim about a gap needs (a difference of differences compares two).
    """

    metric: str
    match: dict[str, Any]
    minus: "Ref | None" = None


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
    extension: bool = False

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
            for name in ("left", "right"):
                ref, where = getattr(comparison, name), f"claims.{i}.compare.{j}.{name}"
                while ref is not None:
                    _check_match(ref.match, where=f"{where}.match", allowed=allowed, cell_names=cell_names)
                    ref, where = ref.minus, f"{where}.minus"


def check_metrics(claims, produced):
    """Load-time check that every reference of every claim names a metric its records will carry.

    Args:
        claims: the recipe's :class:`ClaimSpec` list.
        produced: ``[(cell name, flat configuration, kind, metric names)]`` of each evaluation entry the
            study's cells run (:meth:`~edgebnn.recipes.evaluations.base.Kind.metrics`), and of the cells
            of the recipe at its defaults when a budget or ``--set`` leaves some out.

    Raises:
        RecipeError: naming the claim (``claims.I``, its id), the metric and the metrics the records it
            matches carry.
    """
    for i, claim in enumerate(claims):
        for j, comparison in enumerate(claim.compare):
            for name in ("left", "right"):
                ref, where = getattr(comparison, name), f"claims.{i}.compare.{j}.{name}"
                while ref is not None:
                    available = metrics_matching(produced, ref.match)
                    if ref.metric not in available:
                        raise RecipeError(
                            f"`{where}.metric`: claim {claim.id!r} names the metric {ref.metric!r}, which no record "
                            f"it matches will carry; {carried(available)}.")
                    ref, where = ref.minus, f"{where}.minus"


def metrics_matching(produced, where, *, kinds=None):
    """The metric names of the entries of ``produced`` (see :func:`check_metrics`) whose records may
    match ``where`` (:func:`~edgebnn.recipes.records.could_match`), of evaluation ``kinds`` only if given."""
    return sorted({metric for cell, config, kind, metrics in produced
                   if (kinds is None or kind in kinds) and could_match(cell, config, kind, where)
                   for metric in metrics})


def carried(available):
    """``"they carry: a, b"`` of the metric names ``available`` to a reference or a table, or why there are none."""
    return f"they carry: {', '.join(available)}" if available else "no evaluation of the study matches it"


def _check_match(match, *, where, allowed, cell_names):
    for key, value in match.items():
        if key not in allowed:
            raise RecipeError(f"unknown key `{where}.{key}`; records carry {sorted(RECORD_KEYS)} and "
                              f"the cells' configuration keys (e.g. `model.precision`).")
        if key == "cell" and value not in cell_names:
            raise RecipeError(f"`{where}.cell`: no cell named {value!r}; cells: {sorted(cell_names)}.")


def _describe(ref):
    text = f"{ref.metric}[" + ", ".join(f"{k}={v}" for k, v in ref.match.items()) + "]"
    return text if ref.minus is None else f"({text} - {_describe(ref.minus)})"


def _metric_name(ref):
    """``metric``, or ``metric (a minus b)`` for a difference, ``a`` and ``b`` what tells its matches apart."""
    if ref.minus is None:
        return ref.metric

    def differing(match, other):
        return " ".join(str(v) for k, v in match.items() if other.get(k) != v)

    first = differing(ref.match, ref.minus.match) or ref.metric
    second = differing(ref.minus.match, ref.match) or ref.minus.metric
    return f"{ref.metric} ({first} minus {second})"


def select(ref, records, configs):
    """``(records, None)``: the records ``ref`` selects, or ``([], reason)`` when it selects no single result."""
    chosen = [r for r in records if r.get(ref.metric) is not None
              and all(same(lookup(r, k, configs), v) for k, v in ref.match.items())]
    if not chosen:
        return [], f"{_describe(ref)} matched no record"
    identities = {tuple(repr(r.get(k)) for k in IDENTITY_KEYS) for r in chosen}
    if len(identities) > 1:
        differ = [k for i, k in enumerate(IDENTITY_KEYS) if len({ident[i] for ident in identities}) > 1]
        return [], (f"{_describe(ref)} matched {len(identities)} different results (differing in "
                    f"{', '.join(differ)}); add those keys to `match`")
    return chosen, None


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


# --- intervals -------------------------------------------------------------------------------------

_Z = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


def _bootstrap(differences):
    """Percentile interval of the mean of per-image ``differences`` (a paired bootstrap over images)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    index = rng.integers(0, len(differences), size=(BOOTSTRAP_SAMPLES, len(differences)))
    means = differences[index].mean(axis=1)
    tail = 100 * (1 - CONFIDENCE) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _per_image(chosen, outcomes, metric):
    """The per-image outcomes of ``chosen`` averaged over repeats, or ``None`` where any record has none."""
    vectors = [None if outcomes is None else outcomes(r, metric) for r in chosen]
    if any(v is None for v in vectors) or len({len(v) for v in vectors}) != 1:
        return None
    return np.mean(np.asarray(vectors, np.float64), axis=0)


def _count(chosen, metric):
    """``(successes, images)`` behind a proportion metric, summed over repeats, or ``None`` if unknown."""
    key = COUNT_KEYS.get(metric)
    if key is None or any(r.get(key) is None for r in chosen):
        return None
    n = sum(int(r[key]) for r in chosen)
    return sum(float(r[metric]) * int(r[key]) for r in chosen), n


def side(ref, records, configs, *, outcomes=None):
    """``(side, None)``: what one side of a comparison knows of its number, or ``(None, reason)``.

    ``side`` is a dict: ``value`` (the mean over repeats), ``repeats`` (one value per
    repeat), ``per_image`` (per-image values averaged over repeats, or ``None``),
    ``count`` (``(successes, images)`` of a proportion, or ``None``) and ``cells``.
    """
    chosen, reason = select(ref, records, configs)
    if reason is not None:
        return None, reason
    by_repeat = {r.get("repeat", 0): float(r[ref.metric]) for r in chosen}
    found = {"per_image": _per_image(chosen, outcomes, ref.metric), "count": _count(chosen, ref.metric),
             "cells": {str(r["cell"]) for r in chosen if "cell" in r}}
    if ref.minus is not None:
        other, reason = side(ref.minus, records, configs, outcomes=outcomes)
        if reason is not None:
            return None, reason
        if set(other["by_repeat"]) != set(by_repeat):
            return None, f"{_describe(ref)} and {_describe(ref.minus)} were measured on different repeats"
        by_repeat = {k: v - other["by_repeat"][k] for k, v in by_repeat.items()}
        per_image = None if found["per_image"] is None or other["per_image"] is None \
            or len(found["per_image"]) != len(other["per_image"]) else found["per_image"] - other["per_image"]
        found = {"per_image": per_image, "count": None, "cells": found["cells"] | other["cells"]}
    values = [by_repeat[k] for k in sorted(by_repeat)]
    return {**found, "by_repeat": by_repeat, "repeats": values, "value": sum(values) / len(values)}, None


def interval(left, right=None, *, constant=None):
    """A 95% interval of ``left - right`` (or ``left - constant``) and how it was obtained.

    In order of preference: a paired bootstrap over images when both sides have
    per-image values for the same images; a Student-t interval over repeats when each
    side has at least two; Agresti-Caffo's interval for a difference of proportions
    (Agresti-Coull's against a constant) over the images behind them, which ignores the
    pairing of images and so is wider than the paired one; else the point difference.

    Args:
        left, right: sides as :func:`side` returns them.
        constant: the right side's constant, instead of ``right``.

    Returns:
        ``(low, high, method)``, ``method`` one of ``bootstrap``, ``repeats``, ``binomial``, ``point``.
    """
    sides = [left] if constant is not None else [left, right]
    point = left["value"] - (constant if constant is not None else right["value"])
    per_image = [s["per_image"] for s in sides]
    if all(v is not None for v in per_image) and len({len(v) for v in per_image}) == 1:
        return (*_bootstrap(per_image[0] - (constant if constant is not None else per_image[-1])), "bootstrap")
    repeats = [np.asarray(s["repeats"], np.float64) for s in sides]
    if min(len(v) for v in repeats) >= 2:
        from scipy import stats  # noqa: PLC0415 (only for repeated studies)

        se = math.sqrt(sum(v.var(ddof=1) / len(v) for v in repeats))
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, df=min(len(v) for v in repeats) - 1) * se
        return point - half, point + half, "repeats"
    counts = [s["count"] for s in sides]
    if all(c is not None and c[1] > 0 for c in counts):
        if constant is not None:
            (x, n), = counts
            p = (x + _Z ** 2 / 2) / (n + _Z ** 2)
            center, se = p - constant, math.sqrt(p * (1 - p) / (n + _Z ** 2))
        else:
            adjusted = [((x + 1) / (n + 2), n + 2) for x, n in counts]
            center = adjusted[0][0] - adjusted[1][0]
            se = math.sqrt(sum(p * (1 - p) / n for p, n in adjusted))
        return center - _Z * se, center + _Z * se, "binomial"
    return point, point, "point"


def _decide(op, low, high, margin):
    """``True`` (holds over the whole interval), ``False`` (fails over all of it) or ``None`` (undecided)."""
    if op in (">=", ">"):
        holds, fails = OPS[op](low, margin), not OPS[op](high, margin)
    else:
        holds, fails = OPS[op](high, margin), not OPS[op](low, margin)
    return True if holds else False if fails else None


def evaluate_comparison(comparison, records, configs, *, outcomes=None):
    """One comparison's numbers, interval and outcome.

    Returns:
        A dict with ``left``, ``right``, ``low`` / ``high`` (the 95% interval of
        ``left - right``), ``method``, ``holds`` (``True``, ``False``, or ``None`` when
        undecided or not evaluated), ``cells`` (the cells its numbers come from), a
        ``reason`` when not evaluated, and a one-line ``text``.
    """
    left_side, reason = side(comparison.left, records, configs, outcomes=outcomes)
    right_side, right_reason = (None, None) if comparison.right is None else \
        side(comparison.right, records, configs, outcomes=outcomes)
    reason = reason or right_reason
    percent = is_percent(comparison.left.metric)
    entry = {"label": _comparison_label(comparison), "left_metric": _metric_name(comparison.left),
             "left_match": comparison.left.match, "op": comparison.op,
             "right_metric": None if comparison.right is None else _metric_name(comparison.right),
             "right_match": None if comparison.right is None else comparison.right.match,
             "margin": comparison.margin, "percent": percent,
             "cells": sorted(set().union(*(s["cells"] for s in (left_side, right_side) if s is not None)))}
    if reason is not None:
        return {**entry, "left": None, "right": None, "left_n": 0, "right_n": 0, "low": None, "high": None,
                "method": None, "holds": None, "decided": False, "reason": reason,
                "text": f"{entry['label']}: not evaluated ({reason})"}
    left = left_side["value"]
    right = comparison.value if comparison.right is None else right_side["value"]
    low, high, method = interval(left_side, right_side, constant=comparison.value)
    holds = _decide(comparison.op, low, high, comparison.margin)
    scale = 100 if percent else 1
    margin = ""
    if comparison.margin:
        sign = "+" if comparison.margin > 0 else "-"
        size = abs(comparison.margin) * scale
        margin = f" {sign} {size:.1f}" if percent else f" {sign} {size:.4g}"
    named = comparison.right is not None and entry["right_metric"] != entry["left_metric"]
    left_text = (f"{entry['left_metric']} " if named else "") + _fmt(left, percent)
    right_text = (f"{entry['right_metric']} " if named else "") + _fmt(right, percent)
    unit = " points" if percent else ""
    spread = "no interval" if method == "point" else \
        f"95% CI of the difference {low * scale:+.1f} to {high * scale:+.1f}{unit}, {method}"
    outcome = {True: "yes", False: "no", None: "undecided"}[holds]
    text = f"{entry['label']}: {left_text} {comparison.op} {right_text}{margin} ({spread}) -> {outcome}"
    return {**entry, "left": left, "right": right, "left_n": len(left_side["repeats"]),
            "right_n": None if comparison.right is None else len(right_side["repeats"]), "low": low, "high": high,
            "method": method, "holds": holds, "decided": holds is not None, "reason": None, "text": text}


# --- quality gates ---------------------------------------------------------------------------------


def _number(value):
    """The leading number of a paper value (``97.7``, ``"74±4"`` -> 74.0), or ``None``."""
    if isinstance(value, (int, float)):
        return float(value)
    found = re.match(r"\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)", str(value))
    return None if found is None else float(found.group(1))


def paper_clean(tables, configs):
    """``{cell: the paper's clean accuracy (fraction)}`` from the tables' paper values of ``attack = "clean"``.

    A paper value belongs to a cell when its ``cell`` key names it (if it has one) and its
    configuration keys (``model.precision``, ...) equal the cell's; other record keys
    (``eps``, ``gradient``, ...) do not tell cells apart and are passed over.

    Args:
        tables: the study's :class:`~edgebnn.recipes.config.TableSpec` list.
        configs: ``{cell name: flat configuration}``.
    """
    found = {}
    for table in tables:
        if table.metric != "accuracy":
            continue
        scale = 100.0 if table.format == "percent" else 1.0
        for paper in table.paper:
            if paper.match.get("attack") != "clean" or (value := _number(paper.value)) is None:
                continue
            for name, config in configs.items():
                if _fits(name, config, paper.match):
                    found.setdefault(name, value / scale)
    return found


def _fits(name, config, match):
    """Whether a paper value's ``match`` belongs to cell ``name`` (see :func:`paper_clean`)."""
    return all(name == v if k == "cell" else k in RECORD_KEYS or same(config.get(k), v) for k, v in match.items())


def paper_records(tables, configs):
    """Records as a run would write them if every number were the paper's: the claims' check on the paper itself.

    One record per paper value of the tables and cell it belongs to, carrying the
    value (a fraction for percent tables) under the table's metric, the value's record
    keys (``attack``, ``eps``, ...) and the table's ``where`` keys.

    Args:
        tables: the study's :class:`~edgebnn.recipes.config.TableSpec` list.
        configs: ``{cell name: flat configuration}``.
    """
    records = []
    for table in tables:
        scale = 100.0 if table.format == "percent" else 1.0
        for paper in table.paper:
            value = _number(paper.value)
            if value is None:
                continue
            keys = {k: v for k, v in {**table.where, **paper.match}.items() if k in RECORD_KEYS and k != "cell"}
            evaluation = "clean" if keys.get("attack") == "clean" else table.evaluation
            for name, config in configs.items():
                if _fits(name, config, {**table.where, **paper.match}):
                    metrics = {table.metric: value / scale}
                    if evaluation == "clean" and table.metric == "accuracy":
                        metrics["accuracy_eval"] = value / scale  # the papers' clean accuracy is one number
                    records.append({"cell": name, "repeat": 0, "evaluation": evaluation, **keys, **metrics})
    return records


def _clean_accuracy(records, cell):
    values = [float(r["accuracy"]) for r in records
              if r.get("cell") == cell and r.get("evaluation") == "clean" and r.get("accuracy") is not None]
    return None if not values else sum(values) / len(values)


def models(cells, records, *, paper_clean=None):
    """``[{"cell", "clean", "paper"}]``: the clean accuracy of each model behind a claim, ours and the paper's."""
    return [{"cell": cell, "clean": _clean_accuracy(records, cell), "paper": (paper_clean or {}).get(cell)}
            for cell in cells]


def gate(cells, records, *, paper_clean=None, chance=0.1):
    """Why the models behind a claim cannot decide it (under-trained or near chance), or ``None``.

    Args:
        cells: the cells whose numbers the claim compares.
        records: the report's records (their ``clean`` records give our clean accuracy).
        paper_clean: ``{cell: the paper's clean accuracy}`` (see :func:`paper_clean`).
        chance: the accuracy of guessing (1 / number of classes).
    """
    problems = []
    for cell in cells:
        ours = _clean_accuracy(records, cell)
        if ours is None:
            continue
        paper = (paper_clean or {}).get(cell)
        if ours < chance + CHANCE_POINTS:
            problems.append(f"{cell}: clean {100 * ours:.1f}%, near chance ({100 * chance:.0f}%)")
        elif paper is not None and ours < paper - UNDERTRAINED_POINTS:
            problems.append(f"{cell}: clean {100 * ours:.1f}% vs paper {100 * paper:.1f}%")
    return None if not problems else "under-trained (" + "; ".join(problems) + ")"


def _proportion_side(record, metric, *, images=None):
    """A :func:`side` of one record's proportion metric over ``images`` (default: the count it records)."""
    value = float(record[metric])
    count = _count([record], metric) if images is None else (value * images, images)
    return {"value": value, "repeats": [value], "per_image": None, "count": count}


def anomalies(records):
    """Attack results no sound attack produces: accuracy rising with eps, or above clean accuracy.

    Either is the signature of label leaking (an attack that follows the true label's
    gradient hands the model a hint) or of masked gradients. A rise is flagged only when
    it holds over its 95% interval (:func:`interval`), so sampling noise is not flagged.
    Attacks toward targets or from another cell's model are passed over.

    Returns:
        ``[{"cell", "repeat", "attack", "eps", "message"}]``, one per anomaly.
    """
    found, groups = [], {}
    clean = {(r["cell"], r.get("repeat", 0)): r for r in records if r.get("evaluation") == "clean"}
    for r in records:
        if r.get("evaluation") != "attacks" or r.get("accuracy") is None or r.get("eps") is None \
                or r.get("targets") or r.get("source"):
            continue
        key = (r["cell"], r.get("repeat", 0), r.get("attack"), r.get("gradient"), r.get("labels"),
               repr(r.get("iterations")), r.get("implementation"))
        groups.setdefault(key, []).append(r)
    for (cell, repeat, attack, *_), group in groups.items():
        group.sort(key=lambda r: r["eps"])
        where = {"cell": cell, "repeat": repeat, "attack": attack}
        for small, large in zip(group, group[1:]):
            low, _, method = interval(_proportion_side(large, "accuracy"), _proportion_side(small, "accuracy"))
            if method != "point" and low > TIE:
                found.append({**where, "eps": large["eps"], "message": (
                    f"{attack} accuracy rises from {100 * small['accuracy']:.1f}% at eps {small['eps']:g} to "
                    f"{100 * large['accuracy']:.1f}% at eps {large['eps']:g}: label leaking or masked gradients")})
        reference = clean.get((cell, repeat))
        metric = "accuracy_eval" if reference is not None and reference.get("accuracy_eval") is not None \
            else "accuracy"
        if reference is None or reference.get(metric) is None:
            continue
        for r in group:
            images = reference.get("images_eval") if metric == "accuracy_eval" else reference.get("images")
            low, _, method = interval(_proportion_side(r, "accuracy"),
                                      _proportion_side(reference, metric, images=images or r.get("images")))
            if method != "point" and low > TIE:
                found.append({**where, "eps": r["eps"], "message": (
                    f"{attack} accuracy at eps {r['eps']:g} ({100 * r['accuracy']:.1f}%) is above clean accuracy on "
                    f"the same images ({100 * reference[metric]:.1f}%): label leaking or masked gradients")})
    return found


def evaluate(claim, records, configs, *, paper_clean=None, outcomes=None, chance=0.1):
    """The verdict of one claim on a report's records.

    Args:
        claim: a :class:`ClaimSpec`.
        records: the report's records.
        configs: ``{cell name: flat configuration}``.
        paper_clean: ``{cell: the paper's clean accuracy}`` for the under-training gate.
        outcomes: ``outcomes(record, metric)`` -> per-image values, for paired bootstrap intervals.
        chance: the accuracy of guessing, for the near-chance gate.

    Returns:
        A JSON-able dict: ``id``, ``claim``, ``criterion``, ``extension``, ``require``
        (the number of comparisons required), ``of``, ``held`` / ``failed`` /
        ``undecided`` (counts of comparisons), ``outcome`` (one of :data:`VERDICTS`),
        ``verdict`` (the outcome with its reason or counts) and ``comparisons`` (each
        with its values, interval and a one-line ``text``).
    """
    comparisons = [evaluate_comparison(c, records, configs, outcomes=outcomes) for c in claim.compare]
    held = sum(1 for c in comparisons if c["holds"] is True)
    failed = sum(1 for c in comparisons if c["holds"] is False)
    missing = [c["reason"] for c in comparisons if c["reason"] is not None]
    undecided = len(comparisons) - held - failed - len(missing)
    cells = sorted({cell for c in comparisons for cell in c["cells"]})
    weak = None if missing else gate(cells, records, paper_clean=paper_clean, chance=chance)
    counts = f"{held} of {len(comparisons)}, {claim.required} required"
    if missing:
        outcome = NOT_EVALUATED
        verdict = f"{NOT_EVALUATED}: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    elif weak is not None:
        outcome, verdict = NOT_EVALUATED, f"{NOT_EVALUATED}: {weak}"
    elif held >= claim.required:
        outcome, verdict = HOLDS, HOLDS
    elif held + undecided < claim.required:
        outcome, verdict = DOES_NOT_HOLD, f"{DOES_NOT_HOLD} ({counts})"
    else:
        outcome, verdict = INCONCLUSIVE, f"{INCONCLUSIVE} ({counts}, {undecided} undecided)"
    return {"id": claim.id, "claim": claim.claim, "criterion": claim.criterion, "extension": claim.extension,
            "require": claim.required, "of": len(comparisons), "held": held, "failed": failed,
            "undecided": undecided, "outcome": outcome, "verdict": verdict, "comparisons": comparisons,
            "models": models(cells, records, paper_clean=paper_clean)}


def outcome_of(result):
    """The outcome (one of :data:`VERDICTS`) of an evaluated claim, also of reports written before outcomes."""
    if result.get("outcome") in VERDICTS:
        return result["outcome"]
    return next((v for v in VERDICTS if result["verdict"].startswith(v)), INCONCLUSIVE)


def evaluate_all(claims, records, configs, **options):
    """:func:`evaluate` of every claim, in recipe order (``options`` as :func:`evaluate`'s)."""
    return [evaluate(c, records, configs, **options) for c in claims]


def to_markdown(results, *, heading="## Claims"):
    """Markdown lines of evaluated claims: the claim, its criterion, the verdict, each comparison."""
    lines = [heading, ""] if heading else []
    if not results:
        return lines + ["(the recipe states no claims)", ""]
    for r in results:
        counts = f"{r['held']} of {r['of']} comparisons hold, {r['require']} required"
        if r.get("failed") or r.get("undecided"):
            counts += f"; {r.get('failed', 0)} fail, {r.get('undecided', 0)} undecided"
        lines += [f"- **{r['id']}** {r['claim']}" + (" *(beyond the paper)*" if r.get("extension") else ""),
                  f"  - criterion: {r['criterion']}", f"  - verdict: **{r['verdict']}** ({counts})"]
        clean = [f"{m['cell']} {_fmt(m['clean'], True)}" + ("" if m["paper"] is None else
                                                            f" (paper {_fmt(m['paper'], True)})")
                 for m in r.get("models") or [] if m["clean"] is not None]
        if clean:
            lines.append("  - clean accuracy of the models: " + ", ".join(clean))
        lines += [f"    - {c['text']}" for c in r["comparisons"]]
    return lines + [""]

