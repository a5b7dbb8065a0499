"""Known noise of TensorFlow and the TFLite / LCE converters, filtered line by line.

Only lines listed in :data:`NOISE` (and, around a conversion, C++ INFO lines) are
dropped; every other warning stays visible (a retracing warning, for example, points
at a real cost and is kept). ``EDGEBNN_DEBUG=1`` keeps everything. TensorFlow-free.

- AutoGraph's "could not transform <...> and will run it as-is. Please report this
  to the TensorFlow team": raised for Larq's ``QuantizedVariable`` methods and Keras
  internals that AutoGraph cannot parse; they run correctly as plain Python.
- The MLIR converter's C++ log: its INFO lines (:data:`CPP_INFO`: reading the
  SavedModel, "Estimated count of arithmetic ops", ...) and its warnings "Ignored
  output_format" / "Ignored drop_control_dependency", absl's "All log messages before
  absl::InitializeLog()", written on every conversion: they describe the converter's
  internals, not the model.
- The converters export the model as a SavedModel ("Assets written to"), and Keras
  then warns "Compiled the loaded model, but the compiled metrics have yet to be
  built" for a model that was, by design, never compiled.
"""

import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager

DEBUG_ENV = "EDGEBNN_DEBUG"

#: Patterns of log records / lines that are noise for edgebnn's users.
NOISE = tuple(re.compile(p) for p in (
    r"AutoGraph could not transform .* and will run it as-is",
    r"Please report this to the TensorFlow team",
    r"Cause: .*(could not get source code|mangled names|unsupported|Unable to locate the source code)",
    r"To silence this warning, decorate the function with @tf\.autograph\.experimental\.do_not_convert",
    r"tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored (output_format|drop_control_dependency)",
    r"flatbuffer_export\.cc:\d+\] Estimated count of arithmetic ops",
    r"Assets written to: ",
    r"Compiled the loaded model, but the compiled metrics have yet to be built",
    r"TF-TRT Warning: Could not find TensorRT",
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags",
))
#: A C++ log line at INFO level, in TensorFlow's (``2026-01-01 12:00:00.000: I file.cc:1] ...``) or absl's
#: (``I0000 00:00:1700000000.000 123 file.cc:1] ...``) format: the converters' progress notes.
CPP_INFO = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: I |I\d{4} \d\d:\d\d:[\d.]+ )")


def is_noise(text):
    """Whether ``text`` (a log message or an output line) matches :data:`NOISE`."""
    return any(p.search(text) for p in NOISE)


class NoiseFilter(logging.Filter):
    """Drops log records whose message is :func:`is_noise`."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record with bad %-arguments: let its handler report it
            return True
        return not is_noise(message)


_FILTER = NoiseFilter()


def filter_tensorflow_logs():
    """Attach :class:`NoiseFilter` to the ``tensorflow`` logger (idempotent; no-op with ``EDGEBNN_DEBUG=1``)."""
    if os.environ.get(DEBUG_ENV) == "1":
        return
    logger = logging.getLogger("tensorflow")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


@contextmanager
def filtered_stderr():
    """Capture file descriptor 2 (where C++ code logs) in the block, then write back
    the lines that are neither :func:`is_noise` nor C++ INFO lines (:data:`CPP_INFO`);
    warnings and errors stay. A no-op with ``EDGEBNN_DEBUG=1``."""
    if os.environ.get(DEBUG_ENV) == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
                    if line.strip() and not is_noise(line) and not CPP_INFO.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
