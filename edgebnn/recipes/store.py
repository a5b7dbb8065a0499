"""The run folder: a lock against concurrent runs, and a cache keyed by configuration.

Layout of ``--out``::

    run.lock                      held (flock) by the running process
    report.json, report.md        rewritten after every result
    figures/NAME.png, NAME.json
    model.keras, model.tflite     single-cell recipes only: copies of the cell's
    store/models/KEY/             one trained model: config.json, model.keras,
                                  train.json, checksums.json, checkpoints/ while training
    store/results/KEY.json        one evaluation result, its per-example outcomes
                                  bit-packed inside (+ KEY.npz arrays)
    store/partial/KEY/            the finished batches of a result being computed
    store/deploy/KEY/             one converted model: model.tflite, deploy.json,
                                  checksums.json
    store/quarantine/             corrupt entries, set aside (never read again)

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

Every entry carries checksums: a result's JSON holds the SHA-256 of its own content and
of its arrays, a model's or deployment's folder a ``checksums.json`` of its files
(written last, so it also marks the entry complete). An entry that fails its check (a
truncated file, a flipped bit, a disk that lost a write) is named in one line, moved to
``quarantine/`` and computed again. Entries stored before checksums existed are checked
by loading them instead.
"""

import base64
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebnn import _io, _validate
from edgebnn.recipes.schema import RecipeError

#: Bumped when the meaning of stored artifacts changes, so old caches are not reused.
FORMAT = "edgebnn-study-1"
#: Version of how :func:`edgebnn.training.train` turns a configuration into weights, part of
#: every trained model's key: models trained under another scheme (version 1: Keras' own
#: shuffling, random ops seeded once per run) are never mixed with this one's in a store.
#: Version 2: shuffle orders and random ops seeded per epoch, so resumed runs are exact.
TRAINING_SCHEME = 2
#: Version of how an evaluation's seeded batches draw their random numbers (random starts, random
#: search, a randomized model's passes), part of the key of every result of a kind whose numbers
#: depend on them (:attr:`~edgebnn.recipes.evaluations.base.Kind.seeded_draws`), so that results drawn
#: under another scheme are never mixed with this one's in a store. Version 1 (no key entry):
#: ``tf.random`` ops under the batch's global seed, in a graph traced anew for every batch.
#: Version 2: stateless draws from a key passed to one traced graph (:mod:`edgebnn.randomness`).
DRAW_SCHEME = 2


