"""Seeded training with ``model.fit`` that resumes exactly where it stopped.

Every epoch is a function of ``(seed, epoch)`` and of the state the previous epoch left:
its shuffle order is a permutation drawn from ``(seed, epoch)``, and its random ops
(dropout, stochastic binarization, the adversary's random starts and eps) are seeded
from ``(seed, epoch)`` in a training function traced afresh for the epoch (a training
that draws no random number runs one function for every epoch: :func:`epochs_share_functions`). The state
an epoch leaves (weights, optimizer slots and step counter, the history so far) is
what a checkpoint holds, so a run stopped after any epoch (Ctrl-C, SIGTERM, SIGKILL)
and started again trains the same weights, bit for bit, as a run never stopped.
"""

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _io, _quiet, _validate
from edgebnn._validate import positive_int
from edgebnn.choices import RANDOM_ADVERSARIAL_METHODS as RANDOM_METHODS, XLA_MODES
from edgebnn.randomness import op_types
from edgebnn.training.optim import InPlaceAdam

import tensorflow as tf

from edgebnn._autograph import skip_keras_internals

skip_keras_internals()

#: Folder of the resume state inside ``checkpoint_dir``: ``state.json`` and the checkpoint it names.
RESUME = "resume"
#: The resume state's description of the run: the finished epochs, the history, the checkpoint.
STATE = "state.json"
#: Stream indices of :func:`epoch_seed`: the shuffle order and the random ops of an epoch.
_ORDER_STREAM, _OPS_STREAM = 0, 1


#: What :func:`compile_for_classification` compiles with XLA: nothing; the optimizer's update of
#: every weight; the whole training step.


def random_training_ops(model):
    """Names and reasons of what draws random numbers in a training step of ``model``.

    Found: Keras' dropout and noise layers, stochastic quantizers and Monte-Carlo layers
    (:func:`edgebnn.introspect.random_inference_layers`), and an
    :class:`~edgebnn.training.AdversarialModel` whose method has random starts or random eps.
    """
    from edgebnn.introspect import all_layers, random_inference_layers  # noqa: PLC0415
    from edgebnn.training.adversarial import AdversarialModel  # noqa: PLC0415

    found = []
    if isinstance(model, AdversarialModel):
        if model.method in RANDOM_METHODS:
            found.append((model.name, f"adversarial method {model.method!r} draws random numbers"))
        model = model.model
    noise = (tf.keras.layers.Dropout, tf.keras.layers.GaussianNoise, tf.keras.layers.GaussianDropout,
             tf.keras.layers.AlphaDropout)
    found += [(layer.name, f"{type(layer).__name__} is random in training") for layer in all_layers(model)
              if isinstance(layer, noise)]
    return found + random_inference_layers(model)


def compile_for_classification(model, *, learning_rate=1e-3, optimizer=None, xla="off"):
    """Compile ``model`` (which outputs logits) with sparse cross-entropy and accuracy.

    The optimizer is ``optimizer`` when given (see
    :func:`edgebnn.training.optim.make_optimizer`), else Adam at ``learning_rate``
    (:class:`~edgebnn.training.optim.InPlaceAdam`: Keras' Adam, bit for bit).

    ``xla`` (one of :data:`XLA_MODES`) compiles part of every training step with XLA, which
    fuses the element-wise passes over the weights that TensorFlow otherwise runs one op at a
    time (Adam's moments and step); on CPU that is most of the gain for large dense models:

    - ``"update"``: the optimizer's update of each weight. Works with every model.
    - ``"step"``: the whole step (forward and backward pass, quantizers, update, weight
      constraints). Refused for a training that draws random numbers
      (:func:`random_training_ops`): XLA ignores TensorFlow's op seeds, so such a run would
      neither repeat nor resume exactly.

    Either way the weights differ from those of a plain step by float rounding only (other
    summation orders, fused multiply-adds), and one setting trains the same weights every
    time. A binary network amplifies that rounding: a pre-activation that lands on the other
    side of zero flips a sign, and the runs then train different, equally good networks.

    Raises:
        ValueError: ``xla`` is not one of :data:`XLA_MODES`, ``"step"`` with random ops, or
            XLA is not available on this platform.
    """
    _validate.one_of(xla, "xla", XLA_MODES)
    if xla == "step":
        random_ops = random_training_ops(model)
        if random_ops:
            layer, reason = random_ops[0]
            raise ValueError(f"`xla`: 'step' ignores op seeds, and this training draws random numbers ({layer}: "
                             f"{reason}); use xla='update'.")
    if optimizer is None:
        if not learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {learning_rate!r}.")
        optimizer = InPlaceAdam(learning_rate)
    if xla == "update":
        optimizer.jit_compile = True  # Keras turns the optimizer's own XLA off on machines without a GPU
    model.compile(
        optimizer=optimizer,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=xla == "step",
    )
    if xla == "step" and not model.jit_compile:  # Keras falls back (with a warning) where XLA is missing
        raise ValueError("`xla`: XLA is not available on this platform; train with xla='off'.")
    return model


