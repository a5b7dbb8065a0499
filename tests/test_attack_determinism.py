"""Seeded attacks on randomized models repeat bit for bit, whatever ran before and however the
threads are scheduled, so that a strong evaluation stopped and resumed gives the uninterrupted numbers;
one traced graph per model, attack and options serves every seed and batch."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgebnn import attacks, quantizers
from edgebnn.evaluation import robustness
from edgebnn.layers import MCDropout
from edgebnn.testing import TraceCounter
# randomized_model: input dropout, a fresh mask at every call and step
from test_masking import _Kept, randomized_model, seeded_report, whole_and_stopped

import larq as lq
import tensorflow as tf

pytestmark = pytest.mark.usefixtures("seed")

#: Every attack whose steps run in a graph loop, with options that trace each loop once (CW-L2's
#: binary-search rounds are unrolled, one loop each: one round).
LOOPED = {
    "pgd": {"eps": 0.05, "steps": 3, "restarts": 2, "eot_samples": 2},
    "bim": {"eps": 0.05, "steps": 3},
    "mim": {"eps": 0.05, "steps": 3},
    "apgd": {"eps": 0.05, "steps": 3},
    "apgd_t": {"eps": 0.05, "steps": 3, "target_classes": 2},
    "square": {"eps": 0.05, "steps": 30},
    "spsa": {"eps": 0.05, "steps": 3},
    "cw_l2": {"steps": 3, "binary_search_steps": 1},
}


def _tiny_model():
    # Large weights: confident predictions, so that no attack has fooled every example before its loop.
    dense = tf.keras.layers.Dense(10, kernel_initializer=tf.keras.initializers.RandomNormal(stddev=1.0, seed=0))
    return tf.keras.Sequential([tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(), dense])


def _loops(graph_def):
    """``parallel_iterations`` of every while loop in a traced graph and its functions."""
    nodes = [graph_def.node] + [f.node_def for f in graph_def.library.function]
    return [n.attr["parallel_iterations"].i for group in nodes for n in group if n.op in ("While", "StatelessWhile")]


@pytest.mark.parametrize("name", sorted(LOOPED))
def test_every_attack_loop_runs_one_step_at_a_time(name):
    # With several steps in flight, a later step's random draw (its shape is static, so it waits for
    # nothing of the step before) can run first and take the earlier step's numbers.
    model = randomized_model(_tiny_model())
    x = tf.constant(np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32))
    y = tf.constant(np.arange(4))
    batch = robustness._batch_function(False, attacks.get(name), tuple(sorted(LOOPED[name].items())))
    loops = _loops(batch.get_concrete_function(model, x, y).graph.as_graph_def())
    assert loops and set(loops) == {attacks.common.STEPS_IN_FLIGHT} == {1}


_REPEAT = """
import numpy as np, tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads({threads})
from edgebnn.evaluation.robustness import craft
tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(),
                             tf.keras.layers.Dense(256, activation="relu"), tf.keras.layers.Dense(10)])
