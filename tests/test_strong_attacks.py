"""APGD, APGD-T, Square, the autoattack ensemble and gradient surrogates, on small real Fashion-MNIST models."""

import importlib

import numpy as np
import pytest

from edgebnn import attacks, ops
from edgebnn.attacks.apgd import checkpoints, dlr_loss, targeted_dlr_loss
from edgebnn.evaluation.robustness import predict_labels

import larq as lq
import tensorflow as tf

N_TEST = 100


pytestmark = pytest.mark.usefixtures("seed")  # conftest: every test starts from the same seed


@pytest.fixture(scope="module")
def binary_model(fcn_in2, fashion_small):
    """A small binary FCN with 2-bit input (Larq ste_sign + InputDiscretization): conftest's ``fcn_in2``,
    trained once per test run (the surrogate swaps below restore its quantizers)."""
    _, _, xt, yt = fashion_small
    return fcn_in2, xt[:N_TEST], yt[:N_TEST]


def accuracy(model, x, y):
    return float(np.mean(predict_labels(model, np.asarray(x)) == y))


def masked(model):
    """Rounds its input with no gradient: every input gradient is exactly zero (fools PGD)."""
    return lambda inputs: model(tf.stop_gradient(tf.round(inputs * 16.0) / 16.0))


# --- APGD -----------------------------------------------------------------------------


def test_dlr_losses_match_their_formulas():
    logits = np.array([[3.0, 1.0, 2.0, -1.0, 0.5], [0.0, 4.0, 1.0, 2.0, 3.0]], np.float32)
    y, target = np.array([0, 2]), np.array([2, 4])
    ranked = -np.sort(-logits, axis=1)
    expected = []
    for z, label, top in zip(logits, y, ranked):
        other = np.max(np.delete(z, label))
        expected.append(-(z[label] - other) / (top[0] - top[2]))
    np.testing.assert_allclose(dlr_loss(tf.constant(logits), tf.constant(y)).numpy(), expected, rtol=1e-6)
    expected_t = [-(z[label] - z[t]) / (top[0] - 0.5 * (top[2] + top[3])) for z, label, t, top in zip(logits, y, target, ranked)]
    np.testing.assert_allclose(
        targeted_dlr_loss(tf.constant(logits), tf.constant(y), tf.constant(target)).numpy(), expected_t, rtol=1e-6,
    )
    # Shift and scale invariance, the point of DLR.
    np.testing.assert_allclose(dlr_loss(tf.constant(3 * logits + 7), tf.constant(y)).numpy(), expected, rtol=1e-5)


def test_apgd_fused_bookkeeping_equals_the_plain_ops():
    apgd_module = importlib.import_module("edgebnn.attacks.apgd")  # `attacks.apgd` is the function
    rng = np.random.default_rng(0)
    images = [tf.constant(rng.normal(size=(6, 28, 28, 1)).astype(np.float32)) for _ in range(5)]
    x_adv, grad, x_best_adv, x_best, grad_best = images
    loss, loss_prev, loss_best = (tf.constant(rng.normal(size=6).astype(np.float32)) for _ in range(3))
    wrong, fooled = tf.constant([True, False, True, False, False, True]), tf.constant([False] * 5 + [True])
    increases = tf.constant(rng.integers(0, 5, 6).astype(np.float32))
    args = (wrong, x_adv, grad, loss, fooled, x_best_adv, loss_prev, increases, x_best, grad_best, loss_best)
    for fused, plain in zip(apgd_module._fused_track(*args), apgd_module._track(*args)):
        np.testing.assert_array_equal(fused.numpy(), plain.numpy())


def test_checkpoints_follow_croce_hein_schedule():
    is_check, window = checkpoints(100)
    # p_0 = 0, p_1 = 0.22, then each interval 0.03 shorter, never below 0.06.
    assert list(np.flatnonzero(is_check) + 1) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert list(window[is_check]) == [22, 19, 16, 13, 10, 7, 6, 6]


def test_apgd_at_least_as_strong_as_pgd_at_equal_iterations(float_model):
    model, x, y = float_model
    for eps in (0.02, 0.05):
        acc_pgd = accuracy(model, attacks.pgd(model, x, eps=eps, steps=20, y=y), y)
        acc_apgd = accuracy(model, attacks.apgd(model, x, eps=eps, steps=20, y=y), y)
        assert acc_apgd <= acc_pgd + 0.01, (eps, acc_apgd, acc_pgd)


@pytest.mark.parametrize("options", [dict(loss="ce"), dict(loss="dlr"), dict(loss="ce", norm=2, eps=1.0)])
def test_apgd_bound_clip_and_drop(float_model, options):
    model, x, y = float_model
    options = {"eps": 0.1, **options}
    x_adv = np.asarray(attacks.apgd(model, x, y=y, steps=20, **options))
    assert x_adv.shape == x.shape and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if options.get("norm") == 2:
        assert np.sqrt(((x_adv - x) ** 2).reshape(len(x), -1).sum(1)).max() <= options["eps"] * (1 + 1e-5)
    else:
        assert np.abs(x_adv - x).max() <= options["eps"] + 1e-6
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.3


@pytest.mark.slow
def test_apgd_targeted_reaches_target_and_apgd_t_breaks(float_model):
    model, x, y = float_model
    target = (y + 1) % 10
    x_adv = attacks.apgd(model, x, eps=0.2, steps=20, y=target, targeted=True, loss="dlr")
    assert np.mean(predict_labels(model, np.asarray(x_adv)) == target) > 0.8
    x_t = attacks.apgd_t(model, x, eps=0.05, steps=20, target_classes=3, y=y)
    assert np.abs(np.asarray(x_t) - x).max() <= 0.05 + 1e-6
    assert accuracy(model, x_t, y) < accuracy(model, x, y) - 0.2


def test_apgd_validation(float_model):
    model, x, _ = float_model
    with pytest.raises(ValueError, match="loss"):
        attacks.apgd(model, x[:2], eps=0.1, loss="hinge")
    with pytest.raises(ValueError, match="eps"):
        attacks.apgd(model, x[:2], eps=-1.0)
    with pytest.raises(ValueError, match="surrogate"):
        attacks.apgd(model, x[:2], eps=0.1, surrogate="magic")
    with pytest.raises(ValueError, match="target_classes"):
        attacks.apgd_t(model, x[:2], eps=0.1, target_classes=10)
    with pytest.raises(ValueError, match="targeted"):
        attacks.apgd_t(model, x[:2], eps=0.1, targeted=True, y=[1, 2])


# --- Square ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm,eps", [(np.inf, 0.1), (2, 2.0)])
def test_square_respects_budget_bound_and_drops_accuracy(float_model, norm, eps):
    model, x, y = float_model
    queries = 200
    x_adv, used = attacks.square_with_queries(model, x, eps=eps, norm=norm, steps=queries, y=y)
    x_adv, used = np.asarray(x_adv), np.asarray(used)
    assert used.max() <= queries and used.min() >= 1
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if norm == np.inf:
        assert np.abs(x_adv - x).max() <= eps + 1e-6
    else:
        assert np.sqrt(((x_adv - x) ** 2).reshape(len(x), -1).sum(1)).max() <= eps * (1 + 1e-4)
    fooled = predict_labels(model, x_adv) != y
    # Examples stop spending queries once fooled; robust ones spend the whole budget.
    assert np.all(used[~fooled & (predict_labels(model, x) == y)] == queries)
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.2


def test_square_model_calls_within_budget(float_model, monkeypatch):
    """Count the forward passes the attack really makes (eagerly)."""
    model, x, y = float_model
    monkeypatch.setenv("EDGEBNN_EAGER_ATTACKS", "1")
    calls = []

    def counting(inputs):
        calls.append(int(inputs.shape[0]))
        return model(inputs)

    queries = 30
    attacks.square(counting, x[:10], eps=0.02, steps=queries, y=y[:10])
    assert 1 <= len(calls) <= queries


