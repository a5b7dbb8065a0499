"""Exact certification: against brute force over the ball, the Keras forward pass, and the deployed TFLite."""

import functools
import itertools

import numpy as np
import pytest

import edgebnn  # noqa: F401
from conftest import randomize_batch_norm
from edgebnn.certify import encode, exact, search
from edgebnn.certify.network import UnsupportedModelError, extract, real_thresholds
from edgebnn.certify.run import certify
from edgebnn.zoo.panda_fcn import build_fcn

import larq as lq
import tensorflow as tf

TINY_SHAPE = (3, 3, 1)


def _tiny(seed, *, units=5, layers=2, bits=2, classes=3):
    tf.keras.utils.set_random_seed(seed)
    model = build_fcn(hidden_units=units, hidden_layers=layers, precision="binary", input_bits=bits,
                      num_classes=classes, input_shape=TINY_SHAPE)
    # BatchNorm statistics on the scale of the integer sums, so that thresholds fall inside their range
    return randomize_batch_norm(model, seed=seed, mean_std=1.5, beta_std=0.5, variance=(0.5, 4.0))


def _keras_signs(model, x):
    """The +-1 inputs of every binary layer after the first, from the Keras model itself."""
    dense = [layer for layer in model.layers if isinstance(layer, lq.layers.QuantDense)]
    probe = tf.keras.Model(model.inputs, [d.input for d in dense[1:]])
    outs = probe(x, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [d.input_quantizer(o).numpy() for d, o in zip(dense[1:], outs)]


def _ball(net, x, eps):
    """One input per combination of the levels reachable from ``x`` within ``eps``, all in the ball."""
    klo, khi = encode.level_range(x.reshape(-1), eps, net.bits)
    combos = np.array(list(itertools.product(*[range(a, b + 1) for a, b in zip(klo, khi)])))
    return encode.witness(x.reshape(-1), combos, eps, net.bits)


def _brute_force(model, net, x, y, eps):
    """Robust iff every combination of reachable levels keeps the Keras prediction at ``y``."""
    inputs = _ball(net, x, eps)
    pred = model(inputs.reshape(-1, *TINY_SHAPE), training=False).numpy().argmax(-1)
    return bool(np.all(pred == y)), len(inputs)


def test_exact_forward_matches_keras_on_every_neuron(rng):
    model = _tiny(0, units=7, layers=3)
    net = extract(model)
    x = rng.uniform(0, 1, size=(500, *TINY_SHAPE)).astype(np.float32)
    levels = encode.pixel_levels(x.reshape(len(x), -1), net.bits)
    signs, logits = encode.forward_levels(net, levels)
    for ours, keras in zip(signs, _keras_signs(model, x)):
        np.testing.assert_array_equal(ours, keras)
    np.testing.assert_array_equal(logits.astype(np.float32), model(x, training=False).numpy())


def test_batch_norm_threshold_and_sign_of_zero():
    """A BatchNorm output of exactly 0 is +1 (Larq's ste_sign): the neuron fires at that sum."""
    model = _tiny(1)
    bn = model.get_layer("bn_0")
    beta, mean, var = bn.get_weights()
    # neuron 0: BN(z) = (z - 0.375) / sqrt(var + eps) + 0 is exactly 0 at z = 0.375, i.e. S = 0.375 * 2 * 4 = 3
    beta[0], mean[0], var[0] = 0.0, 0.375, 1.0 - bn.epsilon
    # neuron 1: same with a negative scale is impossible (scale=False), so shift the zero between two sums
    beta[1], mean[1] = 0.0, 0.4
    bn.set_weights([beta, mean, var])
    net = extract(model)
    kinds, thresholds = net.kinds[0], net.thresholds[0]
    assert kinds[0] == encode.FIRE_GE and thresholds[0] == 3
    assert kinds[1] == encode.FIRE_GE and thresholds[1] == 4  # S = 3 gives z = 0.375 < 0.4
    # the Keras forward pass agrees on inputs whose first-layer sum is exactly the threshold
    kernel = net.kernels[0][:, 0].astype(int)
    grid = np.array(list(itertools.product(range(4), repeat=9)))
    sums = (2 * grid + 1) @ kernel
    at = grid[np.isin(sums, [2, 3, 4])][:200]
    x = ((at + 0.5) / 4).astype(np.float32).reshape(-1, *TINY_SHAPE)
    keras = _keras_signs(model, x)[0][:, :2]
    ours = encode.forward_levels(net, at)[0][0][:, :2]
    np.testing.assert_array_equal(ours, keras)
    assert np.all(keras[(2 * at + 1) @ kernel == 3, 0] == 1)
    # float64 BatchNorm arithmetic gives the same thresholds for these neurons
    real_kinds, real_thresholds_ = real_thresholds(model)[0]
    assert real_thresholds_[0] == 3 and real_thresholds_[1] == 4 and real_kinds[0] == encode.FIRE_GE


@pytest.fixture(scope="module")
def brute_force_cases():
    """The 72 tiny examples the exact procedures are checked on (3 models x 8 inputs x 3 eps), each with
    its model, extracted network, Keras label and brute-force answer: computed once for every procedure
    compared with them (the exhaustive Keras enumeration costs far more than the procedures)."""
    rng = np.random.default_rng(7)
    cases = []
    for seed in (10, 11, 12):
        model = _tiny(seed)
        net = extract(model)
        x = rng.uniform(0, 1, size=(8, *TINY_SHAPE)).astype(np.float32)
        labels = model(x, training=False).numpy().argmax(-1)
        grid = list(itertools.product(range(len(x)), (0.05, 0.15, 0.3)))
        balls = [_ball(net, x[i], eps) for i, eps in grid]
        # one Keras call for every ball of this model: the same predictions as one call per ball
        pred = model(np.concatenate(balls).reshape(-1, *TINY_SHAPE), training=False).numpy().argmax(-1)
        ends = np.cumsum([len(ball) for ball in balls])
        for (i, eps), ball_pred in zip(grid, np.split(pred, ends[:-1])):
            cases.append((model, net, x[i], int(labels[i]), eps, bool(np.all(ball_pred == labels[i]))))
    return cases


def _check_against_brute_force(solve, cases):
    """``solve(net, x, y, eps) -> record`` equals exhaustive enumeration in Keras on the 72 tiny examples."""
    answers, counterexamples = set(), []
    for model, net, x, y, eps, truth in cases:
        record = solve(net, x, y, eps)
        assert record["status"] == ("robust" if truth else "not_robust"), (model.name, x, eps, record)
        if record["counterexample"] is not None:
            cx = record["counterexample"]
            assert np.all(np.abs(cx - x.reshape(-1)) <= eps + 1e-7)
            counterexamples.append((model, cx, y))
        answers.add((record["status"], record["source"]))
    assert len(cases) == 72
    for model in {id(model): model for model, _, _ in counterexamples}.values():  # one Keras call per model
        cxs, ys = zip(*[(cx, y) for m, cx, y in counterexamples if m is model])
        pred = model(np.stack(cxs).reshape(-1, *TINY_SHAPE), training=False).numpy().argmax(-1)
        assert np.all(pred != np.array(ys)), (model.name, pred, ys)
    return answers


@pytest.mark.parametrize("solver, split_rivals", [
    ("milp", True), ("sat", False), ("minicard", False), ("cpsat", False),
    pytest.param("gluecard4", False, marks=pytest.mark.slow),
    pytest.param("milp", False, marks=pytest.mark.slow), pytest.param("sat", True, marks=pytest.mark.slow),
])
def test_solver_equals_brute_force(solver, split_rivals, brute_force_cases):
    answers = _check_against_brute_force(lambda net, x, y, eps: exact.certify_example(
        net, x, y, eps=eps, solver=solver, enumeration_limit=0, search_steps=0, split_rivals=split_rivals,
        branch_share=0), brute_force_cases)
    assert ("robust", "solver") in answers and ("not_robust", "solver") in answers


def test_enumeration_equals_brute_force(brute_force_cases):
    answers = _check_against_brute_force(lambda net, x, y, eps: exact.certify_example(
        net, x, y, eps=eps, enumeration_limit=1 << 20), brute_force_cases)
    assert {source for _, source in answers} <= {"clean", "enumeration"}
    assert ("robust", "enumeration") in answers and ("not_robust", "enumeration") in answers


def test_branch_and_bound_equals_brute_force(brute_force_cases):
    """Branch and bound over pixel ranges decides every example itself (no time limit), exactly."""
    answers = _check_against_brute_force(lambda net, x, y, eps: exact.certify_example(
        net, x, y, eps=eps, enumeration_limit=0, search_steps=0, branch_share=1), brute_force_cases)
    assert {source for _, source in answers} <= {"clean", "bounds", "branch"}
    assert ("robust", "branch") in answers and ("not_robust", "branch") in answers


def test_search_then_solver_equals_brute_force(brute_force_cases):
    """Hill climbing refutes some examples before the solver; the answers stay exact."""
    answers = _check_against_brute_force(lambda net, x, y, eps: exact.certify_example(
        net, x, y, eps=eps, solver="milp", enumeration_limit=0, search_steps=exact.SEARCH_STEPS, branch_share=0),
        brute_force_cases)
    assert ("not_robust", "search") in answers and ("robust", "solver") in answers


def test_hill_climb_finds_only_genuine_counterexamples():
    model = _tiny(5, units=9, layers=3)
    net = extract(model)
    x = np.random.default_rng(5).uniform(0, 1, size=(20, *TINY_SHAPE)).astype(np.float32)
    y = model(x, training=False).numpy().argmax(-1)
    found = 0
    for i in range(len(x)):
        levels, best = search.hill_climb(net, x[i], int(y[i]), 0.3, steps=200, seed=i)
        assert best[y[i]] == -np.inf and np.all(np.isfinite(np.delete(best, y[i])))
        if levels is not None:
            found += 1
            cx = encode.witness(x[i].reshape(-1), levels, 0.3, net.bits)
            assert model(cx.reshape(1, *TINY_SHAPE), training=False).numpy().argmax() != y[i]
    assert found > 0


def test_true_labels_and_ties_follow_argmax():
    """With given (possibly wrong) labels the answer is still exact; misclassified clean inputs are refuted."""
    model = _tiny(3, classes=4)
    net = extract(model)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(10, *TINY_SHAPE)).astype(np.float32)
    for i in range(len(x)):
        y = i % 4
        truth, _ = _brute_force(model, net, x[i], y, 0.1)
        record = exact.certify_example(net, x[i], y, eps=0.1, solver="milp", enumeration_limit=0)
        assert record["status"] == ("robust" if truth else "not_robust")


