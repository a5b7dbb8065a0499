"""The steps of a run, one cell at a time: load its data, train its model, compute its
results, deploy it. Each step looks in the store first and stores what it computes.

A :class:`Session` holds what the steps share during one run: the store, the console,
the data and models loaded so far, the results and deployments found or computed, and
the compute time spent in this run.
"""

import json
import math
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import edgebnn
from edgebnn import _io, data
from edgebnn.recipes import interrupts
from edgebnn.recipes import plan as plan_lib
from edgebnn.recipes import sources
from edgebnn.recipes.evaluations import KINDS, entries
from edgebnn.recipes.evaluations.common import EvalContext, default_eot_samples
from edgebnn.recipes.schema import RecipeError
from edgebnn.recipes.store import Store, key_of, pack_outcomes

#: Folder of a deployment's device bundle (``deploy.bundle``), in the cache and in a single run's folder.
BUNDLE = "bundle"
#: Folder of the TensorBoard logs of the cells trained in a run (``train.tensorboard``), one per cell id.
TENSORBOARD = "tensorboard"
#: Files of a stored trained model that a run reads (checked against the folder's checksums).
MODEL_FILES = ("model.keras", "train.json")


@dataclass
class Data:
    """A cell's images and what they are."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple
    caption: str


class Session:
    """What the steps of one run share.

    Attributes:
        study: the :class:`~edgebnn.recipes.config.Study`.
        out: the run folder.
        console: where progress goes.
        store: the cache (:class:`~edgebnn.recipes.store.Store`).
        strategy: the ``tf.distribute`` strategy training runs under (:func:`make_strategy`).
        chief: whether this process evaluates, deploys and reports (worker 0 of a multi-worker run).
        models: ``{model key: (model, randomized, train info)}`` loaded so far.
        results: ``{result key: stored result}`` found or computed so far.
        deployed: ``{cell id: deploy result}``; ``deploy_dirs``: ``{cell id: its store folder}``.
        float_tflite_bytes: ``{model key: size of its plain float TFLite conversion}`` (cells that deploy
            one trained model convert it to float once).
        computed_seconds: compute time spent in this run (not taken from the cache).
    """

    def __init__(self, study, out, console, *, cache=None, command=None):
        self.study, self.out, self.console = study, Path(out), console
        self.command = command
        self.store = Store(out, cache=cache, warn=console.line)
        self.strategy, self.chief = None, True
        self._data = {}
        self.models = {}
        self.results = {}
        self.deployed = {}
        self.deploy_dirs = {}
        self.float_tflite_bytes = {}
        self.computed_seconds = 0.0

    def data_for(self, recipe):
        """The :class:`Data` of ``recipe``'s ``[data]`` section (loaded once per section)."""
        key = key_of({"data": recipe.data.model_dump(mode="json")})
        if key not in self._data:
            self._data[key] = load_data(recipe.data)
        return self._data[key]

    def sizes(self, recipe):
        """``(n_train, n_test)`` of ``recipe``'s data (what the planner needs)."""
        d = self.data_for(recipe)
        return len(d.x_train), len(d.x_test)


