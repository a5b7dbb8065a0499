"""The options attack_table.py and strong_eval.py share (scripts/_fcn2.py), and the store payloads of the
scripts that train their models through :func:`edgebnn.recipes.store.trained_model` (their store keys)."""

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import _fcn2  # noqa: E402


def _parse(argv, **defaults):
    parser = argparse.ArgumentParser()
    _fcn2.add_options(parser, **{"cache_dir": "runs/x", "train_limit": 100, "n": 10, **defaults})
    return parser.parse_args(argv)


def test_models_default_to_all_four():
    assert _parse([]).models == _fcn2.MODELS == (("float", 2), ("float", 8), ("binary", 2), ("binary", 8))


def test_models_subset_in_the_order_given():
    assert _parse(["--models", "binary-8,float-2"]).models == (("binary", 8), ("float", 2))


@pytest.mark.parametrize("text", ["float-3", "binary", "float-2,", "FLOAT-2"])
def test_unknown_model_is_refused_naming_the_valid_ones(text, capsys):
    with pytest.raises(SystemExit):
        _parse(["--models", text])
    err = capsys.readouterr().err
    assert "--models" in err and "float-2" in err and "'all'" in err


def test_defaults_come_from_the_caller():
    args = _parse([], cache_dir="runs/attack_table", train_limit=None, n=1000)
    assert (args.cache_dir, args.train_limit, args.n, args.epochs, args.seed) == ("runs/attack_table", None, 1000, 3, 0)


def test_trained_model_stores_under_the_payload_key_and_loads_it_back(tmp_path, monkeypatch):
    from edgebnn import training
    from edgebnn.recipes.store import Store, weights_key

    calls = []
    monkeypatch.setattr(training, "train", lambda model, x, y, **options: calls.append((x, y, options)))
    args = _parse(["--cache-dir", str(tmp_path), "--seed", "3"])
    _fcn2.trained_model("binary", 2, args, lambda: ("x", "y"), seed=4, key={"data_seed": 3})
    _fcn2.trained_model("binary", 2, args, lambda: pytest.fail("trained twice"), seed=4, key={"data_seed": 3})
    assert calls == [("x", "y", {"epochs": 3, "batch_size": 64, "seed": 4, "verbose": 0})]
    payload = {"family": "panda_fcn2", "precision": "binary", "input_bits": 2, "data": "fashion_mnist/train",
               "train_limit": 100, "data_seed": 3, "epochs": 3, "batch_size": 64, "seed": 4}
    assert (Store(None, cache=tmp_path).model_dir(weights_key(payload)) / "model.weights.h5").is_file()


def test_deploy_fashion_payload_is_the_one_its_stored_weights_are_keyed_by():
    import deploy_fashion

    assert deploy_fashion.weights_payload("galloway_b64_in2", 3) == {
        "family": "galloway_cnn", "precision": "B", "kernels": 64, "input_bits": 2,
        "data": "fashion_mnist/train (all 60,000)", "epochs": 3, "batch_size": 128, "seed": 0}
