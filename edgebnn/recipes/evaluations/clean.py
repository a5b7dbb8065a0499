"""Clean accuracy of every cell (always run): on the whole test part and on the evaluated images.

For datasets of more than 10 classes also the top-5 accuracy (on the whole test part).

With ``evaluation.mc_passes`` also the Monte-Carlo vote's accuracy and Guan's
uncertainty of the evaluated images (its histogram's "clean" set).

Its per-example outcome ``correct`` holds, for every image of the test part, whether
the one-pass prediction was right (the evaluated images are the first ones).
"""

import numpy as np

from edgebnn.recipes.evaluations import common
from edgebnn.recipes.evaluations.base import Kind, Result


class Clean(Kind):
    """The kind without a recipe section: one unit in every cell."""

    Spec = None
    in_every_table = True
    summary_metrics = ("accuracy", "accuracy_mc")

    def metrics(self, spec, *, recipe):
        return ("accuracy", "accuracy_eval", "images", "images_eval", *common.top5_metrics(recipe),
                *common.mc_metrics(recipe))

    def units(self, spec, *, recipe):
        return [{"name": "clean"}]

    def label(self, unit):
        return "clean"

    def cost(self, unit, *, recipe, n_eval):
        return n_eval * max(recipe.evaluation.mc_passes, 1) / 3

    def run(self, unit, ctx):
        test_pred = common.predict(ctx, ctx.model, ctx.x_test, "clean")
        n = len(ctx.x_eval)
        eval_pred = test_pred[:n]  # the evaluated images are the first ones of the test part
        metrics = {
            "accuracy": float(np.mean(test_pred == ctx.y_test)),
            "accuracy_eval": float(np.mean(eval_pred == ctx.y_eval)),
            "images": int(len(ctx.x_test)),
            "images_eval": int(n),
        }
        metrics.update(common.top5(ctx, ctx.model, ctx.x_test, ctx.y_test))
        arrays = {}
        if ctx.evaluation.mc_passes:
            mc, uncertainty = common.monte_carlo(ctx, ctx.model, ctx.x_eval, ctx.y_eval, "clean")
            metrics.update(mc)
            arrays["uncertainty"] = uncertainty
        return Result(labels={"attack": "clean", "eps": 0.0}, metrics=metrics, arrays=arrays,
                      outcomes={"correct": test_pred == ctx.y_test})

    def table_row(self, record):
        return "clean", "-"

    def curve_x(self, record, *, attack, x, targets):
        return 0  # the clean result starts every curve

    def histogram_set(self, record, *, attacks):
        return "clean"


KIND = Clean()
