"""Galloway et al.'s tables and figure as recipes: every one validates with the paper's setup, the
MNIST ones run end to end on a tiny budget with a number in every table cell the paper fills, and
the CIFAR-10 one runs one training step on generated CIFAR records."""

import json
import math

import numpy as np
import pytest

from edgebnn import recipes
from edgebnn.recipes import config, figures, runner
from edgebnn.recipes.console import Console
from edgebnn.evaluation.metrics import attack_metrics
from edgebnn.recipes.evaluations import attack
from edgebnn.recipes.config import FigureSpec
from edgebnn.recipes.schema import RecipeError

GALLOWAY = sorted(name for name in recipes.available() if name.startswith("galloway/"))
MNIST_RECIPES = ["galloway/table1", "galloway/table2", "galloway/table3", "galloway/table4", "galloway/table6"]
#: The adversarial training behind each "+" variant, per recipe (method, PGD steps).
PLUS = {
    "galloway/table1": {"+": ("fgsm_random_eps", None)},
    "galloway/table2": {"+pgd": ("pgd", 40)},
    "galloway/table3": {"+": ("pgd", 20)},
    "galloway/table4": {"+": ("fgsm_random_eps", None), "+pgd": ("pgd", 20)},
    "galloway/table5": {"+": ("fgsm", None)},
    "galloway/table6": {"+": ("fgsm_random_eps", None)},
}


def test_every_table_has_a_recipe():
    """Tables 1-6; Fig. 2 is drawn by table3's recipe (the same CW experiment)."""
    assert GALLOWAY == [f"galloway/table{i}" for i in range(1, 7)]
    kinds = {f.kind: f.options for f in config.load(recipes.find("galloway/table3")).figures}
    assert kinds["accuracy_vs_eps"]["x"] == "iterations" and kinds["accuracy_vs_eps"]["targets"] == "all"


@pytest.mark.parametrize("name", GALLOWAY)
def test_recipe_validates_with_the_papers_setup(name):
    path = recipes.find(name)
    text = path.read_text()
    assert "Claims (written before any number was seen" in text
    study = config.load(path)
    assert study.paper == "galloway" and study.claims
    for cell in study.cells:
        r = cell.recipe
        assert r.model.family == "galloway_cnn"
        assert (r.train.optimizer, r.train.learning_rate, r.train.batch_size) == ("adam", 0.001, 128)
        assert r.train.epochs == (20 if name == "galloway/table5" else 99) and r.train.seed == 1234 + cell.repeat
        assert r.deploy.enabled is False
        variant = cell.name.split(",")[0].lstrip("ABCS")
        adv = r.train.adversarial
        if not variant:
            assert adv is None
            continue
        method, steps = PLUS[name][variant]
        assert (adv.method, adv.eps, adv.mode, adv.label_source) == (method, 0.3, "augment", "predicted")
        assert adv.start_epoch == r.train.epochs - (10 if name == "galloway/table5" else 33)
        if steps is not None:
            assert (adv.steps, adv.step_size) == (steps, 0.01)
    if name != "galloway/table5":
        assert study.cells[0].recipe.data.dataset == "mnist" and study.cells[0].recipe.data.split.source == "test"
    assert all(table.paper for table in study.tables if table.paper_source.startswith("Galloway"))


def test_table3_uses_the_authors_cw_settings():
    """cleverhans_tutorials/mnist_attack.py: 1 binary-search step, learning rate 0.1, initial
    constant 10, 100 iterations; targeted toward every wrong class; S also under EOT."""
    study = config.load(recipes.find("galloway/table3"))
    for cell in study.cells:
        entries = cell.recipe.attacks
        for entry in entries:
            assert entry.name == "cw_l2" and entry.targets == "all"
            assert {k: entry.options[k] for k in ("binary_search_steps", "learning_rate", "initial_const")} == {
                "binary_search_steps": 1, "learning_rate": 0.1, "initial_const": 10.0}
        runs = {(e.options["max_iterations"], e.gradient) for e in entries}
        expected = {(1, "single"), (10, "single"), (100, "single")}
        assert runs == (expected | {(100, "eot")} if cell.recipe.model.precision == "S" else expected)


@pytest.mark.parametrize("name", MNIST_RECIPES)
def test_defaults_are_the_papers_setting(name):
    """The K grid, the four runs per cell and the paper's 7,035 Adam steps (15 epochs of 60,000 images:
    99 epochs of 71 batches), on all 9,000 training images of the offline carve, by default;
    Fashion-MNIST by --set."""
    kernels = [32, 64, 128, 256] if name == "galloway/table3" else [64, 128, 256]
    study = config.load(recipes.find(name))
    assert {c.recipe.model.options["kernels"] for c in study.cells} == set(kernels)
    assert study.repeats == 4 and {c.recipe.train.seed for c in study.cells} == {1234, 1235, 1236, 1237}
    assert {c.recipe.train.epochs for c in study.cells} == {99}
    paper_steps = 15 * math.ceil(60000 / 128)  # 7,035 Adam steps
    for c in study.cells:
        steps = math.ceil(c.recipe.data.split.train / c.recipe.train.batch_size) * c.recipe.train.epochs
        assert abs(steps - paper_steps) <= 0.01 * paper_steps, (c.name, steps)
    assert {(c.recipe.data.split.train, c.recipe.data.split.test) for c in study.cells} == {(9000, 1000)}
    fashion = config.load(recipes.find(name), overrides=['data.dataset="fashion_mnist"'])
    assert len(fashion.cells) == len(study.cells) == 4 * len(kernels) * len({c.name.split(",")[0] for c in study.cells})
    assert {c.recipe.data.dataset for c in fashion.cells} == {"fashion_mnist"}
    named = {c.name for c in study.cells}
    for table in study.tables:
        for paper in table.paper:  # every paper value lands in a cell of the paper's setting
            assert paper.match["cell"] in named, (name, paper.match)


