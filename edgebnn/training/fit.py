"""Seeded, resumable training with ``model.fit``."""

import os
from pathlib import Path

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _quiet
from edgebnn._validate import positive_int

import tensorflow as tf

from edgebnn._autograph import skip_keras_internals

skip_keras_internals()


def compile_for_classification(model, *, learning_rate=1e-3, optimizer=None):
    """Compile ``model`` (which outputs logits) with sparse cross-entropy and accuracy.

    The optimizer is ``optimizer`` when given (see
    :func:`edgebnn.training.optim.make_optimizer`), else Adam at ``learning_rate``.
    """
    if optimizer is None:
        if not learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {learning_rate!r}.")
        optimizer = tf.keras.optimizers.Adam(learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


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
    """Train ``model`` on ``(x, y)`` with ``model.fit``, seeded and resumable.

    With ``checkpoint_dir``, the weights are saved after every epoch
    (``epoch-NNN.weights.h5``) and Keras' ``BackupAndRestore`` keeps the full
    training state, so re-running the same call after an interruption resumes from
    the last finished epoch instead of starting over.

    Args:
        model: a Keras model mapping inputs to logits; compiled here if it is not.
        x, y: training inputs and integer labels.
        epochs: number of epochs (>= 1).
        batch_size: batch size.
        learning_rate: Adam learning rate (used when compiling here).
        seed: seed of weight init order, shuffling and dropout.
        checkpoint_dir: folder for per-epoch checkpoints and the resume state.
        validation_data: optional ``(x_val, y_val)``.
        callbacks: extra Keras callbacks.
        verbose: Keras progress output (2: one line per epoch).

    Returns:
        The Keras ``History``.
    """
    positive_int(epochs, "epochs")
    positive_int(batch_size, "batch_size")
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` differ in length: {len(x)} vs {len(y)}.")
    tf.keras.utils.set_random_seed(seed)
    _quiet.filter_tensorflow_logs()  # AutoGraph's notes on Larq internals; Keras' progress stays
    if model.optimizer is None:
        compile_for_classification(model, learning_rate=learning_rate)
    callbacks = list(callbacks)
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        # first, so that an epoch is saved before any other callback reports it finished
        # (a Ctrl-C after an "epoch N" line then resumes after epoch N)
        callbacks = [
            tf.keras.callbacks.BackupAndRestore(os.fspath(checkpoint_dir / "resume")),
            tf.keras.callbacks.ModelCheckpoint(
                os.fspath(checkpoint_dir / "epoch-{epoch:03d}.weights.h5"), save_weights_only=True
            ),
            *callbacks,
        ]
    return model.fit(
        x, y, epochs=epochs, batch_size=batch_size, shuffle=True,
        validation_data=validation_data, callbacks=callbacks, verbose=verbose,
    )