def key_of(payload):
    """A 20-hex-digit SHA-256 of ``payload`` as canonical JSON (sorted keys)."""
    text = json.dumps({"format": FORMAT, **payload}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def weights_key(payload):
    """The store key of weights trained as ``payload`` says (see :meth:`Store.trained_weights`):
    :func:`key_of` the payload and the :data:`TRAINING_SCHEME`."""
    return key_of({**payload, "training_scheme": TRAINING_SCHEME})


#: A model's or deployment's file of ``{file name: SHA-256}``, written after its files.
CHECKSUMS = "checksums.json"
#: Key of a result JSON's checksum of its own content (every other key, canonical JSON).
RESULT_CHECKSUM = "sha256"
#: Key of a result JSON's checksum of its arrays file.
ARRAYS_CHECKSUM = "arrays_sha256"
#: Bytes read at a time when hashing a file.
_HASH_CHUNK = 1 << 20


class CorruptEntry(Exception):
    """A stored entry failed its checksum or could not be loaded."""


def file_sha256(path):
    """The SHA-256 (hex) of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _content_sha256(result):
    """The SHA-256 of a result's content: every key but its own checksum, as canonical JSON."""
    body = {k: v for k, v in result.items() if k != RESULT_CHECKSUM}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    """Keyed artifacts under ``out/store``, or under ``cache`` when given (a folder shared by runs).

    Args:
        out: the run folder.
        cache: a shared store folder instead of ``out/store``.
        warn: ``(line) -> None`` told about every corrupt entry set aside (default: stderr).
    """

    def __init__(self, out, *, cache=None, warn=None):
        self.root = Path(cache) if cache is not None else Path(out) / "store"
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))

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

    # --- checksums and quarantine ----------------------------------------------------

    def quarantine(self, paths, reason):
        """Move the files / folders ``paths`` of one corrupt entry to ``quarantine/`` and say so in one line.

        Returns:
            The quarantine folder they were moved to.
        """
        paths = [Path(p) for p in paths if Path(p).exists()]
        target = self.root / "quarantine" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        suffix = 0
        while (target.with_name(f"{target.name}-{suffix}") if suffix else target).exists():
            suffix += 1
        target = target.with_name(f"{target.name}-{suffix}") if suffix else target
        target.mkdir(parents=True)
        for path in paths:
            os.replace(path, target / path.name)
        named = ", ".join(os.fspath(p.relative_to(self.root)) if p.is_relative_to(self.root) else os.fspath(p)
                          for p in paths)
        self.warn(f"store: corrupt entry {named} ({reason}); moved to {target} and computed again")
        return target

    def seal(self, folder, names):
        """Write ``folder/checksums.json``: the SHA-256 of each file in ``names`` (last, marking it complete)."""
        folder = Path(folder)
        _io.write_json(folder / CHECKSUMS, {name: file_sha256(folder / name) for name in names})

    def check_folder(self, folder, names, *, load=None):
        """Whether the entry in ``folder`` is complete and intact; a corrupt one is quarantined.

        With a ``checksums.json``, it must list every file in ``names`` and every file it
        lists must match it. Without one (an
        entry stored before checksums existed), every file must exist and ``load()``, if
        given, must not raise.

        Returns:
            True if the entry can be used, False if it is absent (or was just set aside).
        """
        folder = Path(folder)
        if not folder.is_dir():
            return False
        try:
            self._verify_folder(folder, names, load)
        except CorruptEntry as e:
            self.quarantine([folder], str(e))
            return False
        except FileNotFoundError:
            return False
        return True

    def _verify_folder(self, folder, names, load):
        sums_path = folder / CHECKSUMS
        if sums_path.is_file():
            try:
                sums = json.loads(sums_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise CorruptEntry(f"unreadable {CHECKSUMS}: {e}") from None
            if not isinstance(sums, dict) or not set(names) <= set(sums):
                raise CorruptEntry(f"{CHECKSUMS} does not list {sorted(names)}")
            for name, expected in sums.items():
                if not (folder / name).is_file():
                    raise CorruptEntry(f"{name} is missing")
                if expected != file_sha256(folder / name):
                    raise CorruptEntry(f"{name} does not match its checksum")
            return
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(missing[0])  # not finished (or from before checksums): absent
        if load is not None:
            try:
                load()
            except Exception as e:  # noqa: BLE001 (any failure to load an unsealed entry marks it corrupt)
                raise CorruptEntry(f"cannot be loaded: {_first_line(e)}") from None

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
        path = self._weights_path(key)
        with self.lock(key, on_wait=on_wait):
            if self.load_weights(model, payload):
                return True
            train_fn(model)
            with _io.atomic_path(path) as tmp:
                model.save_weights(os.fspath(tmp))
            _io.write_json(path.parent / "config.json", payload)
            self.seal(path.parent, [path.name, "config.json"])
            return False

    def load_weights(self, model, payload):
        """Give ``model`` the weights stored under ``payload`` (see :meth:`trained_weights`), if there are any.

        Returns:
            True if intact weights were stored and loaded; False if there are none (or they were
            corrupt and set aside), and ``model`` is left as it was.
        """
        path = self._weights_path(weights_key(payload))
        if not self.check_folder(path.parent, [path.name], load=lambda: model.load_weights(os.fspath(path))):
            return False
        model.load_weights(os.fspath(path))
        return True

    def _weights_path(self, key):
        return self.model_dir(key) / "model.weights.h5"

    def model_dir(self, key):
        return self.root / "models" / key

    def deploy_dir(self, key):
        return self.root / "deploy" / key

    def result_path(self, key):
        return self.root / "results" / f"{key}.json"

    def arrays_path(self, key):
        return self.root / "results" / f"{key}.npz"

    def batches(self, key):
        """The :class:`Batches` of result ``key`` while it is computed."""
        return Batches(self.root / "partial" / key, key)

    def load_result(self, key):
        """The stored result of ``key``, or ``None`` if it was never finished (or was corrupt and set aside)."""
        path = self.result_path(key)
        if not path.is_file():
            return None
        try:
            return self._verified_result(key, path)
        except CorruptEntry as e:
            self.quarantine([path, self.arrays_path(key)], str(e))
            return None

    def _verified_result(self, key, path):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptEntry(f"unreadable JSON: {e}") from None
        if not isinstance(result, dict):
            raise CorruptEntry("not a JSON object")
        if RESULT_CHECKSUM in result and result[RESULT_CHECKSUM] != _content_sha256(result):
            raise CorruptEntry("does not match its checksum")
        if result.get("arrays"):
            arrays = self.arrays_path(key)
            if not arrays.is_file():
                raise CorruptEntry(f"its arrays {arrays.name} are missing")
            if ARRAYS_CHECKSUM in result:
                if file_sha256(arrays) != result[ARRAYS_CHECKSUM]:
                    raise CorruptEntry(f"its arrays {arrays.name} do not match their checksum")
            else:
                try:
                    self._read_arrays(arrays)
                except Exception as e:  # noqa: BLE001 (any failure to load an unsealed entry marks it corrupt)
                    raise CorruptEntry(f"its arrays {arrays.name} cannot be loaded: {_first_line(e)}") from None
        return {k: v for k, v in result.items() if k not in (RESULT_CHECKSUM, ARRAYS_CHECKSUM)}

    def save_result(self, key, result, arrays=None):
        """Store a result; its arrays first, so a stored result always has its arrays (and their checksum)."""
        result = dict(result)
        if arrays:
            with _io.atomic_path(self.arrays_path(key)) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **arrays)
                result[ARRAYS_CHECKSUM] = file_sha256(tmp)
        result[RESULT_CHECKSUM] = _content_sha256(result)
        _io.write_json(self.result_path(key), result)

    def load_outcomes(self, key):
        """``{name: bool vector}`` of the per-example outcomes stored with result ``key``
        (``{}`` for a result stored without any), or ``None`` if there is no such result."""
        result = self.load_result(key)
        return None if result is None else unpack_outcomes(result.get("outcomes", {}))

    def load_arrays(self, key):
        """The arrays stored with result ``key`` (checked with the result), or ``None``."""
        if self.load_result(key) is None:
            return None
        path = self.arrays_path(key)
        return self._read_arrays(path) if path.is_file() else None

    @staticmethod
    def _read_arrays(path):
        with np.load(path) as npz:
            return {name: npz[name] for name in npz.files}


