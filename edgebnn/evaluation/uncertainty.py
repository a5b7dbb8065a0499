"""Prediction with randomness: Monte-Carlo passes through stochastic models.

Models with :class:`~edgebnn.layers.MCDropout` (``always_on=True``) or
:class:`~edgebnn.quantizers.StochasticSign` weights give a different output at every
forward pass. :func:`predict_mc` runs ``samples`` passes and summarizes them as
Guan et al. do: the class of the summed softmax, the mean probabilities, and the
uncertainty of Eq. 12, the variance of the class probabilities across passes
averaged over the classes.
"""

import weakref
from typing import NamedTuple

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _cache, randomness
from edgebnn._validate import positive_int

import tensorflow as tf

#: Guan et al.'s number of stochastic forward passes.
DEFAULT_SAMPLES = 50


class MCPrediction(NamedTuple):
    """Summary of ``samples`` stochastic forward passes over ``n`` examples.

    Attributes:
        classes: int64 ``(n,)``, arg-max of the softmax summed over the passes.
        mean_probs: float32 ``(n, num_classes)``, softmax averaged over the passes.
        uncertainty: float64 ``(n,)``, Guan Eq. 12: for each example, the variance of
            each class probability across passes, averaged over the classes. Exactly
            0 for a deterministic model.
    """

    classes: np.ndarray
    mean_probs: np.ndarray
    uncertainty: np.ndarray


#: One compiled softmax pass per model, reused by every call of :func:`predict_mc` on it
#: (a new ``tf.function`` per call would trace the model again each time).
_PROBS = weakref.WeakKeyDictionary()
#: The same, seeded: ``(x, key) -> softmax``, its draws from ``key`` (one graph for every key).
_SEEDED_PROBS = weakref.WeakKeyDictionary()


def _probs_fn(model, *, seeded=False):
    """The cached ``tf.function`` ``x -> softmax(model(x))`` of ``model`` (``training=False`` for Keras);
    ``seeded``: ``(x, key) -> softmax`` drawing within :func:`edgebnn.randomness.seeded` ``(key)``."""
    return _cache.per_model(_SEEDED_PROBS if seeded else _PROBS, model, lambda get_model: _compile_probs(
        get_model, keras=isinstance(model, tf.keras.Model), seeded=seeded))


def _compile_probs(get_model, *, keras, seeded=False):
    def softmax(xb):
        logits = get_model()(xb, training=False) if keras else get_model()(xb)
        return tf.nn.softmax(logits, axis=-1)

    if not seeded:
        return tf.function(softmax, reduce_retracing=True)

    def seeded_softmax(xb, key):
        with randomness.seeded(key):
            return softmax(xb)

    return tf.function(seeded_softmax, reduce_retracing=True)


def _validate(model, x, samples, batch_size):
    if not callable(model):
        raise TypeError(f"`model` must be a Keras model or callable returning logits, got {type(model).__name__}.")
    positive_int(samples, "samples")
    positive_int(batch_size, "batch_size")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"`x` must be a non-empty batch (n, ...), got shape {x.shape}.")
    return x


