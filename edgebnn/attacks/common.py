"""Argument validation and helpers shared by every attack module."""

import numpy as np

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf

#: Norms accepted by the attacks: L-infinity (``np.inf`` or ``"inf"``) and L2.
NORMS = {np.inf: np.inf, "inf": np.inf, "linf": np.inf, 2: 2, "2": 2, "l2": 2}


def validate_norm(norm, *, allowed=(np.inf, 2)):
    """Return ``norm`` as ``np.inf`` or ``2``; raise naming the allowed values otherwise."""
    key = norm.lower() if isinstance(norm, str) else norm
    try:
        resolved = NORMS[key]
    except (KeyError, TypeError):
        raise ValueError(f"`norm` must be one of {list(allowed)} (or 'inf' / 'l2'), got {norm!r}.") from None
    if resolved not in allowed:
        raise ValueError(f"`norm` must be one of {list(allowed)}, got {norm!r}.")
    return resolved


def validate_attack(*, eps, clip_min, clip_max, y, targeted):
    """The checks CleverHans TF2 leaves out: ``eps >= 0``, ``clip_min <= clip_max``, ``targeted`` needs ``y``."""
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"`eps` must be a finite number >= 0, got {eps!r}.")
    if clip_min is not None and clip_max is not None and clip_min > clip_max:
        raise ValueError(f"`clip_min` ({clip_min}) must be <= `clip_max` ({clip_max}).")
    if targeted and y is None:
        raise ValueError("`targeted=True` needs `y`, the target labels.")


def validate_steps(steps, step_size, eps):
    """Check an iterative attack's ``steps`` and ``step_size``; default step size ``2.5 * eps / steps``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive int, got {steps!r}.")
    if step_size is None:
        return 2.5 * eps / steps  # Madry et al. 2018's rule of thumb
    if not np.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"`step_size` must be a finite number > 0, got {step_size!r}.")
    return step_size


def check_inputs(x, *, clip_min, clip_max):
    """Convert ``x`` to float32 and reject NaN / infinite / out-of-clip-range values."""
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    values = x.numpy() if tf.executing_eagerly() else None
    if values is not None:
        if not np.all(np.isfinite(values)):
            raise ValueError("`x` contains NaN or infinite values.")
        lo, hi = values.min(initial=np.inf), values.max(initial=-np.inf)
        if (clip_min is not None and lo < clip_min) or (clip_max is not None and hi > clip_max):
            raise ValueError(f"`x` has values in [{lo}, {hi}], outside the clip range [{clip_min}, {clip_max}].")
    return x
