"""Atomic writes (edgebnn._io) honour the umask, and edgebnn.load_model works after `import edgebnn` alone."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgebnn import _io

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_files_get_the_mode_open_would_give(tmp_path, umask_027):
    _io.write_json(tmp_path / "a.json", {"x": 1})
    with open(tmp_path / "plain.json", "w") as f:
        f.write("{}")
    assert _mode(tmp_path / "a.json") == _mode(tmp_path / "plain.json") == 0o640
    with _io.atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"1")
        assert _mode(tmp) == 0o600  # private while it is written
    assert _mode(tmp_path / "b.bin") == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "plain.json"]


def test_bundle_folders_get_the_mode_mkdir_would_give(tmp_path, umask_027):
    from edgebnn.deploy.bundle import _write_atomically

    _write_atomically(tmp_path / "bundle", {"manifest.json": b"{}"})
    (tmp_path / "plain").mkdir()
    assert _mode(tmp_path / "bundle") == _mode(tmp_path / "plain") == 0o750
    assert _mode(tmp_path / "bundle" / "manifest.json") == 0o640


_LOAD = """
import sys
import edgebnn
assert "tensorflow" not in sys.modules, "import edgebnn imported TensorFlow"
model = edgebnn.load_model(sys.argv[1])
assert "edgebnn.zoo" not in sys.modules
import numpy as np
print(model.name, np.asarray(model(np.zeros((1, 28, 28, 1), np.float32))).shape)
"""


@pytest.mark.slow  # a fresh interpreter that imports TensorFlow
def test_load_model_after_import_edgebnn_alone(tmp_path):
    from edgebnn import zoo

    model = zoo.get("guan_lenet")(precision="stochastic_binary", input_bits=2, mc_dropout=True)
    model.save(tmp_path / "model.keras")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "model.keras")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [model.name, "(1,", "10)"]


def test_load_model_validates_the_path(tmp_path):
    import edgebnn

    with pytest.raises(FileNotFoundError, match="`path`: no model file at"):
        edgebnn.load_model(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match=r"`path` must be a .keras or .h5 file, got"):
        edgebnn.load_model(tmp_path / "model.tflite")
    with pytest.raises(TypeError, match="`compile` must be a bool"):
        edgebnn.load_model(tmp_path / "missing.keras", compile="yes")
