"""Argument validation and the graph-mode building blocks shared by every attack module.

Every attack is split in two, like Larq's ``ste_sign`` / ``SteSign``:

* a public entry point that validates its arguments (eagerly, with clear errors) and
  runs the attack compiled (:func:`compiled`);
* a pure-TensorFlow core built from the helpers below (:func:`loss_gradient`,
  :func:`optimize_linear`, :func:`project`, :func:`random_init`) that adversarial
  training calls directly inside ``train_step``.

Randomized models (stochastic-binary layers, MC dropout) are attacked with
Expectation over Transformation (Athalye et al. 2018): ``eot_samples`` forward /
backward passes whose loss gradients are averaged. Discretization and sign are seen
through with their straight-through surrogate gradients (BPDA), which the ops define,
or with another surrogate chosen per attack (``surrogate=``, :mod:`edgebnn.attacks.surrogates`).
"""

import contextlib
import functools
import os
import types

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate, ops, randomness
from edgebnn._validate import nonnegative as validate_nonnegative, positive_int as validate_positive_int

from edgebnn.attacks.surrogates import use_surrogate

import tensorflow as tf

#: Norms accepted by the attacks: L-infinity (``np.inf`` or ``"inf"``) and L2.
NORMS = {np.inf: np.inf, "inf": np.inf, "linf": np.inf, 2: 2, "2": 2, "l2": 2}
#: Added under square roots and divisions so a zero gradient or perturbation never divides by zero.
AVOID_ZERO_DIV = 1e-12
#: Adam's moment decay rates and epsilon (Kingma & Ba 2015), as in Carlini's and CleverHans' attacks.
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
#: Subtracted from the true class's logit so that it never wins the max over the other classes
#: (the constant of Carlini's code and CleverHans' CW and SPSA).
_OTHER_CLASS_OFFSET = 1e4
#: ``parallel_iterations`` of every attack's step loop (AutoGraph's ``tf.range`` loops): one
#: step at a time. A random op in a step (a random start, SPSA's directions, a randomized model's
#: dropout mask or stochastic weights) whose shape is static takes no input from the step before,
#: so with several steps in flight a later step's draw can run before an earlier one's and take
#: its numbers from the op's shared state, and which goes first depends on thread scheduling.
#: One step at a time draws in step order: a seeded attack on a randomized model gives the same
#: examples in every run, whatever else the machine is doing.
STEPS_IN_FLIGHT = 1


def validate_norm(norm, *, allowed=(np.inf, 2)):
    """Return ``norm`` as ``np.inf`` or ``2``; raise naming the allowed values otherwise."""
    key = norm.lower() if isinstance(norm, str) else norm
    try:
        resolved = NORMS[key]
    except (KeyError, TypeError):
        raise ValueError(f"`norm` must be one of {list(allowed)} (or 'inf' / 'l2'), got {norm!r}.") from None
    if resolved not in allowed:
        raise ValueError(f"`norm` must be one of {list(allowed)}, got {norm!r}.")
    return resolved


def validate_attack(*, eps, clip_min, clip_max, y, targeted):
    """The checks CleverHans TF2 leaves out: ``eps >= 0``, ``clip_min <= clip_max``, ``targeted`` needs ``y``."""
    if eps is not None:
        validate_nonnegative(eps, "eps")
    if clip_min is not None and clip_max is not None and clip_min > clip_max:
        raise ValueError(f"`clip_min` ({clip_min}) must be <= `clip_max` ({clip_max}).")
    if targeted and y is None:
        raise ValueError("`targeted=True` needs `y`, the target labels.")


def validate_steps(steps, step_size, eps):
    """Check an iterative attack's ``steps`` and ``step_size``; default step size ``2.5 * eps / steps``."""
    validate_positive_int(steps, "steps")
    if step_size is None:
        return 2.5 * eps / steps  # Madry et al. 2018's rule of thumb
    return _validate.number(step_size, "step_size", low=0, low_open=True)