def test_iterations_label_and_l2_over_every_row():
    assert attack.iterations("cw_l2", {"max_iterations": 10, "learning_rate": 0.1}) == 10
    assert attack.iterations("pgd", {"steps": 40}) == 40
    assert attack.iterations("pgd", {}) is None
    assert attack.iterations("square", {"queries": 100}) is None  # queries are no iterations
    x = np.zeros((3, 2, 2, 1), np.float32)
    x_adv = x.copy()
    x_adv[0, 0, 0, 0] = 0.6  # success, L2 0.6
    x_adv[1, :, :, 0] = 0.5  # success, L2 1.0
    metrics = attack_metrics(x=x, x_adv=x_adv, y=np.array([0, 0, 0]), clean_pred=np.array([0, 0, 0]),
                                    adv_pred=np.array([1, 2, 0]), targets=np.array([1, 2, 3]))
    assert metrics["l2_mean"] == pytest.approx(0.8)  # the two successful rows
    assert metrics["l2_mean_all"] == pytest.approx(1.6 / 3)  # every row, the failed one at distance 0
    assert metrics["accuracy"] == pytest.approx(1 / 3)


def _record(cell, iterations, accuracy, *, targets="all", evaluation="attacks", repeat=0):
    return {"cell": cell, "repeat": repeat, "evaluation": evaluation, "attack": "cw_l2" if evaluation == "attacks"
            else "clean", "eps": None if evaluation == "attacks" else 0.0, "targets": targets,
            "source": None, "iterations": iterations, "accuracy": accuracy}


def test_accuracy_against_iterations_figure_data():
    spec = FigureSpec(kind="accuracy_vs_eps", name="f", attack="cw_l2", x="iterations", targets="all")
    records = [
        _record("B", None, 0.98, evaluation="clean", targets=None),
        _record("B", 10, 0.5), _record("B", 100, 0.1), _record("B", 100, 0.2, repeat=1),
        _record("B", 100, 0.9, targets=None),  # an untargeted run: not in a targeted figure
    ]
    data = figures.accuracy_vs_eps_data(spec, records, {})
    assert data["cell=B"]["iterations"] == [0, 10, 100]
    np.testing.assert_allclose(data["cell=B"]["mean"], [0.98, 0.5, 0.15])
    np.testing.assert_allclose(data["cell=B"]["std"], [0.0, 0.0, 0.05])
    with pytest.raises(RecipeError, match="`x` must be one of"):
        figures.check(FigureSpec(kind="accuracy_vs_eps", name="f", attack="cw_l2", x="steps"), names=["B"])
    with pytest.raises(RecipeError, match="`targets` must be one of"):
        figures.check(FigureSpec(kind="accuracy_vs_eps", name="f", attack="cw_l2", targets="some"), names=["B"])


class _Quiet(Console):
    def line(self, message):
        pass

    def note(self, message):
        pass


def _adversarial_starts_now(name):
    """Overrides moving every adversarial cell's start to epoch 0 (tiny runs train one epoch)."""
    study = config.load(recipes.find(name))
    seen, out = set(), []
    for cell in study.cells:
        index = [c["name"] for c in _cells_table(name)].index(cell.name.split(",")[0])
        if cell.recipe.train.adversarial is not None and index not in seen:
            seen.add(index)
            out.append(f"cells.{index}.train.adversarial.start_epoch=0")
    return out


def _cells_table(name):
    import tomllib  # noqa: PLC0415

    return tomllib.loads(recipes.find(name).read_text())["cells"]


#: Per recipe: overrides shrinking its attacks (the iteration counts stay: they are table labels).
_TINY_ATTACKS = {
    "galloway/table1": ["evaluation.limit=40"],
    "galloway/table2": ["evaluation.limit=40"],
    "galloway/table3": ["evaluation.limit=3", "evaluation.batch_size=27"],
    "galloway/table4": ["evaluation.limit=40", "attacks.0.holdout=20", "attacks.0.rounds=2", "attacks.0.epochs=1"],
    "galloway/table6": ["evaluation.limit=40"],
}


#: Claims that need cells the offline default grid lacks (K = 256), so a default run leaves them unevaluated.
_NEEDS_K256 = {("galloway_table2", "C3")}


