"""Adversarial training through ``model.fit`` and inside ``tf.distribute`` scopes, on real data."""

import numpy as np
import pytest

from edgebnn import attacks, zoo
from edgebnn.evaluation.robustness import predict_labels
from edgebnn.training import AdversarialModel, compile_for_classification, random_eps_sigma, train
from edgebnn.training.adversarial import sample_random_eps

import tensorflow as tf


pytestmark = pytest.mark.usefixtures("seed")  # conftest: every test starts from the same seed

EPS = 0.1


@pytest.fixture(scope="module")
def fashion_train(data_dir):
    from edgebnn import data

    x, y = data.load("fashion_mnist", "train", data_dir=data_dir, limit=2000, seed=2)
    xt, yt = data.load("fashion_mnist", "test", data_dir=data_dir, limit=300, seed=2)
    return x, y, xt, yt


def small_mlp(seed=0):
    tf.keras.utils.set_random_seed(seed)
    return tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(128, activation="relu"), tf.keras.layers.Dense(10),
    ])


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="fgm"), "method"),
    (dict(eps=-0.1), "eps"),
    (dict(fraction=1.5), "fraction"),
    (dict(start_epoch=-1), "start_epoch"),
    (dict(label_source="oracle"), "label_source"),
    (dict(steps=0), "steps"),
    (dict(clip_min=1.0, clip_max=0.0), "clip_min"),
    (dict(mode="mix"), "mode"),
])
def test_validation(kwargs, match):
    options = {"eps": EPS, **kwargs}
    with pytest.raises(ValueError, match=match):
        AdversarialModel(small_mlp(), **options)


def test_random_eps_follows_kurakin_sigma():
    assert random_eps_sigma(0.3) == pytest.approx(39 / 255)  # ceil(76.5 / 2) = 39
    assert random_eps_sigma(16 / 255) == pytest.approx(8 / 255)
    tf.random.set_seed(0)
    eps = sample_random_eps(20000, 0.3).numpy()
    assert eps.min() >= 0 and eps.max() <= np.float32(0.3)
    # |N(0, sigma)| truncated at 2 sigma has mean ~ 0.72 sigma (0.7979 untruncated)
    assert eps.mean() == pytest.approx(0.72 * 39 / 255, rel=0.05)


def test_augment_mode_appends_the_adversary_of_every_example(fashion_train):
    x, y = fashion_train[0][:16], fashion_train[1][:16]
    model = small_mlp()
    adv = AdversarialModel(model, method="fgsm", eps=EPS, mode="augment", start_epoch=1)
    x0, y0, w0 = adv.augmented_batch(x, y)
    np.testing.assert_array_equal(x0.numpy(), x)  # before start_epoch: the clean batch only
    assert w0 is None and y0.shape == (16,)
    adv.epoch.assign(1)
    x1, y1, w1 = adv.augmented_batch(x, y, np.ones(16, np.float32))
    np.testing.assert_array_equal(x1.numpy()[:16], x)
    np.testing.assert_array_equal(y1.numpy(), np.r_[y, y])
    assert w1.shape == (32,)
    reference = attacks.fgsm(model, x, eps=EPS, y=y)
    np.testing.assert_allclose(x1.numpy()[16:], reference.numpy(), atol=1e-6)
    history = train(adv, x, y, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("method", ["fgsm", "fgsm_random_eps", "rfgsm", "pgd"])
def test_adversarial_batch_fraction_and_bound(fashion_train, method):
    x, y = fashion_train[0][:20], fashion_train[1][:20]
    adv = AdversarialModel(small_mlp(), method=method, eps=EPS, steps=3, fraction=0.25)
    mixed = adv.adversarial_batch(x, y).numpy()
    assert mixed.shape == x.shape
    np.testing.assert_array_equal(mixed[5:], x[5:])  # round(0.25 * 20) = 5 adversarial
    delta = np.abs(mixed[:5] - x[:5])
    assert delta.max() <= EPS + 1e-6 and delta.max() > 0
    assert mixed.min() >= 0 and mixed.max() <= 1


def test_start_epoch_and_epoch_counter(fashion_train):
    x, y = fashion_train[0][:200], fashion_train[1][:200]
    adv = AdversarialModel(small_mlp(), method="fgsm", eps=EPS, start_epoch=2, fraction=1.0)
    np.testing.assert_array_equal(adv.adversarial_batch(x[:8], y[:8]).numpy(), x[:8])  # epoch 0 < 2
    compile_for_classification(adv)
    adv.fit(x, y, epochs=3, batch_size=50, verbose=0)
    assert int(adv.epoch.numpy()) == 2
    assert np.abs(adv.adversarial_batch(x[:8], y[:8]).numpy() - x[:8]).max() > 0


def test_adversarially_trained_beats_plain_twin_under_fgsm(fashion_train):
    x, y, xt, yt = fashion_train
    plain = small_mlp()
    train(plain, x, y, epochs=3, batch_size=64, seed=0, verbose=0)
    robust = small_mlp()
    adv = AdversarialModel(robust, method="fgsm", eps=EPS, fraction=0.5, label_source="predicted")
    train(adv, x, y, epochs=3, batch_size=64, seed=0, verbose=0)

    def fgsm_accuracy(model):
        x_adv = attacks.fgsm(model, xt, eps=EPS, y=yt)
        return np.mean(predict_labels(model, np.asarray(x_adv)) == yt)

    acc_plain, acc_robust = fgsm_accuracy(plain), fgsm_accuracy(robust)
    assert acc_robust > acc_plain + 0.15, (acc_plain, acc_robust)
    assert np.mean(predict_labels(robust, xt) == yt) > 0.6  # still a useful classifier


@pytest.mark.parametrize("strategy_name", ["one_device", "mirrored"])
def test_pgd_training_inside_distribution_strategy(fashion_train, strategy_name):
    x, y = fashion_train[0][:256], fashion_train[1][:256]
    strategy = (
        tf.distribute.OneDeviceStrategy("/cpu:0") if strategy_name == "one_device"
        else tf.distribute.MirroredStrategy(["/cpu:0"])
    )
    with strategy.scope():
        model = small_mlp()
        adv = AdversarialModel(model, method="pgd", eps=EPS, steps=3, fraction=0.5, start_epoch=1)
        compile_for_classification(adv)
    before = [w.copy() for w in model.get_weights()]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    history = adv.fit(dataset, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert int(adv.epoch.numpy()) == 1
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))