def plural(n, word):
    """``"1 cell"``, ``"3 cells"``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# --- data and models -------------------------------------------------------------------


def _subsets(config, x_train, y_train, x_test, y_test):
    """Seeded subsets of the ``data.train_limit`` / ``data.test_limit`` images (each, when given)."""
    def subset(x, y, limit):
        if limit is None or limit >= len(x):
            return x, y
        keep = np.sort(np.random.default_rng(config.seed).permutation(len(x))[:limit])
        return x[keep], y[keep]

    return (*subset(x_train, y_train, config.train_limit), *subset(x_test, y_test, config.test_limit))


def _caption(config, name, n_train, n_test):
    def part(split, n, limit):
        return (f"a seeded subset (seed {config.seed}) of {n:,} images of the {split} split"
                if limit and limit <= n else f"the {split} split ({n:,} images)")

    return (f"{name}: trained on {part('train', n_train, config.train_limit)}, "
            f"tested on {part('test', n_test, config.test_limit)}")


def _load_own_data(config):
    """The :class:`Data` of ``data.files`` or of a tensorflow-datasets name."""
    if config.files is not None:
        x_train, y_train, x_test, y_test, num_classes = data.load_npz(config.files)
        x_train, y_train, x_test, y_test = _subsets(config, x_train, y_train, x_test, y_test)
        name = f"{Path(config.files).name} (sha256 {sources.sha256(config.files)[:12]})"
        return Data(x_train, y_train, x_test, y_test, num_classes, tuple(x_train.shape[1:]),
                    _caption(config, name, len(x_train), len(x_test)))
    image_shape, num_classes = data.tfds_info(config.dataset)
    x_train, y_train = data.load_tfds(config.dataset, "train", limit=config.train_limit, seed=config.seed)
    x_test, y_test = data.load_tfds(config.dataset, "test", limit=config.test_limit, seed=config.seed)
    return Data(x_train, y_train, x_test, y_test, num_classes, image_shape,
                _caption(config, f"{config.dataset} (tensorflow-datasets)", len(x_train), len(x_test)))


def load_data(config):
    """The :class:`Data` of a ``[data]`` section: a seeded carve, or (subsets of) the official splits,
    of a built-in dataset; your ``.npz`` file; or a tensorflow-datasets image classification set."""
    if config.files is not None or config.dataset not in data.DATASETS:
        return _load_own_data(config)
    info = data.get_info(config.dataset)
    if config.split is not None:
        split = config.split
        x_train, y_train, x_test, y_test, caption = data.carve(
            config.dataset, split.source, train_size=split.train, test_size=split.test, seed=split.seed,
            data_dir=config.data_dir,
        )
    else:
        x_train, y_train = data.load(config.dataset, "train", data_dir=config.data_dir, limit=config.train_limit,
                                     seed=config.seed)
        x_test, y_test = data.load(config.dataset, "test", data_dir=config.data_dir, limit=config.test_limit,
                                   seed=config.seed)

        def part(split, n, limit):
            return (f"a seeded subset (seed {config.seed}) of {n:,} images of the official {split} split"
                    if limit else f"the official {split} split ({n:,} images)")

        caption = (f"{config.dataset}: trained on {part('train', len(x_train), config.train_limit)}, "
                   f"tested on {part('test', len(x_test), config.test_limit)}")
    return Data(x_train, y_train, x_test, y_test, info.num_classes, info.image_shape, caption)


def build_model(recipe, dataset):
    """The untrained model of ``recipe`` for ``dataset`` (seeded with ``train.seed``); a saved
    model (``model.file``) as saved."""
    import tensorflow as tf  # noqa: PLC0415

    from edgebnn import zoo  # noqa: PLC0415

    if sources.model_source(recipe.model) != "family":
        return sources.build(recipe, dataset)
    tf.keras.utils.set_random_seed(recipe.train.seed)
    builder = zoo.get(recipe.model.family)
    return builder(precision=recipe.model.precision, input_bits=recipe.model.input_bits,
                   num_classes=dataset.num_classes, input_shape=dataset.image_shape, **recipe.model.options)


def _build_checked(recipe, dataset, *, prefix):
    """:func:`build_model`, its argument errors raised as a :class:`RecipeError` naming the recipe key."""
    try:
        return build_model(recipe, dataset)
    except RecipeError as e:
        raise RecipeError(f"{prefix}{e}") from None
    except (ValueError, TypeError) as e:
        named = [key for key in recipe.model.options if f"`{key}`" in str(e)]
        key = f"model.options.{named[0]}" if named else "model"
        raise RecipeError(f"{prefix}`{key}`: {e}") from None


def randomized(model):
    """Whether ``model`` samples at inference."""
    from edgebnn.introspect import random_inference_layers  # noqa: PLC0415

    return bool(random_inference_layers(model))


def check_models(session, plans):
    """Build every distinct model once and check each evaluation entry against it, before any training.

    Raises:
        RecipeError: a model option or an entry does not fit the built model, naming the key.
    """
    import tensorflow as tf  # noqa: PLC0415

    study, built = session.study, set()
    for cell in study.cells:
        model_key = plans[cell.id].model_key
        if model_key in built:
            continue
        built.add(model_key)
        prefix = "" if study.single else f"cell {cell.name!r}: "
        model = _build_checked(cell.recipe, session.data_for(cell.recipe), prefix=prefix)
        _check_bundle_pixels(cell.recipe, session.data_for(cell.recipe), prefix=prefix)
        _check_calibration(cell.recipe, model, prefix=prefix)
        source = sources.model_source(cell.recipe.model)
        if source != "family":
            try:
                sources.check_fits(model, session.data_for(cell.recipe), key=f"model.{source}")
            except RecipeError as e:
                raise RecipeError(f"{prefix}{e}") from None
        for name, where, spec in entries(cell.recipe):
            if spec is None:
                continue
            try:
                KINDS[name].check_model(spec, model, where=where)
            except RecipeError as e:
                raise RecipeError(f"{prefix}{e}") from None
        del model
        tf.keras.backend.clear_session()


def _check_calibration(recipe, model, *, prefix):
    """``train.calibrate_batch_norm`` needs a deterministic model with BatchNorm layers it can calibrate.

    Raises:
        RecipeError: the option is set on a model without such layers, or random at inference.
    """
    from edgebnn.zoo.eev import check_batch_norm_calibration  # noqa: PLC0415

    if not (sources.trains(recipe) and recipe.train.calibrate_batch_norm):
        return
    if randomized(model):
        raise RecipeError(f"{prefix}`train.calibrate_batch_norm`: the model samples at inference, so its "
                          f"BatchNorm inputs have no fixed statistics to calibrate on.")
    try:
        check_batch_norm_calibration(model)
    except ValueError as e:
        raise RecipeError(f"{prefix}`train.calibrate_batch_norm`: {e}") from None


def _check_bundle_pixels(recipe, dataset, *, prefix):
    """A device bundle stores the test images as uint8: they must lie on the 1/255 grid.

    Raises:
        RecipeError: ``deploy.bundle`` with test images between the grid's levels (your own float data).
    """
    from edgebnn.deploy.tflite import PIXEL_MAX  # noqa: PLC0415

    if not (recipe.deploy.enabled and recipe.deploy.bundle):
        return
    x = dataset.x_test
    if not np.allclose(np.round(x * PIXEL_MAX) / PIXEL_MAX, x, atol=1e-6):
        raise RecipeError(f"{prefix}`deploy.bundle`: a device bundle stores the test images as uint8, but the "
                          f"data's test pixels lie between the 1/255 levels; save them as uint8 (or as k/255).")


def make_strategy(study):
    """``(strategy, chief)``: the study's ``tf.distribute`` strategy, created before TensorFlow runs
    an op (as a multi-worker strategy must be), one for every cell, and whether this process is its chief.

    Raises:
        RecipeError: the cells ask for different strategies, or the strategy cannot be made.
    """
    from edgebnn.training.distribute import is_chief  # noqa: PLC0415
    from edgebnn.training.distribute import make_strategy as make  # noqa: PLC0415

    names = sorted({cell.recipe.train.strategy for cell in study.cells})
    if len(names) > 1:
        raise RecipeError(f"`train.strategy` must be the same in every cell of a study, got {names}.")
    try:
        strategy = make(names[0])
    except ValueError as e:
        raise RecipeError(f"`train.strategy`: {e}") from None
    return strategy, is_chief(strategy)


def versions():
    """Versions of edgebnn, TensorFlow, Larq and Python, for the report."""
    import tensorflow as tf  # noqa: PLC0415

    import larq  # noqa: PLC0415

    return {"edgebnn": edgebnn.__version__, "tensorflow": tf.__version__, "larq": larq.__version__,
            "python": platform.python_version()}


# --- training --------------------------------------------------------------------------


def trained(session, cell):
    """``(model, randomized, info)`` of ``cell``, trained now unless stored under its key."""
    import tensorflow as tf  # noqa: PLC0415

    key = plan_lib.model_key(cell.recipe)
    if key in session.models:
        return session.models[key]
    folder = session.store.model_dir(key)
    path = folder / "model.keras"
    loaded = {}

    def load():  # checks a model stored before checksums existed, keeping what it loaded
        loaded["model"] = tf.keras.models.load_model(path, compile=False)
        loaded["info"] = read_json(folder / "train.json")

    trained_now = False
    if not session.store.check_folder(folder, MODEL_FILES, load=load):
        with session.store.lock(key, on_wait=lambda: session.console.line(
                f"cell {cell.id!r}: another run is training this model ({key}); waiting for it")):
            if not session.store.check_folder(folder, MODEL_FILES, load=load):
                if sources.trains(cell.recipe):
                    _train(session, cell, key, folder)
                else:
                    _adopt(session, cell, key, folder)
                trained_now = True
    if not trained_now:
        session.console.line(f"cell {cell.id!r}: trained model found in the cache ({key})")
    model = loaded["model"] if "model" in loaded else tf.keras.models.load_model(path, compile=False)
    info = loaded["info"] if "info" in loaded else read_json(folder / "train.json")
    session.models[key] = (model, randomized(model), info)
    return session.models[key]


def _adopt(session, cell, key, folder):
    """Store ``cell``'s saved model (``model.file``, no ``[train]``) as its trained model, untrained."""
    path = cell.recipe.model.file
    session.console.line(f"cell {cell.id!r}: using the saved model {path} as it is (no [train] table)")
    model = sources.load_file_model(path)
    with _io.atomic_path(folder / "model.keras") as tmp:
        _save_without_optimizer(model, tmp)
    _io.write_json(folder / "train.json", {
        "key": key, "epochs": 0, "file": path, "file_sha256": sources.sha256(path), "history": {},
        "adversarial": None, "adversarial_linf_bound": None,
    })
    session.store.seal(folder, list(MODEL_FILES))


