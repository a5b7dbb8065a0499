"""Seeded random draws that depend on the seed alone, in graphs traced once.

Every random op of edgebnn's own code (the attacks' random starts and proposals, the
stochastic binarization of :func:`edgebnn.ops.stochastic_sign`, the masks of
:class:`edgebnn.layers.MCDropout`) draws through :func:`uniform` or :func:`normal`.
Outside a seeded scope these are TensorFlow's stateful ops (``tf.random.uniform``,
``tf.random.normal``) with the same arguments, so training, unseeded attacks and
prediction draw exactly as they always did. Within :func:`seeded` they are stateless
ops (``tf.random.stateless_*``) whose seed is derived from the scope's key, which may be
an argument of the traced function: one graph serves every seed, and its draws depend on
the key alone, not on what ran before in the process, on the order of the calls or on how
TensorFlow's threads are scheduled.

The derivation follows the structure of the traced program (a counter-based stream,
Salmon et al. 2011, as JAX's ``fold_in`` / ``split``):

* each draw takes the scope's next seed: ``fold_in(key, n)`` for the n-th draw traced;
* a graph loop's body calls :func:`loop_step` with its step counter first, so that every
  step gets a stream of its own (``fold_in`` of a fresh seed with the step);
* a vectorized map over samples (EOT, :func:`edgebnn.attacks.common.loss_gradient_and_logits`)
  opens :func:`per_sample`: a draw there is made once for all the samples and each sample
  takes its own slice, so samples differ and the map stays vectorized.

A seeded draw in a loop body that did not call :func:`loop_step` raises at trace time
(every step would repeat the same numbers otherwise).

Example:
    >>> @tf.function
    ... def noisy(x, key):
    ...     with randomness.seeded(key):
    ...         return x + randomness.normal(tf.shape(x))
    >>> a = noisy(x, randomness.key(7))  # traced once
    >>> b = noisy(x, randomness.key(7))  # the same numbers; key(8) gives others
"""

import contextlib
import weakref

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate

import tensorflow as tf
from tensorflow.python.ops.control_flow_v2_func_graphs import WhileBodyFuncGraph

#: Largest first word of a :func:`key` (its seed): TensorFlow's stateless seeds are int64 pairs.
MAX_SEED = 2**63 - 1
#: Ops whose numbers come from a state kept between calls (TensorFlow's stateful random ops and
#: ``tf.random.Generator``'s): in a graph traced once and called again, their draws depend on the
#: calls before, not on a seed passed in (:func:`stateful_random_ops`).
STATEFUL_RANDOM_OPS = frozenset({
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "ParameterizedTruncatedNormal",
    "RandomShuffle", "RandomGamma", "RandomPoisson", "RandomPoissonV2", "Multinomial", "RandomCrop",
    "StatefulUniform", "StatefulUniformInt", "StatefulUniformFullInt", "StatefulStandardNormal",
    "StatefulStandardNormalV2", "StatefulTruncatedNormal", "StatefulRandomBinomial", "RngReadAndSkip", "RngSkip",
})


#: The functions here hold no tensor-dependent Python control flow: AutoGraph, reaching them from
#: a converted attack loop, would only spend trace time converting them.
_NO_AUTOGRAPH = tf.autograph.experimental.do_not_convert


class _Stream:
    """A key and the number of seeds taken from it so far (while its graph is traced)."""

    def __init__(self, key):
        self.key, self.taken = key, 0

    def next_seed(self):
        seed = tf.random.experimental.stateless_fold_in(self.key, self.taken)
        self.taken += 1
        return seed


#: ``(graph, stream)`` of the open seeded scopes and of the loop bodies traced in them, oldest first
#: (``graph`` is ``None`` for a scope opened eagerly).
_STREAMS = []
#: ``(graph, index, count)`` of the open :func:`per_sample` scopes, innermost last.
_SAMPLES = []


def key(seed, index=0):
    """The stateless key ``[seed, index]`` (int64) of a :func:`seeded` scope.

    Args:
        seed: an int in ``[0, 2**63)``.
        index: a second int in ``[0, 2**63)`` naming one of several streams of the same seed
            (a key per pass or per purpose, say).

    Raises:
        TypeError, ValueError: ``seed`` or ``index`` not such an int.
    """
    _validate.integer(seed, "seed", low=0, high=MAX_SEED)
    _validate.integer(index, "index", low=0, high=MAX_SEED)
    return tf.constant([seed, index], tf.int64)


def _graph():
    return None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()


@contextlib.contextmanager
@_NO_AUTOGRAPH
def seeded(key):
    """Within the block, :func:`uniform` and :func:`normal` draw statelessly from ``key``.

    Opened while a function is traced, it seeds the draws traced into that function (and the
    loops and branches inside it): pass the key as an argument of the function and one trace
    serves every key. Opened eagerly, it seeds the eager draws made in the block. Graphs traced
    from inside an eager block are not seeded by it.

    Args:
        key: an int64 (or int32) tensor of shape ``[2]``, e.g. :func:`key` ``(seed)``.

    Raises:
        ValueError: ``key`` is not of shape ``[2]``.
    """
    key = tf.convert_to_tensor(key)
    if key.shape.rank != 1 or key.shape[0] != 2 or not key.dtype.is_integer:
        raise ValueError(f"`key` must be an integer tensor of shape [2] (randomness.key(seed)), got {key!r}.")
    depth = len(_STREAMS)
    _STREAMS.append((_graph(), _Stream(key)))
    try:
        yield
    finally:
        del _STREAMS[depth:]  # this scope and the loop bodies traced in it