noisy = lambda inputs: model(tf.nn.dropout(inputs, rate=0.5) * 0.5)
rng = np.random.default_rng(0)
x, y = rng.random((50, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 50)
first = craft(noisy, x, y, attack="pgd", eps=0.05, steps=10, seed=7000)
print(sum(not np.array_equal(first, craft(noisy, x, y, attack="pgd", eps=0.05, steps=10, seed=7000))
          for _ in range({repeats})))
"""


@pytest.mark.slow
def test_a_seeded_attack_on_a_randomized_model_repeats_under_many_threads():
    # Many inter-op threads let the steps' random draws race: before the attack loops ran one
    # step at a time, 2-3 of 20 repeats differed from the first in every process tried.
    code = textwrap.dedent(_REPEAT.format(threads=8, repeats=20))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split()[-1] == "0"


def _input_dropout_layer(model):
    """:func:`randomized_model`'s defence with edgebnn's MC dropout, whose draws a key reaches."""
    return tf.keras.Sequential([tf.keras.Input(model.input_shape[1:]), MCDropout(0.5),
                                tf.keras.layers.Rescaling(0.5), model])


@pytest.mark.slow
@pytest.mark.parametrize("randomize", [randomized_model, _input_dropout_layer], ids=["tf_dropout", "mc_dropout"])
def test_a_stopped_report_on_a_randomized_model_resumes_to_the_same_numbers(float_model, randomize):
    model, x, y = float_model
    noisy = randomize(model)  # every run, prediction and EOT gradient draws at random
    x, y = x[:20], y[:20]
    report = seeded_report(noisy, x, y, eps_list=[0.05], eot_samples=2, batch_size=10, surrogates=["ste"],
                           steps=10, pgd_steps=5, restarts=2, target_classes=2, square_queries=30)
    whole, kept = whole_and_stopped(report)
    resumed = report(kept)
    # The same again after other attacks traced and drew in this process (a longer history of graphs
    # and random ops than the first report had), with the first six batches kept.
    robustness.craft(noisy, x, y, attack="apgd_t", eps=0.1, steps=5, target_classes=3)
    robustness.craft(noisy, x, y, attack="square", eps=0.1, steps=50, seed=12)
    later = _Kept()
    later.saved = {key: value for key, value in kept.saved.items() if key[0] < 3}
    assert resumed == whole == report(later)
    assert whole["randomized"] and whole["checks"][-1]["numbers"]["accuracy_plain"] is not None


# --- stop points: an attack stops between two steps, and runs as before when not stopped --------


class _StopAfter:
    """A stop check that raises ``KeyboardInterrupt`` at its ``calls``-th call (counts every call)."""

    def __init__(self, calls=None):
        self.calls, self.asked = calls, 0

    def __call__(self):
        self.asked += 1
        if self.asked == self.calls:
            raise KeyboardInterrupt


#: The attacks checked in the default suite (the others in the slow one).
QUICK = ("pgd", "apgd_t", "square")


def _quick_or_slow(names):
    return [name if name in QUICK else pytest.param(name, marks=pytest.mark.slow) for name in names]


@pytest.mark.parametrize("name", _quick_or_slow(sorted(LOOPED)))
def test_stop_points_leave_every_attack_bit_identical(name):
    model = _tiny_model()
    x = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    y = np.argmax(model(x), axis=-1)  # every example starts correct, so no attack ends before its first step
    for fn in (model, randomized_model(model)):
        plain = robustness.craft(fn, x, y, seed=3, **{"eps": None, **LOOPED[name]}, attack=name)
        check = _StopAfter()
        with attacks.common.stop_between_steps(check):
            checked = robustness.craft(fn, x, y, seed=3, **{"eps": None, **LOOPED[name]}, attack=name)
        assert np.array_equal(plain, checked)
        assert check.asked > 0


@pytest.mark.parametrize("name", _quick_or_slow(["pgd", "apgd_t", "square", "cw_l2"]))
def test_a_stop_check_ends_an_attack_between_two_steps(name):
    model = _tiny_model()
    x = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    # One restart: the loops of separate restarts are independent and may run side by side.
    options = {"eps": None, **LOOPED[name], **({"restarts": 1} if "restarts" in LOOPED[name] else {})}
    check = _StopAfter()
    with attacks.common.stop_between_steps(check):  # traced (and asked while tracing), run to the end
        robustness.craft(model, x, np.arange(6), seed=3, **options, attack=name)
    check.asked, check.calls = 0, 3  # the traced graph: asked before it starts, in the first step, and in the second
    with attacks.common.stop_between_steps(check), pytest.raises(KeyboardInterrupt):
        robustness.craft(model, x, np.arange(6), seed=3, **options, attack=name)
    assert check.asked == 3  # no step ran after the check raised
    with attacks.common.stop_between_steps(check):  # the same attack called eagerly (its cached graph)
        with pytest.raises(KeyboardInterrupt):
            check.asked, check.calls = 0, 1
            attacks.get(name)(model, x, y=np.arange(6), **{k: v for k, v in options.items() if v is not None})


def test_a_stop_check_ends_a_trace():
    # A graph traced for seconds is stopped at the first stop point or model call traced after the request.
    model = _tiny_model()
    check = _StopAfter(calls=1)
    with attacks.common.stop_between_steps(check), pytest.raises(KeyboardInterrupt):
        robustness.craft(model, _images(4), np.arange(4), attack="pgd", eps=0.05, steps=3, seed=1)
    (batch,) = robustness._COMPILED_BATCH[model].values()
    assert check.asked == 1 and batch.experimental_get_tracing_count() == 0  # the trace did not finish


def test_an_xla_batch_has_no_stop_points():
    model = _tiny_model()
    x = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    options = dict(attack="pgd", eps=0.05, steps=3, rand_init=False, jit_compile=True)  # XLA ignores tf.random seeds
    check = _StopAfter(calls=1)
    with attacks.common.stop_between_steps(check):
        adv = robustness.craft(model, x, np.arange(6), **options)
    assert check.asked == 0 and np.array_equal(adv, robustness.craft(model, x, np.arange(6), **options))


# --- one graph for every seed: seeded draws are stateless functions of the batch's key ------------


def _model(kind):
    """A small model: ``plain``, or random at inference through edgebnn's layers (stochastic-binary
    weights, as Galloway's model S, or MC dropout, as Guan's)."""
    tf.keras.utils.set_random_seed(0)
    layers = [tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten()]
    if kind == "stochastic_binary":
        layers.append(lq.layers.QuantDense(32, kernel_quantizer=quantizers.StochasticSign(),
                                           kernel_constraint="weight_clip"))
    elif kind == "mc_dropout":
        layers += [tf.keras.layers.Dense(32, activation="relu"), MCDropout(0.3)]
    dense = tf.keras.layers.Dense(10, kernel_initializer=tf.keras.initializers.RandomNormal(stddev=1.0, seed=0))
    return tf.keras.Sequential([*layers, dense])


def _images(n):
    return np.random.default_rng(0).random((n, 28, 28, 1), dtype=np.float32)


@pytest.mark.parametrize("name", _quick_or_slow(sorted(LOOPED)))
def test_a_seeded_attack_traces_its_batch_graph_once_for_every_batch_and_seed(name):
    model = TraceCounter(_model("mc_dropout"))
    x, y = _images(9), np.arange(9)
    options = {"eps": None, **LOOPED[name]}
    robustness.craft(model, x[:3], y[:3], attack=name, seed=1, batch_size=3, **options)
    traced = model.calls
    assert traced > 0
    for seed in range(2, 5):  # three batches each
        robustness.craft(model, x, y, attack=name, seed=seed, batch_size=3, **options)
    assert model.calls == traced
    (batch,) = robustness._COMPILED_BATCH[model].values()
    assert batch.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("name", _quick_or_slow(sorted(LOOPED)))
def test_a_seeded_graph_draws_nothing_from_tensorflows_random_state(name):
    # Every random op of the attack and of edgebnn's random layers draws from the batch's key.
    for kind in ("stochastic_binary", "mc_dropout"):
        model = _model(kind)
        x, y = tf.constant(_images(4)), tf.constant(np.arange(4))
        batch = robustness._batch_function(False, attacks.get(name), tuple(sorted(LOOPED[name].items())), seeded=True)
        concrete = batch.get_concrete_function(model, x, y, robustness.randomness.key(0))
        assert robustness.randomness.stateful_random_ops(concrete) == []


def _two_batches(model, order, seed_of, **options):
    x, y = _images(8), np.arange(8)
    batches = {index: robustness.craft(model, x[4 * index : 4 * index + 4], y[4 * index : 4 * index + 4],
                                       seed=seed_of(index), **options) for index in order}
    return [batches[0], batches[1]]


@pytest.mark.parametrize("kind", ["plain", "stochastic_binary", "mc_dropout"])
def test_a_seeded_batch_depends_on_its_seed_alone(kind):
    model = _model(kind)
    # Random starts (steps too short to erase them), and EOT on a randomized model.
    options = dict(attack="pgd", eps=0.05, steps=3, step_size=0.005, rand_init=True, eot_samples=2)
    first = _two_batches(model, (0, 1), lambda index: 100 + index, **options)
    # Other graphs traced and run, TensorFlow's random state moved, the batch graph traced anew,
    # and the batches in the other order: the same examples bit for bit.
    robustness.craft(model, _images(4), np.arange(4), attack="square", eps=0.1, steps=20, seed=5)
    robustness.craft(model, _images(4), np.arange(4), attack="apgd", eps=0.1, steps=3)
    tf.random.uniform([100])
    robustness._COMPILED_BATCH.pop(model)
    again = _two_batches(model, (1, 0), lambda index: 100 + index, **options)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = _two_batches(model, (0, 1), lambda index: 200 + index, **options)
    assert not any(np.array_equal(a, b) for a, b in zip(first, other))


def test_a_seeded_xla_batch_repeats():
    # Stateless draws keep their seeds under XLA (TensorFlow's stateful ones ignore op seeds there).
    model = _model("stochastic_binary")
    options = dict(attack="pgd", eps=0.05, steps=3, jit_compile=True)
    x, y = _images(4), np.arange(4)
    first = robustness.craft(model, x, y, seed=3, **options)
    assert np.array_equal(first, robustness.craft(model, x, y, seed=3, **options))
    assert not np.array_equal(first, robustness.craft(model, x, y, seed=4, **options))


def test_a_model_drawing_elsewhere_is_traced_per_seeded_call():
    # tf.nn.dropout draws from TensorFlow's state, which a key does not reach: such a model is
    # crafted in a graph traced for the call under the tf.random seed, so it still repeats.
    model = TraceCounter(randomized_model(_tiny_model()))
    x, y = _images(4), np.arange(4)
    first = robustness.craft(model, x, y, attack="pgd", eps=0.05, steps=3, seed=8)
    traced = model.calls
    assert np.array_equal(first, robustness.craft(model, x, y, attack="pgd", eps=0.05, steps=3, seed=8))
    assert model.calls > traced


def test_craft_checks_its_seed():
    with pytest.raises(ValueError, match="seed"):
        robustness.craft(_tiny_model(), _images(2), np.arange(2), attack="fgsm", eps=0.1, seed=-1)
