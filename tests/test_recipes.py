"""Recipe files: validation of keys and values, overrides, discovery."""

import textwrap

import pytest

from edgebnn import recipes
from edgebnn.recipes import config

GOOD = textwrap.dedent(
    """
    name = "tiny"
    description = "a test recipe"
    [data]
    dataset = "fashion_mnist"
    train_limit = 100
    [model]
    family = "panda_fcn2"
    precision = "binary"
    input_bits = 2
    [train]
    epochs = 1
    [[attacks]]
    name = "pgd"
    eps = [0.1, 0.2]
    steps = 3
    """
)


def _write(tmp_path, text, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_recipe_loads_into_dataclasses(tmp_path):
    recipe = config.load(_write(tmp_path, GOOD))
    assert recipe.name == "tiny" and recipe.data.train_limit == 100
    assert recipe.model.input_bits == 2 and recipe.train.epochs == 1
    assert recipe.train.learning_rate == pytest.approx(1e-3)  # default
    assert recipe.attacks == [config.AttackConfig(name="pgd", eps=[0.1, 0.2], options={"steps": 3})]


def test_shipped_recipes_are_valid():
    found = recipes.available()
    assert "quickstart" in found
    for path in found.values():
        config.load(path)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("epochs = 1", "epoch = 1", r"unknown key `train.epoch`"),
        ("epochs = 1", "epochs = 0", r"`train.epochs` must be >= 1"),
        ("epochs = 1", 'epochs = "one"', r"`train.epochs` must be int"),
        ("train_limit = 100", "train_limit = 1.5", r"`data.train_limit` must be int or none"),
        ('dataset = "fashion_mnist"', 'dataset = "svhn"', r"`data.dataset` must be one of"),
        ('family = "panda_fcn2"', 'family = "vgg"', r"`model.family`: Unknown model family 'vgg'"),
        ('precision = "binary"', 'precision = "xnor"', r"`model.precision` must be one of"),
        ("input_bits = 2", "input_bits = 9", r"`model.input_bits` must be in \[1, 8\]"),
        ('name = "pgd"', 'name = "deepfool"', r"`attacks.0.name`: Unknown attack"),
        ("eps = [0.1, 0.2]", "eps = [-0.1]", r"`attacks.0.eps` must be a non-empty list"),
        ("steps = 3", "stepz = 3", r"unknown key `attacks.0.stepz` for attack 'pgd'"),
        ("[train]", "[training]", r"unknown key `training`"),
        ("[data]", "data = 3\n[datax]", r"unknown key `datax`"),
        ("[train]", '[deploy]\nweights = "int4"\n[train]', r"`deploy.weights` must be one of"),
        ("[train]", '[deploy]\nstrip = 1\n[train]', r"`deploy.strip` must be bool"),
    ],
)
def test_bad_recipes_name_the_key(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(config.RecipeError, match=message):
        config.load(_write(tmp_path, GOOD.replace(old, new, 1)))


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(config.RecipeError, match="not valid TOML"):
        config.load(_write(tmp_path, "name = [unclosed"))
    with pytest.raises(config.RecipeError, match="not found"):
        config.load(tmp_path / "nope.toml")


def test_overrides(tmp_path):
    path = _write(tmp_path, GOOD)
    recipe = config.load(path, overrides=["train.epochs=3", "attacks.0.eps=[0.3]", "data.test_limit=50",
                                          "deploy.verify=false"])
    assert recipe.train.epochs == 3 and recipe.attacks[0].eps == [0.3]
    assert recipe.data.test_limit == 50 and recipe.deploy.verify is False
    with pytest.raises(config.RecipeError, match="unknown key `train.epohcs`"):
        config.load(path, overrides=["train.epohcs=3"])
    with pytest.raises(config.RecipeError, match="key=value"):
        config.load(path, overrides=["train.epochs"])
    with pytest.raises(config.RecipeError, match="not an index"):
        config.load(path, overrides=["attacks.5.eps=[0.1]"])


def test_find_by_name_and_path(tmp_path):
    assert recipes.find("quickstart").name == "quickstart.toml"
    path = _write(tmp_path, GOOD)
    assert recipes.find(str(path)) == path
    with pytest.raises(config.RecipeError, match="available"):
        recipes.find("no-such-recipe")


def test_attack_without_eps_budget(tmp_path):
    jsma = GOOD + '\n[[attacks]]\nname = "jsma"\ngamma = 0.1\n'
    recipe = config.load(_write(tmp_path, jsma))
    assert recipe.attacks[1] == config.AttackConfig(name="jsma", eps=[None], options={"gamma": 0.1})
    with pytest.raises(config.RecipeError, match=r"`attacks.1.eps`: attack 'jsma' has no eps budget"):
        config.load(_write(tmp_path, jsma.replace("gamma = 0.1", "gamma = 0.1\neps = [0.1]")))
    with pytest.raises(config.RecipeError, match=r"`attacks.0` needs `eps`"):
        config.load(_write(tmp_path, GOOD.replace("eps = [0.1, 0.2]", "")))