def _fit_model(session, recipe, d):
    """``(model, fit_model)``: the cell's model, and the (adversarial) model that fits it, compiled
    under the session's strategy."""
    from edgebnn.training import (  # noqa: PLC0415
        AdversarialModel, compile_for_classification, learning_rate_schedule, make_optimizer,
    )

    t = recipe.train
    with session.strategy.scope():  # variables of the model and the optimizer are mirrored
        model = build_model(recipe, d)
        fit_model = model
        if t.adversarial is not None:
            a = t.adversarial
            eot = a.eot_samples or default_eot_samples(randomized(model))
            fit_model = AdversarialModel(
                model, method=a.method, eps=a.eps, steps=a.steps, step_size=a.step_size, fraction=a.fraction,
                start_epoch=a.start_epoch, label_source=a.label_source, mode=a.mode, eot_samples=eot,
                rfgsm_variant=a.rfgsm_variant,
            )
        steps_per_epoch = math.ceil(len(d.x_train) / t.batch_size)
        lr = learning_rate_schedule(t.learning_rate, schedule=t.schedule, steps_per_epoch=steps_per_epoch,
                                    epochs=t.epochs, decay_epochs=t.decay_epochs, decay_factor=t.decay_factor)
        optimizer = make_optimizer(t.optimizer, learning_rate=lr, momentum=t.momentum, nesterov=t.nesterov,
                                   weight_decay=t.weight_decay)
        compile_for_classification(fit_model, optimizer=optimizer, xla=t.xla)
    return model, fit_model