def test_square_traces_once_per_model_for_images_without_channel_axis(float_model):
    square_module = importlib.import_module("edgebnn.attacks.square")  # `attacks.square` is the function

    model, x, y = float_model
    x3 = x[:4, ..., 0]  # (batch, height, width): the attack adds and removes the channel axis

    def model_3d(images):
        return model(images[..., None])

    attacks.square(model_3d, x3, eps=0.05, steps=5, y=y[:4])
    traces = square_module._square.graph_function.experimental_get_tracing_count
    before = traces()
    for _ in range(3):
        attacks.square(model_3d, x3, eps=0.05, steps=5, y=y[:4])
    assert traces() == before


def test_square_finds_examples_on_gradient_masked_model(float_model):
    model, x, y = float_model
    fn = masked(model)
    clean = accuracy(fn, x, y)
    acc_pgd = accuracy(fn, attacks.pgd(fn, x, eps=0.1, steps=20, y=y), y)
    acc_square = accuracy(fn, attacks.square(fn, x, eps=0.1, steps=500, y=y), y)
    assert acc_pgd > clean - 0.15  # only the random start moves the inputs
    assert acc_square < acc_pgd - 0.3


def test_square_validation(float_model):
    model, x, _ = float_model
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        attacks.square(model, x[:2], eps=0.1, steps=0)
    with pytest.raises(ValueError, match="images"):
        attacks.square(lambda v: model(tf.reshape(v, [-1, 28, 28, 1])), x[:2].reshape(2, -1), eps=0.1)
    with pytest.raises(ValueError, match="p_init"):
        attacks.square(model, x[:2], eps=0.1, p_init=2.0)


# --- the ensemble ---------------------------------------------------------------------


@pytest.mark.slow
def test_autoattack_worst_case_and_breakdown(binary_model):
    model, x, y = binary_model
    result = attacks.run_autoattack(
        model, x, y, eps=0.05, surrogates=["clipped", "smooth"], steps=10, target_classes=2, square_queries=100,
    )
    pred = predict_labels(model, result.x_adv)
    clean = predict_labels(model, x) == y
    # Robust exactly where the final examples are still correct; every broken one is misclassified.
    np.testing.assert_array_equal(result.robust, (pred == y) & clean)
    assert np.all(pred[clean & ~result.robust] != y[clean & ~result.robust])
    assert np.abs(result.x_adv - x).max() <= 0.05 + 1e-6
    # Stages ran in order, each on the survivors of the previous ones.
    rows = result.breakdown
    assert [(r["attack"], r["surrogate"]) for r in rows] == [
        ("apgd-ce", "clipped"), ("apgd-ce", "smooth"), ("apgd-t", "clipped"), ("apgd-t", "smooth"), ("square", None),
    ]
    assert rows[0]["attacked"] == clean.sum()
    for before, after in zip(rows, rows[1:]):
        assert after["attacked"] == before["attacked"] - before["broken"]
    assert result.robust.sum() == rows[-1]["attacked"] - rows[-1]["broken"]
    counts = {}
    for name in result.broken_by:
        counts[name] = counts.get(name, 0) + 1
    for r in rows:
        key = r["attack"] if r["surrogate"] is None else f"{r['attack']}/{r['surrogate']}"
        assert counts.get(key, 0) == r["broken"]
    # The worst case over surrogates is at least as strong as either surrogate's APGD-CE alone.
    for s in ("clipped", "smooth"):
        alone = accuracy(model, attacks.apgd(model, x, eps=0.05, steps=10, y=y, surrogate=s), y)
        assert result.robust_accuracy <= alone + 0.02
    summary = result.to_dict()
    assert summary["robust_accuracy"] == result.robust_accuracy and len(summary["breakdown"]) == 5