def validate_surrogate(surrogate):
    """Return ``surrogate`` if it names a gradient surrogate of :data:`edgebnn.ops.SURROGATES`."""
    return ops.validate_surrogate(surrogate)


def _model_input_shape(model_fn):
    """The ``(None, ...)`` input shape of a single-input Keras model, else ``None``."""
    try:
        shape = getattr(model_fn, "input_shape", None)
    except (AttributeError, ValueError, RuntimeError):  # Keras raises these for a model not built yet
        return None
    if not isinstance(shape, tuple) or not all(d is None or isinstance(d, int) for d in shape):
        return None
    return shape


def _model_classes(model_fn):
    """The number of classes a single-output Keras model scores (its last output axis), else ``None``."""
    try:
        shape = getattr(model_fn, "output_shape", None)
    except (AttributeError, ValueError, RuntimeError):  # Keras raises these for a model not built yet
        return None
    if not isinstance(shape, tuple) or not shape or not isinstance(shape[-1], int):
        return None
    return shape[-1]


def check_label_range(y, model_fn):
    """Reject class indices ``y`` (an int tensor) outside ``[0, classes)`` of ``model_fn``'s output.

    Checked when the class count is known (a Keras model) and ``y`` is concrete (eager):
    a label past the last class would otherwise give a TensorFlow traceback deep inside
    the attack, or be silently accepted by attacks that only compare logits.
    """
    classes = _model_classes(model_fn)
    if y is None or classes is None or not tf.executing_eagerly() or not y.shape[0]:
        return
    values = y.numpy()
    bad = values[(values < 0) | (values >= classes)]
    if len(bad):
        raise ValueError(f"`y` must hold class indices in [0, {classes}) for this model's {classes} classes, "
                         f"got {int(bad[0])}.")


def check_inputs(x, *, clip_min, clip_max, model_fn=None):
    """Convert ``x`` to float32 and reject NaN / infinite / out-of-clip-range values.

    With ``model_fn`` a Keras model, ``x`` must also be a batch the model accepts: the
    model's input rank, with the same per-example shape.
    """
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    expected = _model_input_shape(model_fn)
    if expected is not None:
        got = tuple(x.shape)
        if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected[1:], got[1:])):
            example = tuple(d for d in expected[1:])
            raise ValueError(f"`x` must be a batch of shape (batch, {', '.join(str(d) for d in example)}) for this "
                             f"model, got shape {got}" + (" (one example: add a batch axis, x[None])"
                                                           if got == example else "") + ".")
    values = x.numpy() if tf.executing_eagerly() else None
    if values is not None:
        if not np.all(np.isfinite(values)):
            raise ValueError("`x` contains NaN or infinite values.")
        lo, hi = values.min(initial=np.inf), values.max(initial=-np.inf)
        if (clip_min is not None and lo < clip_min) or (clip_max is not None and hi > clip_max):
            raise ValueError(f"`x` has values in [{lo}, {hi}], outside the clip range [{clip_min}, {clip_max}].")
    return x


def check_labels(y, x):
    """``y`` as an int64 tensor of class indices (one-hot rows are arg-maxed), or ``None``."""
    if y is None:
        return None
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] == 1:
        raise ValueError(f"`y` of shape {tuple(y.shape)} is a column, not one-hot rows: pass class indices of "
                         f"shape (batch,), e.g. y.ravel().")
    if y.shape.rank == 2:
        y = tf.argmax(y, axis=-1)
    if y.shape.rank == 1 and not (y.dtype.is_integer or y.dtype.is_floating):
        raise TypeError(f"`y` must hold class indices (integers), got dtype {y.dtype.name}.")
    if y.shape.rank == 1 and y.dtype.is_floating and tf.executing_eagerly():
        values = y.numpy()
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            bad = values[~np.isfinite(values) | (values != np.round(values))][0]
            raise ValueError(f"`y` must hold class indices (whole numbers), got {bad!r}; floats are not truncated.")
    if y.shape.rank == 1 and tf.executing_eagerly() and y.shape[0] and np.min(y.numpy()) < 0:
        raise ValueError(f"`y` must hold class indices >= 0, got {np.min(y.numpy())!r}.")
    if y.shape.rank != 1:
        raise ValueError(f"`y` must be class indices of shape (batch,) or one-hot (batch, classes), got shape {y.shape}.")
    if tf.executing_eagerly() and x.shape[0] is not None and y.shape[0] != x.shape[0]:
        raise ValueError(f"`y` has {y.shape[0]} labels for {x.shape[0]} inputs.")
    return tf.cast(y, tf.int64)