def epoch_seed(seed, epoch, stream):
    """A 31-bit seed drawn from ``(seed, epoch, stream)`` (NumPy's ``SeedSequence``)."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0] >> 1)


def epoch_order(seed, epoch, n):
    """The shuffle order of epoch ``epoch``: a permutation of ``range(n)`` drawn from ``(seed, epoch)``."""
    return np.random.default_rng(epoch_seed(seed, epoch, _ORDER_STREAM)).permutation(n)


def resume_state(checkpoint_dir):
    """The resume state in ``checkpoint_dir`` (``{"epochs_done", "history", ...}``), or ``None``.

    Raises:
        ValueError: the state file is unreadable (naming it).
    """
    path = Path(checkpoint_dir) / RESUME / STATE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"unreadable resume state {path}: {e}; delete {path.parent} to train from scratch") from None


#: Substrings of the TensorFlow op types that draw random numbers (stateful, stateless and
#: generator-based kernels: ``RandomUniform``, ``StatelessRandomUniformV2``, ``RngReadAndSkip``, ...).
RANDOM_OP_MARKERS = ("Random", "Multinomial", "TruncatedNormal", "Rng", "StatefulUniform", "StatefulStandardNormal")


def epochs_share_functions(model):
    """Whether every epoch of :func:`train` can run the training function traced for the first.

    A new function per epoch is what gives random ops their epoch's op seeds
    (:func:`epoch_seed`); a training that draws no random number computes the same
    with one function, bit for bit, and skips the tracing (twice per epoch when the last
    batch is partial). True only for a model with one declared input (functional or
    ``Sequential``), not distributed by a ``tf.distribute`` strategy (the forward pass is traced
    here outside it), Keras' own ``train_step`` / ``test_step`` (a subclass may draw numbers
    there), no layer that :func:`random_training_ops` finds and no random op
    (:data:`RANDOM_OP_MARKERS`) in its training-mode forward pass, traced here.
    """
    keras_steps = (type(model).train_step is tf.keras.Model.train_step
                   and type(model).test_step is tf.keras.Model.test_step)
    inputs = getattr(model, "inputs", None) or []
    distributed = any(isinstance(v, tf.distribute.DistributedValues) for v in model.variables)
    if not keras_steps or len(inputs) != 1 or distributed or random_training_ops(model):
        return False
    forward = tf.function(lambda x: model(x, training=True))
    traced = forward.get_concrete_function(tf.TensorSpec(inputs[0].shape, inputs[0].dtype))
    return not any(marker in op for op in op_types(traced) for marker in RANDOM_OP_MARKERS)


class _EpochState(tf.keras.callbacks.Callback):
    """Seeds each epoch from ``(seed, epoch)`` with a freshly traced training function (one function
    for every epoch where :func:`epochs_share_functions`), records the history, and (with a folder)
    checkpoints the state every finished epoch leaves.

    Placed first among the callbacks, so an epoch is saved before any other callback
    reports it finished (a Ctrl-C after an "epoch N" line then resumes after epoch N).
    """

    def __init__(self, *, seed, history, checkpoint, folder, writes_state, identity, retrace=True):
        super().__init__()
        self.seed, self.history, self.retrace = seed, history, retrace
        self.checkpoint, self.folder = checkpoint, folder
        self.writes_state, self.identity = writes_state, identity

    def on_epoch_begin(self, epoch, logs=None):
        tf.keras.utils.set_random_seed(epoch_seed(self.seed, epoch, _OPS_STREAM))
        if not self.retrace:
            return
        # a new function has new random kernels, whose op seeds derive from the seed just set
        self.model.train_function = self.model.make_train_function(force=True)
        if self.model.test_function is not None:
            self.model.test_function = self.model.make_test_function(force=True)

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        if self.folder is not None:
            self._save(epoch + 1)

    def _save(self, epochs_done):
        name = f"epoch-{epochs_done:03d}"
        self.folder.mkdir(parents=True, exist_ok=True)
        prefix = self.folder / name
        try:
            self.checkpoint.write(os.fspath(prefix))
            if self.writes_state:
                state = {**self.identity, "epochs_done": epochs_done, "checkpoint": name, "history": self.history}
                _io.write_json(self.folder / STATE, state)
        except (OSError, tf.errors.OpError) as e:  # TensorFlow reports a full disk as an OpError
            _remove_checkpoint(prefix)
            number = getattr(e, "errno", None) or errno.EIO
            detail = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
            raise OSError(number, f"cannot write the training checkpoint {prefix} (its partial files were "
                                  f"removed): {detail}") from e
        for old in self.folder.glob("epoch-*.index"):  # only the newest state is needed
            if old.stem != name:
                _remove_checkpoint(old.with_suffix(""))


def _remove_checkpoint(prefix):
    """Remove the files of the TensorFlow checkpoint at ``prefix`` (``.index``, ``.data-*``)."""
    for path in prefix.parent.glob(f"{prefix.name}.*"):
        path.unlink(missing_ok=True)


def _build_optimizer(model, input_shape):
    """Create the model's weights (a model without an ``Input`` has none yet) and the optimizer's
    slots now, so a checkpoint restores into them and every epoch's training function is traced
    with the same variables."""
    optimizer = model.optimizer
    with model.distribute_strategy.scope():
        if not model.built:
            model.build((None, *input_shape))
        if hasattr(optimizer, "build"):
            optimizer.build(model.trainable_variables)


def _worker_folder(checkpoint_dir):
    """``(folder written, whether it is the shared state)``: workers 1.. of a multi-worker run
    write their own copy (every worker must save) beside the chief's."""
    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        from edgebnn.training.distribute import read_tf_config  # noqa: PLC0415

        _, index = read_tf_config()
        if index != 0:
            return checkpoint_dir / f"{RESUME}-worker-{index}", False
    return checkpoint_dir / RESUME, True


