"""Train (seeded, resumable) -> attack -> convert -> verify, on a small real subset."""

import numpy as np
import pytest

from edgebnn import zoo
from edgebnn.attacks import fgsm, pgd
from edgebnn.deploy.convert import convert, float_reference
from edgebnn.deploy.verify import verify
from edgebnn.evaluation import predict_labels, robustness_curve
from edgebnn.training import train
from edgebnn.zoo.panda_fcn import build_fcn

import tensorflow as tf


@pytest.fixture(scope="module")
def trained(fashion_small):
    x, y, xt, yt = fashion_small
    model = zoo.get("panda_fcn2")(precision="binary", input_bits=2)
    train(model, x, y, epochs=2, batch_size=100, seed=0, verbose=0)
    return model, xt, yt


def test_training_is_seeded(fashion_small):
    x, y, _, _ = fashion_small
    weights = []
    for _ in range(2):
        tf.keras.utils.set_random_seed(0)
        model = build_fcn(hidden_units=64, hidden_layers=2, precision="float")  # FCN2's layout, narrower
        train(model, x[:200], y[:200], epochs=1, batch_size=50, seed=0, verbose=0)
        weights.append(model.get_layer("dense_1").get_weights()[0])
    np.testing.assert_allclose(weights[0], weights[1], atol=1e-6)


class _Interrupt(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption")


def test_training_resumes_from_last_checkpoint(fashion_small, tmp_path):
    x, y, _, _ = fashion_small
    model = build_fcn(hidden_units=64, hidden_layers=2, precision="binary")
    with pytest.raises(KeyboardInterrupt):
        train(model, x[:200], y[:200], epochs=3, batch_size=100, checkpoint_dir=tmp_path, callbacks=[_Interrupt()], verbose=0)
    assert (tmp_path / "epoch-001.weights.h5").is_file()
    history = train(model, x[:200], y[:200], epochs=3, batch_size=100, checkpoint_dir=tmp_path, verbose=0)
    assert history.epoch == [1, 2]  # epoch 0 was not redone
    assert (tmp_path / "epoch-003.weights.h5").is_file()


def test_trained_model_beats_chance(trained):
    model, xt, yt = trained
    assert np.mean(predict_labels(model, xt) == yt) > 0.5


@pytest.mark.parametrize("attack, options", [(fgsm, {}), (pgd, {"steps": 5})])
def test_attacks_respect_bounds_and_hurt(trained, attack, options):
    model, xt, yt = trained
    x = tf.constant(xt[:100])
    x_adv = attack(model, x, eps=0.1, y=yt[:100], **options).numpy()
    assert np.max(np.abs(x_adv - xt[:100])) <= 0.1 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    clean = np.mean(predict_labels(model, xt[:100]) == yt[:100])
    assert np.mean(predict_labels(model, x_adv) == yt[:100]) < clean - 0.1


def test_pgd_at_least_as_strong_as_fgsm(trained):
    model, xt, yt = trained
    fgsm_rows, _ = robustness_curve(model, xt, yt, attack="fgsm", eps_list=[0.1])
    pgd_rows, _ = robustness_curve(model, xt, yt, attack="pgd", eps_list=[0.1], steps=10)
    assert pgd_rows[0]["accuracy"] <= fgsm_rows[0]["accuracy"]


def test_attack_rejects_nan(trained):
    model, xt, _ = trained
    bad = xt[:2].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fgsm(model, bad, eps=0.1)


def test_converted_model_agrees_with_keras(trained):
    model, xt, yt = trained
    xt, yt = xt[:100], yt[:100]
    flatbuffer = convert(model)
    # binary end to end: 1-bit weights against float32 (the rewrites make every dense layer binary)
    assert len(float_reference(model)) >= 20 * len(flatbuffer)
    x_adv = pgd(model, xt, eps=0.1, steps=5, y=yt).numpy()
    result = verify(flatbuffer, keras_model=model, x=xt, y=yt, x_adv=x_adv)
    for key in ("clean", "adversarial"):
        assert result[key]["n"] == len(xt)
        assert result[key]["agreement"] >= 0.99
        assert abs(result[key]["accuracy_tflite"] - result[key]["accuracy_keras"]) <= 0.01
    with pytest.raises(ValueError, match="target"):
        convert(model, target="coreml")


def test_input_gradient_flows_through_discretization_and_sign(trained):
    """White-box attacks need a non-zero input gradient: STE through sign, identity through discretization."""
    model, xt, yt = trained
    x = tf.constant(xt[:16])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.keras.losses.sparse_categorical_crossentropy(yt[:16], model(x), from_logits=True)
    grad = tape.gradient(loss, x).numpy()
    assert np.all(np.isfinite(grad))
    assert np.count_nonzero(grad) > 0.5 * grad.size


def test_top_k_accuracy_against_numpy_reference():
    """Top-k accuracy of a fixed logits function equals the NumPy count of labels among the k largest logits."""
    from edgebnn.evaluation import top_k_accuracy

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 20)).astype(np.float32)
    y = rng.integers(0, 20, size=50)
    x = np.arange(50)

    def model_fn(index):
        return logits[np.asarray(index)]

    for k in (1, 5, 20):
        expected = np.mean([label in np.argsort(-row)[:k] for row, label in zip(logits, y)])
        assert top_k_accuracy(model_fn, x, y, k=k, batch_size=16) == pytest.approx(expected)
    assert top_k_accuracy(model_fn, x, y, k=20) == 1.0
    with pytest.raises(ValueError, match="`k`"):
        top_k_accuracy(model_fn, x, y, k=21)
