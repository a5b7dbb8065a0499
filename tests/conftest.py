"""Shared test tooling: real data from ``$EDGEBNN_DATA_DIR`` (default ``../shared/data``), trained
models shared across files, a seed fixture, realistic BatchNorm statistics, a Larq-style
``layer_test`` and an in-process CLI runner.

Test files import the plain helpers with ``from conftest import ...`` (``tests/`` is on
``sys.path`` under pytest's default import mode) and request the fixtures by name.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import edgebnn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist each worker process gets one core's worth of TensorFlow threads, so
    # the workers run side by side instead of contending for the same cores.
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"

#: Test files that spend most of their time training, converting or running studies, longest
#: first. They run before every other file: pyproject's ``--no-loadscope-reorder`` makes
#: pytest-xdist hand out files in collection order, so the short files fill the end of the run
#: and no long file starts last on one worker while the other idles.
SCHEDULED_FIRST = (
    "test_studies.py", "test_zoo.py", "test_attacks.py", "test_examples.py", "test_pipeline.py",
    "test_attack_determinism.py", "test_deploy.py", "test_attack_throughput.py", "test_strong_attacks.py",
    "test_training_xla.py", "test_deploy_rewrite.py", "test_adversarial_training.py", "test_deploy_packed.py",
    "test_cli.py", "test_optim.py", "test_certify.py", "test_deploy_storage.py", "test_device.py",
    "test_own_model.py", "test_env.py", "test_kinds.py", "test_store_healing.py", "test_verifiable.py",
    "test_deploy_shipped.py",
)


def pytest_collection_modifyitems(items):
    """Put the files of :data:`SCHEDULED_FIRST` first, in that order; the others keep theirs."""
    rank = {name: position for position, name in enumerate(SCHEDULED_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def data_dir():
    """Folder holding the offline IDX datasets; tests needing real data skip loudly without it."""
    path = Path(os.environ.get("EDGEBNN_DATA_DIR", DEFAULT_DATA_DIR))
    if not (path / "fashion_mnist").is_dir():
        pytest.skip(f"real data not found in {path}; set EDGEBNN_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def fashion_small(data_dir):
    """A seeded real Fashion-MNIST subset: 600 train and 300 test images."""
    from edgebnn import data

    x, y = data.load("fashion_mnist", "train", data_dir=data_dir, limit=600, seed=1)
    xt, yt = data.load("fashion_mnist", "test", data_dir=data_dir, limit=300, seed=1)
    return x, y, xt, yt


@pytest.fixture(scope="session")
def run_shared_dir(tmp_path_factory):
    """A folder that every pytest-xdist worker of this run sees (the parent of the workers' own
    temporary folders; under ``-n0`` this process's): the session fixtures below put what they
    computed there, so the other workers load it instead of computing it again."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared_fixtures"
    path.mkdir(exist_ok=True)
    return path


@contextlib.contextmanager
def _exclusive(path):
    """Hold an exclusive lock on ``path`` + ``.lock`` (one worker at a time) for the ``with`` block."""
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def trained_once(shared_dir, name, model, fit):
    """``model`` trained by ``fit(model)`` once per test run: the first worker trains it and stores its
    weights under ``shared_dir``; every other worker loads them into its own ``model``. Returns ``model``."""
    weights = shared_dir / f"{name}.weights.h5"
    with _exclusive(weights):
        if weights.is_file():
            model.load_weights(weights)
        else:
            fit(model)
            model.save_weights(weights)
    return model


@pytest.fixture(scope="session")
def fcn_in2(fashion_small, run_shared_dir):
    """A small binary FCN with 2-bit input, trained briefly on real data (realistic BatchNorm), once per
    test run (see :func:`trained_once`).

    Shared by the deployment, device and ARM tests; none of them changes it.
    """
    from edgebnn.training import train
    from edgebnn.zoo.panda_fcn import build_fcn

    x, y, _, _ = fashion_small
    model = build_fcn(hidden_units=64, hidden_layers=2, precision="binary", input_bits=2)
    return trained_once(run_shared_dir, "fcn_in2", model,
                        lambda m: train(m, x, y, epochs=3, batch_size=64, verbose=0))


@pytest.fixture(scope="session")
def fcn_in2_flatbuffer(fcn_in2, run_shared_dir):
    """``fcn_in2_flatbuffer(**options)``: ``convert(fcn_in2, **options)``, converted once per test run.

    The deployment, device, threshold and certification tests convert the shared FCN with the same
    options several times; flatbuffers are immutable bytes, so they share one conversion per set of
    options (defaults filled in, so ``target="lce"`` and ``target="lce", input_dtype="float32"``
    are one conversion), made by the first worker that needs it and read from ``run_shared_dir`` by
    the others (every worker's ``fcn_in2`` holds the same weights).
    """
    import inspect

    from edgebnn.deploy.convert import convert

    signature, converted = inspect.signature(convert), {}

    def flatbuffer(**options):
        bound = signature.bind(fcn_in2, **options)
        bound.apply_defaults()
        key = tuple(sorted((name, value) for name, value in bound.arguments.items() if name != "model"))
        if key not in converted:
            path = run_shared_dir / f"fcn_in2_{hashlib.sha256(repr(key).encode()).hexdigest()[:16]}.tflite"
            with _exclusive(path):
                if not path.is_file():
                    path.write_bytes(convert(fcn_in2, **options))
                converted[key] = path.read_bytes()
        return converted[key]

    return flatbuffer


@pytest.fixture(scope="session")
def fcn2_float(fashion_small, run_shared_dir):
    """Float Panda FCN2 trained 3 epochs on the 600 training images (seeded), once per test run
    (see :func:`trained_once`).

    Shared by the attack and masking tests; none of them changes it.
    """
    import tensorflow as tf

    from edgebnn import zoo
    from edgebnn.training import train

    x, y, _, _ = fashion_small
    tf.keras.utils.set_random_seed(0)
    model = zoo.get("panda_fcn2")(precision="float")
    return trained_once(run_shared_dir, "fcn2_float", model,
                        lambda m: train(m, x, y, epochs=3, batch_size=32, seed=0, verbose=0))


@pytest.fixture(scope="session")
def float_model(fcn2_float, fashion_small):
    """``(fcn2_float, x, y)`` with the first 100 test images and their labels (the strong-attack
    and masking tests)."""
    _, _, xt, yt = fashion_small
    return fcn2_float, xt[:100], yt[:100]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


#: The seed of the ``seed`` fixture.
SEED = 1234


@pytest.fixture
def seed():
    """Seed TensorFlow, NumPy and Python before the test, so random starts and masks repeat.

    Use it for a whole file with ``pytestmark = pytest.mark.usefixtures("seed")``.
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(SEED)
    return SEED


#: BatchNorm statistics as after training, for untrained models whose conversion or rewrite is
#: compared with Keras: wide moving means put binarized pre-activations far from the sign's tie
#: at 0 (where LCE and Larq differ), as training does.
DEPLOY_BATCH_NORM = dict(mean_std=5.0, beta_std=0.5)


@pytest.fixture
def tensorflow_log():
    """The messages TensorFlow's logger emits during the test, as a list of strings."""
    import logging

    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    log, handler = logging.getLogger("tensorflow"), Keep()
    log.addHandler(handler)
    yield messages
    log.removeHandler(handler)


def randomize_batch_norm(model, *, seed=0, **stats):
    """Give every BatchNorm of ``model`` seeded statistics as after training; returns ``model``.

    ``stats`` default to :data:`DEPLOY_BATCH_NORM`; see :func:`edgebnn.testing.randomize_batch_norm`
    for their meaning.
    """
    from edgebnn.testing import randomize_batch_norm as randomize

    return randomize(model, seed=seed, **(stats or DEPLOY_BATCH_NORM))


def value_and_grad(fn, x, upstream):
    """``fn(x)`` and the gradient of ``sum(fn(x) * upstream)`` with respect to ``x``, as NumPy arrays."""
    import tensorflow as tf

    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = fn(x)
        loss = tf.reduce_sum(y * upstream)
    return y.numpy(), tape.gradient(loss, x).numpy()


def layer_test(layer_cls, *, kwargs=None, input_data, expected_output=None, deterministic=True, tmp_path=None,
               exact=True):
    """Check one layer in Larq's style (``larq/testing_utils.py::layer_test``); returns its output.

    Builds ``layer_cls(**kwargs)`` in a functional model, compares its output on ``input_data``
    with ``expected_output`` (a plain-Keras or NumPy reference), checks ``compute_output_shape``
    against the real output and the ``get_config`` / ``from_config`` round trip; with
    ``tmp_path`` also a ``.keras`` save/load round trip. Layers that sample at inference
    (``deterministic=False``) are compared by shape and configuration only.

    Args:
        layer_cls: the layer class.
        kwargs: constructor arguments.
        input_data: a NumPy batch.
        expected_output: the reference output, or None.
        deterministic: whether two calls on the same input give the same output.
        tmp_path: a folder for the saved model, or None to skip saving.
        exact: compare bit for bit; otherwise with ``rtol=1e-6``.
    """
    import tensorflow as tf

    kwargs = kwargs or {}
    compare = (np.testing.assert_array_equal if exact
               else lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7))
    layer = layer_cls(**kwargs)
    inputs = tf.keras.Input(input_data.shape[1:], dtype=input_data.dtype)
    model = tf.keras.Model(inputs, layer(inputs))
    output = model(input_data, training=False).numpy()
    assert tuple(layer.compute_output_shape(tf.TensorShape(input_data.shape))) == output.shape
    if expected_output is not None:
        compare(output, expected_output)

    config = layer.get_config()
    for key, value in kwargs.items():
        assert config[key] == value, (key, config[key], value)
    rebuilt = layer_cls.from_config(config)
    assert type(rebuilt) is layer_cls and rebuilt.get_config() == config
    clone = tf.keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    if deterministic:
        compare(clone(input_data, training=False).numpy(), output)

    if tmp_path is not None:
        path = tmp_path / f"{layer_cls.__name__}.keras"
        model.save(path)
        loaded = tf.keras.models.load_model(path)
        [loaded_layer] = [lay for lay in loaded.layers if not isinstance(lay, tf.keras.layers.InputLayer)]
        assert type(loaded_layer) is layer_cls and loaded_layer.get_config() == config
        if deterministic:
            compare(loaded(input_data, training=False).numpy(), output)
    return output


