"""Verifiable BNNs: ternary weights, binary convolutions in the exact encoding, the stability loss, new backends."""

import itertools

import numpy as np
import pytest

import edgebnn  # noqa: F401
from conftest import randomize_batch_norm
from edgebnn import quantizers
from edgebnn.certify import branch, encode, exact, solvers
from edgebnn.certify.network import UnsupportedModelError, conv_as_dense, extract
from edgebnn.zoo import eev

import larq as lq
import tensorflow as tf

SMALL_SHAPE = (8, 8, 1)


def _model(seed, *, architecture, precision, input_shape=SMALL_SHAPE, hidden_units=6, bits=2, classes=4):
    tf.keras.utils.set_random_seed(seed)
    model = eev.build_verifiable(architecture=architecture, precision=precision, hidden_units=hidden_units,
                                 hidden_layers=2, input_bits=bits, num_classes=classes, input_shape=input_shape)
    return randomize_batch_norm(model, seed=seed, mean_std=1.5, beta_std=0.5, variance=(0.5, 4.0))


def _keras_signs(model, x):
    """The +-1 inputs of every binary layer after the first, flattened, from the Keras model itself."""
    quant = [layer for layer in model.layers if isinstance(layer, (lq.layers.QuantDense, lq.layers.QuantConv2D))]
    probe = tf.keras.Model(model.inputs, [q.input for q in quant[1:]])
    outs = probe(x, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [q.input_quantizer(o).numpy().reshape(len(x), -1) for q, o in zip(quant[1:], outs)]


def test_ternary_weight_thresholds_at_a_fraction_of_the_mean():
    w = tf.constant([[-0.9, -0.05, 0.0], [0.04, 0.3, 1.0]])
    q = quantizers.get("ternary_weight", threshold_ratio=0.7)
    delta = 0.7 * np.mean(np.abs(w.numpy()))
    expected = np.sign(w.numpy()) * (np.abs(w.numpy()) > delta)
    np.testing.assert_array_equal(q(w).numpy(), expected)
    with tf.GradientTape() as tape:
        tape.watch(w)
        y = tf.reduce_sum(q(w) * 3.0)
    np.testing.assert_array_equal(tape.gradient(y, w).numpy(), np.full((2, 3), 3.0))  # straight-through
    with pytest.raises(ValueError, match="threshold_ratio"):
        quantizers.TernaryWeight(threshold_ratio=-1)


def test_conv_as_dense_equals_the_convolution(rng):
    for padding, shape in (("same", (7, 6, 2)), ("valid", (7, 6, 2)), ("same", (8, 8, 3))):
        kernel = rng.integers(-1, 2, size=(4, 3, shape[2], 5)).astype(np.float32)
        x = rng.normal(size=(3, *shape)).astype(np.float32)
        y = tf.nn.convolution(x, kernel, strides=(2, 2), padding=padding.upper()).numpy()
        dense = conv_as_dense(kernel, shape, y.shape[1:], (2, 2), padding)
        np.testing.assert_allclose(x.reshape(3, -1) @ dense, y.reshape(3, -1), atol=1e-4)


@pytest.mark.parametrize("architecture, precision", [("conv_small", "ternary"), ("conv_small", "binary"),
                                                     ("mlp", "ternary")])
def test_exact_forward_matches_keras_integer_forward(architecture, precision, rng):
    """Every sign neuron and logit of the exact integer model equals the Keras forward pass on random inputs."""
    shape = (28, 28, 1) if architecture == "conv_small" else SMALL_SHAPE
    model = _model(3, architecture=architecture, precision=precision, input_shape=shape)
    net = extract(model)
    if precision == "ternary":
        assert any(np.any(k == 0) for k in net.kernels)
    x = rng.uniform(0, 1, size=(64, *shape)).astype(np.float32)
    levels = encode.pixel_levels(x.reshape(len(x), -1), net.bits)
    signs, logits = encode.forward_levels(net, levels)
    keras = _keras_signs(model, x)
    assert len(signs) == len(keras)
    for ours, theirs in zip(signs, keras):
        np.testing.assert_array_equal(ours, theirs)
    assert any(0 < np.mean(s > 0) < 1 for s in signs)  # the thresholds fall inside the sums' range
    np.testing.assert_array_equal(logits.astype(np.float32), model(x, training=False).numpy())


def _brute_force(model, net, x, y, eps):
    klo, khi = encode.level_range(x.reshape(-1), eps, net.bits)
    combos = np.array(list(itertools.product(*[range(a, b + 1) for a, b in zip(klo, khi)])))
    inputs = encode.witness(x.reshape(-1), combos, eps, net.bits)
    pred = model(inputs.reshape(-1, *x.shape), training=False).numpy().argmax(-1)
    return bool(np.all(pred == y))


def _ternary_cases(seeded_architectures, rng, *, shape=(3, 3, 1)):
    """``(model, net, x, i, eps)``: small random ternary models (seeded), six random images each, eps 0.15 and 0.3."""
    for seed, architecture in seeded_architectures:
        tf.keras.utils.set_random_seed(seed)
        model = eev.build_verifiable(architecture=architecture, precision="ternary", hidden_units=5,
                                     hidden_layers=2, input_bits=2, num_classes=3, input_shape=shape,
                                     threshold_ratio=0.5)
        model = randomize_batch_norm(model, seed=seed, mean_std=1.0, beta_std=0.5, variance=(0.5, 4.0))
        net = extract(model)
        x = rng.uniform(0, 1, size=(6, *shape)).astype(np.float32)
        for i, eps in itertools.product(range(len(x)), (0.15, 0.3)):
            yield model, net, x, i, eps


@pytest.mark.parametrize("solver", ["minicard", pytest.param("milp", marks=pytest.mark.slow),
                                    pytest.param("cpsat", marks=pytest.mark.slow)])
def test_ternary_and_conv_certification_equals_brute_force(solver, rng):
    """Zero weights and unrolled convolutions in the constraints: answers equal enumeration in Keras."""
    answers = set()
    for model, net, x, i, eps in _ternary_cases(((20, "mlp"), (21, "mlp"), (22, "conv_small")), rng):
        y = int(model(x[i : i + 1], training=False).numpy().argmax())
        record = exact.certify_example(net, x[i], y, eps=eps, solver=solver, enumeration_limit=0,
                                       search_steps=0, branch_share=0)
        assert record["status"] == ("robust" if _brute_force(model, net, x[i], y, eps) else "not_robust")
        assert record["solver"] == solver and record["solver_version"] == solvers.version(solver)
        answers.add((record["status"], record["source"]))
    assert ("robust", "solver") in answers and ("not_robust", "solver") in answers


def test_branch_and_bound_on_ternary_and_conv_equals_brute_force(rng):
    """Sparse products over unrolled ternary convolutions, the affine logit bound: answers equal enumeration in Keras."""
    answers = set()
    for model, net, x, i, eps in _ternary_cases(((30, "mlp"), (31, "conv_small"), (32, "conv_small")), rng):
        y = int(model(x[i : i + 1], training=False).numpy().argmax())
        status, levels, boxes = branch.search(net, x[i].reshape(-1), y, eps)
        assert status == ("robust" if _brute_force(model, net, x[i], y, eps) else "not_robust")
        assert boxes >= 1
        if levels is not None:
            cx = encode.witness(x[i].reshape(-1), levels, eps, net.bits)
            assert model(cx.reshape(1, *x.shape[1:]), training=False).numpy().argmax() != y
            assert branch.search(net, x[i].reshape(-1), y, eps, max_boxes=1)[0] in ("unknown", "not_robust")
        answers.add(status)
    assert answers == {"robust", "not_robust"}


def test_affine_logit_fit_bounds_the_table():
    model = _model(5, architecture="mlp", precision="ternary", input_shape=(3, 3, 1), classes=3)
    net = extract(model)
    slope, intercept, residual = branch.affine_logits(net)
    m = (net.logit_table.shape[0] - 1) // 2
    p = np.arange(-m, m + 1)[:, None]
    assert np.all(np.abs(net.logit_table - (slope * p + intercept)) <= residual)
    assert np.all(residual < 1e-3)  # the table is BatchNorm of p: affine up to float32 rounding


def test_batch_norm_calibration_sets_the_statistics_of_each_layers_inputs(rng):
    model = _model(11, architecture="conv_small", precision="ternary")
    x = rng.uniform(0, 1, size=(64, *SMALL_SHAPE)).astype(np.float32)
    assert eev.calibrate_batch_norm(model, x, batch_size=16) is model
    for layer in [lay for lay in model.layers if isinstance(lay, tf.keras.layers.BatchNormalization)]:
        z = tf.keras.Model(model.inputs, layer.input)(x, training=False).numpy()
        axes = tuple(range(z.ndim - 1))
        np.testing.assert_allclose(layer.moving_mean.numpy(), z.mean(axis=axes), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(), z.var(axis=axes), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="batch_size"):
        eev.calibrate_batch_norm(model, x, batch_size=0)


def test_interval_bounds_contain_every_point_of_the_ball(rng):
    model = _model(5, architecture="conv_small", precision="ternary", input_shape=(28, 28, 1))
    x = rng.uniform(0, 1, size=(4, 28, 28, 1)).astype(np.float32)
    eps = 0.1
    bounds = eev.interval_bounds(model, x, eps)
    norms = eev._pre_sign_layers(model)
    probe = tf.keras.Model(model.inputs, [n.output for n in norms])
    for _ in range(5):
        z = np.clip(x + rng.uniform(-eps, eps, size=x.shape), 0, 1).astype(np.float32)
        for (lo, hi), out in zip(bounds, probe(z, training=False)):
            assert np.all(lo.numpy() <= out.numpy() + 1e-4) and np.all(out.numpy() <= hi.numpy() + 1e-4)
    unstable = eev.unstable_fraction(model, x, eps).numpy()
    assert unstable.shape == (4,) and np.all((unstable >= 0) & (unstable <= 1))
    assert np.all(eev.unstable_fraction(model, x, 0.0).numpy() == 0)  # a point: every sign decided


def test_stability_loss_trains_and_the_model_round_trips(tmp_path, rng):
    model = eev.build_verifiable(architecture="mlp", precision="ternary", hidden_units=16, hidden_layers=2,
                                 input_bits=2, input_shape=SMALL_SHAPE, stability_eps=0.1, stability_weight=1.0)
    x = rng.uniform(0, 1, size=(8, *SMALL_SHAPE)).astype(np.float32)
    model(x, training=True)
    assert len(model.losses) == 1 and float(model.losses[0]) > 0
    model(x, training=False)
    assert len(model.losses) == 0
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = tf.keras.models.load_model(path, compile=False)
    assert isinstance(loaded, eev.VerifiableModel)
    assert (loaded.stability_eps, loaded.stability_weight) == (0.1, 1.0)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())


