"""edgebnn: discretized neural networks, from training to attacks to ARM deployment.

Importing ``edgebnn`` is light: it imports neither TensorFlow nor Keras, so the
on-device runner (:mod:`edgebnn.deploy.device`) works with only NumPy installed.
It does make sure that TensorFlow, when a submodule imports it, uses Keras 2
(``tf_keras``), which Larq and Larq Compute Engine require.

Load a saved edgebnn model with :func:`load_model` (it imports TensorFlow and
registers edgebnn's and Larq's layers and quantizers first)::

    import edgebnn
    model = edgebnn.load_model("runs/quickstart/model.keras")
"""

import os
import sys

__version__ = "0.1.0"

_LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"


class EdgebnnError(Exception):
    """Base class of the errors edgebnn raises for bad input, data or options."""


def _ensure_legacy_keras():
    """Set ``TF_USE_LEGACY_KERAS=1``, or fail if TensorFlow already chose Keras 3."""
    value = os.environ.get(_LEGACY_KERAS_ENV)
    if value is not None and value.strip().lower() not in ("1", "true"):
        raise ImportError(
            f"edgebnn needs Keras 2 (tf_keras): {_LEGACY_KERAS_ENV} is set to {value!r}; "
            f"unset it or set it to 1 before importing edgebnn."
        )
    os.environ[_LEGACY_KERAS_ENV] = "1"
    if "tensorflow" not in sys.modules:
        return
    # TensorFlow was imported first. It decided at its own import time whether
    # `tensorflow.keras` routes to Keras 2 (tf_keras) or Keras 3; that cannot be undone.
    tf = sys.modules["tensorflow"]
    if not getattr(tf, "_tf_uses_legacy_keras", True):
        raise ImportError(
            f"TensorFlow was imported with Keras 3 before edgebnn; Larq and Larq Compute "
            f"Engine need Keras 2. Set {_LEGACY_KERAS_ENV}=1 in the environment before "
            f"starting Python, or import edgebnn before tensorflow."
        )


_ensure_legacy_keras()

#: Modules whose import registers the Keras-serializable classes a saved edgebnn model
#: may name: layers, quantizers (used by name from Larq layers) and the deploy rewrites.
_SERIALIZABLE_MODULES = ("larq", "edgebnn.layers", "edgebnn.quantizers", "edgebnn.deploy.rewrite",
                         "edgebnn.deploy.convert")


def load_model(path, *, compile=False):
    """Load a Keras model saved by edgebnn (``model.keras``, or an ``.h5`` file).

    ``tf.keras.models.load_model`` alone fails on these models unless the modules that
    register edgebnn's layers and quantizers were imported first; this imports them
    (and TensorFlow) on demand, so ``import edgebnn`` itself stays light.

    Args:
        path: the saved model file.
        compile: also restore the optimizer and loss (default ``False``: inference,
            attacks and conversion need none).

    Returns:
        The ``tf.keras.Model``.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: ``path`` is not a ``.keras`` / ``.h5`` file, or Keras cannot read it.
        TypeError: ``compile`` is not a bool.
    """
    import importlib  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from edgebnn import _validate  # noqa: PLC0415

    path = Path(path)
    _validate.boolean(compile, "compile")
    if path.suffix not in (".keras", ".h5"):
        raise ValueError(f"`path` must be a .keras or .h5 file, got {str(path)!r}.")
    if not path.is_file():
        raise FileNotFoundError(f"`path`: no model file at {str(path)!r}.")
    for module in _SERIALIZABLE_MODULES:
        importlib.import_module(module)
    import tensorflow as tf  # noqa: PLC0415

    try:
        return tf.keras.models.load_model(path, compile=compile)
    except (OSError, ValueError, KeyError, EOFError) as e:  # h5py, zipfile and Keras' errors on a damaged file
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"`path`: cannot load a Keras model from {str(path)!r}: {detail}") from e


__all__ = ["EdgebnnError", "__version__", "load_model"]
