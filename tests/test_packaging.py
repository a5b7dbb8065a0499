"""The wheel: built from a copy of the checkout, installed into a fresh virtualenv, it lists
and validates every recipe of ``recipes/`` (subfolders included) from an unrelated folder.

The fresh environment gets the package from the wheel only; its dependencies
(TensorFlow, Larq, ...) come from the running interpreter's site-packages through a
``.pth`` line, so nothing is downloaded. Building and validating takes a while: ``slow``.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

_CHECK = """
import json, sys
import edgebnn
from edgebnn import recipes
from edgebnn.recipes.config import load
found = recipes.available()
studies = {name: len(load(path).cells) for name, path in found.items()}
print(json.dumps({"edgebnn": edgebnn.__file__, "dirs": [str(d) for d in recipes.recipe_dirs()], "cells": studies}))
"""


def _source_copy(target):
    """The files a build sees: the checkout without git data, runs or caches."""
    shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(
        ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "*.tflite"))
    return target


def test_wheel_in_a_fresh_environment_ships_every_recipe(tmp_path):
    source = _source_copy(tmp_path / "source")
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    [wheel] = wheels.glob("edgebnn-*.whl")

    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies, not edgebnn: a plain path line does not run the editable install's .pth hook
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --ignore-installed: the dependencies' folder may hold this checkout's editable install, which pip
    # would otherwise take as "already satisfied" (and which is not importable through deps.pth)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "--ignore-installed", str(wheel)], capture_output=True, text=True,
                             timeout=600)
    if "no such option: --python" in install.stderr:  # pip < 22.3: install with a target folder
        install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                                  purelib, str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEBNN_RECIPES_DIR")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    listed = subprocess.run([str(python), "-m", "edgebnn.recipes", "list"], capture_output=True, text=True,
                            env=env, cwd=elsewhere, timeout=600)
    assert listed.returncode == 0, listed.stderr[-2000:]
    expected = sorted(p.relative_to(REPO / "recipes").with_suffix("").as_posix()
                      for p in (REPO / "recipes").rglob("*.toml"))
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == expected
    assert "INVALID" not in listed.stdout

    checked = subprocess.run([str(python), "-c", _CHECK], capture_output=True, text=True, env=env, cwd=elsewhere,
                             timeout=600)
    assert checked.returncode == 0, checked.stderr[-2000:]
    result = json.loads(checked.stdout.splitlines()[-1])
    assert result["edgebnn"].startswith(purelib)  # the wheel's copy, not the checkout
    assert result["dirs"] == [str(Path(purelib) / "edgebnn" / "recipes" / "shipped")]
    assert sorted(result["cells"]) == expected and all(n >= 1 for n in result["cells"].values())