def run_cli(main, argv, capsys):
    """Call a CLI's ``main(argv)`` in-process; returns ``(exit_code, stdout, stderr lines)``.

    An argparse error (``SystemExit``) counts as its exit code, as in a real process.
    """
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def _toml_key(key):
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_lines(table):
    """The ``key = value`` lines of a TOML table given as a dict, in order."""
    return "\n".join(f"{_toml_key(key)} = {toml_value(value)}" for key, value in table.items())


def toml_value(value):
    """``value`` (str, bool, number, list or dict) as a TOML value; a dict becomes an inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + toml_lines(value).replace("\n", ", ") + " }"
    raise TypeError(f"`value` must be a str, bool, number, list or dict, got {type(value).__name__}.")


def attack(name, **options):
    """One ``[[attacks]]`` table of a test study, in TOML: ``attack("pgd", eps=[0.1], steps=3)``."""
    return "[[attacks]]\n" + toml_lines({"name": name, **options})


def probe(layer, **options):
    """One ``[[probes]]`` table of a test study, in TOML: ``probe("dense_1", attack="fgsm", eps=0.1)``."""
    return "[[probes]]\n" + toml_lines({"layer": layer, **options}) + "\n"


def small_study(name, *, head="", data="train_limit = 300\ntest_limit = 120", model='precision = "binary"',
                train="epochs = 1\nbatch_size = 64", evaluation="limit = 60\nbatch_size = 30", attacks=(),
                rest=""):
    """TOML text of a small test study: panda_fcn2 on a real Fashion-MNIST subset.

    Each argument is the body of its section: TOML text (dedented, so tests may indent
    it) or a dict of the section's keys, ``data=dict(train_limit=200, test_limit=60)``; the
    study's name, ``dataset = "fashion_mnist"`` and ``family = "panda_fcn2"`` are
    fixed. ``head`` holds top-level keys, ``evaluation=None`` leaves that section out,
    ``attacks`` is a list of :func:`attack` tables, written in order after the evaluation,
    and ``rest`` (deploy, grid, cells, claims, ...) is appended after them as given.
    """
    def body(section):
        return toml_lines(section) if isinstance(section, dict) else textwrap.dedent(section).strip("\n")

    parts = [f'name = "{name}"', body(head), "[data]", 'dataset = "fashion_mnist"', body(data),
             "[model]", 'family = "panda_fcn2"', body(model), "[train]", body(train)]
    if evaluation is not None:
        parts += ["[evaluation]", body(evaluation)]
    parts += [*attacks, body(rest)]
    return "\n" + "\n".join(p for p in parts if p) + "\n"



#: TOML text of the smallest ``[[certify]]`` study: a binary FCN of 12 hidden units with 2-bit
#: input, one epoch on 300 Fashion-MNIST images, PGD then exact certification of 6 test images
#: at eps 0.02 and 0.05. It ends inside the ``[[certify]]`` entry, so more of its keys may follow;
#: load it with ``data.data_dir`` set.
TINY_CERTIFY = textwrap.dedent(
    """
    name = "certify"
    [data]
    dataset = "fashion_mnist"
    train_limit = 300
    test_limit = 40
    [model]
    family = "panda_fcn2"
    precision = "binary"
    input_bits = 2
    options = { hidden_units = 12, hidden_layers = 2 }
    [train]
    epochs = 1
    batch_size = 64
    [evaluation]
    limit = 10
    batch_size = 10
    [[certify]]
    eps = [0.02, 0.05]
    limit = 6
    time_limit = 10
    attack_steps = 10
    attack_restarts = 1
    """
)


def two_cell_study(name, *, rest=""):
    """TOML text of the smallest :func:`small_study` with independent cells: FCN2's layout narrowed to
    64 hidden units (the runner's plumbing needs no width) with 2-bit input, float and binary (a grid),
    each trained and attacked by FGSM at two eps, deployment off; ``rest`` (figures, ...) is appended."""
    grid = '[deploy]\nenabled = false\n[grid]\n"model.precision" = ["float", "binary"]\n'
    return small_study(name, model=dict(precision="binary", input_bits=2, options={"hidden_units": 64}),
                       attacks=[attack("fgsm", eps=[0.1, 0.2])], rest=grid + textwrap.dedent(rest).strip("\n"))


def mc_cell(*, passes, fit, attacks):
    """TOML of a study's cell ``mc``: Guan's float LeNet with MC dropout at inference, ``passes``
    stochastic passes, the ``attacks`` (a list of inline attack tables), no probes, and the FGSM
    uncertainty detector fitted on ``fit`` images."""
    return textwrap.dedent(f"""
        [[cells]]
        name = "mc"
        grid = false
        model = {{ family = "guan_lenet", precision = "float", options = {{ mc_dropout = true }} }}
        evaluation.mc_passes = {passes}
        attacks = {toml_value(list(attacks))}
        probes = []
        detection = [{{ attack = "fgsm", eps = 0.1, fit = {fit}, samples = {passes} }}]
    """)


def transfer_cell(source):
    """TOML of a study's cell ``transfer``: FGSM examples crafted on the cell ``source`` (a cell name), no probes."""
    return textwrap.dedent(f"""
        [[cells]]
        name = "transfer"
        grid = false
        attacks = [{{ name = "fgsm", eps = 0.1, source = {toml_value(source)} }}]
        probes = []
    """)

def lines_console():
    """A recipe :class:`~edgebnn.recipes.console.Console` that collects its lines in ``.lines`` instead of printing."""
    from edgebnn.recipes.console import Console  # noqa: PLC0415

    class Lines(Console):
        def __init__(self):
            super().__init__()
            self.lines = []

        def line(self, message):
            self.lines.append(message)

        def note(self, message):
            self.lines.append(message)

    return Lines()


def ours_and_lces_conversion(model, monkeypatch, **options):
    """``(ours, LCE's)``: :func:`edgebnn.deploy.convert.convert` to the LCE target with float32
    weights (no storage pass), and ``larq_compute_engine.convert_keras_model`` of the very Keras
    model it converts (its ``prepare`` is made to return that one object: a second ``prepare``
    would name its layers anew)."""
    import larq_compute_engine as lce  # noqa: PLC0415 (heavy)

    from edgebnn.deploy import convert as cv  # noqa: PLC0415 (TensorFlow)

    deployable = cv.prepare(model, target="lce", **options)
    monkeypatch.setattr(cv, "prepare", lambda *args, **kwargs: deployable)
    return cv.convert(model, target="lce", weights="float32", **options), lce.convert_keras_model(deployable)
