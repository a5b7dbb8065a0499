"""edgebnn: discretized neural networks, from training to attacks to ARM deployment.

Importing ``edgebnn`` is light: it imports neither TensorFlow nor Keras, so the
on-device runner (:mod:`edgebnn.deploy.device`) works with only NumPy installed.
It does make sure that TensorFlow, when a submodule imports it, uses Keras 2
(``tf_keras``), which Larq and Larq Compute Engine require.
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

__all__ = ["EdgebnnError", "__version__"]