def _train(session, cell, key, folder):
    import tensorflow as tf  # noqa: PLC0415

    from edgebnn.attacks.common import stop_between_steps  # noqa: PLC0415
    from edgebnn.training import train  # noqa: PLC0415
    from edgebnn.training.fit import discard_resume_state, resume_state  # noqa: PLC0415

    recipe, t = cell.recipe, cell.recipe.train
    d = session.data_for(recipe)
    _io.write_json(folder / "config.json", {"cell": cell.id, **recipe.model_dump(mode="json")})
    state = resume_state(folder / "checkpoints")
    resumed = "" if state is None else f" (resuming after epoch {state['epochs_done']}, the last finished one)"
    session.console.line(f"cell {cell.id!r}: training {plural(t.epochs, 'epoch')} on {len(d.x_train):,} images"
                         + resumed)
    start = time.perf_counter()
    model, fit_model = _fit_model(session, recipe, d)
    logger = _epoch_logger(session.console, cell.id, t.epochs, len(d.x_train) * plan_lib.epoch_work(t))
    callbacks = [logger]
    if t.tensorboard and session.chief:
        log_dir = session.out / TENSORBOARD / cell.id
        callbacks.append(tensorboard_callback(log_dir))
        session.console.line(f"cell {cell.id!r}: TensorBoard logs in {log_dir}")
    # The training's adversary (possibly compiled with XLA) has no stop points, also when an
    # evaluation needs this model: the epoch logger stops the training between two steps.
    with stop_between_steps(None):
        history = train(fit_model, d.x_train, d.y_train, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed,
                        checkpoint_dir=folder / "checkpoints", callbacks=callbacks, verbose=0)
    calibration = _calibrate(session, cell, model, d) if t.calibrate_batch_norm else None
    with _io.atomic_path(folder / "model.keras") as tmp:
        _save_without_optimizer(model, tmp)
    seconds = time.perf_counter() - start
    session.computed_seconds += seconds
    _io.write_json(folder / "train.json", {
        "key": key, "epochs": t.epochs, "seed": t.seed, "epochs_run_last": logger.epochs_run,
        "strategy": t.strategy, "replicas": int(session.strategy.num_replicas_in_sync),
        "seconds_last": seconds, "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "adversarial": None if t.adversarial is None else t.adversarial.model_dump(mode="json"),
        "adversarial_linf_bound": None if t.adversarial is None else training_linf_bound(t.adversarial),
        "batch_norm_calibration": calibration,
    })
    session.store.seal(folder, ["config.json", *MODEL_FILES])
    discard_resume_state(folder / "checkpoints")
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    del fit_model, model
    tf.keras.backend.clear_session()


