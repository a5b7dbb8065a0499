"""The run folder: a lock against concurrent runs, and a cache keyed by configuration.

Layout of ``--out``::

    run.lock                      held (flock) by the running process
    report.json, report.md        rewritten after every result
    figures/NAME.png, NAME.json
    model.keras, model.tflite     single-cell recipes only: copies of the cell's
    store/models/KEY/             one trained model: config.json, model.keras,
                                  train.json, checkpoints/ while training
    store/results/KEY.json        one evaluation result, its per-example outcomes
                                  bit-packed inside (+ KEY.npz arrays)
    store/deploy/KEY/             one converted model: model.tflite, deploy.json

``KEY`` is a hash of exactly the configuration that produced the artifact (for a
result: its model's key, the data and evaluation settings, and its own parameters),
so a changed configuration never meets another configuration's checkpoint, and an
unchanged one is never recomputed. Every file is written atomically.

With ``--cache DIR`` the store lives in ``DIR`` (``DIR/models/KEY``, ``DIR/results``,
``DIR/deploy``) instead of ``out/store``, shared by every run given the same folder:
recipes that train the same model train it once. Runs sharing a cache may run at the
same time: training and computing a result hold an exclusive lock on
``DIR/locks/KEY.lock`` (:meth:`Store.lock`), so a second run waits for the first and
then finds its artifact, and every file is still written atomically.
"""

import base64
import errno
import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgebnn import _io
from edgebnn.recipes.schema import RecipeError

#: Bumped when the meaning of stored artifacts changes, so old caches are not reused.
FORMAT = "edgebnn-study-1"
#: Version of how :func:`edgebnn.training.train` turns a configuration into weights, part of
#: every trained model's key: models trained under another scheme (version 1: Keras' own
#: shuffling, random ops seeded once per run) are never mixed with this one's in a store.
#: Version 2: shuffle orders and random ops seeded per epoch, so resumed runs are exact.
TRAINING_SCHEME = 2


def key_of(payload):
    """A 20-hex-digit SHA-256 of ``payload`` as canonical JSON (sorted keys)."""
    text = json.dumps({"format": FORMAT, **payload}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def weights_key(payload):
    """The store key of weights trained as ``payload`` says (see :meth:`Store.trained_weights`):
    :func:`key_of` the payload and the :data:`TRAINING_SCHEME`."""
    return key_of({**payload, "training_scheme": TRAINING_SCHEME})


def pack_outcomes(outcomes):
    """``{name: bool vector}`` as JSON: ``{name: {"n": length, "bits": base64 of the packed bits}}``
    (an eighth of a byte per example)."""
    packed = {}
    for name, values in outcomes.items():
        values = np.asarray(values, bool).ravel()
        packed[name] = {"n": int(len(values)), "bits": base64.b64encode(np.packbits(values)).decode("ascii")}
    return packed


def unpack_outcomes(packed):
    """The ``{name: bool vector}`` of :func:`pack_outcomes`'s JSON."""
    return {name: np.unpackbits(np.frombuffer(base64.b64decode(entry["bits"]), np.uint8), count=entry["n"]).astype(bool)
            for name, entry in packed.items()}


class RunLock:
    """An exclusive ``flock`` on ``out/run.lock``; a second run on the folder fails at once.

    The kernel drops the lock when the holder exits, even on SIGKILL, so a killed run
    never leaves a stale lock behind.
    """

    def __init__(self, out):
        self.path = Path(out) / "run.lock"
        self._fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RecipeError(
                    f"another run (pid {holder}) is using {self.path.parent}; wait for it to finish or "
                    f"choose another --out."
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd = fd
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


class Store:
    """Keyed artifacts under ``out/store``, or under ``cache`` when given (a folder shared by runs)."""

    def __init__(self, out, *, cache=None):
        self.root = Path(cache) if cache is not None else Path(out) / "store"

    @contextmanager
    def lock(self, key, *, on_wait=None):
        """Hold an exclusive lock on ``key`` (blocking); ``on_wait()`` is called if another process holds it.

        The kernel drops the lock when its holder exits, even on SIGKILL, so a killed
        run never blocks a later one.
        """
        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def trained_weights(self, model, payload, train_fn, *, on_wait=None):
        """Give ``model`` the weights stored under ``payload``, training them first if none are.

        For drivers that build their models in code rather than from a recipe: ``payload``
        names everything that decides the weights (family, options, data, epochs, seed) and
        its :func:`weights_key` is the key; ``train_fn(model)`` trains in place. The weights are
        written atomically under ``models/<key>/`` with the payload beside them, and the
        key's lock keeps two processes from training the same model at once.

        Returns:
            True if the weights came from the store, False if ``train_fn`` ran.
        """
        key = weights_key(payload)
        path = self.model_dir(key) / "model.weights.h5"
        with self.lock(key, on_wait=on_wait):
            if path.is_file():
                model.load_weights(os.fspath(path))
                return True
            train_fn(model)
            with _io.atomic_path(path) as tmp:
                model.save_weights(os.fspath(tmp))
            _io.write_json(path.parent / "config.json", payload)
            return False

    def model_dir(self, key):
        return self.root / "models" / key

    def deploy_dir(self, key):
        return self.root / "deploy" / key

    def result_path(self, key):
        return self.root / "results" / f"{key}.json"

    def arrays_path(self, key):
        return self.root / "results" / f"{key}.npz"

    def load_result(self, key):
        """The stored result of ``key``, or ``None`` if it was never finished."""
        path = self.result_path(key)
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def save_result(self, key, result, arrays=None):
        """Store a result; its arrays first, so a stored result always has its arrays."""
        if arrays:
            with _io.atomic_path(self.arrays_path(key)) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **arrays)
        _io.write_json(self.result_path(key), result)

    def load_outcomes(self, key):
        """``{name: bool vector}`` of the per-example outcomes stored with result ``key``
        (``{}`` for a result stored without any), or ``None`` if there is no such result."""
        result = self.load_result(key)
        return None if result is None else unpack_outcomes(result.get("outcomes", {}))

    def load_arrays(self, key):
        path = self.arrays_path(key)
        if not path.is_file():
            return None
        with np.load(path) as npz:
            return {name: npz[name] for name in npz.files}
