"""Ctrl-C and SIGTERM stop a run at the next safe point: it keeps what finished, writes its
report with status ``interrupted`` and exits.

A signal only marks the run as stopping; the run stops at the next :func:`check`: between
two batches of an attack or an evaluation, two steps of an attack (:func:`arrived`), two
training steps, two results. Raising the
``KeyboardInterrupt`` at whatever bytecode runs when the signal arrives (Python's default
for Ctrl-C) can land inside TensorFlow's own bookkeeping and leave it broken, so that the
run ends with an unrelated error instead of its report. A second signal stops at once.
"""

import os
import select
import signal
from contextlib import contextmanager

#: Signals that stop a run, and how a report names them.
SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
#: Exit statuses of a run stopped by one of :data:`SIGNALS`: 128 + the signal's number, as a shell reports it.
STOP_STATUSES = frozenset(128 + int(number) for number in SIGNALS)
#: Bytes read from the wakeup pipe at once (one per signal that arrived).
_PIPE_READ = 64

_pending = []
#: The read end of the pipe Python's C-level signal handler writes each signal's number to.
_wakeup = []


class Interrupted(KeyboardInterrupt):
    """A run stopped by signal ``signum``; ``cause`` names it (``"Ctrl-C"``, ``"SIGTERM"``)."""

    def __init__(self, signum):
        self.signum = signal.Signals(signum)
        self.cause = SIGNALS.get(self.signum, self.signum.name)
        super().__init__(self.cause)


def cause(error):
    """What interrupted a run: the signal an :class:`Interrupted` names, else ``"Ctrl-C"``."""
    return getattr(error, "cause", "Ctrl-C")


def exit_status(error):
    """The shell's status for a process stopped by ``error``'s signal: 128 + its number."""
    return 128 + int(getattr(error, "signum", signal.SIGINT))


def check():
    """Raise :class:`Interrupted` if a signal arrived since the last check (a safe point to stop)."""
    if _pending:
        signum = _pending.pop()
        _pending.clear()
        raise Interrupted(signum)


def arrived():
    """Raise :class:`Interrupted` if a signal arrived since the run began; safe from any thread.

    Python runs a signal's handler in the main thread between two bytecodes, so not while the
    main thread waits for a TensorFlow graph (a long attack batch); the interpreter's C-level
    handler writes the signal's number to the wakeup pipe at once, which this reads without
    waiting. The main thread's next :func:`check` stops the run as usual.
    """
    if _pending:
        raise Interrupted(_pending[-1])
    if _wakeup and select.select(_wakeup, [], [], 0)[0]:
        numbers = [n for n in os.read(_wakeup[0], _PIPE_READ) if n in SIGNALS]
        if numbers:
            raise Interrupted(numbers[-1])


def _mark(signum, frame):
    if _pending:  # the second signal: stop now
        _pending.clear()
        raise Interrupted(signum)
    _pending.append(signum)


@contextmanager
def signals_interrupt():
    """Within the block, :data:`SIGNALS` stop the run at its next :func:`check` (the previous
    handlers are put back after)."""
    _pending.clear()
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    _wakeup[:] = [read]
    previous = {number: signal.signal(number, _mark) for number in SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(previous_fd)
        _wakeup.clear()
        os.close(read)
        os.close(write)
        _pending.clear()