def predict_mc(model, x, *, samples=DEFAULT_SAMPLES, batch_size=256, seed=None):
    """Monte-Carlo prediction: ``samples`` stochastic forward passes per example.

    Every pass calls ``model(x_batch, training=False)``; randomness comes from the
    layers that sample at inference (MC dropout with ``always_on``, stochastic
    weights), which draw independently at every call. Statistics are accumulated in
    float64, so a deterministic model yields uncertainty exactly 0.

    Args:
        model: Keras model (or callable) mapping a batch to **logits**.
        x: inputs, shape ``(n, ...)``.
        samples: number of passes (Guan et al.: 50).
        batch_size: examples per pass.
        seed: when given, pass ``p`` of the ``b``-th batch draws from
            :func:`edgebnn.randomness.key` ``(seed, b * samples + p)`` (the model's layers that
            draw through :mod:`edgebnn.randomness`: stochastic binarization, MC dropout), so the
            passes depend on ``seed`` alone, not on what ran before in the process, and one
            traced graph serves every seed. A model with other random ops is traced anew under
            ``tf.random`` seed ``seed`` instead. ``None``: the cached graph draws from
            TensorFlow's random state, which continues from call to call.

    Returns:
        :class:`MCPrediction` with ``classes``, ``mean_probs`` and ``uncertainty``.

    Raises:
        TypeError, ValueError: bad ``model``, ``x``, ``samples`` or ``batch_size``.

    Example:
        >>> model = zoo.get("guan_lenet")(precision="float", mc_dropout=True)
        >>> pred = predict_mc(model, x_test[:100], samples=50)
        >>> pred.uncertainty.mean()
    """
    x = _validate(model, x, samples, batch_size)
    keyed = seed is not None
    probs = _probs_fn(model, seeded=keyed)
    if keyed and randomness.stateful_random_ops(probs.get_concrete_function(tf.constant(x[:batch_size]),
                                                                            randomness.key(seed))):
        # random ops no key reaches: a graph traced for this call under the tf.random seed, so that they repeat
        tf.keras.utils.set_random_seed(seed)
        probs, keyed = _compile_probs(lambda: model, keras=isinstance(model, tf.keras.Model)), False

    classes, means, uncertainties = [], [], []
    for batch, start in enumerate(range(0, len(x), batch_size)):
        xb = tf.constant(x[start : start + batch_size])
        keys = [(randomness.key(seed, batch * samples + p),) if keyed else () for p in range(samples)]
        passes = np.stack([probs(xb, *key).numpy() for key in keys]).astype(np.float64)
        total = passes.sum(axis=0)
        mean = total / samples
        # Two-pass variance: identical passes give exactly 0 (sums of <= 2**29 equal
        # float32 values are exact in float64, so ``mean`` equals each pass).
        variance = np.mean((passes - mean) ** 2, axis=0)
        classes.append(np.argmax(total, axis=-1))
        means.append(mean.astype(np.float32))
        uncertainties.append(variance.mean(axis=-1))
    return MCPrediction(np.concatenate(classes).astype(np.int64), np.concatenate(means),
                        np.concatenate(uncertainties))



#: Percentile of an example set's uncertainty that :func:`uncertainty_summary` reports and, by
#: default, counts examples above (Guan et al. compare adversarial inputs with the clean ones').
SUMMARY_PERCENTILE = 90


def uncertainty_summary(prediction, y, *, threshold=None):
    """Accuracy of an :class:`MCPrediction` and the distribution of its uncertainty (Guan Eq. 12).

    Args:
        prediction: :func:`predict_mc`'s result on ``n`` examples.
        y: int ``(n,)`` true labels.
        threshold: uncertainty above which an example counts in ``"above"``; default this
            prediction's own :data:`SUMMARY_PERCENTILE`-th percentile (pass the clean inputs'
            to see how many adversarial inputs look more uncertain than most clean ones).

    Returns:
        dict of floats: ``"accuracy"``, ``"mean"``, ``"median"``, ``"percentile"`` (the
        :data:`SUMMARY_PERCENTILE`-th) of the uncertainty, and ``"above"``, the share of
        examples whose uncertainty exceeds ``threshold``.

    Raises:
        ValueError: ``y`` does not hold one label per example.
    """
    y = np.asarray(y)
    u = np.asarray(prediction.uncertainty)
    if y.shape != u.shape:
        raise ValueError(f"`y` must hold one label per example, shape {u.shape}, got shape {y.shape}.")
    percentile = float(np.percentile(u, SUMMARY_PERCENTILE))
    threshold = percentile if threshold is None else threshold
    return {"accuracy": float(np.mean(prediction.classes == y)), "mean": float(u.mean()),
            "median": float(np.median(u)), "percentile": percentile, "above": float(np.mean(u > threshold))}

def deterministic_twin(model):
    """A copy of ``model`` with the same weights whose Monte-Carlo dropout is off at inference.

    Every :class:`edgebnn.layers.MCDropout` of the copy has ``always_on=False``, so its
    inference pass is the plain network Guan et al. attack with FGSM; stochastic
    quantizers (stochastic binarization) still sample on every pass.

    Args:
        model: a Keras functional or sequential model.

    Returns:
        The copy (a new Keras model; ``model`` is unchanged).
    """
    from edgebnn.layers import MCDropout  # noqa: PLC0415

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, MCDropout):
            config = {**config, "always_on": False}
        return type(layer).from_config(config)

    twin = tf.keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin
