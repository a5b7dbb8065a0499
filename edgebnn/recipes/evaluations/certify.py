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

The examples are certified in parts of :data:`EXAMPLES_PER_PART`, each stored as it
finishes (``store/partial``) with its attack seeded by its position, so that a run stopped
in the middle keeps its finished parts, a rerun certifies only the rest, and the merged
report (:func:`edgebnn.certify.report.summarize_examples`) is the one a run never stopped gives.

Every report checks the proof hygiene per image (:meth:`Certify.check_record`): an image certified
robust that any attack of the cell at the same eps broke (the certification's PGD, every run of a
``[[robustness]]`` entry) is named in ``report.md`` and fails the run after its report is written.
"""

import functools
import json
from typing import Annotated

import numpy as np
from pydantic import Field, model_serializer

from edgebnn.recipes import interrupts
from edgebnn.recipes.evaluations.base import CHECK, Kind, Result
from edgebnn.recipes.schema import RecipeError, Section

_Eps = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
_Positive = Annotated[int, Field(ge=1)]
#: Per-eps numbers of :func:`edgebnn.certify.certify_report` kept as metrics (the per-example rows stay in ``report``).
_SUMMARY = ("n", "robust", "not_robust", "unknown", "refuted_by_solver", "refuted_by_search", "refuted_by_attack",
            "attack_missed", "attack_broke_certified", "seconds_median", "seconds_p95", "counterexamples",
            "replayed_keras", "replayed_tflite")
#: Examples certified (and attacked) per stored part, its attack drawing from the part's own seed
#: (one traced attack graph serves every part): a stopped run loses at most ten examples' work.
EXAMPLES_PER_PART = 10
#: Keys of a part's per-eps summary that add up over parts (the others are recomputed from the examples).
_SUMMED_SECONDS = ("attack_seconds", "certify_seconds")
#: Prefix of the certification's own attacks named beside other evaluations' attacks.
_OWN_PREFIX = "certify/"


class Spec(Section):
    eps: list[_Eps] = Field(min_length=1)
    time_limit: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 60.0
    limit: _Positive | None = None
    processes: _Positive = 1
    solver: str = "milp"
    attack_steps: _Positive = 100
    attack_restarts: _Positive = 5
    #: Keep the counterexamples as the result's adversarial examples, so that ``[deploy]`` with
    #: ``verify`` checks the deployed model against Keras on them too.
    export_counterexamples: bool = False

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        out = handler(self)
        if not out["export_counterexamples"]:  # the keys of entries that do not set it stay as they were
            del out["export_counterexamples"]
        return out


class Certify(Kind):
    """``[[certify]]``: one result per eps."""

    Spec = Spec
    summary_metrics = ("accuracy",)
    seeded_draws = True

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

    def exports_examples(self, unit):
        """The counterexamples verify the cell's deployment when the entry keeps them."""
        return bool(unit.get("export_counterexamples", False))

    def cost(self, unit, *, recipe, n_eval):
        """PGD gradient steps per image plus the solver's worst case counted as a thousand steps per second."""
        n = n_eval if unit["limit"] is None else min(unit["limit"], n_eval)
        return n * (unit["attack_steps"] * unit["attack_restarts"] + 1000 * unit["time_limit"] / unit["processes"])

    def run(self, unit, ctx):
        from edgebnn.certify import certify_report  # noqa: PLC0415 (TensorFlow)
        from edgebnn.deploy.verify import tflite_predict  # noqa: PLC0415

        n = len(ctx.x_eval) if unit["limit"] is None else min(unit["limit"], len(ctx.x_eval))
        attack = {"attack": "pgd", "steps": unit["attack_steps"], "restarts": unit["attack_restarts"]}
        stored = ctx.batches
        call = None if stored is None else stored.next_call()
        parts = []
        for index, start in enumerate(range(0, n, EXAMPLES_PER_PART)):
            interrupts.check()
            part = None if stored is None else _load_part(stored, call, index)
            if part is None:
                stop = min(start + EXAMPLES_PER_PART, n)
                seeded = attack if stored is None else {**attack, "seed": stored.seed(call, index)}

                def progress(_, done, total, start=start):
                    ctx.progress(self.label(unit), start + done, n)

                # counterexamples are replayed through the deployed model: converted once for all of the
                # cell's certify results, and only when a part is computed
                flatbuffer = ctx.converted(target="lce")
                part = certify_report(
                    ctx.model, ctx.x_eval[start:stop], ctx.y_eval[start:stop], eps_list=[unit["eps"]],
                    time_limit=unit["time_limit"], solver=unit["solver"], processes=unit["processes"], attack=seeded,
                    deployed=functools.partial(tflite_predict, flatbuffer), progress=progress,
                    keep_counterexamples=self.exports_examples(unit),
                )
                if stored is not None:
                    _save_part(stored, call, index, part)
            parts.append((start, part))
        x_cx, y_cx = _counterexamples(parts, ctx.x_eval, ctx.y_eval)
        report = merge_parts(parts, attack=attack)
        [result] = report["results"]
        metrics = {
            "accuracy": result["certified_robust_accuracy"],
            "attack_accuracy": result["attack_robust_accuracy"],
            "clean_accuracy": result["clean_accuracy"],
            **{key: result[key] for key in _SUMMARY},
            "report": report,
        }
        arrays = {"x_adv": x_cx, "y": y_cx} if len(x_cx) else {}
        return Result(labels={"attack": "certified", "eps": unit["eps"]}, metrics=metrics, arrays=arrays)

    def check_record(self, record, attacks_at):
        """Proof hygiene per image (:func:`edgebnn.certify.hygiene.check_certified`): no image certified
        robust is broken by the certification's own attacks (``certify/<attack>``) or by any attack
        another result of the cell ran at the same eps on the same images."""
        from edgebnn.certify import hygiene  # noqa: PLC0415

        report = record["report"]
        [result] = report["results"]
        names = [a["attack"] for a in [report["attack"], *report.get("extra_attacks", [])]]
        own = {f"{_OWN_PREFIX}{name}": v for name, v in hygiene.own_attacks(result["examples"], names).items()}
        return hygiene.check_certified(result["examples"], {**own, **attacks_at(record["eps"])})

    def markdown(self, record):
        from edgebnn.certify import hygiene  # noqa: PLC0415
        from edgebnn.certify.report import to_markdown  # noqa: PLC0415 (TensorFlow)

        lines = ["", *to_markdown(record["report"]).replace("# ", "#### ", 1).rstrip("\n").split("\n"), ""]
        if CHECK in record:
            lines += [*hygiene.to_markdown(record[CHECK]), ""]
        return lines


