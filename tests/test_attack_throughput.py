"""Throughput machinery of the attacks, pinned against the behaviour it replaces: traces that
survive shrinking batches, Square that stops querying broken images, vectorized EOT."""

import importlib

import numpy as np
import pytest

from edgebnn import attacks
from edgebnn.attacks import common

import tensorflow as tf

apgd_module = importlib.import_module("edgebnn.attacks.apgd")  # `attacks.apgd` is the function
square_module = importlib.import_module("edgebnn.attacks.square")

pytestmark = pytest.mark.usefixtures("seed")  # conftest: every test starts from the same seed

#: Batch sizes of successive calls, as the survivors of an ensemble shrink.
SURVIVORS = (12, 7, 3)


@pytest.fixture(scope="module")
def small(float_model):
    model, x, y = float_model
    return model, np.asarray(x[: SURVIVORS[0]]), np.asarray(y[: SURVIVORS[0]])


@pytest.mark.parametrize("attack,options", [
    ("apgd_t", dict(steps=4, target_classes=2)),
    ("apgd", dict(steps=4, loss="ce")),
    ("square", dict(steps=6)),
])
def test_compiled_attacks_trace_once_for_every_batch_size(small, attack, options):
    model, x, y = small
    fn = getattr(attacks, attack)
    graph_fn = {"apgd_t": apgd_module._apgd_t, "apgd": apgd_module._apgd, "square": square_module._square}[attack]
    fn(model, x, eps=0.05, y=y, **options)
    before = graph_fn.graph_function.experimental_get_tracing_count()
    for n in SURVIVORS:
        fn(model, x[:n], eps=0.05, y=y[:n], **options)
    assert graph_fn.graph_function.experimental_get_tracing_count() == before


def test_batch_free_trace_gives_the_concrete_shape_results(small):
    """The batch-free graph computes what a graph traced for the batch's own shape computed."""
    model, x, y = small
    core = apgd_module.apgd_t_core
    options = dict(eps=0.05, norm=np.inf, steps=5, target_classes=2, restarts=1, clip_min=0.0, clip_max=1.0)
    for n in SURVIVORS:
        xb, yb = tf.constant(x[:n]), tf.constant(y[:n], tf.int64)
        tf.random.set_seed(7)
        concrete = tf.function(core)(model, xb, yb, **options)
        tf.random.set_seed(7)
        batch_free = common.compiled(core)(model, xb, yb, **options)
        np.testing.assert_array_equal(batch_free.numpy(), concrete.numpy())


def _full_batch_margin_and_loss(model_fn, x_new, y, alive, margin_min, loss_min, *, targeted):
    """The previous loop's query: every example, broken or not."""
    return square_module.margin_and_loss(common.call_model(model_fn, x_new), y, targeted=targeted)


@pytest.mark.parametrize("norm,eps", [(np.inf, 0.1), (2, 1.5)])
def test_square_queries_only_unbroken_images_with_the_same_results(small, monkeypatch, norm, eps):
    model, x, y = small
    rows = tf.Variable(0, dtype=tf.int64)

    def counting(images):
        rows.assign_add(tf.cast(tf.shape(images)[0], tf.int64))
        return model(images)

    options = dict(eps=eps, norm=norm, steps=40, y=y)
    tf.random.set_seed(3)
    x_adv, used = attacks.square_with_queries(counting, x, **options)
    assert 0 < np.sum(np.asarray(used) < options["steps"])  # some examples break early
    assert int(rows.numpy()) == int(np.sum(used))  # no query on a broken image

    monkeypatch.setattr(square_module, "_alive_margin_and_loss", _full_batch_margin_and_loss)
    monkeypatch.setattr(square_module, "_square", common.compiled(square_module.square_core))
    rows.assign(0)
    tf.random.set_seed(3)
    x_ref, used_ref = attacks.square_with_queries(counting, x, **options)
    assert int(rows.numpy()) > int(np.sum(used))
    np.testing.assert_array_equal(np.asarray(used), np.asarray(used_ref))
    np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(x_ref))


def _fixed_start(x, eps, norm):
    """A deterministic start inside the ball, so that two APGD-T loops can be compared exactly."""
    pattern = tf.sign(tf.sin(tf.range(tf.size(x[0]), dtype=tf.float32) + 0.5))
    return x + eps * 0.5 * tf.reshape(pattern, tf.shape(x[0]))[None]


def _unrolled_apgd_t(model_fn, x, y, *, eps, steps, norm, target_classes, restarts, clip_min, clip_max):
    """The previous APGD-T: one Python-unrolled APGD run per target class."""
    shape = [-1] + [1] * (x.shape.rank - 1)
    ranking = tf.argsort(model_fn(x), axis=-1, direction="DESCENDING")
    best = None
    for rank in range(1, target_classes + 1):
        loss_fn = apgd_module._loss_function("dlr", targeted=True, target=ranking[:, rank])
        for _ in range(restarts):
            scored = apgd_module._run_score(apgd_module.apgd_run(
                model_fn, x, y, loss_fn, eps=eps, steps=steps, norm=norm, clip_min=clip_min, clip_max=clip_max,
                eot_samples=1, surrogate="ste",
            ))
            best = scored if best is None else apgd_module._merge(best, scored, shape)
    return best[0]