def _stream():
    """The stream the draws made here take their seeds from (``None``: not seeded).

    Raises:
        RuntimeError: the nearest stream is in an outer graph and a loop body lies between.
    """
    if not _STREAMS:
        return None
    graph = _graph()
    if graph is None:
        return next((stream for owner, stream in reversed(_STREAMS) if owner is None), None)
    return _nearest(graph)


def _nearest(graph):
    """The stream of ``graph`` or of the nearest graph it is nested in, or ``None``.

    Raises:
        RuntimeError: a loop body without a stream of its own lies between (see :func:`loop_step`).
    """
    loop = None
    while graph is not None:
        for owner, stream in reversed(_STREAMS):
            if owner is graph:
                if loop is not None:
                    raise RuntimeError(f"a seeded random draw in the body of a graph loop ({loop.name}) that did "
                                       f"not call edgebnn.randomness.loop_step(step) first: every step would draw "
                                       f"the same numbers.")
                return stream
        if loop is None and isinstance(graph, WhileBodyFuncGraph):
            loop = graph
        graph = getattr(graph, "outer_graph", None)
    return None


@_NO_AUTOGRAPH
def is_seeded():
    """Whether draws made here come from a :func:`seeded` scope (else from TensorFlow's stateful ops)."""
    return _stream() is not None


@_NO_AUTOGRAPH
def loop_step(step):
    """First in a graph loop's body: the draws of step ``step`` get a stream of their own.

    No-op outside a seeded scope, and in a loop unrolled in Python (its steps are traced one
    after another into the same graph and take successive seeds anyway).

    Args:
        step: the loop's counter (a scalar int tensor of the body).
    """
    graph = _graph()
    if not _STREAMS or not isinstance(graph, WhileBodyFuncGraph) or any(owner is graph for owner, _ in _STREAMS):
        return
    parent = _nearest(graph.outer_graph)
    if parent is not None:
        _STREAMS.append((graph, _Stream(tf.random.experimental.stateless_fold_in(parent.next_seed(), step))))


@contextlib.contextmanager
@_NO_AUTOGRAPH
def per_sample(index, count):
    """In the body of ``tf.vectorized_map`` over ``count`` samples: seeded draws differ per sample.

    A draw of shape ``s`` made in the block is drawn once with shape ``[count, *s]`` and sample
    ``index`` takes its row ``index``: every sample gets its own numbers and the map needs no
    loop for them. Outside a seeded scope the block changes nothing (TensorFlow's stateful ops
    already draw per sample under ``tf.vectorized_map``).

    Args:
        index: the sample's index, the ``vectorized_map`` element (a scalar int tensor).
        count: the number of samples (an int).
    """
    _validate.positive_int(count, "count")
    _SAMPLES.append((_graph(), index, count))
    try:
        yield
    finally:
        _SAMPLES.pop()


def _stateless(draw, shape):
    """``draw(shape, seed)`` from the current stream, one row per sample inside :func:`per_sample`."""
    stream = _stream()
    seed = stream.next_seed()
    if _SAMPLES and _SAMPLES[-1][0] is _graph():
        _, index, count = _SAMPLES[-1]
        shape = tf.concat([[count], tf.cast(shape, tf.int32)], axis=0)
        return tf.gather(draw(shape, seed), index)
    return draw(shape, seed)


@_NO_AUTOGRAPH
def uniform(shape, minval=0, maxval=None, dtype=tf.float32, seed=None):
    """Uniform numbers in ``[minval, maxval)`` (``maxval`` 1 for floats by default), as ``tf.random.uniform``.

    ``seed`` is the op seed of the unseeded draw (``tf.random.uniform``'s); within a
    :func:`seeded` scope the draw depends on the scope's key alone and ``seed`` is not used.
    """
    if not is_seeded():
        return tf.random.uniform(shape, minval, maxval, dtype=dtype, seed=seed)
    high = 1 if maxval is None else maxval
    return _stateless(lambda s, k: tf.random.stateless_uniform(s, k, minval=minval, maxval=high, dtype=dtype),
                      shape)


@_NO_AUTOGRAPH
def normal(shape, mean=0.0, stddev=1.0, dtype=tf.float32, seed=None):
    """Normal numbers of mean ``mean`` and standard deviation ``stddev``, as ``tf.random.normal``.

    ``seed`` is the op seed of the unseeded draw; see :func:`uniform`.
    """
    if not is_seeded():
        return tf.random.normal(shape, mean, stddev, dtype=dtype, seed=seed)
    return _stateless(lambda s, k: tf.random.stateless_normal(s, k, mean=mean, stddev=stddev, dtype=dtype),
                      shape)


#: Traced function -> its stateful random op types (:func:`stateful_random_ops`, looked at once).
_STATEFUL_OPS = weakref.WeakKeyDictionary()


def stateful_random_ops(function):
    """The types of the :data:`STATEFUL_RANDOM_OPS` in a traced (concrete) function's graph and in the
    functions it calls (loop bodies, branches), sorted: the draws a :func:`seeded` scope does not
    reach (e.g. ``tf.nn.dropout`` called directly, a Keras noise layer called with ``training=True``).
    Looked at once per function."""
    if function not in _STATEFUL_OPS:
        _STATEFUL_OPS[function] = sorted(op_types(function) & set(STATEFUL_RANDOM_OPS))
    return _STATEFUL_OPS[function]


def op_types(function):
    """The op types of a traced (concrete) function's graph and of the functions it calls (loop
    bodies, branches, gradients)."""
    graph_def = function.graph.as_graph_def()
    groups = [graph_def.node] + [f.node_def for f in graph_def.library.function]
    return {node.op for group in groups for node in group}