#: Payload entries :func:`training_payload` writes itself (``key`` may not name them).
_TRAINING_ENTRIES = ("family", "data", "epochs", "batch_size", "seed")


def training_payload(family, *, options, data, epochs, batch_size, seed, key=None):
    """What decides the weights of the zoo model ``family`` trained by :func:`trained_model`: its store payload.

    ``{"family", **options, "data", **key, "epochs", "batch_size", "seed"}``; its
    :func:`weights_key` is the store key.

    Args:
        family: a model family of :func:`edgebnn.zoo.get`.
        options: the builder's keyword arguments (``precision``, ``input_bits``, its own options).
        data: text naming the training data, e.g. ``"fashion_mnist/train"``.
        epochs, batch_size, seed: the training schedule (:func:`edgebnn.training.train`).
        key: more entries that decide the weights (a training-set size, a data seed); they may
            not name the entries written from the other arguments.

    Raises:
        ValueError: a bad schedule or ``data``, or ``key`` naming an entry written from the other arguments.
    """
    _validate.positive_int(epochs, "epochs")
    _validate.positive_int(batch_size, "batch_size")
    _validate.integer(seed, "seed", low=0)
    if not isinstance(data, str) or not data:
        raise ValueError(f"`data` must be a non-empty text naming the training data, got {data!r}.")
    key = dict(key or {})
    clash = sorted(set(key) & (set(options) | set(_TRAINING_ENTRIES)))
    if clash:
        raise ValueError(f"`key`: {clash} are written from the other arguments; give them there.")
    return {"family": family, **options, "data": data, **key, "epochs": epochs, "batch_size": batch_size,
            "seed": seed}