def test_binary_model_keeps_weight_clip(fashion_train):
    x, y = fashion_train[0][:256], fashion_train[1][:256]
    model = zoo.get("panda_fcn2")(precision="binary", input_bits=2)
    adv = AdversarialModel(model, method="rfgsm", eps=EPS)
    compile_for_classification(adv, learning_rate=0.1)  # large steps would push latent weights out
    adv.fit(x, y, epochs=1, batch_size=64, verbose=0)
    kernels = [w for w in model.trainable_weights if "kernel" in w.name]
    assert kernels and max(float(np.abs(k.numpy()).max()) for k in kernels) <= 1.0 + 1e-6


@pytest.mark.parametrize("variant,bound", [("tramer", EPS), ("panda", 1.5 * EPS)])
def test_rfgsm_variants_in_training(fashion_train, variant, bound):
    """Panda et al.'s R-FGSM moves training examples up to 1.5 eps, Tramèr's up to eps."""
    x, y = fashion_train[0][:20], fashion_train[1][:20]
    adv = AdversarialModel(small_mlp(), method="rfgsm", eps=EPS, fraction=1.0, rfgsm_variant=variant)
    delta = np.abs(adv.adversarial_batch(x, y).numpy() - x)
    assert delta.max() <= bound + 1e-6
    if variant == "panda":  # some pixel moved by alpha + eps, beyond Tramèr's bound
        assert delta.max() > EPS + 1e-3


def test_rfgsm_variant_needs_rfgsm_method():
    with pytest.raises(ValueError, match="rfgsm_variant"):
        AdversarialModel(small_mlp(), method="fgsm", eps=EPS, rfgsm_variant="panda")
    with pytest.raises(ValueError, match="rfgsm_variant"):
        AdversarialModel(small_mlp(), method="rfgsm", eps=EPS, rfgsm_variant="other")


def test_config_round_trip_and_checkpoints_without_config_warnings(fashion_train, tmp_path, tensorflow_log):
    x, y = fashion_train[0][:64], fashion_train[1][:64]
    adv = AdversarialModel(small_mlp(), method="pgd", eps=EPS, steps=2, fraction=0.25, start_epoch=1,
                           label_source="predicted", mode="augment", eot_samples=2, name="adv")
    config = adv.get_config()
    again = AdversarialModel.from_config(config)
    assert {k: v for k, v in again.get_config().items() if k != "model"} == {
        k: v for k, v in config.items() if k != "model"}
    assert again.model.get_config()["layers"] == adv.model.get_config()["layers"]
    # the weight checkpoints ask the model for its config at every epoch
    train(adv, x, y, epochs=2, batch_size=32, checkpoint_dir=tmp_path, verbose=0)
    assert not [m for m in tensorflow_log if "non-serializable" in m or "get_config" in m]
