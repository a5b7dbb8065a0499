"""Adversarial accuracy of a model over a list of attack strengths."""

import contextlib
import functools
import weakref

import numpy as np

from edgebnn import _cache, _validate, attacks, randomness
from edgebnn.attacks.common import check_inputs, predict_labels, stop_between_steps, stoppable_call

import tensorflow as tf


def top_k_accuracy(model_fn, x, y, *, k=5, batch_size=500):
    """Fraction of ``x`` whose label ``y`` is among the ``k`` largest logits of ``model_fn``.

    The "top-5 accuracy" of ImageNet results (Panda et al. Fig. 8). Ties at the k-th
    logit are broken by class index, as ``np.argsort`` with a stable sort does.

    Raises:
        ValueError: ``k`` not an int in ``[1, classes]`` or ``len(x) != len(y)``.
    """
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` must have the same length, got {len(x)} and {len(y)}.")
    hits = []
    for i in range(0, len(x), batch_size):
        logits = np.asarray(model_fn(x[i : i + batch_size]))
        _validate.integer(k, "k", low=1, high=logits.shape[-1])
        top = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
        hits.append(np.any(top == y[i : i + batch_size, None], axis=-1))
    return float(np.mean(np.concatenate(hits))) if hits else float("nan")


def _attack_batch(attack_fn, options, model_fn, xb, yb):
    return attack_fn(model_fn, xb, y=yb, **options)


def _seeded_attack_batch(attack_fn, options, model_fn, xb, yb, key):
    with randomness.seeded(key):
        return attack_fn(model_fn, xb, y=yb, **options)


#: Index of a seeded craft's key (:func:`edgebnn.randomness.key` ``(seed, CRAFT_STREAM)``); other
#: users of the same seed take other indices, so that their draws are not the attack's.
CRAFT_STREAM = 0

#: model_fn -> {(XLA setting, attack, options, seeded): tf.function}. One function per model,
#: attack and option set (and seeded or not), so that repeated ``craft`` calls reuse the traced
#: graph and every function traces only for its batch shapes; a seeded one takes its key as an
#: argument, so one graph serves every seed. Each is a ``tf.function`` over its own
#: ``functools.partial``: TensorFlow's frequent-retracing detector counts traces per Python
#: code object, so functions sharing ``_attack_batch`` itself would count every attack, eps
#: and model as a retracing of one function. Weak keys: the cache does not keep models alive.
_COMPILED_BATCH = weakref.WeakKeyDictionary()


def _batch_function(jit_compile, attack_fn, options, *, seeded=False):
    body = _seeded_attack_batch if seeded else _attack_batch
    return tf.function(functools.partial(body, attack_fn, dict(options)), reduce_retracing=True,
                       jit_compile=bool(jit_compile))


def _compiled_batch(model_fn, jit_compile, attack_fn, frozen, *, seeded):
    """The cached batch function of this model, attack and options (a new one if any is not cacheable)."""
    per_model = _cache.per_model(_COMPILED_BATCH, model_fn, lambda get_model: {})  # uncached: this call only
    key = (bool(jit_compile), attack_fn, frozen, seeded)
    try:
        if key not in per_model:
            per_model[key] = _batch_function(jit_compile, attack_fn, frozen, seeded=seeded)
        return per_model[key]
    except TypeError:  # an unhashable option (e.g. an array): a graph for this call only
        return _batch_function(jit_compile, attack_fn, frozen, seeded=seeded)


def craft(model_fn, x, y, *, attack, eps, batch_size=500, jit_compile=False, seed=None, **options):
    """Run attack ``attack`` (name or function) on ``x`` batch by batch, in a compiled graph.

    ``y`` are the true labels the attack moves away from (the standard robust-accuracy
    protocol); pass ``y=None`` to use the model's own predictions instead. Attacks
    without an ``eps`` (JSMA) take ``eps=None``. Black-box attacks that train a
    substitute and CleverHans' implementations (:func:`edgebnn.attacks.eager_only`) run
    once, eagerly, on all of ``x``.
    ``jit_compile=True`` compiles each batch with XLA (faster on CPU for plain
    float/Larq models; every op of the model must have an XLA kernel).
    ``seed``: when given, every random draw of the attack and of the model (random starts
    and proposals, stochastic binarization, MC-dropout masks) is a stateless function of
    ``seed`` (:func:`edgebnn.randomness.seeded`): the same ``seed`` gives the same examples
    whatever ran before in the process and in whatever order the batches come, and one
    traced graph per model, attack and options serves every seed and batch. A model whose
    random ops do not draw through :mod:`edgebnn.randomness` (``tf.nn.dropout`` or a Keras
    noise layer called at inference) falls back to tracing the attack anew under
    ``tf.random`` seed ``seed`` for the call, as it is reproducible then. ``seed=None``: the
    cached graph draws from TensorFlow's random state, which continues from call to call.
    Traced within :func:`edgebnn.attacks.common.stop_between_steps`, an iterative attack
    asks the block's check between two steps and raises what it raises (the batch is lost).

    Returns:
        float32 NumPy array of adversarial examples shaped like ``x``.

    Raises:
        TypeError, ValueError: bad inputs, ``eps`` for an attack without one, or a ``seed``
            that is not an int in ``[0, 2**63)``.
    """
    attack_fn = attacks.get(attack) if isinstance(attack, str) else attack
    entry = attacks.info_of(attack_fn)
    clip_min, clip_max = options.get("clip_min", 0.0), options.get("clip_max", 1.0)
    check_inputs(x, clip_min=clip_min, clip_max=clip_max)
    if entry is not None and not entry.takes_eps and eps is not None:
        raise ValueError(f"attack {attacks.name_of(attack_fn)!r} takes no `eps`; pass eps=None, got {eps!r}.")
    key = () if seed is None else (randomness.key(seed, CRAFT_STREAM),)
    budget = {} if eps is None else {"eps": eps}
    if attacks.eager_only(attack_fn):
        return np.asarray(attack_fn(model_fn, x, y=y, **budget, **options), np.float32)

    frozen = tuple(sorted({**budget, **options}.items()))
    compiled_batch = _compiled_batch(model_fn, jit_compile, attack_fn, frozen, seeded=bool(key))
    out = []
    # XLA cannot call back into Python: a compiled batch has no stop points.
    with stop_between_steps(None) if jit_compile else contextlib.nullcontext():
        for i in range(0, len(x), batch_size):
            args = (model_fn, tf.constant(x[i : i + batch_size], tf.float32),
                    None if y is None else tf.constant(y[i : i + batch_size]))
            concrete = compiled_batch.get_concrete_function(*args, *key)  # traced (if new) before the stop check
            if key and randomness.stateful_random_ops(concrete):  # draws a key does not reach: the graph of this call only
                tf.keras.utils.set_random_seed(seed)
                compiled_batch, key = _batch_function(jit_compile, attack_fn, frozen), ()
                compiled_batch.get_concrete_function(*args)
            out.append(stoppable_call(compiled_batch, *args, *key).numpy())
    return np.concatenate(out) if out else np.zeros_like(x)


def robustness_curve(model_fn, x, y, *, attack, eps_list, batch_size=500, **options):
    """Accuracy under ``attack`` for every eps in ``eps_list``.

    ``eps_list`` is ``[None]`` for attacks without an eps budget (``attacks.info(name).takes_eps`` false, e.g. JSMA).

    Returns:
        ``(rows, adversarial)``: ``rows`` a list of ``{"name", "eps", "accuracy"}``;
        ``adversarial`` a dict eps -> adversarial examples (NumPy).
    """
    name = attack if isinstance(attack, str) else attack.__name__
    rows, adversarial = [], {}
    for eps in eps_list:
        x_adv = craft(model_fn, x, y, attack=attack, eps=eps, batch_size=batch_size, **options)
        accuracy = float(np.mean(predict_labels(model_fn, x_adv, batch_size=batch_size) == y))
        key = None if eps is None else float(eps)
        rows.append({"name": name, "eps": key, "accuracy": accuracy})
        adversarial[key] = x_adv
    return rows, adversarial