def prepare(model_fn, x, *, y, targeted, clip_min, clip_max, eps=None, norm=None, allowed_norms=(np.inf, 2),
            eot_samples=None, surrogate=None, **counts):
    """The prologue every attack's entry point shares: validate the common arguments, then the batch.

    In this order: ``norm`` (when given, against ``allowed_norms``); the checks
    CleverHans leaves out (:func:`validate_attack`: ``eps >= 0``, ``clip_min <= clip_max``,
    ``targeted`` needs ``y``); each of ``counts`` and ``eot_samples`` as a positive int;
    ``surrogate``; then ``x`` (:func:`check_inputs`, against the model's input shape and
    the clip range) and ``y`` (:func:`check_labels`, and against the model's class count:
    :func:`check_label_range`). Arguments left at ``None`` are not
    checked (an attack without a norm or an EOT option passes none).

    Args:
        model_fn: the attacked model.
        x, y, targeted, clip_min, clip_max, eps, norm, eot_samples, surrogate: the
            attack's arguments of those names.
        allowed_norms: the norms this attack implements.
        **counts: further positive-int arguments by name (``steps=10``, ``restarts=1``).

    Returns:
        A namespace with the checked values: ``x`` (float32 tensor), ``y`` (int64
        tensor or ``None``), ``targeted`` (bool), ``eps`` (float or ``None``), ``norm``,
        ``eot_samples``, ``surrogate`` and one attribute per count (ints).

    Raises:
        TypeError, ValueError: naming the first bad argument.
    """
    checked = {"norm": None if norm is None else validate_norm(norm, allowed=allowed_norms)}
    validate_attack(eps=eps, clip_min=clip_min, clip_max=clip_max, y=y, targeted=targeted)
    checked["eps"] = None if eps is None else float(eps)
    for name, value in {**counts, "eot_samples": eot_samples}.items():
        checked[name] = None if value is None else validate_positive_int(value, name)
    checked["surrogate"] = None if surrogate is None else validate_surrogate(surrogate)
    x = check_inputs(x, clip_min=clip_min, clip_max=clip_max, model_fn=model_fn)
    y = check_labels(y, x)
    check_label_range(y, model_fn)
    return types.SimpleNamespace(x=x, y=y, targeted=bool(targeted), **checked)


def _batch_free_spec(value):
    """A ``tf.TensorSpec`` of ``value`` with its leading (batch) axis unknown; other values unchanged."""
    if isinstance(value, tf.Tensor) and value.shape.rank:
        return tf.TensorSpec([None, *value.shape[1:]], value.dtype)
    return value


#: The checks of the open :func:`stop_between_steps` blocks, innermost last (``None``: no stop points).
_STOP_CHECKS = []
#: What a check raised inside a running graph, for :func:`stoppable_call` to raise again.
_STOPPED = []


@contextlib.contextmanager
def stop_between_steps(check):
    """Within the block, the attack loops traced ask ``check()`` between two of their steps.

    Each loop's body gets a stop point (:func:`stop_point`): an op calling the innermost open
    block's ``check`` from one of TensorFlow's threads while the graph runs, so ``check`` must
    be quick and thread-safe. An exception it raises ends the graph at once, and the attack's
    call (:func:`compiled`, :func:`edgebnn.evaluation.robustness.craft`) raises that exception
    in the caller's thread: the batch being crafted is discarded. A stop point adds no random op
    and changes no value, so an attack that is not stopped gives the same examples bit for bit.
    Graphs traced outside a block have no stop points; ``check=None`` opens a block without them
    (a graph compiled with XLA cannot call Python). While a graph is traced (seconds for a large
    attack), ``check`` is also asked at each stop point and model call traced, in the caller's
    thread: what it raises ends the trace, as an error in the traced code would.
    """
    _STOP_CHECKS.append(check)
    try:
        yield
    finally:
        _STOP_CHECKS.pop()


