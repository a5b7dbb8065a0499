"""Train (seeded, resumable) -> attack -> convert -> verify, on a small real subset."""

import numpy as np
import pytest

from edgebnn import zoo
from edgebnn.attacks import fgsm, pgd
from edgebnn.deploy.convert import convert, float_reference
from edgebnn.deploy.verify import verify
from edgebnn.evaluation import predict_labels, robustness_curve
from edgebnn.training import AdversarialModel, train
from edgebnn.training.fit import epoch_order, resume_state
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
    def __init__(self, at=1):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("simulated interruption")


def test_training_resumes_from_last_checkpoint(fashion_small, tmp_path):
    x, y, _, _ = fashion_small
    model = build_fcn(hidden_units=64, hidden_layers=2, precision="binary")
    with pytest.raises(KeyboardInterrupt):
        train(model, x[:200], y[:200], epochs=3, batch_size=100, checkpoint_dir=tmp_path, callbacks=[_Interrupt()], verbose=0)
    assert resume_state(tmp_path)["epochs_done"] == 1
    history = train(model, x[:200], y[:200], epochs=3, batch_size=100, checkpoint_dir=tmp_path, verbose=0)
    assert history.epoch == [1, 2]  # epoch 0 was not redone
    assert len(history.history["loss"]) == 3  # ... and its numbers are in the history
    assert resume_state(tmp_path)["epochs_done"] == 3


def _exact_resume_model(kind):
    """A small model of ``kind`` whose training draws random numbers (dropout, stochastic
    binarization, an adversary with random starts and random eps)."""
    import larq as lq

    from edgebnn.quantizers import StochasticSign

    tf.keras.utils.set_random_seed(3)
    if kind == "dropout":
        return tf.keras.Sequential([
            tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dropout(0.3), tf.keras.layers.Dense(10)])
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(),
        lq.layers.QuantDense(32, kernel_quantizer=StochasticSign(), kernel_constraint="weight_clip"),
        tf.keras.layers.BatchNormalization(), tf.keras.layers.Dense(10)])
    if kind == "stochastic":
        return model
    return AdversarialModel(model, method="pgd" if kind == "pgd" else "fgsm_random_eps", eps=0.1, steps=2,
                            fraction=0.5, start_epoch=1)


def _weights(model):
    return [w.copy() for w in model.get_weights()]


#: The FGSM adversary with random eps resumes in the slow run only: the PGD adversary (random starts) runs
#: the same AdversarialModel resume path with random numbers drawn inside the adversary in the default run.
@pytest.mark.parametrize("kind", ["dropout", "stochastic", "pgd", pytest.param("random_eps", marks=pytest.mark.slow)])
def test_a_resumed_training_equals_an_uninterrupted_one_bit_for_bit(fashion_small, tmp_path, kind):
    x, y = fashion_small[0][:120], fashion_small[1][:120]
    options = dict(epochs=3, batch_size=40, seed=5, verbose=0)
    reference = _exact_resume_model(kind)
    full = train(reference, x, y, checkpoint_dir=tmp_path / "full", **options)
    again = _exact_resume_model(kind)
    assert not any(np.array_equal(a, b) for a, b in zip(_weights(reference), _weights(again)) if a.ndim == 2)

    interrupted = _exact_resume_model(kind)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, x, y, checkpoint_dir=tmp_path / "cut", callbacks=[_Interrupt(2)], **options)
    tf.keras.backend.clear_session()  # what a new process starts from
    resumed = _exact_resume_model(kind)  # a new model, as a rerun builds it
    history = train(resumed, x, y, checkpoint_dir=tmp_path / "cut", **options)
    assert history.epoch == [2]
    assert history.history == full.history
    for a, b in zip(_weights(reference), _weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_two_uninterrupted_trainings_are_bit_identical_and_epochs_differ_in_order(fashion_small):
    x, y = fashion_small[0][:120], fashion_small[1][:120]
    runs = []
    for _ in range(2):
        model = _exact_resume_model("dropout")
        runs.append((train(model, x, y, epochs=2, batch_size=40, seed=5, verbose=0).history, _weights(model)))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
    orders = [epoch_order(5, e, 120) for e in (0, 1)]
    assert sorted(orders[0]) == list(range(120)) and not np.array_equal(*orders)
    np.testing.assert_array_equal(orders[0], epoch_order(5, 0, 120))


def test_a_resume_state_of_another_run_is_refused(fashion_small, tmp_path):
    x, y = fashion_small[0][:80], fashion_small[1][:80]
    model = build_fcn(hidden_units=16, hidden_layers=1, precision="float")
    train(model, x, y, epochs=1, batch_size=40, seed=0, checkpoint_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match=r"holds a training run with seed 0, not 1"):
        train(model, x, y, epochs=2, batch_size=40, seed=1, checkpoint_dir=tmp_path, verbose=0)
    (tmp_path / "resume" / "state.json").write_text('{"epochs_done": ')
    with pytest.raises(ValueError, match=r"unreadable resume state .*state.json"):
        train(model, x, y, epochs=2, batch_size=40, seed=0, checkpoint_dir=tmp_path, verbose=0)


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


@pytest.mark.slow
def test_converted_model_agrees_with_keras(trained):
    """In the default run, test_cli.py::test_quickstart_end_to_end_on_a_small_subset converts the same model
    (FCN2, binary, 2-bit input, trained) for LCE and checks its size against float32 and its agreement with
    Keras on clean and PGD examples; test_deploy.py checks the refusal of an unknown target."""
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