def test_autoattack_registered_and_validated(float_model):
    model, x, y = float_model
    assert attacks.get("autoattack") is attacks.autoattack and attacks.info("autoattack").eager_only
    for name in ("apgd", "apgd_t", "square"):
        assert attacks.get(name) is getattr(attacks, name)
    with pytest.raises(ValueError, match="surrogates"):
        attacks.run_autoattack(model, x[:4], y[:4], eps=0.1, surrogates="smooth")
    with pytest.raises(ValueError, match="stages"):
        attacks.run_autoattack(model, x[:4], y[:4], eps=0.1, stages=["fab"])


# --- gradient surrogates --------------------------------------------------------------


def _forward_and_gradient(model, x, surrogate):
    x = tf.constant(x)
    with attacks.use_surrogate(model, surrogate):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.argmax(logits, -1), logits))
        grad = tape.gradient(loss, x)
    return logits.numpy(), grad.numpy()


def test_surrogate_keeps_forward_bit_identical_and_changes_gradient(binary_model):
    model, x, _ = binary_model
    quantizers_before = [layer.input_quantizer for layer in model.layers if hasattr(layer, "input_quantizer")]
    reference_logits, reference_grad = _forward_and_gradient(model, x[:32], "ste")
    grads = {}
    for surrogate in ops.SURROGATES:
        logits, grads[surrogate] = _forward_and_gradient(model, x[:32], surrogate)
        np.testing.assert_array_equal(logits, reference_logits)
    np.testing.assert_array_equal(grads["clipped"], reference_grad)  # Larq's ste_sign is the clipped STE
    for surrogate in ("identity", "smooth", "smooth_poly"):
        assert not np.allclose(grads[surrogate], reference_grad), surrogate
    # The swap is undone: the model holds Larq's own quantizers again.
    after = [layer.input_quantizer for layer in model.layers if hasattr(layer, "input_quantizer")]
    assert all(a is b for a, b in zip(after, quantizers_before))
    assert any(isinstance(q, lq.quantizers.SteSign) and not isinstance(q, attacks.surrogates.quantizers.SurrogateSign)
               for q in after)
    assert attacks.surrogates.larq_sign_count(model) > 0


def test_surrogate_scope_restored_on_error():
    with pytest.raises(RuntimeError):
        with ops.gradient_surrogate("smooth"):
            assert ops.current_surrogate()[0] == "smooth"
            raise RuntimeError("boom")
    assert ops.current_surrogate()[0] == "ste"
    with pytest.raises(ValueError, match="surrogate"):
        with ops.gradient_surrogate("nope"):
            pass


def _op_gradient(fn, x, surrogate):
    x = tf.constant(x)
    with ops.gradient_surrogate(surrogate):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y.numpy(), tape.gradient(y, x).numpy()


def test_discretize_surrogates_against_numpy():
    x = np.linspace(0.0, 1.0, 41, dtype=np.float32)
    bits, levels = 2, 4.0
    out = {s: _op_gradient(lambda v: ops.discretize(v, bits), x, s) for s in ops.SURROGATES}
    for s in ops.SURROGATES:
        np.testing.assert_array_equal(out[s][0], out["ste"][0])
    np.testing.assert_array_equal(out["ste"][1], np.ones_like(x))
    np.testing.assert_array_equal(out["clipped"][1], np.ones_like(x))
    # Soft staircase: sum of sigmoid derivatives at the thresholds j / 4, scale 0.25 bins.
    t = ops.DEFAULT_TEMPERATURE
    u = x[:, None] * levels - np.arange(1, 4)[None, :]
    s = 1.0 / (1.0 + np.exp(-u / t))
    np.testing.assert_allclose(out["smooth"][1], (s * (1 - s) / t).sum(axis=1), rtol=1e-4, atol=1e-6)


