"""Certify a Keras model on a batch and replay every counterexample through Keras (and a deployed model, if given).

Certification does not deploy: a caller that has the deployed model passes its
predictions as ``deployed`` (for a ``.tflite``,
``functools.partial(edgebnn.deploy.verify.tflite_predict, flatbuffer)``) and each
counterexample is replayed through it too.
"""

import dataclasses

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate
from edgebnn.certify import exact, solvers
from edgebnn.certify.network import extract


@dataclasses.dataclass
class Certification:
    """What :func:`certify` found.

    Attributes:
        eps: the L-infinity radius.
        solver: the backend used.
        time_limit: seconds per example (``None``: none).
        records: per example, a JSON-able dict (see :func:`edgebnn.certify.exact.certify_example`)
            without the counterexample, plus ``replay_keras`` / ``replay_tflite``
            (``True`` if that model misclassifies the counterexample, ``None`` if there is none
            or it was not replayed).
        counterexamples: example index -> counterexample input (shaped like one ``x``).
    """

    eps: float
    solver: str
    time_limit: float | None
    records: list
    counterexamples: dict

    def statuses(self):
        return [r["status"] for r in self.records]


def _validate_arguments(x, y, eps, time_limit, solver, processes):
    x = np.asarray(x, np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"`x` must be a non-empty batch of inputs, got shape {x.shape}.")
    if np.any(x < 0) or np.any(x > 1) or not np.all(np.isfinite(x)):
        raise ValueError("`x` must hold pixels in [0, 1].")
    y = np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"`y` must be {len(x)} integer labels, got shape {y.shape} dtype {y.dtype}.")
    _validate.number(eps, "eps", low=0, high=1)
    _validate.number(time_limit, "time_limit", low=0, low_open=True, allow_none=True, what="a positive number of seconds")
    solvers.get(solver)
    _validate.positive_int(processes, "processes")
    return x, y.astype(np.int64)


def replay(model, deployed, counterexamples, labels):
    """Whether Keras and the deployed model misclassify each counterexample.

    Args:
        model: the Keras model.
        deployed: ``None``, or a callable mapping a batch of inputs to the deployed
            model's logits (e.g. a ``.tflite`` through
            :func:`edgebnn.deploy.verify.tflite_predict`).
        counterexamples: inputs, shape ``(k, ...)``.
        labels: the labels they must not be classified as.

    Returns:
        ``(keras, tflite)`` boolean arrays (``tflite`` is ``None`` without ``deployed``).
    """
    counterexamples = np.asarray(counterexamples, np.float32)
    labels = np.asarray(labels)
    if len(counterexamples) == 0:
        return np.zeros(0, bool), None if deployed is None else np.zeros(0, bool)
    keras = model.predict(counterexamples, verbose=0, batch_size=256).argmax(-1) != labels
    tflite = None if deployed is None else np.asarray(deployed(counterexamples)).argmax(-1) != labels
    return keras, tflite


def certify(model, x, y=None, *, eps, time_limit=60.0, solver="milp", processes=1, hints=None, deployed=None,
            progress=None, enumeration_limit=exact.ENUMERATION_LIMIT):
    """Exact L-infinity robustness of every example: ``robust``, ``not_robust`` (with a counterexample) or ``unknown``.

    Args:
        model: a Larq binary network with :class:`~edgebnn.layers.InputDiscretization`
            (see :mod:`edgebnn.certify.network` for the supported layers).
        x: inputs in ``[0, 1]``, shape ``(batch, *input_shape)``.
        y: labels (``None``: the model's own predictions, i.e. local robustness).
        eps: L-infinity radius.
        time_limit: seconds per example (encoding and solving); ``None`` for no limit.
        solver: ``"milp"`` (HiGHS) or ``"sat"`` (python-sat).
        processes: worker processes (see :func:`edgebnn.certify.exact.default_processes`).
        hints: optional candidate counterexamples shaped like ``x`` (attack outputs);
            one that is in the ball and misclassified is taken as the answer.
        deployed: ``None``, or the deployed model's predictions to replay
            counterexamples through (see :func:`replay`); ``replay_tflite`` stays
            ``None`` without it.
        progress: ``None`` or ``progress(label, done, total)`` (see :func:`edgebnn.certify.exact.certify_net`).
        enumeration_limit: balls with at most this many discretized inputs are searched
            exhaustively instead of solved (0: always the solver).

    Returns:
        A :class:`Certification`.

    Raises:
        TypeError, ValueError: bad arguments.
        UnsupportedModelError: the model is outside the encoding (one line naming the layer).
    """
    net = extract(model)
    if y is None:
        y = model.predict(np.asarray(x, np.float32), verbose=0, batch_size=256).argmax(-1)
    x, y = _validate_arguments(x, y, eps, time_limit, solver, processes)
    classes = model.output_shape[-1]
    outside = y[(y < 0) | (y >= classes)]
    if len(outside):
        raise ValueError(f"`y` must hold class indices in [0, {classes}) for this model's {classes} classes, "
                         f"got {int(outside[0])}.")
    if x.shape[1:] != net.input_shape:
        raise ValueError(f"`x` examples must have shape {net.input_shape}, got {x.shape[1:]}.")
    if hints is not None and np.shape(hints) != x.shape:
        raise ValueError(f"`hints` must have the shape of `x` {x.shape}, got {np.shape(hints)}.")
    records = exact.certify_net(net, x, y, eps=float(eps), time_limit=time_limit, solver=solver,
                                processes=processes, hints=hints, progress=progress,
                                enumeration_limit=enumeration_limit)
    counterexamples = {i: r.pop("counterexample").reshape(x.shape[1:]) for i, r in enumerate(records)
                       if r["counterexample"] is not None}
    for r in records:
        r.pop("counterexample", None)
        r["replay_keras"] = r["replay_tflite"] = None
    if counterexamples:
        index = sorted(counterexamples)
        keras, tflite = replay(model, deployed, np.stack([counterexamples[i] for i in index]), y[index])
        for k, i in enumerate(index):
            records[i]["replay_keras"] = bool(keras[k])
            records[i]["replay_tflite"] = None if tflite is None else bool(tflite[k])
    for i, r in enumerate(records):
        r["index"], r["label"] = i, int(y[i])
    return Certification(float(eps), solver, time_limit, records, counterexamples)