def _check_every_paper_cell_filled(report, study):
    """Every table cell the paper fills has our number beside it, and every claim got a verdict."""
    assert [c["id"] for c in report["claims"]] == [c.id for c in study.claims]
    for claim in report["claims"]:
        evaluated = not claim["verdict"].startswith("not evaluated")
        assert evaluated != ((study.name, claim["id"]) in _NEEDS_K256), (study.name, claim)
    names = {c.name for c in study.cells}
    for spec, table in zip(study.tables, report["tables"]):
        filled = {json.dumps([c["row"], c["column"]]): c for c in table["cells"] if c.get("mean") is not None}
        papered = [c for c in table["cells"] if c["paper"] is not None]
        expected = [p for p in spec.paper if p.match["cell"] in names]
        assert len(papered) == len(expected), spec.title
        for c in papered:
            assert json.dumps([c["row"], c["column"]]) in filled, (spec.title, c)


@pytest.mark.slow
@pytest.mark.parametrize("name", MNIST_RECIPES)
def test_mnist_recipe_end_to_end_on_a_tiny_budget(tmp_path, data_dir, name):
    overrides = [f'data.data_dir="{data_dir}"', 'data.split={source="test", train=200, test=60, seed=0}',
                 "train.epochs=1", "train.batch_size=100", "grid.model.options.kernels=[64]", "repeats=1",
                 *_adversarial_starts_now(name), *_TINY_ATTACKS[name]]
    study = config.load(recipes.find(name), overrides=overrides)
    out = tmp_path / "run"
    report = runner.run(study, out, console=_Quiet())
    assert report["status"] == "complete"
    report = json.loads((out / "report.json").read_text())
    _check_every_paper_cell_filled(report, study)
    markdown = (out / "report.md").read_text()
    for spec in study.tables:
        assert spec.title in markdown
    if name == "galloway/table3":
        figure = json.loads((out / "figures" / "fig2_cw_iterations.json").read_text())
        assert {tuple(curve["iterations"]) for curve in figure["data"].values()} == {(1, 10, 100)}
        records = [r for r in report["records"] if r["evaluation"] == "attacks"]
        assert all(r["images"] == 27 and r["l2_mean_all"] is not None for r in records)


def _write_cifar10(folder, *, train, test, seed=0):
    """Generated CIFAR-10 binary records (label byte + 3x32x32 channel-first pixels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)

    def records(n):
        labels = np.arange(n, dtype=np.uint8) % 10
        pixels = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        return np.concatenate([labels[:, None], pixels], axis=1).tobytes()

    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(records(train // 5))
    (folder / "test_batch.bin").write_bytes(records(test))


@pytest.mark.slow
def test_table5_cifar10_one_step_on_generated_records(tmp_path):
    _write_cifar10(tmp_path / "data" / "cifar10", train=100, test=40)
    overrides = [f'data.data_dir="{tmp_path / "data"}"', "repeats=1",
                 "train.epochs=1", "train.batch_size=100", "data.train_limit=100",
                 *_adversarial_starts_now("galloway/table5"), "evaluation.limit=20", "evaluation.batch_size=20",
                 "attacks.0.holdout=20", "attacks.0.rounds=1", "attacks.0.epochs=1"]
    study = config.load(recipes.find("galloway/table5"), overrides=overrides)
    assert {c.recipe.data.dataset for c in study.cells} == {"cifar10"}
    out = tmp_path / "run"
    report = runner.run(study, out, console=_Quiet())
    assert report["status"] == "complete"
    report = json.loads((out / "report.json").read_text())
    assert all(cell["train"]["history"]["loss"] and len(cell["train"]["history"]["loss"]) == 1
               for cell in report["cells"])
    _check_every_paper_cell_filled(report, study)


def test_substitute_training_batch_size_is_its_own_option():
    """The substitute's ``batch_size`` (its training batch, 128 in the authors' script) reaches the
    attack instead of colliding with the evaluation batch."""
    import tensorflow as tf  # noqa: PLC0415

    from edgebnn.recipes.config import EvaluationConfig  # noqa: PLC0415
    from edgebnn.recipes.evaluations import common  # noqa: PLC0415

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(24, 4, 4, 1)).astype(np.float32)
    model = tf.keras.Sequential([tf.keras.Input((4, 4, 1)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
    ctx = common.EvalContext(
        cell="c", model=model, randomized=False, model_of=None, x_eval=x[:12], y_eval=np.zeros(12, np.int64),
        x_pool=x[12:], y_pool=np.zeros(12, np.int64), x_test=x, y_test=np.zeros(24, np.int64), num_classes=10,
        evaluation=EvaluationConfig(batch_size=5), progress=lambda *args: None,
    )
    x_adv = common.craft(ctx, model, x[:12], None, attack="substitute", eps=0.1, label="substitute",
                         x_holdout=x[12:], rounds=1, epochs=1, batch_size=128)
    assert x_adv.shape == (12, 4, 4, 1)
    assert np.abs(x_adv - x[:12]).max() <= 0.1 + 1e-6
