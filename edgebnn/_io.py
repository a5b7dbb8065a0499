"""Atomic file writes: an artifact is either complete or absent, never half-written.

Files and folders get the permissions any other writer would give them (``0666`` /
``0777`` minus the process umask), not the private ``0600`` / ``0700`` of the
temporary files they are built in. TensorFlow-free, so the on-device runner can use it.
"""

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


#: Permissions of a new file / folder before the umask, as ``open()`` and ``mkdir()`` use them.
FILE_MODE, DIR_MODE = 0o666, 0o777
#: Errors of a full disk (or quota): reported naming the file that could not be written.
FULL = (errno.ENOSPC, errno.EDQUOT)


def umask():
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path, *, folder=False):
    """Give ``path`` the mode a plain ``open()`` (or ``mkdir()`` with ``folder``) would have given it."""
    os.chmod(path, (DIR_MODE if folder else FILE_MODE) & ~umask())


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file is removed whatever happens; a full disk is reported naming ``path``.

    The temporary file keeps all of ``path``'s suffixes (Keras picks the format from them:
    ``.weights.h5`` is its weights format, a bare ``.h5`` the legacy one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        publish_mode(tmp)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno not in FULL:
            raise
        raise OSError(e.errno, f"{os.strerror(e.errno)}: cannot write {path} (its partial file was removed)") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path, data):
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text):
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    """Atomically write ``obj`` as indented JSON to ``path``."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
