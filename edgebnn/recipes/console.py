"""Console output of a study: edgebnn's own lines, progress bars and time estimates.

Known noise of TensorFlow (AutoGraph's "report this to the TensorFlow team" notes on
Larq internals, the converters' C++ log lines; see :mod:`edgebnn._quiet`) is filtered
out; other TensorFlow warnings stay visible. ``EDGEBNN_DEBUG=1`` keeps everything.
"""

import os
import sys
import time

#: Width of the progress bar in characters.
_BAR = 24
#: Minimum seconds between two progress updates of one loop.
_PROGRESS_INTERVAL = 0.5


def quiet_tensorflow():
    """Filter TensorFlow's known noise out of its log (:func:`edgebnn._quiet.filter_tensorflow_logs`);
    AutoGraph's own verbosity goes to 0 (its notes are about TensorFlow's internals)."""
    if os.environ.get("EDGEBNN_DEBUG") == "1":
        return
    import tensorflow as tf  # noqa: PLC0415

    from edgebnn import _quiet  # noqa: PLC0415

    _quiet.filter_tensorflow_logs()
    tf.autograph.set_verbosity(0)


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Console:
    """Prints ``[edgebnn]`` lines with elapsed and estimated remaining time.

    The estimate is the remaining planned work (rough forward/backward passes) times
    the seconds per unit of work measured so far in this run.
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self.total_work = 0.0
        self.done_work = 0.0
        self.work_seconds = 0.0
        self._last_progress = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def elapsed(self):
        return time.perf_counter() - self.start

    def remaining(self):
        if self.done_work <= 0 or self.work_seconds <= 0:
            return None
        return max(self.total_work - self.done_work, 0.0) * self.work_seconds / self.done_work

    def line(self, message):
        left = self.remaining()
        eta = "" if left is None else f", ~{_clock(left)} left"
        self._clear()
        print(f"[edgebnn {_clock(self.elapsed())}{eta}] {message}", file=self.stream, flush=True)

    def note(self, message):
        self._clear()
        print(f"[edgebnn] {message}", file=self.stream, flush=True)

    def done(self, work, seconds):
        """Account ``work`` finished in ``seconds`` (for the estimate)."""
        self.done_work += work
        self.work_seconds += seconds

    def skip(self, work):
        """Work found in the cache is no longer remaining."""
        self.total_work -= work

    def progress(self, label, done, total):
        """A progress bar for a long loop (rewritten in place on a terminal)."""
        now = time.perf_counter()
        if done < total and now - self._last_progress < _PROGRESS_INTERVAL:
            return
        self._last_progress = now
        if not self._tty:
            return
        filled = int(_BAR * done / max(total, 1))
        bar = "#" * filled + "." * (_BAR - filled)
        print(f"\r  {label} [{bar}] {done}/{total}", end="", file=self.stream, flush=True)
        self._open = True

    def _clear(self):
        if self._tty and getattr(self, "_open", False):
            print("\r" + " " * 100 + "\r", end="", file=self.stream, flush=True)
            self._open = False