@dataclass(frozen=True)
class TrainedModel:
    """What :func:`trained_model` returns.

    Attributes:
        model: the zoo model, with its trained weights, compiled for classification (loss and accuracy).
        key: the store key of its weights (:func:`weights_key` of its :func:`training_payload`).
        stored: True if the weights came from the store, False if they were trained now.
    """

    model: object
    key: str
    stored: bool


def trained_model(family, *, options, data, train_data, epochs, batch_size, seed, cache, key=None, verbose=0,
                  on_wait=None):
    """The zoo model ``family`` trained with these settings: its weights from the store in ``cache``,
    or trained now with :func:`edgebnn.training.train` and stored there.

    For drivers that build their models in code rather than from a recipe. The store key is
    the :func:`weights_key` of the :func:`training_payload` of these settings: everything that
    decides the weights. Storing and the key's lock are :meth:`Store.trained_weights`'.

    Args:
        family, options, data, epochs, batch_size, seed, key: the settings (:func:`training_payload`).
        train_data: ``() -> (x, y)``, the training images and labels; called only when the
            weights are not stored.
        cache: the store folder (shared by every driver given the same folder).
        verbose: Keras' verbosity while training.
        on_wait: ``() -> None``, called if another process holds the key's lock.

    Returns:
        A :class:`TrainedModel`.

    Raises:
        ValueError: bad settings (:func:`training_payload`) or an unknown family.
        TypeError: ``train_data`` is not callable.
    """
    payload = training_payload(family, options=options, data=data, epochs=epochs, batch_size=batch_size, seed=seed,
                               key=key)
    if not callable(train_data):
        raise TypeError(f"`train_data` must be a callable returning (x, y), got {type(train_data).__name__}.")
    # TensorFlow loads only when a model is built: the store itself stays importable without it.
    from edgebnn import zoo  # noqa: PLC0415
    from edgebnn.training import compile_for_classification, train  # noqa: PLC0415

    model = zoo.get(family)(**options)

    def train_fn(m):
        x, y = train_data()
        train(m, x, y, epochs=epochs, batch_size=batch_size, seed=seed, verbose=verbose)

    stored = Store(None, cache=cache).trained_weights(model, payload, train_fn, on_wait=on_wait)
    if stored:  # compiled either way, as training leaves it: evaluate() works on both
        compile_for_classification(model)
    return TrainedModel(model=model, key=weights_key(payload), stored=stored)


class Batches:
    """The finished batches of one result while it is computed, so that a run stopped in the
    middle of an attack keeps them (``partial/KEY/CALL-BATCH.npy``).

    A result crafts its examples in one or more calls (one per eps, say), each of them batch
    by batch; call ``c``, batch ``b`` is stored under its indices and gets the seed
    :meth:`seed` ``(c, b)``, drawn from the result's key, so that a batch computed after a
    restart draws the same random numbers as in a run never stopped.
    """

    def __init__(self, folder, key):
        self.folder, self.key = Path(folder), key
        self._calls = 0

    def next_call(self):
        """The index of the result's next crafting call."""
        self._calls += 1
        return self._calls - 1

    def seed(self, call, index):
        """The 31-bit seed of batch ``index`` of call ``call``."""
        digest = hashlib.sha256(f"{self.key}/{call}/{index}".encode("ascii")).digest()
        return int.from_bytes(digest[:4], "big") >> 1

    def _path(self, call, index):
        return self.folder / f"{call:03d}-{index:06d}.npy"

    def load(self, call, index):
        """The stored array of batch ``index`` of call ``call``, or ``None`` (never stored, or unreadable)."""
        path = self._path(call, index)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # written atomically, so only a damaged disk gets here: compute it again
            return None

    def save(self, call, index, array):
        """Store the array of batch ``index`` of call ``call`` (atomically)."""
        with _io.atomic_path(self._path(call, index)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(array), allow_pickle=False)

    def count(self):
        """How many batches are stored."""
        return len(list(self.folder.glob("*.npy"))) if self.folder.is_dir() else 0

    def discard(self):
        """Remove the stored batches (the whole result is stored)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _first_line(error):
    """The first line of ``error``'s message (its type when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
