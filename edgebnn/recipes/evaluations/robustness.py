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
"""

from typing import Annotated

from pydantic import Field

from edgebnn.recipes.evaluations.base import Kind, Result
from edgebnn.recipes.schema import RecipeError, Section

_Eps = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Positive = Annotated[int, Field(ge=1)]


class Spec(Section):
    eps: list[_Eps] = Field(min_length=1)
    limit: _Positive | None = None
    norm: str = "inf"
    surrogates: list[str] | None = None
    steps: _Positive = 100
    pgd_steps: _Positive = 40
    restarts: _Positive = 5
    target_classes: _Positive = 9
    square_queries: _Positive = 5000
    large_eps: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.5


def _surrogates(unit):
    from edgebnn.attacks.autoattack import DEFAULT_SURROGATES  # noqa: PLC0415 (TensorFlow)

    return unit["surrogates"] or list(DEFAULT_SURROGATES)


class Robustness(Kind):
    """``[[robustness]]``: one result per entry (all its eps)."""

    Spec = Spec

    def check(self, spec, *, recipe, cells, cell, where):
        from edgebnn import ops  # noqa: PLC0415 (TensorFlow)

        if spec.norm not in ("inf", "2"):
            raise RecipeError(f"`{where}.norm` must be \"inf\" or \"2\", got {spec.norm!r}.")
        for surrogate in spec.surrogates or ():
            try:
                ops.validate_surrogate(surrogate)
            except ValueError as e:
                raise RecipeError(f"`{where}.surrogates`: unknown surrogate {surrogate!r}: {e}") from None

    def units(self, spec, *, recipe):
        return [spec.model_dump(mode="json")]

    def label(self, unit):
        return "strong evaluation eps=" + "/".join(f"{e:g}" for e in unit["eps"])

    def cost(self, unit, *, recipe, n_eval):
        """Gradient steps per image (FGSM, two PGDs, APGD-CE, APGD-T per surrogate) plus Square's queries."""
        n = n_eval if unit["limit"] is None else min(unit["limit"], n_eval)
        gradient_steps = 1 + unit["pgd_steps"] + unit["steps"] * (unit["restarts"] + 1 + unit["target_classes"])
        return n * len(unit["eps"]) * (len(_surrogates(unit)) * gradient_steps + unit["square_queries"])

    def run(self, unit, ctx):
        import numpy as np  # noqa: PLC0415

        from edgebnn.evaluation import masking  # noqa: PLC0415 (TensorFlow)

        n = len(ctx.x_eval) if unit["limit"] is None else min(unit["limit"], len(ctx.x_eval))
        surrogates = _surrogates(unit)
        # The report logs once after the large-eps check and once per attack run at each eps
        # (five gradient attacks per surrogate, then Square).
        total = 1 + len(unit["eps"]) * (5 * len(surrogates) + 1)
        done = [0]

        def log(message):
            done[0] = min(done[0] + 1, total)
            ctx.progress(self.label(unit), done[0], total)

        report = masking.robustness_report(
            ctx.model, ctx.x_eval[:n], ctx.y_eval[:n], eps_list=unit["eps"],
            norm=np.inf if unit["norm"] == "inf" else 2, surrogates=surrogates,
            steps=unit["steps"], pgd_steps=unit["pgd_steps"], restarts=unit["restarts"],
            target_classes=unit["target_classes"], square_queries=unit["square_queries"],
            eot_samples=ctx.eot_samples(ctx.randomized), large_eps=unit["large_eps"],
            batch_size=ctx.evaluation.batch_size, log=log,
        )
        ctx.progress(self.label(unit), total, total)
        metrics = {
            "images": n,
            "warnings": report["warnings"],
            "robust_accuracy": {f"{r['eps']:g}": r["autoattack"]["all"]["robust_accuracy"] for r in report["results"]},
            "report": report,
        }
        return Result(labels={"attack": "autoattack", "eps": None}, metrics=metrics)

    def markdown(self, record):
        from edgebnn.evaluation import masking  # noqa: PLC0415 (TensorFlow)

        text = masking.to_markdown(record["report"], title=f"Strong evaluation ({record['images']} images)")
        return ["", *text.replace("## ", "#### ", 1).rstrip("\n").split("\n"), ""]

    def page_section(self, records):
        """The masking checks of every strong evaluation of a report, per cell."""
        from edgebnn.evaluation import masking  # noqa: PLC0415 (TensorFlow)

        lines = []
        for record in records:
            if "report" not in record:
                continue
            text = masking.to_markdown(record["report"], title=f"Masking checks, cell {record['cell']} "
                                                              f"({record.get('images', record['report']['n'])} images)")
            lines += text.replace("## ", "##### ", 1).rstrip("\n").split("\n") + [""]
        return ["#### Masking checks (strong evaluation)", "", *lines] if lines else []


KIND = Robustness()
