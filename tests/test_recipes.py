"""Recipe files: validation of keys and values, overrides, discovery, study expansion."""

import textwrap

import pytest

from conftest import attack, small_study
from edgebnn import recipes
from edgebnn.recipes import config

GOOD = small_study(
    "tiny",
    head='description = "a test recipe"',
    data=dict(train_limit=100),
    model=dict(precision="binary", input_bits=2),
    train=dict(epochs=1),
    evaluation=None,
    attacks=[attack("pgd", eps=[0.1, 0.2], steps=3)],
)

GRID = GOOD + textwrap.dedent(
    """
    [grid]
    "model.precision" = ["float", "binary"]
    "model.input_bits" = [2, 8]
    """
)


def _write(tmp_path, text, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_recipe_is_a_single_cell_study(tmp_path):
    study = config.load(_write(tmp_path, GOOD))
    assert study.single and len(study.cells) == 1
    cell = study.cells[0]
    assert cell.name == cell.id == "tiny" and cell.overrides == {}
    recipe = cell.recipe
    assert recipe.name == "tiny" and recipe.data.train_limit == 100
    assert recipe.model.input_bits == 2 and recipe.train.epochs == 1
    assert recipe.train.learning_rate == pytest.approx(1e-3) and recipe.train.optimizer == "adam"  # defaults
    assert recipe.deploy.enabled is True
    [attack] = recipe.attacks
    assert attack.name == "pgd" and attack.eps_list == [0.1, 0.2] and attack.options == {"steps": 3}


def test_shipped_recipes_are_valid():
    found = recipes.available()
    assert {"quickstart", "fcn2_discretization"} <= set(found)
    for path in found.values():
        config.load(path)


def test_grid_expands_to_the_cartesian_product_in_order(tmp_path):
    study = config.load(_write(tmp_path, GRID))
    assert not study.single
    assert [c.name for c in study.cells] == [
        "precision=float,input_bits=2", "precision=float,input_bits=8",
        "precision=binary,input_bits=2", "precision=binary,input_bits=8",
    ]
    assert [(c.recipe.model.precision, c.recipe.model.input_bits) for c in study.cells] == [
        ("float", 2), ("float", 8), ("binary", 2), ("binary", 8)]
    assert study.cells[1].overrides == {"model.precision": "float", "model.input_bits": 8}
    assert all(c.recipe.train.epochs == 1 for c in study.cells)  # the base applies to every cell


def test_named_cells_cross_the_grid_unless_grid_false(tmp_path):
    text = GRID.replace('"model.input_bits" = [2, 8]\n', "") + textwrap.dedent(
        """
        [[cells]]
        name = "plain"
        [[cells]]
        name = "adv"
        train.adversarial = { method = "fgsm", eps = 0.1, mode = "augment" }
        [[cells]]
        name = "source"
        grid = false
        "model.precision" = "float"
        "model.input_bits" = 8
        """
    )
    study = config.load(_write(tmp_path, text))
    assert [c.name for c in study.cells] == [
        "plain,precision=float", "plain,precision=binary", "adv,precision=float", "adv,precision=binary", "source"]
    adv = study.cells[3].recipe
    assert adv.train.adversarial.method == "fgsm" and adv.train.adversarial.mode == "augment"
    assert adv.model.precision == "binary" and study.cells[0].recipe.train.adversarial is None
    assert study.cells[4].recipe.model.input_bits == 8


def test_only_standalone_cells_keep_the_grid_as_cells(tmp_path):
    text = GRID + '\n[[cells]]\nname = "extra"\ngrid = false\n"train.epochs" = 2\n'
    study = config.load(_write(tmp_path, text))
    assert [c.name for c in study.cells][-1] == "extra" and len(study.cells) == 5
    assert study.cells[-1].recipe.train.epochs == 2 and study.cells[-1].recipe.model.input_bits == 2


def test_repeats_use_consecutive_seeds(tmp_path):
    study = config.load(_write(tmp_path, "repeats = 3\n" + GRID.replace("[train]", "[train]\nseed = 5")))
    assert len(study.cells) == 12 and study.repeats == 3
    first = [c for c in study.cells if c.name == "precision=float,input_bits=2"]
    assert [(c.repeat, c.recipe.train.seed, c.id) for c in first] == [
        (0, 5, "precision=float,input_bits=2#r0"), (1, 6, "precision=float,input_bits=2#r1"),
        (2, 7, "precision=float,input_bits=2#r2")]


def test_repeats_line_placement(tmp_path):
    # `repeats` is a top-level key: it must come before the first [table] in TOML.
    study = config.load(_write(tmp_path, "repeats = 2\n" + GOOD))
    assert len(study.cells) == 2 and not study.single


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("epochs = 1", "epoch = 1", r"unknown key `train.epoch`; valid keys in \[train\]: \['adversarial', 'batch_size'"),
        ("epochs = 1", "epochs = 0", r"`train.epochs`: input should be greater than or equal to 1, got 0"),
        ("epochs = 1", 'epochs = "one"', r"`train.epochs`: input should be a valid integer, got 'one'"),
        ("train_limit = 100", "train_limit = 1.5", r"`data.train_limit`: input should be a valid integer"),
        ('dataset = "fashion_mnist"', 'dataset = "svhn"', r"`data.dataset` must be one of"),
        ('family = "panda_fcn2"', 'family = "vgg"', r"`model.family`: Unknown model family 'vgg'"),
        ('precision = "binary"', 'precision = "xnor"', r"`model.precision` must be one of"),
        ("input_bits = 2", "input_bits = 9", r"`model.input_bits`: input should be less than or equal to 8"),
        ('name = "pgd"', 'name = "deepfool"', r"`attacks.0.name`: Unknown attack"),
        ("eps = [0.1, 0.2]", "eps = [-0.1]", r"`attacks.0.eps"),
        ("steps = 3", "stepz = 3", r"unknown key `attacks.0.stepz` for attack 'pgd'"),
        ("[train]", "[training]", r"unknown key `training`; valid top-level keys"),
        ("[train]", '[deploy]\nweights = "int4"\n[train]', r"`deploy.weights` must be one of"),
        ("[train]", "[deploy]\nstrip = 1\n[train]", r"`deploy.strip`: input should be a valid boolean, got 1"),
        ("epochs = 1", 'epochs = 1\noptimizer = "rmsprop"', r"`train.optimizer`: input should be 'adam' or 'sgd'"),
        ("epochs = 1", 'epochs = 3\nschedule = "step"', r"`train.decay_epochs`: the step schedule needs"),
        ("epochs = 1", 'epochs = 1\nadversarial = { method = "fgsm", eps = 0.1, start_epoch = 1 }',
         r"`train.adversarial.start_epoch`: 1 leaves no adversarial epoch"),
        ("epochs = 1", 'epochs = 1\nadversarial = { method = "fgsm", eps = 0.1, mode = "mix" }',
         r"`train.adversarial.mode`: input should be 'replace' or 'augment'"),
        ("epochs = 1", 'epochs = 1\nadversarial = { method = "fgsm", eps = 0.1, rfgsm_variant = "panda" }',
         r"`train.adversarial.rfgsm_variant`: applies to method 'rfgsm' only, got method 'fgsm'"),
        ("epochs = 1", 'epochs = 1\nadversarial = { method = "rfgsm", eps = 0.1, rfgsm_variant = "madry" }',
         r"`train.adversarial.rfgsm_variant`: input should be 'tramer' or 'panda'"),
        ("steps = 3", 'steps = 3\ntargets = "some"', r"`attacks.0.targets`: input should be 'random' or 'all'"),
        ("steps = 3", 'steps = 3\nsource = "other"', r"`attacks.0.source`: no cell named 'other'"),
        ("steps = 3", "steps = 3\nholdout = 10", r"`attacks.0.holdout`: attack 'pgd' takes no held-out set"),
        ("[train]", '[data.split]\ntrain = 10\ntest = 10\n[train]', r"`data.split` carves exact sizes"),
        ("steps = 3", 'steps = "forty"', r"`attacks.0.steps`: attack 'pgd' expects an int, got 'forty'"),
        ("steps = 3", "steps = 3.0", r"`attacks.0.steps`: attack 'pgd' expects an int, got 3.0"),
        ("steps = 3", 'steps = 3\nrand_init = "yes"', r"`attacks.0.rand_init`: attack 'pgd' expects true or false"),
        ("steps = 3", "steps = 3\nrestarts = true", r"`attacks.0.restarts`: attack 'pgd' expects an int, got True"),
        ("steps = 3", "steps = 3\nclip_max = nan", r"`attacks.0.clip_max`: attack 'pgd' expects a number, got nan"),
        ("steps = 3", 'steps = 3\nsurrogate = 1', r"`attacks.0.surrogate`: attack 'pgd' expects a string, got 1"),
        ("epochs = 1", "epochs = 1\nseed = -1", r"`train.seed`: input should be greater than or equal to 0, got -1"),
        ("train_limit = 100", "train_limit = 100\nseed = 4294967296", r"`data.seed`: input should be less than"),
    ],
)
def test_bad_recipes_name_the_key(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(config.RecipeError, match=message):
        config.load(_write(tmp_path, GOOD.replace(old, new, 1)))


@pytest.mark.parametrize(
    "extra, message",
    [
        ('[grid]\n"model.precision" = ["float", "xnor"]',
         r"cell 'precision=xnor': `model.precision` must be one of"),
        ('[grid]\n"model.input_bits" = [2, 12]', r"cell 'input_bits=12': `model.input_bits`: input should be less"),
        ('[grid]\n"train.epoks" = [1, 2]', r"cell 'epoks=1': unknown key `train.epoks`"),
        ('[[cells]]\nname = "a"\n"model.options.kernels" = 64\n[[cells]]\nname = "b"',
         r"cell 'a': unknown key `model.options.kernels` for panda_fcn2"),
        ('[[cells]]\nname = "a b"', r"`cells.0.name` is required"),
        ('[[cells]]\nname = "a"\n[[cells]]\nname = "a"', r"cell names must be unique; repeated: \['a'\]"),
        ('[[cells]]\nname = "a"\ngrid = 1', r"`cells.0.grid` must be true or false"),
        ('[grid]\n"model.precision" = []', r"`grid.model.precision` must be a non-empty list"),
        ('[[cells]]\nname = "a"\n[[cells]]\nname = "b"\n"attacks" = [{ name = "fgsm", eps = 0.1, source = "b" }]',
         r"cell 'b': `attacks.0.source`: a transfer attack needs another cell"),
        ('[[figures]]\nkind = "bars"\nname = "f"', r"`figures.0`: `kind` must be one of"),
        ('[[figures]]\nkind = "accuracy_vs_eps"\nname = "f"', r"`figures.0`: a accuracy_vs_eps figure needs `attack`"),
        ('[[figures]]\nkind = "uncertainty_histogram"\nname = "f"\ncell = "zz"', r"`figures.0`: `cell`: no cell named"),
        ('[[tables]]\ntitle = "t"\nformat = "pct"', r"`tables.0.format`: input should be"),
        ('[[tables]]\ntitel = "t"', r"unknown key `tables.0.titel`"),
        ("repeats = 0", r"`repeats`: input should be greater than or equal to 1"),
        ('[[robustness]]\neps = [0.1]\nsurrogates = ["nope"]',
         r"`robustness.0.surrogates`: unknown surrogate 'nope'"),
        ('[[robustness]]\neps = [0.1]\nnorm = "l1"', r"`robustness.0.norm` must be"),
        ('[[robustness]]\neps = [0.1]\nsquare_queries = 0', r"robustness.0.square_queries"),
    ],
)
def test_bad_studies_name_the_cell_and_the_key(tmp_path, extra, message):
    text = GOOD if extra.startswith("repeats") else GOOD + "\n" + extra + "\n"
    if extra.startswith("repeats"):
        text = extra + "\n" + GOOD
    with pytest.raises(config.RecipeError, match=message):
        config.load(_write(tmp_path, text))


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(config.RecipeError, match="not valid TOML"):
        config.load(_write(tmp_path, "name = [unclosed"))
    with pytest.raises(config.RecipeError, match="not found"):
        config.load(tmp_path / "nope.toml")


def test_overrides(tmp_path):
    path = _write(tmp_path, GOOD)
    study = config.load(path, overrides=["train.epochs=3", "attacks.0.eps=[0.3]", "data.test_limit=50",
                                         "deploy.verify=false"])
    recipe = study.cells[0].recipe
    assert recipe.train.epochs == 3 and recipe.attacks[0].eps_list == [0.3]
    assert recipe.data.test_limit == 50 and recipe.deploy.verify is False
    with pytest.raises(config.RecipeError, match="unknown key `train.epohcs`"):
        config.load(path, overrides=["train.epohcs=3"])
    with pytest.raises(config.RecipeError, match="key=value"):
        config.load(path, overrides=["train.epochs"])
    with pytest.raises(config.RecipeError, match="not an index"):
        config.load(path, overrides=["attacks.5.eps=[0.1]"])


def test_overrides_reach_grids_and_inline_tables(tmp_path):
    path = _write(tmp_path, GRID.replace("train_limit = 100\n", ""))
    study = config.load(path, overrides=["grid.model.input_bits=[4]", 'data.split={train=80, test=20}',
                                         'data.dataset="mnist"'])
    assert [c.name for c in study.cells] == ["precision=float,input_bits=4", "precision=binary,input_bits=4"]
    split = study.cells[0].recipe.data.split
    assert (split.source, split.train, split.test, split.seed) == ("test", 80, 20, 0)
    with pytest.raises(config.RecipeError, match=r"cell 'precision=float,input_bits=4': `data.split` carves"):
        config.load(path, overrides=["grid.model.input_bits=[4]", "data.split={train=80, test=20}",
                                     "data.train_limit=10"])


def test_find_by_name_and_path(tmp_path):
    assert recipes.find("quickstart").name == "quickstart.toml"
    path = _write(tmp_path, GOOD)
    assert recipes.find(str(path)) == path
    with pytest.raises(config.RecipeError, match="available"):
        recipes.find("no-such-recipe")


def test_recipes_in_subfolders_are_named_by_their_path(tmp_path, monkeypatch):
    (tmp_path / "paper" / "deep").mkdir(parents=True)
    (tmp_path / "paper" / "table1.toml").write_text(GOOD)
    (tmp_path / "paper" / "deep" / "fig2.toml").write_text(GOOD)
    monkeypatch.setenv(recipes.RECIPES_DIR_ENV, str(tmp_path))
    found = recipes.available()
    assert found["paper/table1"] == tmp_path / "paper" / "table1.toml"
    assert found["paper/deep/fig2"] == tmp_path / "paper" / "deep" / "fig2.toml"
    assert recipes.find("paper/deep/fig2") == tmp_path / "paper" / "deep" / "fig2.toml"
    assert "guan/table1" in found  # the shipped ones too
    with pytest.raises(config.RecipeError, match="paper/table1"):
        recipes.find("paper/table9")


def test_attack_without_eps_budget(tmp_path):
    jsma = GOOD + '\n[[attacks]]\nname = "jsma"\ngamma = 0.1\n'
    attack = config.load(_write(tmp_path, jsma)).cells[0].recipe.attacks[1]
    assert attack.name == "jsma" and attack.eps_list == [None] and attack.options == {"gamma": 0.1}
    with pytest.raises(config.RecipeError, match=r"`attacks.1.eps`: attack 'jsma' has no eps budget"):
        config.load(_write(tmp_path, jsma.replace("gamma = 0.1", "gamma = 0.1\neps = [0.1]")))
    with pytest.raises(config.RecipeError, match=r"`attacks.0` needs `eps`"):
        config.load(_write(tmp_path, GOOD.replace("eps = [0.1, 0.2]", "")))


def test_evaluation_kinds_come_from_the_registry():
    from edgebnn.recipes.evaluations import KINDS

    from edgebnn.recipes.evaluations.base import Kind

    for key, kind in KINDS.items():
        assert isinstance(kind, Kind)
        assert (key in config.Recipe.model_fields) == (kind.Spec is not None), key
    assert KINDS["clean"].Spec is None  # clean runs in every cell, without a recipe section


def test_option_types_of_referenced_attacks_are_checked(tmp_path):
    text = GOOD + '[[detection]]\nattack = "pgd"\neps = 0.1\nsteps = "ten"\n'
    with pytest.raises(config.RecipeError, match=r"`detection.0.steps`: attack 'pgd' expects an int, got 'ten'"):
        config.load(_write(tmp_path, text))


def test_well_typed_attack_options_pass(tmp_path):
    text = GOOD.replace("steps = 3", 'steps = 3\nstep_size = 0.01\nnorm = "l2"\nrand_init = false\nclip_max = 1')
    [attack] = config.load(_write(tmp_path, text)).cells[0].recipe.attacks
    assert attack.options == {"steps": 3, "step_size": 0.01, "norm": "l2", "rand_init": False, "clip_max": 1}