def _counterexamples(parts, x, y):
    """``(inputs, labels)`` of the counterexamples the parts kept (``keep_counterexamples``), taken out of
    their summaries: inputs shaped like ``x``'s examples, labels those of their images in ``y``."""
    index, inputs = [], []
    for start, part in parts:
        for i, pixels in part["results"][0].pop("counterexample_inputs", []):
            index.append(start + i)
            inputs.append(np.asarray(pixels, np.float32).reshape(x.shape[1:]))
    inputs = np.stack(inputs) if inputs else np.zeros((0, *x.shape[1:]), np.float32)
    return inputs, np.asarray(y)[index].astype(np.int64)


def merge_parts(parts, *, attack):
    """One :func:`edgebnn.certify.certify_report` of a single eps from the reports of consecutive parts of
    the images, ``[(index of its first image, report)]``: the examples renumbered and summarized again,
    the attack and certification seconds added up, the attack as given (without the parts' seeds)."""
    from edgebnn.certify.report import summarize_examples  # noqa: PLC0415 (TensorFlow)

    summaries = [part["results"][0] for _, part in parts]
    rows = [{**row, "index": start + row["index"]} for (start, _), summary in zip(parts, summaries)
            for row in summary["examples"]]
    merged = summarize_examples(rows, eps=summaries[0]["eps"])
    merged.update({key: sum(s[key] for s in summaries) for key in _SUMMED_SECONDS})
    return {**parts[0][1], "n": len(rows), "attack": dict(attack), "results": [merged]}


def _save_part(stored, call, index, report):
    """Keep a finished part's report in the result's partial store (its JSON as UTF-8 bytes)."""
    stored.save(call, index, np.frombuffer(json.dumps(report).encode("utf-8"), np.uint8))


def _load_part(stored, call, index):
    """A part's report kept by an earlier, interrupted run, or ``None``."""
    array = stored.load(call, index)
    return None if array is None else json.loads(array.tobytes().decode("utf-8"))


KIND = Certify()
