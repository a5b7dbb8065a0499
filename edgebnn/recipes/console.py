"""Console output of a study: edgebnn's own lines, progress bars and time estimates.

TensorFlow's AutoGraph, absl and Python warnings are silenced (they describe
TensorFlow's internals, not the study); ``EDGEBNN_DEBUG=1`` keeps them.
"""

import logging
import os
import sys
import time
import warnings

#: Width of the progress bar in characters.
_BAR = 24
#: Minimum seconds between two progress updates of one loop.
_PROGRESS_INTERVAL = 0.5


def quiet_tensorflow():
    """Silence TensorFlow's Python-side logging, AutoGraph and absl warnings."""
    if os.environ.get("EDGEBNN_DEBUG") == "1":
        return
    import tensorflow as tf  # noqa: PLC0415

    tf.get_logger().setLevel(logging.ERROR)
    tf.autograph.set_verbosity(0)
    try:
        import absl.logging  # noqa: PLC0415

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to silence
        pass
    for module in ("tensorflow", "tf_keras", "keras", "larq", "absl"):
        warnings.filterwarnings("ignore", module=module)


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
