"""``[[probes]]``: mean L1 norm of a named layer's activations, clean and under an attack.

Panda et al. (Fig. 6) compare the L1 norm of hidden activations on clean and
adversarial inputs to show how discretization damps the perturbation's growth
through the network. Per image the L1 norm is the sum of the layer's absolute
activations; the result is its mean over the evaluated images, clean and adversarial,
and their ratio.
"""

from typing import Annotated

import numpy as np
from pydantic import Field

from edgebnn.recipes.evaluations import attack as attack_kind
from edgebnn.recipes.evaluations import common
from edgebnn.recipes.evaluations.base import Kind, Result, num
from edgebnn.recipes.schema import OpenSection, RecipeError



class Spec(OpenSection):
    layer: str
    attack: str
    eps: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


def mean_l1(activations):
    """Mean over images of the sum of absolute activations."""
    a = np.asarray(activations, np.float64).reshape(len(activations), -1)
    return float(np.abs(a).sum(axis=1).mean())


class Probes(Kind):
    """``[[probes]]``: one result per entry."""

    Spec = Spec
    summary_metrics = ("l1_clean", "l1_adversarial")
    seeded_draws = True

    def check(self, spec, *, recipe, cells, cell, where):
        attack_kind.check_reference(spec.attack, spec.eps, spec.options, where=where)

    def check_model(self, spec, model, *, where):
        """The layer must exist in the cell's model."""
        attack_kind.dry_run(spec.attack, spec.eps, spec.options, model, where=where)
        names = [layer.name for layer in model.layers]
        if spec.layer not in names:
            raise RecipeError(f"`{where}.layer`: model {model.name!r} has no layer {spec.layer!r}; layers: {names}.")

    def metrics(self, spec, *, recipe):
        return ("l1_clean", "l1_adversarial", "l1_ratio")

    def units(self, spec, *, recipe):
        return [{"layer": spec.layer, "attack": spec.attack, "eps": spec.eps, "options": spec.options}]

    def label(self, unit):
        eps = "" if unit["eps"] is None else f" eps={unit['eps']:g}"
        return f"L1 of {unit['layer']!r} under {unit['attack']}{eps}"

    def cost(self, unit, *, recipe, n_eval):
        from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

        return n_eval * attacks.info(unit["attack"]).cost(unit["options"])

    def run(self, unit, ctx):
        import tensorflow as tf  # noqa: PLC0415

        from edgebnn import attacks  # noqa: PLC0415

        options = common.eot_option(ctx, attacks.info(unit["attack"]).canonical(unit["options"]), gradient="eot",
                                    randomized=ctx.randomized,
                                    takes_eot="eot_samples" in attacks.keywords(attacks.get(unit["attack"])))
        x_adv = common.craft(ctx, ctx.model, ctx.x_eval, ctx.y_eval, attack=unit["attack"], eps=unit["eps"],
                             label=self.label(unit), **options)
        probe = tf.keras.Model(ctx.model.inputs, ctx.model.get_layer(unit["layer"]).output)
        batch = ctx.evaluation.batch_size

        def activations(x):
            return np.concatenate([np.asarray(probe(x[i : i + batch], training=False)) for i in range(0, len(x), batch)])

        clean, adversarial = mean_l1(activations(ctx.x_eval)), mean_l1(activations(x_adv))
        metrics = {"l1_clean": clean, "l1_adversarial": adversarial,
                   "l1_ratio": adversarial / clean if clean > 0 else None}
        return Result(labels={"attack": unit["attack"], "eps": unit["eps"], "layer": unit["layer"]}, metrics=metrics)

    def markdown(self, record):
        r = record
        return [f"- mean L1 of `{r['layer']}`: clean {num(r['l1_clean'], 1)}, under {r['attack']} eps "
                f"{r['eps']} {num(r['l1_adversarial'], 1)} (ratio {num(r['l1_ratio'])})"]


KIND = Probes()
