"""``[[detection]]``: Guan et al.'s uncertainty detector against one attack.

The detector (:func:`edgebnn.evaluation.detection_experiment`) is fitted on the clean
and adversarial versions of ``fit`` test images apart from the evaluated ones, and
tested on adversarial examples crafted afresh from the evaluated images: accuracy,
ROC AUC, and the uncertainty (mean, std) of each set. Uncertainty comes from
``samples`` Monte-Carlo passes (default ``evaluation.mc_passes``, else 50), so the
model should be randomized at inference (MC dropout). ``gradient`` is as for
``[[attacks]]``: ``"eot"`` (default) or the plain ``"single"``-sample attack. The attack moves away from
the labels ``evaluation.labels`` names (true, or the model's own predictions).

The adversarial examples and the uncertainty of every set are computed batch by batch, each
batch stored as it finishes (``store/partial``) and seeded by its position, so that a run
stopped in the middle keeps them, a rerun computes only the rest, and the detector is fitted
and tested (:func:`edgebnn.evaluation.detection.detection_summary`) on the same numbers as in
a run never stopped.
"""

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from edgebnn.recipes.evaluations import attack as attack_kind
from edgebnn.recipes.evaluations import common
from edgebnn.recipes.evaluations.base import Kind, Result, num, pct
from edgebnn.recipes.schema import OpenSection

#: Guan et al.'s number of stochastic passes.
DEFAULT_SAMPLES = 50
#: The image sets whose uncertainty :func:`edgebnn.evaluation.detection_experiment` summarizes, and its statistics.
UNCERTAINTY_SETS, UNCERTAINTY_STATS = ("fit_clean", "fit_adversarial", "eval_clean", "eval_adversarial"), ("mean", "std")


class Spec(OpenSection):
    attack: str
    eps: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    fit: Annotated[int, Field(ge=2)] = 500
    samples: Annotated[int, Field(ge=1)] | None = None
    gradient: Literal[common.GRADIENTS] = "eot"


class Detection(Kind):
    """``[[detection]]``: one result per entry."""

    Spec = Spec
    summary_metrics = ("detection_accuracy", "detection_auc")
    seeded_draws = True

    def check(self, spec, *, recipe, cells, cell, where):
        from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

        fn = attack_kind.check_reference(spec.attack, spec.eps, spec.options, where=where)
        common.check_gradient(spec.gradient, options=spec.options, fields_set=spec.model_fields_set,
                              takes_eot="eot_samples" in attacks.keywords(fn), where=where)

    def check_model(self, spec, model, *, where):
        """Dry-run the attack with the entry's options on the cell's (untrained) model."""
        attack_kind.dry_run(spec.attack, spec.eps, spec.options, model, where=where)

    def metrics(self, spec, *, recipe):
        return ("detection_accuracy", "detection_auc", "fit_accuracy",
                *(f"uncertainty_{name}_{stat}" for name in UNCERTAINTY_SETS for stat in UNCERTAINTY_STATS),
                "samples", "fit_images", "eot_samples")

    def units(self, spec, *, recipe):
        samples = spec.samples or recipe.evaluation.mc_passes or DEFAULT_SAMPLES
        return [{"attack": spec.attack, "eps": spec.eps, "fit": spec.fit, "samples": samples, "options": spec.options,
                 "gradient": spec.gradient}]

    def pool_size(self, unit):
        return unit["fit"]

    def label(self, unit):
        eps = "" if unit["eps"] is None else f" eps={unit['eps']:g}"
        single = " single-sample" if unit.get("gradient") == "single" else ""
        return f"detection of {unit['attack']}{eps}{single}"

    def cost(self, unit, *, recipe, n_eval):
        from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

        passes = attacks.info(unit["attack"]).cost(unit["options"])
        return (n_eval + unit["fit"]) * (passes + 2 * unit["samples"] / 3)

    def run(self, unit, ctx):
        from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)
        from edgebnn.evaluation import detection_summary, predict_mc  # noqa: PLC0415

        options = common.eot_option(ctx, attacks.info(unit["attack"]).canonical(unit["options"]),
                                    gradient=unit["gradient"], randomized=ctx.randomized,
                                    takes_eot="eot_samples" in attacks.keywords(attacks.get(unit["attack"])))
        x_fit, y_fit = ctx.x_pool[: unit["fit"]], ctx.y_pool[: unit["fit"]]
        if ctx.evaluation.labels == "predicted":  # the attack moves away from the model's own predictions
            y_fit, y_eval = None, None
        else:
            y_eval = ctx.y_eval
        label = self.label(unit)
        images = {"fit_clean": x_fit, "eval_clean": ctx.x_eval}
        images["fit_adversarial"] = common.craft(ctx, ctx.model, x_fit, y_fit, attack=unit["attack"], eps=unit["eps"],
                                                 label=f"{label}: fit set", **options)
        images["eval_adversarial"] = common.craft(ctx, ctx.model, ctx.x_eval, y_eval, attack=unit["attack"],
                                                  eps=unit["eps"], label=f"{label}: evaluated set", **options)

        def uncertainty(xb, _, seed):
            return predict_mc(ctx.model, xb, samples=unit["samples"], batch_size=len(xb), seed=seed).uncertainty

        result = detection_summary(**{name: np.concatenate(common.kept_batches(
            ctx, images[name], None, uncertainty, label=f"{label}: uncertainty of {name.replace('_', ' ')}"))
            for name in UNCERTAINTY_SETS})
        detection = result["detection"]
        metrics = {
            "detection_accuracy": detection["accuracy"], "detection_auc": detection["auc"],
            "fit_accuracy": result["fit_detection"]["accuracy"],
            **{f"uncertainty_{name}_{stat}": value
               for name, stats in result["uncertainty"].items() for stat, value in stats.items()},
            "samples": unit["samples"], "fit_images": int(len(x_fit)), "eot_samples": options.get("eot_samples", 1),
        }
        labels = {"attack": unit["attack"], "eps": unit["eps"], "gradient": unit["gradient"]}
        return Result(labels=labels, metrics=metrics)

    def markdown(self, record):
        r = record
        single = " (single-sample)" if r.get("gradient") == "single" else ""
        return [f"- detection of {r['attack']}{single} eps {r['eps']}: accuracy {pct(r['detection_accuracy'])}, "
                f"ROC AUC {num(r['detection_auc'])} ({r['samples']} MC passes, fitted on "
                f"{r['fit_images']} other test images)"]


KIND = Detection()
