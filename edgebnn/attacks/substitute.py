"""Black-box substitute attack (Papernot et al. 2017, "Practical black-box attacks against machine learning").

The attacker can only ask the target for labels. It labels a small held-out set with
the target's predictions, trains a substitute MLP on it, grows the set with
Jacobian-based dataset augmentation (new points ``x + lambda * sign(dF_label(x)/dx)``
along the substitute's gradient of the label the oracle gave), and finally crafts
FGSM on the substitute and transfers the examples to the target. Defaults follow
Galloway et al. 2018: 150 held-out images, a 2 x 200 MLP, lambda = 0.1, 6 rounds of
10 epochs. The target may be a Keras model or a deployed TFLite model
(wrapped by :func:`edgebnn.deploy.verify.tflite_model_fn`).
"""

import numpy as np

from edgebnn.attacks.common import label_oracle, prepare, validate_nonnegative
from edgebnn.attacks.fgsm import fgsm

import tensorflow as tf

#: Papernot et al.'s substitute architecture used by Galloway et al.: two hidden layers of 200 units.
SUBSTITUTE_UNITS = 200
SUBSTITUTE_LAYERS = 2


def build_substitute(input_shape, num_classes, *, hidden_units=SUBSTITUTE_UNITS, hidden_layers=SUBSTITUTE_LAYERS):
    """The attacker's substitute: an MLP ``Flatten -> (Dense(hidden_units, relu)) x hidden_layers -> logits``."""
    inputs = tf.keras.Input(shape=tuple(input_shape))
    h = tf.keras.layers.Flatten()(inputs)
    for i in range(hidden_layers):
        h = tf.keras.layers.Dense(hidden_units, activation="relu", name=f"hidden_{i}")(h)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(num_classes, name="logits")(h), name="substitute")


def jacobian_augmentation(substitute, x, labels, *, lmbda, clip_min, clip_max, batch_size=500):
    """Papernot et al.'s augmentation: ``x + lmbda * sign(d substitute_label(x) / dx)``, clipped."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = tf.constant(x[i : i + batch_size])
        with tf.GradientTape() as tape:
            tape.watch(xb)
            logit = tf.gather(substitute(xb), tf.constant(labels[i : i + batch_size]), batch_dims=1)
        grad = tape.gradient(logit, xb)
        out.append(np.clip(xb.numpy() + lmbda * np.sign(grad.numpy()), clip_min, clip_max))
    return np.concatenate(out).astype(np.float32)


def train_substitute(
    target, x_holdout, *, num_classes, rounds=6, epochs=10, lmbda=0.1, hidden_units=SUBSTITUTE_UNITS,
    hidden_layers=SUBSTITUTE_LAYERS, batch_size=32, learning_rate=1e-3, clip_min=0.0, clip_max=1.0, seed=0,
):
    """Train a substitute of ``target`` from label queries only (Papernot et al. 2017, Algorithm 1).

    Args:
        target: Keras model / callable returning logits, or a deployed model wrapped by
            ``tflite_model_fn``; only its arg-max labels are used.
        x_holdout: the attacker's initial unlabeled inputs (150 in the paper).
        num_classes: number of classes of the target.
        rounds: substitute training rounds rho_max; the set doubles between rounds.
        epochs: training epochs per round.
        lmbda: Jacobian augmentation step.
        hidden_units, hidden_layers: substitute MLP size.
        batch_size, learning_rate: substitute training (Adam).
        clip_min, clip_max: valid input range of augmented points.
        seed: seed of the substitute's initialisation and shuffling.

    Returns:
        ``(substitute, info)``: the trained Keras substitute and a dict with ``queries``
        (number of labels asked of the target) and ``train_size`` (final set size).
    """
    validate_nonnegative(lmbda, "lmbda")
    # x_holdout is checked like an attack's x: finite and inside the clip range (it has no labels or eps).
    a = prepare(None, x_holdout, y=None, targeted=False, clip_min=clip_min, clip_max=clip_max, rounds=rounds,
                epochs=epochs)
    rounds, epochs = a.rounds, a.epochs
    oracle = label_oracle(target)
    x_sub = a.x.numpy()
    tf.keras.utils.set_random_seed(seed)
    substitute = build_substitute(x_sub.shape[1:], num_classes, hidden_units=hidden_units, hidden_layers=hidden_layers)
    substitute.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    labels = oracle(x_sub)
    queries = len(x_sub)
    for rho in range(rounds):
        substitute.fit(x_sub, labels, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
        if rho == rounds - 1:
            break
        x_new = jacobian_augmentation(substitute, x_sub, labels, lmbda=lmbda, clip_min=clip_min, clip_max=clip_max)
        new_labels = oracle(x_new)
        queries += len(x_new)
        x_sub, labels = np.concatenate([x_sub, x_new]), np.concatenate([labels, new_labels])
    return substitute, {"queries": int(queries), "train_size": int(len(x_sub))}


def substitute(
    model_fn, x, *, eps, x_holdout, norm=np.inf, y=None, targeted=False, clip_min=0.0, clip_max=1.0,
    substitute_model=None, num_classes=None, **train_options,
):
    """Black-box FGSM transferred from a substitute trained on label queries of ``model_fn``.

    Args:
        model_fn: the target: Keras model / callable (a ``.tflite`` wrapped by ``tflite_model_fn``).
            It is only queried for labels.
        x: inputs to attack, in ``[clip_min, clip_max]``.
        eps: FGSM size on the substitute (>= 0).
        x_holdout: the attacker's initial set for :func:`train_substitute`.
        norm: ``np.inf`` or ``2``.
        y: labels (or targets when ``targeted``); ``None`` asks the target for labels.
        targeted: move toward ``y``.
        clip_min, clip_max: valid input range.
        substitute_model: an already trained substitute (skips training).
        num_classes: classes of the target (default: from ``y`` / the oracle's labels, at least 10).
        **train_options: passed to :func:`train_substitute` (``rounds``, ``epochs``, ``lmbda``, ...).

    Returns:
        Adversarial examples (NumPy float32) shaped like ``x``.
    """
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm)
    x = a.x.numpy()
    y = label_oracle(model_fn)(x) if a.y is None else a.y.numpy()
    if substitute_model is not None and (train_options or num_classes is not None):
        raise ValueError(
            f"`substitute_model` is already trained: drop the training options {sorted(train_options)}"
            f"{' and num_classes' if num_classes is not None else ''}."
        )
    if substitute_model is None:
        if num_classes is None:
            num_classes = max(10, int(np.max(y)) + 1)
        substitute_model, _ = train_substitute(
            model_fn, x_holdout, num_classes=num_classes, clip_min=clip_min, clip_max=clip_max, **train_options
        )
    x_adv = fgsm(substitute_model, x, eps=a.eps, norm=a.norm, y=y, targeted=a.targeted, clip_min=clip_min,
                 clip_max=clip_max)
    return np.asarray(x_adv, np.float32)
