"""``tf.distribute`` strategies by name, for training on several devices or machines.

- ``"default"``: no distribution (TensorFlow's default strategy, one device).
- ``"mirrored"``: :class:`tf.distribute.MirroredStrategy`, every local device (GPUs,
  else the CPU) holds a replica; gradients are all-reduced each step.
- ``"multi_worker"``: :class:`tf.distribute.MultiWorkerMirroredStrategy` over the
  machines listed in the ``TF_CONFIG`` environment variable. Every worker runs the
  same command with its own ``TF_CONFIG`` (same ``cluster``, its own ``task``); each
  global batch is split between the workers and gradients are all-reduced, so the
  workers end every step with identical weights. Worker 0 is the chief.

Example ``TF_CONFIG`` of worker 1 of two::

    {"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 1}}

A multi-worker strategy must be created before TensorFlow runs any op in the
process; :func:`make_strategy` is called first thing by the recipe runner.
"""

import json
import os

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import _validate
from edgebnn.choices import STRATEGIES

import tensorflow as tf

TF_CONFIG_ENV = "TF_CONFIG"


def read_tf_config():
    """The parsed ``TF_CONFIG`` of a multi-worker run, checked: ``(workers, index)``.

    Raises:
        ValueError: ``TF_CONFIG`` is unset, not JSON, or does not describe this
            process as one of the cluster's workers.
    """
    raw = os.environ.get(TF_CONFIG_ENV)
    if not raw:
        raise ValueError(f"strategy 'multi_worker' needs the {TF_CONFIG_ENV} environment variable (the cluster and "
                         f"this worker's task), e.g. {{\"cluster\": {{\"worker\": [\"host0:12345\", "
                         f"\"host1:12345\"]}}, \"task\": {{\"type\": \"worker\", \"index\": 0}}}}.")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{TF_CONFIG_ENV} is not valid JSON: {e}") from None
    workers = (config.get("cluster") or {}).get("worker") if isinstance(config, dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise ValueError(f"{TF_CONFIG_ENV}: `cluster.worker` must be a non-empty list of \"host:port\", got {workers!r}.")
    task = config.get("task") or {}
    index = task.get("index")
    if task.get("type") != "worker" or not _validate.is_int(index) or not (
        0 <= index < len(workers)
    ):
        raise ValueError(f"{TF_CONFIG_ENV}: `task` must be {{\"type\": \"worker\", \"index\": 0..{len(workers) - 1}}}, "
                         f"got {task!r}.")
    return workers, index


def make_strategy(name):
    """The ``tf.distribute`` strategy called ``name`` (one of :data:`STRATEGIES`).

    Raises:
        ValueError: unknown ``name``, or a bad ``TF_CONFIG`` for ``"multi_worker"``.
    """
    _validate.one_of(name, "strategy", STRATEGIES)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    read_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy):
    """Whether this process writes the results: always, except on workers 1.. of a multi-worker run."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    _, index = read_tf_config()
    return index == 0
