"""Seeded attacks on randomized models repeat bit for bit, whatever ran before and however the
threads are scheduled, so that a strong evaluation stopped and resumed gives the uninterrupted numbers."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgebnn import attacks
from edgebnn.evaluation import robustness
# randomized_model: input dropout, a fresh mask at every call and step
from test_masking import _Kept, randomized_model, seeded_report, whole_and_stopped

import tensorflow as tf

pytestmark = pytest.mark.usefixtures("seed")

#: Every attack whose steps run in a graph loop, with options that trace each loop once.
LOOPED = {
    "pgd": {"eps": 0.05, "steps": 3, "restarts": 2, "eot_samples": 2},
    "bim": {"eps": 0.05, "steps": 3},
    "mim": {"eps": 0.05, "steps": 3},
    "apgd": {"eps": 0.05, "steps": 3},
    "apgd_t": {"eps": 0.05, "steps": 3, "target_classes": 2},
    "square": {"eps": 0.05, "steps": 30},
    "spsa": {"eps": 0.05, "steps": 3},
    "cw_l2": {"steps": 3},
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


@pytest.mark.slow
def test_a_stopped_report_on_a_randomized_model_resumes_to_the_same_numbers(float_model):
    model, x, y = float_model
    noisy = randomized_model(model)  # every run, prediction and EOT gradient draws at random
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
    check = _StopAfter(calls=3)  # asked before the graph starts, in the first step, and in the second
    with attacks.common.stop_between_steps(check), pytest.raises(KeyboardInterrupt):
        robustness.craft(model, x, np.arange(6), seed=3, **options, attack=name)
    assert check.asked == 3  # no step ran after the check raised
    with attacks.common.stop_between_steps(check):  # the same attack called eagerly (its cached graph)
        with pytest.raises(KeyboardInterrupt):
            check.asked, check.calls = 0, 1
            attacks.get(name)(model, x, y=np.arange(6), **{k: v for k, v in options.items() if v is not None})


def test_an_xla_batch_has_no_stop_points():
    model = _tiny_model()
    x = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    options = dict(attack="pgd", eps=0.05, steps=3, rand_init=False, jit_compile=True)  # XLA ignores tf.random seeds
    check = _StopAfter(calls=1)
    with attacks.common.stop_between_steps(check):
        adv = robustness.craft(model, x, np.arange(6), **options)
    assert check.asked == 0 and np.array_equal(adv, robustness.craft(model, x, np.arange(6), **options))