def _calibrate(session, cell, model, d):
    """Set ``model``'s BatchNorm statistics to those of its layers' inputs over the cell's training
    images (``train.calibrate_batch_norm``); what was done, for ``train.json``."""
    from edgebnn.zoo.eev import calibrate_batch_norm  # noqa: PLC0415

    session.console.line(f"cell {cell.id!r}: calibrating the BatchNorm statistics on {len(d.x_train):,} "
                         f"training images")
    start = time.perf_counter()
    calibrate_batch_norm(model, d.x_train, batch_size=cell.recipe.evaluation.batch_size)
    return {"images": int(len(d.x_train)), "seconds": time.perf_counter() - start}


def tensorboard_callback(log_dir):
    """A Keras TensorBoard callback writing the epoch scalars (loss, accuracy, and under adversarial
    training the adversarial accuracy) into ``log_dir/train``; no graph, histograms or profile, so
    that logging reads no weights and draws no random numbers."""
    import tensorflow as tf  # noqa: PLC0415

    return tf.keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=0, write_graph=False,
                                          write_images=False, write_steps_per_second=False,
                                          update_freq="epoch", profile_batch=0)


def _epoch_logger(console, cell_id, epochs, work):
    """A Keras callback printing one line per epoch (and counting the epochs run here); it lets
    a pending Ctrl-C / SIGTERM stop the training between two steps."""
    import tensorflow as tf  # noqa: PLC0415

    class Logger(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs_run = 0
            self._start = None

        def on_train_batch_end(self, batch, logs=None):
            interrupts.check()  # between two training steps: a safe point to stop

        def on_epoch_begin(self, epoch, logs=None):
            if self._start is None and epoch > 0:  # resumed: the earlier epochs are done
                console.skip(epoch * work)
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs_run += 1
            seconds = time.perf_counter() - self._start
            console.done(work, seconds)
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            console.line(f"cell {cell_id!r}: epoch {epoch + 1}/{epochs}: {metrics} ({seconds:.1f} s)")

    return Logger()


def _save_without_optimizer(model, path):
    """Save ``model`` as a ``.keras`` file without its optimizer state.

    Runs load stored models with ``compile=False``, so the optimizer's slots (twice the
    weights for Adam) are never read back; left in, they triple the file and the time
    to read its weights out of the zip archive. Training resumes from the checkpoints,
    not from this file.
    """
    optimizer = model.optimizer
    model.optimizer = None  # the saver walks the model's attributes; a missing optimizer is skipped
    try:
        model.save(path)
    finally:
        model.optimizer = optimizer


def training_linf_bound(adversarial):
    """The largest L-inf distance of a training adversary from its clean image under ``adversarial``."""
    from edgebnn.attacks.rfgsm import max_linf  # noqa: PLC0415 (TensorFlow)

    if adversarial.method == "rfgsm":
        return max_linf(adversarial.eps, variant=adversarial.rfgsm_variant)
    return float(adversarial.eps)


# --- evaluation ------------------------------------------------------------------------


def context(session, cell, cell_plan, model, is_randomized):
    """The :class:`EvalContext` of ``cell``'s trained ``model``."""
    recipe = cell.recipe
    d = session.data_for(recipe)
    n_eval = cell_plan.n_eval

    def model_of(name):
        other, other_randomized, _ = trained(session, plan_lib.cell_of(session.study, name, cell.repeat))
        return other, other_randomized

    return EvalContext(
        cell=cell.id, model=model, randomized=is_randomized, model_of=model_of,
        x_eval=d.x_test[:n_eval], y_eval=d.y_test[:n_eval], x_pool=d.x_test[n_eval:], y_pool=d.y_test[n_eval:],
        x_test=d.x_test, y_test=d.y_test, num_classes=d.num_classes, evaluation=recipe.evaluation,
        progress=_stoppable(session.console.progress),
    )


def _stoppable(progress):
    """``progress`` that first lets a pending Ctrl-C / SIGTERM stop the run (a loop reports
    progress between two of its batches: a safe point)."""

    def checked(label, done, total):
        interrupts.check()
        progress(label, done, total)

    return checked


def summary(stored):
    """The console line of a stored result (its kind's :meth:`~edgebnn.recipes.evaluations.base.Kind.summary`)."""
    return KINDS[stored["evaluation"]].summary(stored["metrics"])


def evaluate(session, cell, unit, ctx, *, work, keep_examples):
    """The stored result of ``unit``, computed now (under its lock) unless the store has it."""
    interrupts.check()
    name = unit.module.label(unit.params)
    stored = session.store.load_result(unit.key)
    if stored is None:
        with session.store.lock(unit.key, on_wait=lambda: session.console.line(
                f"cell {cell.id!r}: {name}: another run is computing this result; waiting for it")):
            stored = session.store.load_result(unit.key)
            if stored is None:
                return _compute(session, cell, unit, ctx, work=work, keep_examples=keep_examples, name=name)
    session.console.skip(work)
    session.results[unit.key] = stored
    session.console.line(f"cell {cell.id!r}: {name}: {summary(stored)} (cached)")
    return stored


def _compute(session, cell, unit, ctx, *, work, keep_examples, name):
    import tensorflow as tf  # noqa: PLC0415

    from edgebnn.attacks.common import stop_between_steps  # noqa: PLC0415

    batches = session.store.batches(unit.key)
    kept = batches.count()
    resuming = f" (resuming: {kept:,} finished batch{'' if kept == 1 else 'es'} kept)" if kept else ""
    session.console.line(f"cell {cell.id!r}: {name} ...{resuming}")
    tf.keras.utils.set_random_seed(int(unit.key[:8], 16) % (2**31 - 1))
    start = time.perf_counter()
    ctx.batches = batches
    try:
        with stop_between_steps(interrupts.arrived):  # a signal also stops an attack between two of its steps
            result = unit.module.run(unit.params, ctx)
    finally:
        ctx.batches = None
    seconds = time.perf_counter() - start
    undeclared = sorted(set(result.metrics) - set(unit.metrics))
    if undeclared:  # the recipe's claims and tables were checked against the declared names
        raise TypeError(f"evaluation kind {unit.kind!r} returned metrics its `metrics` does not declare: "
                        f"{undeclared}; declared: {list(unit.metrics)}.")
    session.computed_seconds += seconds
    session.console.done(work, seconds)
    arrays = dict(result.arrays)
    if not keep_examples:
        arrays.pop("x_adv", None)
    stored = {"key": unit.key, "cell": cell.id, "evaluation": unit.kind, "unit": unit.params,
              "labels": result.labels, "metrics": result.metrics, "seconds": seconds, "arrays": sorted(arrays),
              "outcomes": pack_outcomes(result.outcomes)}
    session.store.save_result(unit.key, stored, arrays)
    batches.discard()
    session.results[unit.key] = stored
    session.console.line(f"cell {cell.id!r}: {name}: {summary(stored)} ({seconds:.1f} s)")
    return stored


# --- deployment ------------------------------------------------------------------------


def deploy(session, cell, model, cell_plan, *, converted):
    """Convert ``cell``'s model (and verify and bundle it as its ``[deploy]`` says), unless stored;
    ``converted(**options)`` is ``edgebnn.deploy.convert.convert(model, **options)`` (the cell's
    :meth:`EvalContext.converted`, which its certify results may have converted already)."""
    from edgebnn.deploy.convert import NotDeployableError, check_deployable  # noqa: PLC0415

    folder = session.store.deploy_dir(cell_plan.deploy_key(cell.recipe.deploy))
    session.deploy_dirs[cell.id] = folder
    if session.store.check_folder(folder, ["deploy.json"], load=lambda: _check_deployment(folder)):
        session.deployed[cell.id] = read_json(folder / "deploy.json")
        session.console.line(f"cell {cell.id!r}: deployment found in the cache")
        _publish_bundle(session, cell, folder)
        return
    try:
        check_deployable(model)
    except NotDeployableError as e:
        result = {"deployed": False, "reason": str(e)}
        _io.write_json(folder / "deploy.json", result)
        session.store.seal(folder, ["deploy.json"])
        session.deployed[cell.id] = result
        session.console.line(f"cell {cell.id!r}: not deployed (random at inference)")
        return
    start = time.perf_counter()
    deployed, flatbuffer = _convert(session, cell, model, cell_plan, converted=converted)
    if cell.recipe.deploy.bundle:
        from edgebnn.deploy.bundle import bundle  # noqa: PLC0415

        d = session.data_for(cell.recipe)
        session.console.line(f"cell {cell.id!r}: writing the device bundle ({len(d.x_test):,} test images)")
        manifest = bundle(flatbuffer, d.x_test, d.y_test, folder / BUNDLE, keras_model=model, name=cell.recipe.name,
                          description=cell.recipe.description or None)
        deployed["bundle"] = {"examples": manifest["eval_set"]["n"], "accuracy": manifest["expected"]["accuracy"],
                              "needs_lce_runtime": manifest["model"]["needs_lce_runtime"]}
    _io.write_bytes(folder / "model.tflite", flatbuffer)
    deployed["seconds"] = time.perf_counter() - start
    session.computed_seconds += deployed["seconds"]
    _io.write_json(folder / "deploy.json", deployed)
    session.store.seal(folder, ["deploy.json", "model.tflite"])
    session.deployed[cell.id] = deployed
    _publish_bundle(session, cell, folder)


def _check_deployment(folder):
    """Load a deployment stored before checksums existed: its ``deploy.json`` and, if it
    deployed, a ``model.tflite`` that holds a TFLite flatbuffer."""
    from edgebnn.deploy.flatbuffer import verify_model  # noqa: PLC0415

    deployed = json.loads((folder / "deploy.json").read_text(encoding="utf-8"))
    if deployed.get("deployed"):  # the structure only: no bound on its tensors here
        verify_model((folder / "model.tflite").read_bytes(), max_tensor_bytes=math.inf)


def _convert(session, cell, model, cell_plan, *, converted):
    """``(deploy result, flatbuffer)``: the converted model, verified against Keras on the test part
    and on the examples of the results that export them when ``deploy.verify``."""
    from edgebnn.deploy.convert import float_reference  # noqa: PLC0415
    from edgebnn.deploy.report import layer_ops, weight_storage  # noqa: PLC0415
    from edgebnn.deploy.verify import verify  # noqa: PLC0415

    cfg = cell.recipe.deploy
    session.console.line(f"cell {cell.id!r}: converting with target {cfg.target!r}")
    flatbuffer = converted(target=cfg.target, weights=cfg.weights, strip=cfg.strip)
    if cell_plan.model_key not in session.float_tflite_bytes:  # the model key names its trained weights
        session.float_tflite_bytes[cell_plan.model_key] = len(float_reference(model))
    deployed = {
        "deployed": True, "target": cfg.target, "weights": cfg.weights, "strip": cfg.strip,
        "tflite_bytes": len(flatbuffer), "float_tflite_bytes": session.float_tflite_bytes[cell_plan.model_key],
        "layer_ops": layer_ops(flatbuffer), "weight_storage": weight_storage(flatbuffer),
    }
    if not cfg.verify:
        return deployed, flatbuffer
    d = session.data_for(cell.recipe)
    adversarial = [session.store.load_arrays(u.key) for u in cell_plan.units if plan_lib.exports_examples(u)]
    adversarial = [a for a in adversarial if a is not None and "x_adv" in a]
    x_adv = np.concatenate([a["x_adv"] for a in adversarial]) if adversarial else None
    y_adv = np.concatenate([a["y"] for a in adversarial]) if adversarial else None
    session.console.line(f"cell {cell.id!r}: verifying the .tflite on {len(d.x_test):,} clean and "
                         f"{0 if x_adv is None else len(x_adv):,} adversarial inputs")
    result = verify(flatbuffer, keras_model=model, x=d.x_test, y=d.y_test, x_adv=x_adv, y_adv=y_adv)
    clean_r, adv_r = result["clean"], result["adversarial"]
    deployed.update(
        accuracy_clean=clean_r["accuracy_tflite"], agreement_clean=clean_r["agreement"],
        accuracy_adversarial=None if adv_r is None else adv_r["accuracy_tflite"],
        agreement_adversarial=None if adv_r is None else adv_r["agreement"],
        adversarial_examples=0 if x_adv is None else int(len(x_adv)),
        max_abs_prob_diff=max(clean_r["max_abs_prob_diff"], 0.0 if adv_r is None else adv_r["max_abs_prob_diff"]),
        kernels=result.get("kernels"),
    )
    return deployed, flatbuffer


def _publish_bundle(session, cell, folder):
    """Copy the cell's cached device bundle into the run folder (``deploy.bundle = true``)."""
    if not (cell.recipe.deploy.bundle and session.deployed[cell.id].get("deployed")):
        return
    from edgebnn.deploy.bundle import copy_bundle  # noqa: PLC0415

    target = session.out / BUNDLE if session.study.single else session.out / "bundles" / cell.id
    copy_bundle(folder / BUNDLE, target)
    session.console.line(f"cell {cell.id!r}: device bundle in {target}")


# --- one cell --------------------------------------------------------------------------


def run_cell(session, cell, cell_plan, *, after_each):
    """Train (or load) ``cell``'s model, compute its results and deploy it; ``after_each()`` runs
    after every result and after the deployment (the runner rewrites the report there)."""
    if (session.store.model_dir(cell_plan.model_key) / "model.keras").is_file():
        session.console.skip(cell_plan.train_work)  # (trained epochs are accounted one by one)
    model, is_randomized, _ = trained(session, cell)
    if not session.chief:
        return  # a multi-worker run: the chief (worker 0) evaluates, deploys and reports
    ctx = context(session, cell, cell_plan, model, is_randomized)
    keep = cell.recipe.deploy.enabled and cell.recipe.deploy.verify
    for unit in cell_plan.units:
        evaluate(session, cell, unit, ctx, work=cell_plan.unit_work[unit.key], keep_examples=keep)
        after_each()
    if cell.recipe.deploy.enabled:
        deploy(session, cell, model, cell_plan, converted=ctx.converted)
    after_each()


# --- files -----------------------------------------------------------------------------


def read_json(path):
    """The JSON in ``path``, or ``None`` if there is no such file."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def copy_file(source, target):
    """Copy ``source`` to ``target`` atomically."""
    with _io.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
