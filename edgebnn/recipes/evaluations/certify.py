"""``[[certify]]``: exact robustness of a discretized binary network, next to the strongest attack.

One entry runs :func:`edgebnn.certify.certify_report` on the cell's model, one cached
result per eps: PGD with random restarts first (straight-through gradients; the
upper bound), then every example it did not break is decided exactly (``robust``,
``not_robust`` with a counterexample replayed through Keras and the converted
``.tflite``, or ``unknown`` at the time limit). The record's ``accuracy`` is the
certified robust accuracy (the lower bound); ``attack_accuracy`` the upper bound.

Only models :func:`edgebnn.certify.extract` supports can be certified (binary FCNs
with input discretization); any other cell's model is refused when the study is
planned, with one line naming the first unsupported layer.
"""

import functools
from typing import Annotated

from pydantic import Field

from edgebnn.recipes.evaluations.base import Kind, Result
from edgebnn.recipes.schema import RecipeError, Section

_Eps = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
_Positive = Annotated[int, Field(ge=1)]
#: Per-eps numbers of :func:`edgebnn.certify.certify_report` kept as metrics (the per-example rows stay in ``report``).
_SUMMARY = ("n", "robust", "not_robust", "unknown", "refuted_by_solver", "refuted_by_search", "refuted_by_attack",
            "attack_missed", "attack_broke_certified", "seconds_median", "seconds_p95", "counterexamples",
            "replayed_keras", "replayed_tflite")


class Spec(Section):
    eps: list[_Eps] = Field(min_length=1)
    time_limit: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 60.0
    limit: _Positive | None = None
    processes: _Positive = 1
    solver: str = "milp"
    attack_steps: _Positive = 100
    attack_restarts: _Positive = 5


class Certify(Kind):
    """``[[certify]]``: one result per eps."""

    Spec = Spec
    summary_metrics = ("accuracy",)

    def check(self, spec, *, recipe, cells, cell, where):
        from edgebnn.certify import solvers  # noqa: PLC0415

        if spec.solver not in solvers.names():
            raise RecipeError(f"`{where}.solver` must be one of {solvers.names()}, got {spec.solver!r}.")

    def check_model(self, spec, model, *, where):
        """The cell's model must be a network the exact encoding covers."""
        from edgebnn.certify import UnsupportedModelError, extract  # noqa: PLC0415 (TensorFlow)

        try:
            extract(model)
        except UnsupportedModelError as e:
            raise RecipeError(f"`{where}`: {e}") from None

    def metrics(self, spec, *, recipe):
        return ("accuracy", "attack_accuracy", "clean_accuracy", *_SUMMARY, "report")

    def units(self, spec, *, recipe):
        base = spec.model_dump(mode="json")
        return [{**base, "eps": eps} for eps in spec.eps]

    def label(self, unit):
        return f"certify eps={unit['eps']:g}"

    def cost(self, unit, *, recipe, n_eval):
        """PGD gradient steps per image plus the solver's worst case counted as a thousand steps per second."""
        n = n_eval if unit["limit"] is None else min(unit["limit"], n_eval)
        return n * (unit["attack_steps"] * unit["attack_restarts"] + 1000 * unit["time_limit"] / unit["processes"])

    def run(self, unit, ctx):
        from edgebnn.certify import certify_report  # noqa: PLC0415 (TensorFlow)
        from edgebnn.deploy.convert import convert  # noqa: PLC0415 (LCE converter)
        from edgebnn.deploy.verify import tflite_predict  # noqa: PLC0415

        n = len(ctx.x_eval) if unit["limit"] is None else min(unit["limit"], len(ctx.x_eval))

        def progress(_, done, total):
            ctx.progress(self.label(unit), done, total)

        flatbuffer = convert(ctx.model, target="lce")  # counterexamples are replayed through the deployed model
        report = certify_report(
            ctx.model, ctx.x_eval[:n], ctx.y_eval[:n], eps_list=[unit["eps"]], time_limit=unit["time_limit"],
            solver=unit["solver"], processes=unit["processes"],
            attack={"attack": "pgd", "steps": unit["attack_steps"], "restarts": unit["attack_restarts"]},
            deployed=functools.partial(tflite_predict, flatbuffer), progress=progress,
        )
        [result] = report["results"]
        metrics = {
            "accuracy": result["certified_robust_accuracy"],
            "attack_accuracy": result["attack_robust_accuracy"],
            "clean_accuracy": result["clean_accuracy"],
            **{key: result[key] for key in _SUMMARY},
            "report": report,
        }
        return Result(labels={"attack": "certified", "eps": unit["eps"]}, metrics=metrics)

    def markdown(self, record):
        from edgebnn.certify.report import to_markdown  # noqa: PLC0415 (TensorFlow)

        return ["", *to_markdown(record["report"]).replace("# ", "#### ", 1).rstrip("\n").split("\n"), ""]


KIND = Certify()