def test_parallel_equals_serial():
    model = _tiny(4)
    net = extract(model)
    x = np.random.default_rng(4).uniform(0, 1, size=(6, *TINY_SHAPE)).astype(np.float32)
    y = model(x, training=False).numpy().argmax(-1)
    serial = exact.certify_net(net, x, y, eps=0.15, processes=1, enumeration_limit=0)
    lines = []
    parallel = exact.certify_net(net, x, y, eps=0.15, processes=2, progress=lambda *call: lines.append(call),
                                 enumeration_limit=0)
    assert [r["status"] for r in serial] == [r["status"] for r in parallel]
    label, done, total = lines[-1]
    assert label.startswith("certify eps=0.15 milp (") and (done, total) == (6, 6)


def test_witness_stays_in_ball_and_hits_levels():
    x = np.array([0.0, 0.24, 0.25, 0.26, 0.5, 0.999, 1.0, 0.7499999], np.float32)
    for eps in (0.0, 0.01, 0.05, 0.1, 0.3):
        klo, khi = encode.level_range(x, eps, 2)
        for k in itertools.product(*[range(a, b + 1) for a, b in zip(klo, khi)]):
            w = encode.witness(x, np.array(k), eps, 2)
            assert np.all(np.abs(w.astype(np.float64) - x) <= eps) and np.all((w >= 0) & (w <= 1))
            np.testing.assert_array_equal(encode.pixel_levels(w, 2), k)