def test_bad_options_name_the_argument():
    with pytest.raises(ValueError, match="architecture"):
        eev.build_verifiable(architecture="resnet")
    with pytest.raises(ValueError, match="stability_eps"):
        eev.build_verifiable(stability_eps=2.0)
    with pytest.raises(ValueError, match="Unknown solver"):
        solvers.version("z3")


def test_non_zero_padding_is_refused():
    inputs = tf.keras.Input((6, 6, 1))
    x = edgebnn.layers.InputDiscretization(2)(inputs)
    x = lq.layers.QuantConv2D(2, 3, padding="same", pad_values=1.0, kernel_quantizer="ste_sign", use_bias=False,
                              name="padded")(x)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)(x)
    with pytest.raises(UnsupportedModelError, match="padded"):
        extract(tf.keras.Model(inputs, x))


@pytest.mark.slow
def test_report_answers_are_reproducible_and_never_contradicted_by_an_attack(rng):
    """Each row stores what re-deciding it needs; a robust row is never an image some attack broke."""
    from edgebnn.certify.report import certify_report, model_sha256, to_markdown  # noqa: PLC0415

    model = _model(7, architecture="mlp", precision="ternary", input_shape=(3, 3, 1), classes=3)
    x = rng.uniform(0, 1, size=(10, 3, 3, 1)).astype(np.float32)
    y = model(x, training=False).numpy().argmax(-1)
    y[:2] = (y[:2] + 1) % 3  # two clean errors
    report = certify_report(model, x, y, eps_list=[0.2], time_limit=10, solver="minicard",
                            attack={"attack": "pgd", "steps": 5, "restarts": 1},
                            extra_attacks=[{"attack": "fgsm"}])
    assert report["model_sha256"] == model_sha256(model) and len(report["model_sha256"]) == 64
    net = extract(model)
    assert report["net_sha256"] == encode.fingerprint(net)
    assert report["solver_version"] == solvers.version("minicard")
    [result] = report["results"]
    assert result["attack_broke_certified"] == 0
    assert set(result["attack_robust_accuracy_by_attack"]) <= {"pgd", "fgsm"}
    statuses = set()
    for row in result["examples"]:
        statuses.add(row["status"])
        assert row["eps"] == 0.2 and row["solver"] == "minicard" and row["solver_version"] == report["solver_version"]
        assert not (row["status"] == "robust" and row["attacks_broke"])
        again = exact.certify_example(net, x[row["index"]], row["label"], eps=row["eps"], solver=row["solver"])
        assert again["status"] == row["status"]
    assert "robust" in statuses and "not_robust" in statuses
    assert report["model_sha256"] in to_markdown(report)


def test_solver_comparison_script_runs_every_backend_on_the_same_examples(rng):
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import verifiable_bnn  # noqa: PLC0415

    model = _model(9, architecture="mlp", precision="ternary", input_shape=(3, 3, 1), classes=3)
    net = extract(model)
    x = rng.uniform(0, 1, size=(6, 3, 3, 1)).astype(np.float32)
    y = model(x, training=False).numpy().argmax(-1)
    names = ["milp", "minicard", "cpsat", verifiable_bnn.BRANCH]
    result = verifiable_bnn.compare(net, x, y, eps=0.3, time_limit=10, names=names)
    assert result["disagreements"] == 0
    statuses = [result["solvers"][s]["statuses"] for s in names]
    assert statuses[0] == statuses[1] == statuses[2] == statuses[3]
    assert all(result["solvers"][s]["version"] == solvers.version(s) for s in names[:3])
    assert "minicard" in verifiable_bnn.solvers_markdown(result)
