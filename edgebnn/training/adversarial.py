"""Adversarial training inside ``model.fit``: a Keras ``Model`` wrapper with its own ``train_step``.

:class:`AdversarialModel` wraps any logits model. At every training step it replaces a
fraction of the batch by adversarial examples crafted against the current weights
(Kurakin et al. 2017, "Adversarial machine learning at scale"), then takes the usual
optimizer step on the mixed batch, so it works with callbacks, ``validation_data``,
Larq's weight constraints and ``tf.distribute`` strategies like any Keras model.

Methods:
    ``"fgsm"``: FGSM with a fixed ``eps`` (Goodfellow et al. 2015).
    ``"fgsm_random_eps"``: FGSM with a per-example eps ``|N(0, sigma)|`` truncated at
        ``2 sigma`` and capped at ``eps``, ``sigma = ceil(eps * 255 / 2) / 255`` (Kurakin et
        al. 2017, as run by Galloway et al. 2018).
    ``"rfgsm"``: R-FGSM, random step ``eps / 2`` then a gradient sign step: of
        ``eps / 2`` with ``rfgsm_variant="tramer"`` (Tramèr et al. 2018, L-inf <= eps), of
        ``eps`` with ``rfgsm_variant="panda"`` (Panda et al. 2019, L-inf <= 1.5 eps; they
        use eps 0.3 on MNIST, 8/255 on CIFAR).
    ``"pgd"``: PGD from a random start (Madry et al. 2018, e.g. 40 or 20 steps).

Example:
    >>> adv = AdversarialModel(model, method="fgsm", eps=0.1, fraction=0.5, start_epoch=5)
    >>> compile_for_classification(adv)
    >>> adv.fit(x, y, epochs=10)          # plain epochs 0-4, adversarial epochs 5-9
    >>> adv.model.save_weights(...)       # the wrapped model is the one to keep
"""

import math

import numpy as np

from edgebnn import _validate
from edgebnn.attacks.common import validate_nonnegative, validate_positive_int
from edgebnn.attacks.fgsm import fgsm_core
from edgebnn.attacks.pgd import pgd_core
from edgebnn.attacks.rfgsm import VARIANTS as RFGSM_VARIANTS, rfgsm_core
from edgebnn.choices import ADVERSARIAL_METHODS as METHODS, ADVERSARIAL_MODES as MODES, LABEL_SOURCES

import tensorflow as tf

#: Pixel quantum used by Kurakin et al.'s sigma rule (images stored as 8-bit values).
_PIXEL_LEVELS = 255


def _graph_functions():
    """The attack cores as graph functions with AutoGraph (their loops need it), so that
    ``train_step`` itself can skip AutoGraph like Keras' own ``train_step`` does.

    Made anew for every trace of the training function: a cached inner trace would keep
    the op seeds of the epoch that first traced it, and every epoch seeds its own.
    """
    return {name: tf.function(core) for name, core in (("fgsm", fgsm_core), ("rfgsm", rfgsm_core), ("pgd", pgd_core))}


def random_eps_sigma(eps_max):
    """Kurakin et al.'s sigma for per-example eps: ``ceil(eps_max * 255 / 2) / 255``."""
    return math.ceil(eps_max * _PIXEL_LEVELS / 2) / _PIXEL_LEVELS


def sample_random_eps(batch, eps_max):
    """Per-example eps: ``|truncated N(0, sigma)|`` (cut at 2 sigma), capped at ``eps_max``."""
    sigma = random_eps_sigma(eps_max)
    return tf.minimum(tf.abs(tf.random.truncated_normal([batch], stddev=sigma)), eps_max)


def _validate_options(
    *, method, eps, steps, step_size, fraction, start_epoch, label_source, clip_min, clip_max, mode, rfgsm_variant,
):
    if rfgsm_variant not in RFGSM_VARIANTS:
        raise ValueError(f"`rfgsm_variant` must be one of {sorted(RFGSM_VARIANTS)}, got {rfgsm_variant!r}.")
    if rfgsm_variant != "tramer" and method != "rfgsm":
        raise ValueError(f"`rfgsm_variant` applies to method 'rfgsm' only, got method {method!r}.")
    _validate.one_of(mode, "mode", MODES)
    _validate.one_of(method, "method", METHODS)
    eps = validate_nonnegative(eps, "eps")
    validate_positive_int(steps, "steps")
    _validate.number(step_size, "step_size", low=0, low_open=True, allow_none=True)
    _validate.number(fraction, "fraction", low=0, high=1)
    _validate.integer(start_epoch, "start_epoch", low=0)
    _validate.one_of(label_source, "label_source", LABEL_SOURCES)
    if clip_min is not None and clip_max is not None and clip_min > clip_max:
        raise ValueError(f"`clip_min` ({clip_min}) must be <= `clip_max` ({clip_max}).")


