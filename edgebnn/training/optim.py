"""Optimizers and learning-rate schedules by name, for recipes and scripts.

Papers train with Adam (Galloway et al., Guan) or SGD with momentum and step decay
(Panda et al.'s CIFAR and ImageNet networks); these builders give those settings one
validated entry point each, on Keras' own optimizers and schedules. Adam is
:class:`InPlaceAdam`: Keras' Adam, bit for bit, in fewer passes over the weights.
"""


import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate
from edgebnn.choices import OPTIMIZERS, SCHEDULES

import tensorflow as tf
from tensorflow.python.ops.control_flow_ops import get_enclosing_xla_context  # what Keras' BatchNorm asks too


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


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class InPlaceAdam(tf.keras.optimizers.Adam):
    """Keras' Adam computing the same bits with TensorFlow's in-place training ops.

    Keras' dense update is a dozen element-wise ops over every weight, each reading and
    writing whole tensors (a large dense model spends most of its update moving memory).
    This class computes each of its roundings unchanged, in fewer passes:

    - ``m += (g - m) * (1 - beta_1)`` as ``ResourceApplyGradientDescent(m, -(1 - beta_1), g - m)``
      (``m - d * -c`` rounds as ``m + d * c``: negation is exact); the same for ``v`` and ``g**2 - v``;
    - ``w -= (m * alpha) / (sqrt(v) + epsilon)`` as ``ResourceApplyAdam`` with ``beta_1 = beta_2 = 1``,
      whose moment updates then add ``(g - m) * 0 = 0`` and whose step is that expression, with
      ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`` computed in the same order as Keras.

    The weights and moments equal Keras' bit for bit while they are finite (an infinite
    moment would turn into NaN where Keras keeps it infinite); :mod:`tests.test_optim` pins
    it. Keras' own update runs instead for sparse gradients, AMSGrad, the adaptive epsilon,
    non-float hyperparameters, under a ``tf.distribute`` strategy and inside XLA
    (``jit_compile``), so those trainings are unchanged too.
    """

    def _in_place(self, gradient):
        hyper = (self.beta_1, self.beta_2, self.epsilon)
        return not (isinstance(gradient, tf.IndexedSlices) or self.amsgrad or self.adaptive_epsilon
                    or not all(isinstance(h, (int, float)) for h in hyper) or self.jit_compile
                    or tf.distribute.has_strategy() or get_enclosing_xla_context() is not None)

    def update_step(self, gradient, variable):
        """Keras' dense Adam update of ``variable``, in place (see the class)."""
        if not self._in_place(gradient):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1_power = tf.pow(tf.cast(self.beta_1, dtype), local_step)
        beta_2_power = tf.pow(tf.cast(self.beta_2, dtype), local_step)
        index = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[index], self._velocities[index]
        tf.raw_ops.ResourceApplyGradientDescent(var=m.handle, alpha=tf.constant(-(1 - self.beta_1), dtype),
                                                delta=gradient - m)
        tf.raw_ops.ResourceApplyGradientDescent(var=v.handle, alpha=tf.constant(-(1 - self.beta_2), dtype),
                                                delta=tf.square(gradient) - v)
        one = tf.constant(1, dtype)  # beta_1 = beta_2 = 1: the moments stay as just updated
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power, beta2_power=beta_2_power,
            lr=lr, beta1=one, beta2=one, epsilon=tf.constant(self.epsilon, dtype), grad=gradient)


def make_optimizer(name="adam", *, learning_rate, momentum=0.9, nesterov=False, weight_decay=0.0):
    """A Keras optimizer by name.

    Args:
        name: ``"adam"`` (:class:`InPlaceAdam`, Keras' Adam in fewer passes) or ``"sgd"``.
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
        return InPlaceAdam(learning_rate, **decay)
    _validate.number(momentum, "momentum", low=0, high=1, high_open=True)
    return tf.keras.optimizers.SGD(learning_rate, momentum=float(momentum), nesterov=bool(nesterov), **decay)