def test_counterexamples_replay_in_keras_and_tflite(fcn_in2, fcn_in2_flatbuffer, fashion_small, monkeypatch):
    _, _, xt, yt = fashion_small
    from edgebnn.deploy.verify import tflite_predict  # noqa: PLC0415

    eps = 0.1
    # no attack search and no branch and bound first, so that the solver decides (and refutes) examples
    # whatever the fixture's weights; branch and bound would also spend its share of the time limit on
    # every example it cannot decide (its own test is test_branch_and_bound_equals_brute_force)
    monkeypatch.setattr(exact, "certify_net", functools.partial(exact.certify_net, search_steps=0, branch_share=0))
    deployed = functools.partial(tflite_predict, fcn_in2_flatbuffer(target="lce"))
    result = certify(fcn_in2, xt[:12], yt[:12], eps=eps, time_limit=20, solver="milp", deployed=deployed)
    solved = [r for r in result.records if r["source"] == "solver" and r["status"] == "not_robust"]
    assert solved, f"expected the solver to refute some examples at eps={eps}"
    for r in result.records:
        if r["status"] == "not_robust":
            assert r["replay_keras"] is True and r["replay_tflite"] is True, r
            cx = result.counterexamples[r["index"]]
            assert np.max(np.abs(cx - xt[r["index"]])) <= eps + 1e-7
        else:
            assert r["replay_keras"] is None