def test_sign_surrogates_against_numpy():
    x = np.linspace(-2.0, 2.0, 33, dtype=np.float32)
    out = {s: _op_gradient(lambda v: ops.sign(v), x, s) for s in ops.SURROGATES}
    for s in ops.SURROGATES:
        np.testing.assert_array_equal(out[s][0], np.where(x >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(out["ste"][1], (np.abs(x) <= 1).astype(np.float32))
    np.testing.assert_array_equal(out["identity"][1], np.ones_like(x))
    np.testing.assert_allclose(out["smooth"][1], 1 - np.tanh(x) ** 2, rtol=1e-5)
    np.testing.assert_allclose(out["smooth_poly"][1], np.where(np.abs(x) <= 1, 2 - 2 * np.abs(x), 0.0), atol=1e-6)
    # Same forward pass as Larq's ste_sign, same gradient as Larq's under "ste".
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        larq = lq.quantizers.ste_sign(xt)
    np.testing.assert_array_equal(larq.numpy(), out["ste"][0])
    np.testing.assert_array_equal(tape.gradient(larq, xt).numpy(), out["ste"][1])


def test_attack_with_surrogate_runs_compiled_per_surrogate(binary_model):
    model, x, y = binary_model
    results = {s: np.asarray(attacks.pgd(model, x, eps=0.05, steps=5, y=y, rand_init=False, surrogate=s))
               for s in ("clipped", "identity", "smooth")}
    assert not np.array_equal(results["clipped"], results["smooth"])
    assert not np.array_equal(results["clipped"], results["identity"])
    # "ste" and "clipped" are the same backward pass for inputs in range.
    np.testing.assert_array_equal(
        np.asarray(attacks.pgd(model, x, eps=0.05, steps=5, y=y, rand_init=False, surrogate="ste")), results["clipped"],
    )


#: Attacks that take no gradient of the attacked model (black-box, or a trained substitute's).
GRADIENT_FREE = {"spsa", "square", "substitute"}


def test_every_gradient_attack_takes_a_surrogate():
    takes = {name for name, entry in attacks.ATTACKS.items()
             if entry.takes_surrogate or "surrogates" in entry.keywords}  # the AutoAttack ensemble takes a list
    assert takes == set(attacks.ATTACKS) - GRADIENT_FREE


#: CW-L2 with one binary-search round: its rounds are unrolled in the graph (each traced anew) and take
#: their gradients the same way.
@pytest.mark.parametrize("name, where, options", [
    ("bim", "common", dict(eps=0.05, steps=3)), ("mim", "common", dict(eps=0.05, steps=3)),
    ("rfgsm", "common", dict(eps=0.05)), ("cw_l2", "cw", dict(steps=5, binary_search_steps=1)),
    ("jsma", "jsma", dict(gamma=0.05)),
])
def test_surrogate_reaches_the_backward_pass(name, where, options, binary_model, monkeypatch):
    """The attack's gradient is taken inside ``use_surrogate(model, surrogate)``; "ste" is the default."""
    import importlib  # noqa: PLC0415

    model, x, y = binary_model
    module = importlib.import_module(f"edgebnn.attacks.{where}")
    seen, original = [], module.use_surrogate

    def recording(model_fn, surrogate, **kwargs):
        seen.append(surrogate)
        return original(model_fn, surrogate, **kwargs)

    monkeypatch.setattr(module, "use_surrogate", recording)
    attack, x, y = attacks.get(name), x[:4], y[:4]
    fresh = lambda inputs: model(inputs)  # noqa: E731  (a new function: traced anew, not taken from the cache)
    attack(fresh, x, y=y, surrogate="smooth", **options)
    assert seen and set(seen) == {"smooth"}
    if name != "rfgsm":  # R-FGSM's random step differs from call to call
        np.testing.assert_array_equal(np.asarray(attack(model, x, y=y, surrogate="ste", **options)),
                                      np.asarray(attack(model, x, y=y, **options)))
    with pytest.raises(ValueError, match="surrogate"):
        attack(model, x, y=y, surrogate="magic", **options)
