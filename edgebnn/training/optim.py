"""Optimizers and learning-rate schedules by name, for recipes and scripts.

Papers train with Adam (Galloway et al., Guan) or SGD with momentum and step decay
(Panda et al.'s CIFAR and ImageNet networks); these builders give those settings one
validated entry point each, on Keras' own optimizers and schedules.
"""


import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate
from edgebnn.choices import OPTIMIZERS, SCHEDULES

import tensorflow as tf



def _positive_number(value, name):
    return _validate.number(value, name, low=0, low_open=True)


def learning_rate_schedule(learning_rate, *, schedule="constant", steps_per_epoch, epochs,
                           decay_epochs=(), decay_factor=0.1):
    """The learning rate as a float or a Keras schedule over optimizer steps.

    Args:
        learning_rate: initial learning rate (> 0).
        schedule: ``"constant"``; ``"step"`` (multiplied by ``decay_factor`` at the
            start of every epoch in ``decay_epochs``, 0-based); ``"cosine"`` (cosine
            decay to 0 over ``epochs``, Loshchilov & Hutter 2017, without restarts).
        steps_per_epoch: optimizer steps per epoch.
        epochs: training epochs.
        decay_epochs: epochs where the step schedule decays (increasing, in ``[1, epochs)``).
        decay_factor: factor of each step decay, in ``(0, 1]``.

    Raises:
        ValueError: naming the bad argument.
    """
    learning_rate = _positive_number(learning_rate, "learning_rate")
    _validate.positive_int(steps_per_epoch, "steps_per_epoch")
    _validate.positive_int(epochs, "epochs")
    _validate.one_of(schedule, "schedule", SCHEDULES)
    if schedule == "constant":
        return learning_rate
    if schedule == "cosine":
        return tf.keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps_per_epoch)
    decay_epochs = list(decay_epochs)
    if not decay_epochs or decay_epochs != sorted(set(decay_epochs)) or not all(
        _validate.is_int(e) and 1 <= e < epochs for e in decay_epochs
    ):
        raise ValueError(
            f"`decay_epochs` must be increasing ints in [1, {epochs}) for the step schedule, got {decay_epochs!r}."
        )
    if not 0 < _positive_number(decay_factor, "decay_factor") <= 1:
        raise ValueError(f"`decay_factor` must be in (0, 1], got {decay_factor!r}.")
    boundaries = [e * steps_per_epoch for e in decay_epochs]
    values = [learning_rate * decay_factor**i for i in range(len(boundaries) + 1)]
    return tf.keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(name="adam", *, learning_rate, momentum=0.9, nesterov=False, weight_decay=0.0):
    """A Keras optimizer by name.

    Args:
        name: ``"adam"`` or ``"sgd"``.
        learning_rate: a float or a schedule (see :func:`learning_rate_schedule`).
        momentum, nesterov: SGD momentum and Nesterov's variant (unused by Adam).
        weight_decay: decoupled weight decay (Loshchilov & Hutter 2019) applied by
            Keras to every trainable variable; 0 turns it off.

    Raises:
        ValueError: naming the bad argument.
    """
    _validate.one_of(name, "name", OPTIMIZERS)
    _validate.number(weight_decay, "weight_decay", low=0)
    decay = {"weight_decay": float(weight_decay)} if weight_decay else {}
    if name == "adam":
        return tf.keras.optimizers.Adam(learning_rate, **decay)
    _validate.number(momentum, "momentum", low=0, high=1, high_open=True)
    return tf.keras.optimizers.SGD(learning_rate, momentum=float(momentum), nesterov=bool(nesterov), **decay)
