"""``[[certify]] export_counterexamples``: the counterexamples become the result's adversarial examples,
so that ``[deploy]`` with ``verify`` checks the deployed model against Keras on them; an opt-in part of
the result and deployment keys."""

import textwrap

import numpy as np
import pytest

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from conftest import TINY_CERTIFY, lines_console
from edgebnn.certify import encode
from edgebnn.certify.network import extract
from edgebnn.recipes import config, plan, runner, steps
from edgebnn.recipes.store import Store

import tensorflow as tf

#: The smallest certify study at eps 0.05 (``{export}``: the entry's option), deployed and verified.
RECIPE = TINY_CERTIFY.replace('name = "certify"', 'name = "certify_export"').replace(
    "eps = [0.02, 0.05]", "eps = [0.05]") + textwrap.dedent("""
    {export}
    [deploy]
    target = "portable"
    verify = true
""")


def _study(tmp_path, data_dir, export=""):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.replace("{export}", export))
    return config.load(path, overrides=[f'data.data_dir="{data_dir}"'])


def test_the_option_is_an_opt_in_part_of_the_keys(tmp_path, data_dir):
    keys = {}
    for export in ("", "export_counterexamples = false", "export_counterexamples = true"):
        study = _study(tmp_path, data_dir, export)
        cell = study.cells[0]
        cell_plan = plan.plan(study, lambda recipe: (300, 40))[cell.id]
        keys[export] = ([u.key for u in cell_plan.units], cell_plan.deploy_key(cell.recipe.deploy))
    assert keys[""] == keys["export_counterexamples = false"]
    assert keys[""][0][0] == keys["export_counterexamples = true"][0][0]  # the clean result is shared
    assert keys[""][0][1] != keys["export_counterexamples = true"][0][1]
    assert keys[""][1] != keys["export_counterexamples = true"][1]


@pytest.mark.slow
def test_the_deployment_is_verified_on_every_counterexample(tmp_path, data_dir):
    study = _study(tmp_path, data_dir, "export_counterexamples = true")
    out = tmp_path / "run"
    report = runner.run(study, out, console=lines_console())
    [record] = [r for r in report["records"] if r["evaluation"] == "certify"]
    assert record["counterexamples"] == record["not_robust"] > 0
    cell = study.cells[0]
    cell_plan = plan.plan(study, lambda recipe: (300, 40))[cell.id]
    [unit] = [u for u in cell_plan.units if u.kind == "certify"]
    arrays = Store(out).load_arrays(unit.key)
    x_adv, y_adv = arrays["x_adv"], arrays["y"]
    assert len(x_adv) == record["counterexamples"] and x_adv.shape[1:] == (28, 28, 1)
    rows = [r for r in record["report"]["results"][0]["examples"] if r["status"] == "not_robust"]
    assert list(y_adv) == [r["label"] for r in rows]
    model = tf.keras.models.load_model(Store(out).model_dir(cell_plan.model_key) / "model.keras", compile=False)
    net = extract(model)
    predicted = encode.predict_levels(net, encode.pixel_levels(x_adv.reshape(len(x_adv), -1), net.bits))
    assert np.all(predicted != y_adv)  # each one a counterexample of its image's label
    x = steps.load_data(cell.recipe.data).x_test
    for row, cx in zip(rows, x_adv):  # inside its image's ball
        assert np.max(np.abs(cx - x[row["index"]])) <= 0.05 + 1e-6
    deployed = report["deployed"] if "deployed" in report and "adversarial_examples" in report["deployed"] else \
        report["cells"][0]["deployed"]
    assert deployed["adversarial_examples"] == len(x_adv)
    assert deployed["agreement_adversarial"] == 1.0 and deployed["agreement_clean"] == 1.0
