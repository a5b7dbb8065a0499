"""``[[robustness]]``: the strong evaluation with every gradient-masking check.

One entry runs :func:`edgebnn.evaluation.masking.robustness_report` on the cell's
model: FGSM, PGD, PGD with restarts, APGD-CE and APGD-T per gradient surrogate,
Square, the AutoAttack ensemble (APGD-CE -> APGD-T -> Square, per-example worst case
over the surrogates) and the masking checks (iterative vs single-step, white-box vs
black-box, large eps, convergence, zero gradients, EOT). Its keys are the report's
keyword arguments; ``limit`` caps the evaluated images, because the ensemble costs
hundreds of forward-backward passes per image and surrogate.

The record's ``accuracy`` at each eps is the ensemble's robust accuracy over all
surrogates; ``report.md`` shows the whole report under the cell.

Every attack run's per-example outcome is stored batch by batch as it finishes
(``store/partial``), its attack seeded by its position, so that a run stopped in the
middle keeps the finished batches, a rerun crafts only the rest, and the report is
combined from the same outcomes as in a run never stopped. The result keeps every run's
per-example outcome (``"<eps>/<run>"``, still correct after the run) in the store, so that an
exact certification of the same images can be checked against it image by image.
"""

import dataclasses
import math
from typing import Annotated

from pydantic import Field

from edgebnn.choices import ENSEMBLE_SURROGATES
from edgebnn.evaluation.budget import StrongSettings
from edgebnn.evaluation.checks import to_markdown
from edgebnn.recipes.evaluations.base import Kind, Result
from edgebnn.recipes.schema import RecipeError, Section

_Eps = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Positive = Annotated[int, Field(ge=1)]


#: Prefix of the strong evaluation's attack runs named beside other evaluations' attacks.
_ATTACK_PREFIX = "strong/"
#: The strong evaluation's budget when an entry sets none (one home: :class:`StrongSettings`).
_DEFAULTS = StrongSettings()


class Spec(Section):
    eps: list[_Eps] = Field(min_length=1)
    limit: _Positive | None = None
    norm: str = "inf"
    surrogates: list[str] | None = None
    steps: _Positive = _DEFAULTS.steps
    pgd_steps: _Positive = _DEFAULTS.pgd_steps
    restarts: _Positive = _DEFAULTS.restarts
    target_classes: _Positive = _DEFAULTS.target_classes
    square_queries: _Positive = _DEFAULTS.square_queries
    large_eps: Annotated[float, Field(gt=0, allow_inf_nan=False)] = _DEFAULTS.large_eps



def _surrogates(unit):
    return unit["surrogates"] or list(ENSEMBLE_SURROGATES)


def _settings(unit):
    """The :class:`StrongSettings` of a unit (an entry's JSON)."""
    return StrongSettings(**{f.name: unit[f.name] for f in dataclasses.fields(StrongSettings)})


class Robustness(Kind):
    """``[[robustness]]``: one result per entry (all its eps)."""

    Spec = Spec
    seeded_draws = True

    def check(self, spec, *, recipe, cells, cell, where):
        from edgebnn import ops  # noqa: PLC0415 (TensorFlow)

        if spec.norm not in ("inf", "2"):
            raise RecipeError(f"`{where}.norm` must be \"inf\" or \"2\", got {spec.norm!r}.")
        for surrogate in spec.surrogates or ():
            try:
                ops.validate_surrogate(surrogate)
            except ValueError as e:
                raise RecipeError(f"`{where}.surrogates`: unknown surrogate {surrogate!r}: {e}") from None

    def metrics(self, spec, *, recipe):
        return ("images", "warnings", "robust_accuracy", "report")

    def units(self, spec, *, recipe):
        return [spec.model_dump(mode="json")]

    def label(self, unit):
        return "strong evaluation eps=" + "/".join(f"{e:g}" for e in unit["eps"])

    def cost(self, unit, *, recipe, n_eval):
        """Forward/backward passes of the strong evaluation's runs (:func:`~edgebnn.evaluation.masking.plan_cost`) per image and eps."""
        from edgebnn.evaluation.masking import plan_cost  # noqa: PLC0415 (TensorFlow)

        n = n_eval if unit["limit"] is None else min(unit["limit"], n_eval)
        return n * len(unit["eps"]) * plan_cost(_settings(unit), surrogates=_surrogates(unit))

    def run(self, unit, ctx):
        import numpy as np  # noqa: PLC0415

        from edgebnn.evaluation.masking import robustness_report  # noqa: PLC0415 (TensorFlow)

        n = len(ctx.x_eval) if unit["limit"] is None else min(unit["limit"], len(ctx.x_eval))
        report = robustness_report(
            ctx.model, ctx.x_eval[:n], ctx.y_eval[:n], eps_list=unit["eps"],
            norm=np.inf if unit["norm"] == "inf" else 2, surrogates=_surrogates(unit), settings=_settings(unit),
            eot_samples=ctx.eot_samples(ctx.randomized), batch_size=ctx.evaluation.batch_size,
            progress=lambda _, done, total: ctx.progress(self.label(unit), done, total), kept=ctx.batches,
            keep_outcomes=True,
        )
        outcomes = {f"{r['eps']:g}/{name}": mask for r in report["results"] for name, mask in r.pop("outcomes").items()}
        metrics = {
            "images": n,
            "warnings": report["warnings"],
            "robust_accuracy": {f"{r['eps']:g}": r["autoattack"]["all"]["robust_accuracy"] for r in report["results"]},
            "report": report,
        }
        return Result(labels={"attack": "autoattack", "eps": None}, metrics=metrics, outcomes=outcomes)

    def attack_outcomes(self, record, outcomes, *, eps):
        """Every attack run of the strong evaluation at ``eps`` (``strong/<run>``): its stored per-image
        "still correct" outcomes, ``None`` for a result stored before they were kept."""
        runs = [r for r in record.get("report", {}).get("results", []) if math.isclose(r["eps"], eps)]
        if not runs:
            return {}
        return {f"{_ATTACK_PREFIX}{name}": (outcomes or {}).get(f"{runs[0]['eps']:g}/{name}")
                for name in runs[0]["accuracy"]}

    def markdown(self, record):
        text = to_markdown(record["report"], title=f"Strong evaluation ({record['images']} images)")
        return ["", *text.replace("## ", "#### ", 1).rstrip("\n").split("\n"), ""]

    def page_section(self, records):
        """The masking checks of every strong evaluation of a report, per cell."""
        lines = []
        for record in records:
            if "report" not in record:
                continue
            text = to_markdown(record["report"], title=f"Masking checks, cell {record['cell']} "
                                                              f"({record.get('images', record['report']['n'])} images)")
            lines += text.replace("## ", "##### ", 1).rstrip("\n").split("\n") + [""]
        return ["#### Masking checks (strong evaluation)", "", *lines] if lines else []


KIND = Robustness()