def train(
    model,
    x,
    y,
    *,
    epochs,
    batch_size=128,
    learning_rate=1e-3,
    seed=0,
    checkpoint_dir=None,
    validation_data=None,
    callbacks=(),
    verbose=2,
):
    """Train ``model`` on ``(x, y)`` with ``model.fit``, seeded and exactly resumable.

    Epoch ``e`` sees the examples in the order :func:`epoch_order` ``(seed, e)`` and
    seeds its random ops from ``(seed, e)``. With ``checkpoint_dir``, the state after
    every epoch (weights, optimizer state, history) is saved under
    ``checkpoint_dir/resume``, and re-running the same call after an interruption
    resumes after the last finished epoch: the weights and the history then equal,
    bit for bit, those of a run that was never interrupted.

    Args:
        model: a Keras model mapping inputs to logits; compiled here if it is not.
        x, y: training inputs and integer labels.
        epochs: number of epochs (>= 1).
        batch_size: batch size.
        learning_rate: Adam learning rate (used when compiling here).
        seed: seed of the shuffle orders and of the random ops of every epoch.
        checkpoint_dir: folder for the resume state.
        validation_data: optional ``(x_val, y_val)``.
        callbacks: extra Keras callbacks (called once per epoch; ``fit`` runs one epoch at a time).
        verbose: Keras progress output (2: one line per epoch).

    Returns:
        A Keras ``History`` holding every epoch, those of an earlier interrupted run included
        (``history.epoch`` lists the epochs run by this call).

    Raises:
        ValueError: bad arguments, or a resume state from another run (other seed,
            batch size or data size, or more epochs than ``epochs``).
        OSError: a checkpoint could not be written (naming it; its partial files removed).
    """
    positive_int(epochs, "epochs")
    positive_int(batch_size, "batch_size")
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` differ in length: {len(x)} vs {len(y)}.")
    tf.keras.utils.set_random_seed(seed)
    _quiet.filter_tensorflow_logs()  # AutoGraph's notes on Larq internals; Keras' progress stays
    if model.optimizer is None:
        compile_for_classification(model, learning_rate=learning_rate)
    _build_optimizer(model, np.shape(x)[1:])
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    identity = {"seed": int(seed), "batch_size": int(batch_size), "examples": int(len(x))}
    history, start, folder, writes_state = {}, 0, None, False
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        folder, writes_state = _worker_folder(checkpoint_dir)
        state = resume_state(checkpoint_dir)
        if state is not None:
            start, history = _restore(checkpoint, checkpoint_dir, state, identity=identity, epochs=epochs)
    recorder = _EpochState(seed=seed, history=history, checkpoint=checkpoint, folder=folder,
                           writes_state=writes_state, identity=identity,
                           retrace=not epochs_share_functions(model))
    keras_history = tf.keras.callbacks.History()
    keras_history.set_model(model)
    keras_history.epoch = []
    x, y = np.asarray(x), np.asarray(y)
    for epoch in range(start, epochs):
        order = epoch_order(seed, epoch, len(x))
        model.fit(
            x[order], y[order], batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
            validation_data=validation_data, callbacks=[recorder, *callbacks], verbose=verbose,
        )
        keras_history.epoch.append(epoch)
    keras_history.history = {name: list(values) for name, values in history.items()}
    return keras_history


def _restore(checkpoint, checkpoint_dir, state, *, identity, epochs):
    """``(first epoch to run, history so far)`` after restoring ``state``'s checkpoint."""
    folder = checkpoint_dir / RESUME
    differs = {k: (state.get(k), v) for k, v in identity.items() if state.get(k) != v}
    if differs:
        name, (old, new) = next(iter(differs.items()))
        raise ValueError(f"{folder} holds a training run with {name} {old}, not {new}; "
                         f"use another `checkpoint_dir` or delete it to train from scratch.")
    done = int(state["epochs_done"])
    if done > epochs:
        raise ValueError(f"{folder} holds {done} finished epochs, more than `epochs` ({epochs}).")
    prefix = folder / state["checkpoint"]
    try:
        checkpoint.read(os.fspath(prefix)).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot restore the training checkpoint {prefix}: {message}; "
                         f"delete {folder} to train from scratch") from None
    return done, {name: [float(v) for v in values] for name, values in state["history"].items()}


def discard_resume_state(checkpoint_dir):
    """Remove the resume state of a finished training from ``checkpoint_dir``."""
    for path in Path(checkpoint_dir).glob(f"{RESUME}*"):
        shutil.rmtree(path, ignore_errors=True)