def test_the_certify_kind_converts_each_cells_model_once_and_not_for_stored_parts(
        fcn_in2, fcn_in2_flatbuffer, fashion_small, tmp_path, monkeypatch):
    """``[[certify]]`` replays its counterexamples through the model converted for LCE: one conversion for
    every eps of a cell (one evaluation context, which the cell's LCE deployment shares), none when every
    part is already stored (a run stopped after its last part), and the same records from the stored parts."""
    from edgebnn.certify import report as certify_report_lib  # noqa: PLC0415
    from edgebnn.deploy import convert as convert_lib  # noqa: PLC0415
    from edgebnn.recipes.config import EvaluationConfig  # noqa: PLC0415
    from edgebnn.recipes.evaluations import certify as certify_kind  # noqa: PLC0415
    from edgebnn.recipes.evaluations.common import EvalContext  # noqa: PLC0415
    from edgebnn.recipes.store import Batches  # noqa: PLC0415

    _, _, xt, yt = fashion_small
    lce = fcn_in2_flatbuffer(target="lce")
    conversions = []

    @functools.wraps(convert_lib.convert)
    def convert(model, **options):  # the shared fixture's bytes: what converting fcn_in2 gives
        assert options == {"target": "lce"}, options
        conversions.append(model)
        return lce

    monkeypatch.setattr(convert_lib, "convert", convert)
    # no attack search first (the attack is not what is counted here): the solver decides every image
    monkeypatch.setattr(certify_report_lib, "craft", lambda model, x, y, *, eps, **options: x)
    spec = certify_kind.Spec(eps=[0.05, 0.1], limit=2, time_limit=5, attack_steps=1, attack_restarts=1)
    units = certify_kind.KIND.units(spec, recipe=None)

    def evaluate():  # the runner's way: one context per cell, one partial store per result
        ctx = EvalContext(cell="c", model=fcn_in2, randomized=False, model_of=None, x_eval=xt[:2], y_eval=yt[:2],
                          x_pool=xt[2:], y_pool=yt[2:], x_test=xt, y_test=yt, num_classes=10,
                          evaluation=EvaluationConfig(), progress=lambda *args: None)
        results = []
        for i, unit in enumerate(units):
            ctx.batches = Batches(tmp_path / str(i), f"key{i}")
            results.append(certify_kind.KIND.run(unit, ctx))
        return ctx, results

    ctx, computed = evaluate()
    assert conversions == [fcn_in2]
    assert [r.metrics["n"] for r in computed] == [2, 2]
    assert sum(r.metrics["replayed_tflite"] for r in computed) > 0, "nothing was replayed through the .tflite"
    _, stored = evaluate()
    assert conversions == [fcn_in2]  # every part came from the store
    assert [(r.labels, r.metrics) for r in stored] == [(r.labels, r.metrics) for r in computed]
    # the deployment's options in full name the same conversion (its defaults filled in)
    assert ctx.converted(target="lce", weights="exact", strip=False) is lce and conversions == [fcn_in2]
    ctx.model = other = tf.keras.models.clone_model(fcn_in2)  # a context given another model converts that one
    ctx.converted(target="lce")
    assert conversions == [fcn_in2, other]