class _EpochCounter(tf.keras.callbacks.Callback):
    """Writes the index of the starting epoch into the wrapper's ``epoch`` variable."""

    def __init__(self, wrapper):
        super().__init__()
        self.wrapper = wrapper

    def on_epoch_begin(self, epoch, logs=None):
        self.wrapper.epoch.assign(epoch)


@tf.keras.utils.register_keras_serializable(package="edgebnn")
class AdversarialModel(tf.keras.Model):
    """Adversarial training of ``model`` through ``fit``; evaluation and ``predict`` are clean.

    Args:
        model: Keras model mapping inputs to logits (trained in place).
        method: one of :data:`METHODS`.
        eps: L-inf budget (the maximum eps for ``"fgsm_random_eps"``).
        steps: PGD steps.
        step_size: PGD step size (default ``2.5 * eps / steps``, capped at ``eps``).
        fraction: with ``mode="replace"``, the fraction of every batch replaced by
            adversarial examples (Kurakin: 0.5); unused with ``mode="augment"``.
        start_epoch: first (0-based) epoch with adversarial examples; earlier epochs
            train on clean data (Galloway et al.: the last 5 epochs).
        label_source: ``"true"`` (attack the training labels) or ``"predicted"`` (the
            model's predictions, no label leaking).
        clip_min, clip_max: valid input range.
        eot_samples: EOT passes per attack gradient, for randomized models.
        mode: ``"replace"`` (a fraction of the batch) or ``"augment"`` (every clean
            example and its adversary, a batch twice as large).
        rfgsm_variant: ``"tramer"`` or ``"panda"``, the R-FGSM of
            :func:`edgebnn.attacks.rfgsm` (method ``"rfgsm"`` only).

    Create it (and compile it) inside the ``tf.distribute`` strategy scope when using one.
    """

    def __init__(
        self,
        model,
        *,
        method="fgsm",
        eps,
        steps=40,
        step_size=None,
        fraction=0.5,
        start_epoch=0,
        label_source="true",
        clip_min=0.0,
        clip_max=1.0,
        eot_samples=1,
        mode="replace",
        rfgsm_variant="tramer",
        name=None,
    ):
        super().__init__(name=name or f"adversarial_{model.name}")
        _validate_options(
            method=method, eps=eps, steps=steps, step_size=step_size, fraction=fraction,
            start_epoch=start_epoch, label_source=label_source, clip_min=clip_min, clip_max=clip_max, mode=mode,
            rfgsm_variant=rfgsm_variant,
        )
        self.mode = mode
        self.rfgsm_variant = rfgsm_variant
        self.model = model
        self.method = method
        self.eps = float(eps)
        self.steps = int(steps)
        self.step_size = min(2.5 * self.eps / self.steps if step_size is None else float(step_size), self.eps)
        self.fraction = float(fraction)
        self.start_epoch = int(start_epoch)
        self.label_source = label_source
        self.clip_min, self.clip_max = clip_min, clip_max
        self.eot_samples = validate_positive_int(eot_samples, "eot_samples")
        self.epoch = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="epoch",
            synchronization=tf.VariableSynchronization.ON_WRITE,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        #: Training accuracy on the batches' adversarial examples, reported per epoch by ``fit``
        #: as ``adversarial_accuracy`` (0 in the epochs before ``start_epoch``, which have none).
        self.adversarial_accuracy = tf.keras.metrics.Mean(name="adversarial_accuracy")

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def get_config(self):
        """The constructor arguments, the wrapped model serialized (Keras asks at every weight checkpoint)."""
        return {
            "name": self.name, "model": tf.keras.saving.serialize_keras_object(self.model), "method": self.method,
            "eps": self.eps, "steps": self.steps, "step_size": self.step_size, "fraction": self.fraction,
            "start_epoch": self.start_epoch, "label_source": self.label_source, "clip_min": self.clip_min,
            "clip_max": self.clip_max, "eot_samples": self.eot_samples, "mode": self.mode,
            "rfgsm_variant": self.rfgsm_variant,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = tf.keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        return cls(model, **config)

    def _attack(self, x, y):
        """Adversarial versions of ``x`` under the configured method (no gradient to the weights)."""

        def model_fn(z):
            return self.model(z, training=False)

        labels = None if self.label_source == "predicted" else y
        common = dict(targeted=False, clip_min=self.clip_min, clip_max=self.clip_max, eot_samples=self.eot_samples)
        cores = _graph_functions()
        if self.method == "fgsm":
            x_adv = cores["fgsm"](model_fn, x, labels, eps=self.eps, norm=np.inf, **common)
        elif self.method == "fgsm_random_eps":
            eps = sample_random_eps(tf.shape(x)[0], self.eps)
            x_adv = cores["fgsm"](model_fn, x, labels, eps=eps, norm=np.inf, **common)
        elif self.method == "rfgsm":
            x_adv = cores["rfgsm"](
                model_fn, x, labels, eps=self.eps, alpha=self.eps / 2, variant=self.rfgsm_variant, **common,
            )
        else:
            x_adv = cores["pgd"](
                model_fn, x, labels, eps=self.eps, steps=self.steps, step_size=self.step_size,
                norm=np.inf, rand_init=True, **common,
            )
        return tf.stop_gradient(x_adv)

    def adversarial_batch(self, x, y):
        """The training batch: the first ``round(fraction * batch)`` examples made adversarial.

        Before ``start_epoch`` the batch is returned unchanged.
        """
        x = tf.convert_to_tensor(x, tf.float32)
        y = _class_indices(y)
        k = tf.cast(tf.round(self.fraction * tf.cast(tf.shape(x)[0], tf.float32)), tf.int32)

        def mixed():
            return tf.concat([self._attack(x[:k], y[:k]), x[k:]], axis=0)

        return tf.cond(self.epoch >= self.start_epoch, mixed, lambda: x)

    def augmented_batch(self, x, y, sample_weight=None):
        """``mode="augment"``: the batch followed by the adversary of each example (same labels).

        Before ``start_epoch`` the batch is returned unchanged.
        """
        x = tf.convert_to_tensor(x, tf.float32)

        def augmented():
            adversarial = self._attack(x, _class_indices(y))
            weights = () if sample_weight is None else (tf.concat([sample_weight, sample_weight], axis=0),)
            return (tf.concat([x, adversarial], axis=0), tf.concat([y, y], axis=0), *weights)

        def clean():
            return (x, tf.convert_to_tensor(y), *(() if sample_weight is None else (sample_weight,)))

        out = tf.cond(self.epoch >= self.start_epoch, augmented, clean)
        x_out, y_out = out[0], out[1]
        w_out = out[2] if sample_weight is not None else None
        return x_out, y_out, w_out

    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        n = tf.shape(x)[0]
        if self.mode == "augment":
            x, y, sample_weight = self.augmented_batch(x, y, sample_weight)
        else:
            x = self.adversarial_batch(x, y)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        self._track_adversarial_accuracy(y, y_pred, n)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def _track_adversarial_accuracy(self, y, y_pred, n):
        """Update :attr:`adversarial_accuracy` with the batch's adversarial rows: the first
        ``round(fraction * n)`` (replace) or the ``n`` after the clean ones (augment)."""
        if self.mode == "augment":
            adv_pred, adv_y = y_pred[n:], y[n:]
        else:
            k = tf.cast(tf.round(self.fraction * tf.cast(n, tf.float32)), tf.int32)
            adv_pred, adv_y = y_pred[:k], y[:k]
        correct = tf.cast(tf.equal(tf.argmax(adv_pred, axis=-1), _class_indices(adv_y)), tf.float32)
        active = tf.cast(self.epoch >= self.start_epoch, tf.float32)
        self.adversarial_accuracy.update_state(correct, sample_weight=active * tf.ones_like(correct))

    def fit(self, *args, **kwargs):
        """``Model.fit`` with a callback that tells ``train_step`` the current epoch."""
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(isinstance(c, _EpochCounter) for c in callbacks):
            callbacks.append(_EpochCounter(self))
        return super().fit(*args, callbacks=callbacks, **kwargs)


def _class_indices(y):
    """Integer class indices from sparse ``(batch,)`` / ``(batch, 1)`` or one-hot labels."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] != 1:
        return tf.argmax(y, axis=-1)
    return tf.cast(tf.reshape(y, [-1]), tf.int64)
