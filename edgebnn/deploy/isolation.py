"""Run a piece of work in a forked child process with a memory cap and a time limit.

The device runner (:mod:`edgebnn.deploy.device`) runs its TFLite interpreter this way, so a
model that crashes the interpreter, allocates without bound or hangs ends as one
:class:`InterpreterFailure` line, never as a signal or a machine out of memory. Like the
runner, this module imports neither TensorFlow nor Keras.
"""

import faulthandler
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Default memory the interpreter process may add to the runner's own (``--memory-mb``):
#: the model's tensors and the runtime's allocations; a Raspberry Pi 4 or 5 has 2-8 GiB.
DEFAULT_MEMORY_MB = 2048
#: Default time limit of the interpreter process, in seconds (``--timeout``).
DEFAULT_TIMEOUT_S = 600
#: Bytes in a MiB.
MIB = 2**20
#: How often the runner checks on the interpreter process, in seconds.
_POLL_S = 0.01
#: Marks the child's own error line in its log (the runtime's messages are also there).
_CHILD_ERROR = "edgebnn-child-error: "
#: Exit status of a child whose work failed (the runner's own status for a failure to run).
_CHILD_FAILED = 2


class InterpreterFailure(RuntimeError):
    """The interpreter failed, crashed, ran out of its memory cap or time limit (one-line message)."""


def one_line(text):
    """``text`` with every run of white space (newlines included) made one space."""
    return " ".join(str(text).split())


def _address_space():
    """This process's virtual memory size in bytes (``None`` where ``/proc`` does not tell)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _child(work, result, log, memory_bytes):
    """In the forked child: cap memory, run ``work()``, save its arrays; never returns."""
    code = _CHILD_FAILED
    try:
        os.dup2(log.fileno(), 1)  # the runtime's own messages go to the log; the parent reports from it
        os.dup2(log.fileno(), 2)
        faulthandler.disable()  # a crash is the parent's to report, in one line
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not write a core file on the device
        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        np.savez(result, **work())
        result.flush()
        code = 0
    except MemoryError:
        os.write(2, f"\n{_CHILD_ERROR}out of memory\n".encode())
    except BaseException as e:  # noqa: BLE001 - every failure becomes the parent's one line
        os.write(2, f"\n{_CHILD_ERROR}{type(e).__name__}: {one_line(e)}\n".encode(errors="replace"))
    finally:
        os._exit(code)


def _wait(pid, timeout):
    """``(wait status, rusage)`` of child ``pid``, killing it after ``timeout`` seconds (``status`` None)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return status, usage
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                return None, os.wait4(pid, 0)[2]
            time.sleep(_POLL_S)
    except BaseException:  # Ctrl-C: never leave the interpreter running
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        raise


def _peak_mb(usage):
    """Peak resident memory of a child from its rusage (KiB on Linux, bytes on macOS), in MiB."""
    return usage.ru_maxrss / (MIB if sys.platform == "darwin" else 1024)


def run_isolated(work, *, what, memory_mb=DEFAULT_MEMORY_MB, timeout=DEFAULT_TIMEOUT_S):
    """Run ``work()`` in a forked child process with a memory cap and a time limit.

    The child's address space may grow by ``memory_mb`` MiB beyond this process's
    (``RLIMIT_AS``; where the size of this process is unknown, no cap is set), core
    files are off, and its standard output and error go to a log, so that whatever the
    interpreter does ends here as a value or one :class:`InterpreterFailure`.

    Args:
        work: a function returning a dict of NumPy arrays (run in the child).
        what: the name of the interpreter, for messages.
        memory_mb: the cap, in MiB.
        timeout: seconds before the child is killed.

    Returns:
        ``(arrays, peak resident MiB of the child)``.

    Raises:
        InterpreterFailure: the child raised, crashed with a signal, ran out of memory or time.
    """
    own = _address_space()
    memory_bytes = None if own is None else own + memory_mb * MIB
    with tempfile.TemporaryFile() as result, tempfile.TemporaryFile() as log:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(work, result, log, memory_bytes)
        status, usage = _wait(pid, timeout)
        peak = _peak_mb(usage)
        log.seek(0)
        lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
        own_error = [line[len(_CHILD_ERROR):] for line in lines if line.startswith(_CHILD_ERROR)]
        runtime_lines = [line for line in lines if not line.startswith(_CHILD_ERROR) and not line.startswith("INFO:")]
        said = f" (it said: {runtime_lines[-1]})" if runtime_lines else ""
        memory = f"peak {peak:.0f} MiB, cap {memory_mb} MiB above the runner's own (--memory-mb)"
        if status is None:
            raise InterpreterFailure(f"the {what} interpreter did not finish within {timeout:g} s (--timeout) and "
                                     f"was stopped{said}")
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            raise InterpreterFailure(f"the {what} interpreter crashed with {name} ({memory}){said}")
        if os.WEXITSTATUS(status) != 0:
            reason = own_error[-1] if own_error else f"exit status {os.WEXITSTATUS(status)}"
            if reason == "out of memory" or reason.startswith("MemoryError"):
                raise InterpreterFailure(f"the {what} interpreter ran out of memory ({memory}){said}")
            raise InterpreterFailure(f"the {what} interpreter failed: {reason}")
        result.seek(0)
        with np.load(result, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}, peak
