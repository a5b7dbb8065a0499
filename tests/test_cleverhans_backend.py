"""CleverHans' own implementations as an attack backend: same arguments, CleverHans' code, recorded in reports."""

import numpy as np
import pytest

from conftest import attack, small_study
from edgebnn import attacks
from edgebnn.attacks import cleverhans_backend
from edgebnn.recipes import config, runner
from edgebnn.recipes.console import Console

import tensorflow as tf


def _dense_model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    return tf.keras.Sequential([tf.keras.Input((12,)), tf.keras.layers.Dense(16, activation="relu"),
                                tf.keras.layers.Dense(4)])


def test_registry_selects_the_backend_and_names_what_is_missing():
    assert attacks.get("pgd", backend="cleverhans") is cleverhans_backend.pgd
    assert attacks.get("pgd") is attacks.pgd and attacks.backend_of(attacks.pgd) == "edgebnn"
    assert {attacks.backend_of(fn) for fn in cleverhans_backend.ATTACKS.values()} == {"cleverhans"}
    with pytest.raises(ValueError, match=r"CleverHans has no attack 'apgd'"):
        attacks.get("apgd", backend="cleverhans")
    with pytest.raises(ValueError, match=r"Unknown attack backend 'foolbox'"):
        attacks.get("fgsm", backend="foolbox")
    assert cleverhans_backend.version() == "4.0.0"


def test_wrappers_call_cleverhans_and_agree_with_edgebnn_where_both_are_exact():
    """FGSM and BIM are deterministic: CleverHans' code and edgebnn's give the same examples."""
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    model = _dense_model()
    x = np.random.default_rng(0).uniform(0, 1, size=(8, 12)).astype(np.float32)
    ours = attacks.fgsm(model, x, eps=0.1).numpy()
    theirs = cleverhans_backend.fgsm(model, x, eps=0.1).numpy()
    direct = fast_gradient_method(model, x, 0.1, np.inf, clip_min=0.0, clip_max=1.0).numpy()
    np.testing.assert_array_equal(theirs, direct)
    np.testing.assert_allclose(theirs, ours, atol=1e-6)
    np.testing.assert_allclose(cleverhans_backend.bim(model, x, eps=0.1, steps=3).numpy(),
                               attacks.bim(model, x, eps=0.1, steps=3).numpy(), atol=1e-5)
    spsa = cleverhans_backend.spsa(model, x[:2], eps=0.1, steps=2, num_samples=8).numpy()
    assert spsa.shape == (2, 12) and np.abs(spsa - x[:2]).max() <= 0.1 + 1e-6
    with pytest.raises(ValueError, match="eps"):  # checked at the door, unlike CleverHans itself
        cleverhans_backend.pgd(model, x, eps=-0.1)
    with pytest.raises(ValueError, match="targets"):
        cleverhans_backend.cw_l2(model, x, y=np.zeros(8, np.int64))


RECIPE = small_study(
    "ch",
    data=dict(train_limit=200, test_limit=60),
    model=dict(precision="float"),
    train=dict(epochs=1, batch_size=50),
    evaluation=dict(limit=20, batch_size=20),
    attacks=[
        attack("fgsm", eps=[0.1]),
        attack("fgsm", eps=[0.1], backend="cleverhans"),
        attack("pgd", eps=[0.1], steps=2, backend="cleverhans"),
    ],
    rest="""
        [deploy]
        enabled = false
    """,
)


class _Quiet(Console):
    def line(self, message):
        pass

    def note(self, message):
        pass


def _load(tmp_path, text, data_dir):
    path = tmp_path / "ch.toml"
    path.write_text(text)
    return config.load(path, overrides=[f'data.data_dir="{data_dir}"'])


def test_recipe_with_cleverhans_backend_runs_and_records_it(tmp_path, data_dir):
    report = runner.run(_load(tmp_path, RECIPE, data_dir), tmp_path / "run", console=_Quiet())
    assert report["status"] == "complete"
    results = [r for r in report["cells"][0]["results"] if r["evaluation"] == "attacks"]
    by_backend = {(r["attack"], r.get("implementation")): r for r in results}
    assert set(by_backend) == {("fgsm", None), ("fgsm", "cleverhans 4.0.0"), ("pgd", "cleverhans 4.0.0")}
    assert by_backend["pgd", "cleverhans 4.0.0"]["gradient"] == "single"
    # A float model: both implementations of FGSM find the same examples.
    assert by_backend["fgsm", None]["accuracy"] == by_backend["fgsm", "cleverhans 4.0.0"]["accuracy"]


@pytest.mark.parametrize("entry, message", [
    ('name = "fgsm"\neps = [0.1]\nbackend = "foolbox"', r"`attacks.0.backend`: Unknown attack backend 'foolbox'"),
    ('name = "apgd"\neps = [0.1]\nbackend = "cleverhans"', r"`attacks.0.backend`: CleverHans has no attack 'apgd'"),
    ('name = "pgd"\neps = [0.1]\nbackend = "cleverhans"\nrestarts = 2', r"unknown key `attacks.0.restarts`"),
    ('name = "cw_l2"\nbackend = "cleverhans"', r"`attacks.0.backend`: CleverHans' CW treats given labels as targets"),
])
def test_bad_backend_entries_fail_at_load_naming_the_key(tmp_path, data_dir, entry, message):
    text = RECIPE.split("[[attacks]]")[0] + "[[attacks]]\n" + entry + "\n[deploy]\nenabled = false\n"
    with pytest.raises(config.RecipeError, match=message):
        _load(tmp_path, text, data_dir)