def test_apgd_t_target_loop_equals_the_unrolled_runs(small, monkeypatch):
    model, x, y = small
    monkeypatch.setattr(apgd_module, "_random_start", _fixed_start)
    # two target classes: the loop merges a second run into the first's best (each unrolled run is traced anew)
    options = dict(eps=0.08, norm=np.inf, steps=6, target_classes=2, restarts=1, clip_min=0.0, clip_max=1.0)
    xb, yb = tf.constant(x), tf.constant(y, tf.int64)
    looped = tf.function(apgd_module.apgd_t_core)(model, xb, yb, **options)
    unrolled = tf.function(_unrolled_apgd_t)(model, xb, yb, **options)
    np.testing.assert_array_equal(looped.numpy(), unrolled.numpy())
    assert np.any(looped.numpy() != x)


def _stochastic_model(x, *, seed):
    """A tiny classifier whose weights are re-sampled (stochastic sign) at every call."""
    import larq as lq  # noqa: PLC0415

    from edgebnn.quantizers import StochasticSign  # noqa: PLC0415

    tf.keras.utils.set_random_seed(seed)
    return tf.keras.Sequential([
        tf.keras.layers.Flatten(input_shape=x.shape[1:]),
        lq.layers.QuantDense(10, kernel_quantizer=StochasticSign(), kernel_constraint="weight_clip"),
    ])


#: One graph for every call, so that successive calls draw new random values.
_LOSS_GRADIENT = tf.function(common.loss_gradient)


def _eot_gradient(model, x, y, eot_samples):
    grad, loss = _LOSS_GRADIENT(model, x, y, targeted=False, eot_samples=eot_samples)
    return grad.numpy(), loss.numpy()


def test_eot_on_a_deterministic_model_is_the_single_pass(small):
    model, x, y = small
    xb, yb = tf.constant(x), tf.constant(y, tf.int64)
    grad_1, loss_1 = _eot_gradient(model, xb, yb, 1)
    grad_4, loss_4 = _eot_gradient(model, xb, yb, 4)
    # The mean of 4 equal float32 values differs from each by at most a rounding.
    np.testing.assert_allclose(grad_4, grad_1, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(loss_4, loss_1, rtol=1e-6)


def test_vectorized_eot_samples_are_independent_with_the_mean_of_single_passes(small):
    """Same expectation as single passes, and the variance of an independent mean (1 / samples)."""
    _, x, y = small
    xb, yb = tf.constant(x[:4]), tf.constant(y[:4], tf.int64)
    model = _stochastic_model(x, seed=0)
    samples, draws = 8, 100
    singles = np.stack([_eot_gradient(model, xb, yb, 1)[0] for _ in range(draws * 2)])
    means = np.stack([_eot_gradient(model, xb, yb, samples)[0] for _ in range(draws)])
    expected, spread = singles.mean(axis=0), singles.std(axis=0)
    varying = spread > 1e-6
    assert varying.mean() > 0.5  # the weights are random: so is the gradient
    # Means of independent samples: the variance shrinks by the number of samples.
    ratio = np.median(singles.var(axis=0)[varying] / means.var(axis=0)[varying])
    assert samples / 2 < ratio < samples * 2
    # Same expectation: the two estimates differ by their standard errors only.
    standard_error = np.sqrt(spread**2 / (2 * draws) + means.var(axis=0) / draws)
    z = np.abs(means.mean(axis=0) - expected)[varying] / standard_error[varying]
    assert np.mean(z < 3) > 0.97


@pytest.mark.parametrize("norm,eps", [(np.inf, 0.1), (2, 1.5)])
def test_fused_apgd_update_matches_the_unfused_ops_to_float_rounding(norm, eps):
    """XLA may contract a multiply-add into one rounding: the fused update differs by ulps, no more."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 1, (16, 28, 28, 1)), tf.float32)
    x_adv = tf.clip_by_value(x + tf.constant(rng.uniform(-eps, eps, x.shape), tf.float32), 0.0, 1.0)
    x_old = tf.clip_by_value(x + tf.constant(rng.uniform(-eps, eps, x.shape), tf.float32), 0.0, 1.0)
    grad = tf.constant(rng.normal(size=x.shape), tf.float32)
    step = tf.constant(rng.uniform(0.01, 2 * eps, 16), tf.float32)
    options = dict(eps=eps, norm=norm, clip_min=0.0, clip_max=1.0)
    for momentum in (1.0, apgd_module.MOMENTUM):
        fused = apgd_module._fused_momentum_step(x, x_adv, x_old, grad, step, tf.constant(momentum), **options)
        plain = apgd_module._momentum_step(x, x_adv, x_old, grad, step, tf.constant(momentum), **options)
        np.testing.assert_allclose(fused.numpy(), plain.numpy(), rtol=0, atol=1e-6)
