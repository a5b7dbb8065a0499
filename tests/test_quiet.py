"""edgebnn._quiet: known TensorFlow / converter noise is dropped, every other line is kept."""

import logging
import os

import pytest

from edgebnn import _quiet

AUTOGRAPH = ("AutoGraph could not transform <bound method QuantizedVariable.from_variable of <class "
             "'larq.quantized_variable.QuantizedVariable'>> and will run it as-is.\nPlease report this to the "
             "TensorFlow team. When filing the bug, set the verbosity to 10")
CONVERTER = "W0000 00:00:1795697763.715335   21859 tf_tfl_flatbuffer_helpers.cc:390] Ignored output_format.\n"
RETRACING = "5 out of the last 5 calls to <function f> triggered tf.function retracing."


@pytest.fixture
def logger():
    log = logging.getLogger("tensorflow")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep()
    log.addHandler(handler)
    try:
        yield log, records
    finally:
        log.removeHandler(handler)
        log.removeFilter(_quiet._FILTER)


def test_tensorflow_log_keeps_real_warnings(logger, monkeypatch):
    monkeypatch.delenv(_quiet.DEBUG_ENV, raising=False)
    log, records = logger
    _quiet.filter_tensorflow_logs()
    _quiet.filter_tensorflow_logs()
    assert log.filters.count(_quiet._FILTER) == 1
    log.warning(AUTOGRAPH)
    log.warning(RETRACING)
    log.warning("Compiled the loaded model, but the compiled metrics have yet to be built. ...")
    log.warning("Skipping variable loading for optimizer 'Adam', because it has 9 variables whereas the saved one has 1.")
    assert records == [RETRACING, "Skipping variable loading for optimizer 'Adam', because it has 9 variables "
                                  "whereas the saved one has 1."]


def test_debug_env_keeps_everything(logger, monkeypatch):
    monkeypatch.setenv(_quiet.DEBUG_ENV, "1")
    log, records = logger
    _quiet.filter_tensorflow_logs()
    log.warning(AUTOGRAPH)
    assert records == [AUTOGRAPH]


def test_converter_lines_on_file_descriptor_2_are_filtered(capfd, monkeypatch):
    monkeypatch.delenv(_quiet.DEBUG_ENV, raising=False)
    with _quiet.filtered_stderr():
        os.write(2, CONVERTER.encode())
        os.write(2, b"error: loc(fused[...]): 'tfl.conv_2d' op is neither a custom op nor a flex op\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    assert capfd.readouterr().err == "error: loc(fused[...]): 'tfl.conv_2d' op is neither a custom op nor a flex op\n"


def test_captured_lines_come_back_when_the_block_raises(capfd, monkeypatch):
    monkeypatch.delenv(_quiet.DEBUG_ENV, raising=False)
    with pytest.raises(RuntimeError):
        with _quiet.filtered_stderr():
            os.write(2, b"converter failed: reason\n")
            raise RuntimeError("conversion failed")
    assert capfd.readouterr().err == "converter failed: reason\n"


def test_cpp_info_lines_are_dropped_around_a_conversion(capfd, monkeypatch):
    monkeypatch.delenv(_quiet.DEBUG_ENV, raising=False)
    with _quiet.filtered_stderr():
        os.write(2, b"2026-11-26 15:09:23.793321: I external/org_tensorflow/tensorflow/cc/saved_model/reader.cc:83] "
                    b"Reading SavedModel from: /tmp/x\n")
        os.write(2, b"I0000 00:00:1795697763.715335   21859 flatbuffer_export.cc:1] Estimated count\n")
        os.write(2, b"2026-11-26 15:09:23.793321: W external/org_tensorflow/tensorflow/a.cc:1] a real warning\n")
    assert capfd.readouterr().err == ("2026-11-26 15:09:23.793321: W external/org_tensorflow/tensorflow/a.cc:1] "
                                      "a real warning\n")
