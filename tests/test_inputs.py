"""Bad inputs fail up front in one line naming the argument: labels past the model's classes
in every attack and in certification, a damaged model file, an empty recipe, bad eps,
``evaluation.limit`` above the test set, a full disk; the MILP solver prints nothing."""

import errno

import numpy as np
import pytest

from edgebnn import _io, attacks
from edgebnn.recipes import config, plan
from edgebnn.recipes.schema import RecipeError
from edgebnn.zoo.panda_fcn import build_fcn

import tensorflow as tf

from conftest import attack, small_study

SHAPE = (3, 3, 1)


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    return build_fcn(hidden_units=4, hidden_layers=1, precision="float", num_classes=10, input_shape=SHAPE)


#: Arguments an attack needs besides the shared ones (substitute: its held-out set and budget).
_EXTRA = {"substitute": lambda x: {"x_holdout": x, "rounds": 1, "epochs": 1}}


@pytest.mark.parametrize("name", attacks.names())
@pytest.mark.parametrize("label", [10, 42, -1])
def test_every_attack_rejects_labels_outside_the_models_classes(model, name, label):
    x = np.full((2, *SHAPE), 0.5, np.float32)
    budget = {"eps": 0.1} if attacks.info(name).takes_eps else {}
    with pytest.raises(ValueError, match=rf"`y` must hold class indices (in \[0, 10\)|>= 0).*got {label}"):
        attacks.get(name)(model, x, y=np.array([1, label]), **budget, **_EXTRA.get(name, lambda x: {})(x))


def test_certify_rejects_labels_outside_the_models_classes():
    from edgebnn.certify.run import certify

    tf.keras.utils.set_random_seed(0)
    binary = build_fcn(hidden_units=4, hidden_layers=1, precision="binary", input_bits=2, num_classes=3,
                       input_shape=SHAPE)
    x = np.full((2, *SHAPE), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"`y` must hold class indices in \[0, 3\) .* got 3"):
        certify(binary, x, np.array([0, 3]), eps=0.1)


def test_load_model_names_a_damaged_file(model, tmp_path):
    import edgebnn

    path = tmp_path / "model.keras"
    model.save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"`path`: cannot load a Keras model from '{path}'"):
        edgebnn.load_model(path)


def _recipe(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_an_empty_recipe_file_is_refused(tmp_path):
    with pytest.raises(RecipeError, match=r"r.toml: the recipe file is empty"):
        config.load(_recipe(tmp_path, "# only a comment\n"))


@pytest.mark.parametrize("eps, message", [
    ("-0.1", r"`attacks.0.eps`: must be a number >= 0 or a list of numbers >= 0, got -0.1\.$"),
    ("nan", r"`attacks.0.eps`: must be a number >= 0 or a list of numbers >= 0, got nan\.$"),
    ("[0.1, -2]", r"`attacks.0.eps`: must be a number >= 0 or a list of numbers >= 0, got \[0.1, -2\]\.$"),
    ("1.5", r"`attacks.0.eps`: an L-inf eps must be at most the pixel range 1 \(clip_max - clip_min\), got 1.5\.$"),
])
def test_bad_eps_is_one_clear_message(tmp_path, eps, message):
    path = _recipe(tmp_path, small_study("eps", attacks=[attack("fgsm", eps=[0.1])]))
    with pytest.raises(RecipeError, match=message):
        config.load(path, overrides=[f"attacks.0.eps={eps}"])


def test_an_l2_eps_may_exceed_the_pixel_range(tmp_path):
    path = _recipe(tmp_path, small_study("eps", attacks=[attack("pgd", eps=[1.5], norm=2, steps=2)]))
    assert config.load(path).cells[0].recipe.attacks[0].eps == [1.5]


def test_an_evaluation_limit_above_the_test_set_is_refused_when_set(tmp_path):
    study = config.load(_recipe(tmp_path, small_study("limit", evaluation="limit = 500")))
    with pytest.raises(RecipeError, match=r"`evaluation.limit` \(500\) is more than the 120 test images"):
        plan.plan(study, lambda recipe: (300, 120))
    default = config.load(_recipe(tmp_path, small_study("limit", evaluation="batch_size = 30")))
    assert plan.plan(default, lambda recipe: (300, 120))[default.cells[0].id].n_eval == 120  # "up to 1,000"


def test_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "store" / "results" / "k.npz"

    def write_half_then_fail(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(target), "write_bytes", write_half_then_fail)
    with pytest.raises(OSError, match=rf"No space left on device: cannot write {target} \(its partial file was "
                                      r"removed\)") as caught:
        _io.write_bytes(target, b"0123456789")
    assert caught.value.errno == errno.ENOSPC
    assert list(target.parent.iterdir()) == []


def test_a_full_disk_during_a_training_checkpoint_names_it_and_removes_its_files(tmp_path, monkeypatch):
    from edgebnn.training import train

    def write_then_fail(self, prefix, **kwargs):
        with open(f"{prefix}.index", "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tf.train.Checkpoint, "write", write_then_fail)
    tf.keras.utils.set_random_seed(0)
    net = build_fcn(hidden_units=4, hidden_layers=1, precision="float", input_shape=SHAPE)
    x, y = np.full((8, *SHAPE), 0.5, np.float32), np.arange(8) % 10
    with pytest.raises(OSError, match=r"cannot write the training checkpoint .*epoch-001 \(its partial files were "
                                      r"removed\): No space left on device"):
        train(net, x, y, epochs=2, batch_size=4, checkpoint_dir=tmp_path, verbose=0)
    assert list((tmp_path / "resume").iterdir()) == []  # nothing half-written, no state claiming an epoch


def test_the_milp_solver_prints_nothing(capfd):
    import highspy

    from edgebnn.certify.solvers import _stdout_to_devnull

    with _stdout_to_devnull():
        highspy.Highs()
    assert capfd.readouterr().out == ""