def test_hints_are_checked_not_trusted(fcn_in2, fashion_small):
    _, _, xt, yt = fashion_small
    x, y = xt[:6], yt[:6]
    same = certify(fcn_in2, x, y, eps=0.02, time_limit=20, hints=x)
    assert all(r["source"] != "hint" for r in same.records)  # an unchanged input refutes nothing
    far = np.clip(x + 0.5, 0, 1)  # far outside the ball: its levels are clipped back into it first
    result = certify(fcn_in2, x, y, eps=0.1, time_limit=20, hints=far)
    for r in result.records:
        if r["source"] == "hint":
            assert r["replay_keras"] is True
            assert np.max(np.abs(result.counterexamples[r["index"]] - x[r["index"]])) <= 0.1 + 1e-7


@pytest.mark.parametrize(
    "build, layer",
    [
        (lambda: build_fcn(hidden_units=4, hidden_layers=2, precision="binary", input_shape=TINY_SHAPE), "dense_0"),
        (lambda: build_fcn(hidden_units=4, hidden_layers=2, precision="float", input_bits=2,
                           input_shape=TINY_SHAPE), "dense_0"),
    ],
)
def test_unsupported_models_are_refused_in_one_line(build, layer):
    with pytest.raises(UnsupportedModelError) as info:
        extract(build())
    message = str(info.value)
    assert "\n" not in message and repr(layer) in message


def test_float_layer_after_binary_is_refused():
    inputs = tf.keras.Input(TINY_SHAPE)
    from edgebnn.layers import InputDiscretization

    x = tf.keras.layers.Flatten()(InputDiscretization(2)(inputs))
    x = lq.layers.QuantDense(4, kernel_quantizer="ste_sign", use_bias=False, name="first")(x)
    x = tf.keras.layers.Activation("relu", name="relu_hidden")(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="head")(x))
    with pytest.raises(UnsupportedModelError, match="'relu_hidden'"):
        extract(model)


def test_bad_arguments_name_the_argument(fcn_in2, fashion_small):
    _, _, xt, yt = fashion_small
    with pytest.raises(ValueError, match="`eps`"):
        certify(fcn_in2, xt[:2], yt[:2], eps=-0.1)
    with pytest.raises(ValueError, match="`solver`|Unknown solver"):
        certify(fcn_in2, xt[:2], yt[:2], eps=0.1, solver="z3")
    with pytest.raises(ValueError, match="`time_limit`"):
        certify(fcn_in2, xt[:2], yt[:2], eps=0.1, time_limit=0)


def test_search_steps_validated():
    net = extract(_tiny(0))
    with pytest.raises(ValueError, match="`search_steps`"):
        exact.certify_example(net, np.zeros(TINY_SHAPE, np.float32), 0, eps=0.1, search_steps=-1)