def _ask_while_tracing():
    """While a graph is traced within a :func:`stop_between_steps` block: ask its check now, in the caller's thread."""
    if _STOP_CHECKS and _STOP_CHECKS[-1] is not None and not tf.executing_eagerly():
        _STOP_CHECKS[-1]()


@tf.autograph.experimental.do_not_convert  # plain Python: nothing for AutoGraph to convert
def stop_point(step):
    """In an attack loop's body: ask the open :func:`stop_between_steps` block's check (no-op outside one).

    ``step`` is the loop's counter: the op takes it as input, so that it runs in every step (an
    op without inputs is loop-invariant, and TensorFlow runs it once, before the loop).
    """
    if _STOP_CHECKS and _STOP_CHECKS[-1] is not None:
        _ask_while_tracing()
        tf.py_function(_ask_check, [step], [])


def _ask_check(step):  # noqa: ARG001  (an input only to run in every step)
    check = _STOP_CHECKS[-1] if _STOP_CHECKS else None  # the block may have closed since the trace
    if check is None:
        return
    try:
        check()
    except BaseException as e:  # handed to the caller's thread by stoppable_call
        _STOPPED.append(e)
        raise RuntimeError("attack stopped between two steps") from None


def stoppable_call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` (a graph call); if a stop point's check stopped it, raise what the check raised.

    The open block's check is first asked here, in the caller's thread: a graph takes a while to
    start (TensorFlow optimizes it on its first call), so a stop that came while it was traced
    stops it before it starts.
    """
    _STOPPED.clear()
    if _STOP_CHECKS and _STOP_CHECKS[-1] is not None:
        _STOP_CHECKS[-1]()
    try:
        return fn(*args, **kwargs)
    except tf.errors.OpError:
        if _STOPPED:
            raise _STOPPED.pop() from None
        raise


def compiled(core):
    """Run the graph-mode ``core`` through one cached ``tf.function``.

    Called eagerly, the attack is traced once per model / option set, with the batch
    axis left unknown so that a batch of any size reuses the trace, and then runs as a
    graph (the whole loop, not one gradient at a time as CleverHans' eager attacks do). Called inside a graph (``craft``, ``train_step``), ``core`` is inlined.
    Set ``EDGEBNN_EAGER_ATTACKS=1`` to debug an attack eagerly.
    """
    graph_fn = tf.function(core)

    @functools.wraps(core)
    def run(*args, **kwargs):
        if not tf.executing_eagerly() or os.environ.get("EDGEBNN_EAGER_ATTACKS") == "1":
            _ask_while_tracing()  # before the core is converted and traced
            return core(*args, **kwargs)
        # Trace with the batch axis unknown, so that calls on batches of other sizes (the
        # shrinking survivors of an ensemble) reuse the graph; the call then dispatches to it.
        batch_free_args, batch_free_kwargs = tf.nest.map_structure(_batch_free_spec, (args, kwargs))
        graph_fn.get_concrete_function(*batch_free_args, **batch_free_kwargs)
        return stoppable_call(graph_fn, *args, **kwargs)

    run.graph_function = graph_fn  # for tracing counts in tests
    return run


@tf.autograph.experimental.do_not_convert
def call_model(model_fn, x):
    """``model_fn(x)``, run as plain Python even inside an AutoGraph-converted attack loop.

    The attack loops need AutoGraph, but converting the model call would make AutoGraph
    transpile Keras' and Larq's layer machinery too (hundreds of functions, seconds of
    tracing); Keras layers run in graph mode without it. While traced within
    :func:`stop_between_steps`, the block's check is asked first (a stop during a long trace).
    """
    _ask_while_tracing()
    return model_fn(x)


def labels_or_predictions(model_fn, x, y):
    """``y`` when given, else the arg-max of ``model_fn(x)`` (no label leaking, Kurakin et al. 2017)."""
    if y is not None:
        return y
    return tf.argmax(call_model(model_fn, x), axis=-1)


def cross_entropy(logits, y):
    """Per-example softmax cross-entropy of ``logits`` against class indices ``y``."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


def logit_margin(logits, y, *, targeted):
    """Per-example logit margin: ``Z_y - max_{j != y} Z_j``, or ``max_{j != t} Z_j - Z_t`` when targeted.

    Negative means the attack has succeeded (with ``y`` the label, or the target ``t``).
    It is SPSA's loss and, shifted by the confidence and clipped at 0, CW's ``f_6``.
    """
    onehot = tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype)
    real = tf.reduce_sum(onehot * logits, axis=-1)
    other = tf.reduce_max(logits - onehot * _OTHER_CLASS_OFFSET, axis=-1)
    return other - real if targeted else real - other


def adam_direction(grad, m, v, step):
    """One Adam update (Kingma & Ba 2015) of the moments ``m``, ``v``: ``(direction, m, v)``.

    The parameter moves by ``-learning_rate * direction``, where ``direction`` is the
    bias-corrected ``m_hat / (sqrt(v_hat) + eps)``; ``step`` counts from 0.
    """
    t = tf.cast(step + 1, grad.dtype)
    m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad
    v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad)
    return (m / (1 - ADAM_BETA1**t)) / (tf.sqrt(v / (1 - ADAM_BETA2**t)) + ADAM_EPS), m, v


def loss_gradient(model_fn, x, y, *, targeted, eot_samples=1, loss_fn=cross_entropy, surrogate="ste"):
    """Gradient of the attack loss w.r.t. ``x``, averaged over ``eot_samples`` passes (EOT).

    The attack loss is ``loss_fn(logits, y)`` (per example) for an untargeted attack,
    which the attack ascends, and its negative for a targeted one. ``surrogate`` (a key
    of :data:`edgebnn.ops.SURROGATES`) picks the backward pass through discretization
    and sign (:func:`edgebnn.attacks.surrogates.use_surrogate`); the forward pass is
    the same for every choice.

    Returns:
        ``(gradient, loss)``: both averaged over the EOT samples; ``loss`` per example.
    """
    grad, loss, _ = loss_gradient_and_logits(
        model_fn, x, y, targeted=targeted, eot_samples=eot_samples, loss_fn=loss_fn, surrogate=surrogate,
    )
    return grad, loss


def loss_gradient_and_logits(model_fn, x, y, *, targeted, eot_samples=1, loss_fn=cross_entropy, surrogate="ste"):
    """:func:`loss_gradient` plus the logits of one forward pass: ``(gradient, loss, logits)``.

    With ``eot_samples > 1`` the passes run vectorized over the samples (one
    ``tf.vectorized_map``, not a loop): every sample's random ops (stochastic weights,
    dropout masks) draw their own values, as in ``eot_samples`` separate calls (seeded
    draws per sample: :func:`edgebnn.randomness.per_sample`), and the graph does not grow
    with the number of samples. The logits are the first sample's.
    """

    def sample(index):
        with randomness.per_sample(index, eot_samples):
            return _loss_gradient_and_logits(model_fn, x, y, targeted=targeted, loss_fn=loss_fn)

    with use_surrogate(model_fn, surrogate):
        if eot_samples == 1:
            return _loss_gradient_and_logits(model_fn, x, y, targeted=targeted, loss_fn=loss_fn)
        grads, losses, logits = tf.vectorized_map(sample, tf.range(eot_samples))
    return tf.reduce_mean(grads, axis=0), tf.reduce_mean(losses, axis=0), logits[0]


def _loss_gradient_and_logits(model_fn, x, y, *, targeted, loss_fn):
    """One forward / backward pass: ``(gradient, loss, logits)``."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = call_model(model_fn, x)
        loss = loss_fn(logits, y)
        if targeted:
            loss = -loss
    # A model that blocks the gradient (masking) yields zeros, not an error.
    return tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO), loss, logits


def _reduce_axes(x):
    return list(range(1, x.shape.rank))


def per_example(value, x):
    """Broadcast a scalar or per-example ``(batch,)`` value against ``x``'s shape."""
    value = tf.convert_to_tensor(value, x.dtype)
    if value.shape.rank == 1:
        value = tf.reshape(value, [-1] + [1] * (x.shape.rank - 1))
    return value


def optimize_linear(grad, eps, norm):
    """The step of size ``eps`` that maximises ``<step, grad>`` under the norm: ``eps*sign(g)`` or ``eps*g/|g|_2``."""
    eps = per_example(eps, grad)
    if norm == np.inf:
        return eps * tf.stop_gradient(tf.sign(grad))
    square = tf.maximum(AVOID_ZERO_DIV, tf.reduce_sum(tf.square(grad), _reduce_axes(grad), keepdims=True))
    return eps * grad / tf.sqrt(square)


def project(eta, eps, norm):
    """Clip perturbation ``eta`` into the ``norm`` ball of radius ``eps`` (clip, not normalize)."""
    eps = per_example(eps, eta)
    if norm == np.inf:
        return tf.clip_by_value(eta, -eps, eps)
    norm2 = tf.sqrt(tf.maximum(AVOID_ZERO_DIV, tf.reduce_sum(tf.square(eta), _reduce_axes(eta), keepdims=True)))
    return eta * tf.minimum(1.0, eps / norm2)


def random_init(x, eps, norm):
    """A perturbation drawn uniformly from the ``norm`` ball of radius ``eps`` (Madry et al. 2018)."""
    eps = per_example(eps, x)
    if norm == np.inf:
        return randomness.uniform(tf.shape(x), -1.0, 1.0, dtype=x.dtype) * eps
    # Uniform in the L2 ball: a random direction scaled by U^(1/d) (Calafiore et al. 1998).
    direction = randomness.normal(tf.shape(x), dtype=x.dtype)
    direction /= tf.sqrt(tf.reduce_sum(tf.square(direction), _reduce_axes(x), keepdims=True) + AVOID_ZERO_DIV)
    dim = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
    radius = randomness.uniform(tf.shape(x)[:1], dtype=x.dtype) ** (1.0 / dim)
    return direction * per_example(radius, x) * eps


def clip(x, clip_min, clip_max):
    """Clip ``x`` to ``[clip_min, clip_max]`` (either may be ``None``)."""
    if clip_min is not None:
        x = tf.maximum(x, clip_min)
    if clip_max is not None:
        x = tf.minimum(x, clip_max)
    return x


def label_oracle(target, *, batch_size=500):
    """A function ``x -> predicted labels`` (NumPy) for a black-box ``target``.

    ``target`` is any callable returning logits or scores: a Keras model, or a deployed
    TFLite model wrapped by :func:`edgebnn.deploy.verify.tflite_model_fn` (attacks sit
    above deployment in the pipeline and do not import it). The attacker only sees labels.
    """
    if not callable(target):
        raise TypeError(
            f"`target` must be a Keras model or a callable returning logits (wrap a .tflite with "
            f"edgebnn.deploy.verify.tflite_model_fn), got {type(target).__name__}."
        )

    def oracle(x):
        return predict_labels(target, np.asarray(x, np.float32), batch_size=batch_size)

    return oracle


def predict_labels(model_fn, x, *, batch_size=500):
    """Arg-max predictions of ``model_fn`` on ``x`` (NumPy), in batches of ``batch_size``;
    an empty int64 array for an empty ``x``."""
    if not len(x):
        return np.zeros(0, np.int64)
    return np.concatenate([np.argmax(np.asarray(model_fn(x[i : i + batch_size])), axis=-1)
                           for i in range(0, len(x), batch_size)])
