"""`import edgebnn` is light and guarantees Keras 2 for TensorFlow."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python(code, **env):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=300)


def _without_legacy_env():
    return {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}


def test_import_is_light_and_sets_the_environment():
    env = _without_legacy_env()
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys, os, edgebnn; "
         "print(os.environ['TF_USE_LEGACY_KERAS'], 'tensorflow' in sys.modules, 'keras' in sys.modules)"],
        capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO)}, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "False", "False"]


def test_tensorflow_after_edgebnn_uses_keras_2():
    result = _python("import edgebnn, tensorflow as tf; print(tf.keras.__name__)", TF_USE_LEGACY_KERAS=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


def test_tensorflow_imported_first_with_keras_3_fails_clearly():
    result = subprocess.run(
        [sys.executable, "-c", "import tensorflow, edgebnn"],
        capture_output=True, text=True, timeout=300,
        env={**_without_legacy_env(), "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode != 0
    assert "TensorFlow was imported with Keras 3 before edgebnn" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("value", ["0", "false"])
def test_explicit_keras_3_request_is_refused(value):
    result = _python("import edgebnn", TF_USE_LEGACY_KERAS=value)
    assert result.returncode != 0 and "TF_USE_LEGACY_KERAS is set to" in result.stderr
