"""Argument checks shared by every entry point (TensorFlow-free, like :mod:`edgebnn._io`).

Each check returns the value (converted to a plain Python ``int`` / ``float`` where
that is the point) or raises with a one-line message that names the argument, the
allowed values and what was received::

    steps = positive_int(steps, "steps")          # `steps` must be a positive int, got 0.
    rate = number(rate, "rate", low=0, high=1, high_open=True)  # ... a number in [0, 1) ...

Python's ``bool`` is an ``int``, so every numeric check rejects ``True`` / ``False``
explicitly; NumPy integers and floats are accepted (step counts and budgets are
often computed with NumPy).
"""

import math
import numbers


def is_int(value):
    """True for a Python or NumPy integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """True for a Python or NumPy real number (int or float) that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounds(low, high, low_open, high_open):
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _within(value, low, high, low_open, high_open):
    if low is not None and (value <= low if low_open else value < low):
        return False
    return high is None or (value < high if high_open else value <= high)


def integer(value, name, *, low=None, high=None, allow_none=False, prefix=""):
    """Return ``value`` as an ``int`` if it is an integer in ``[low, high]``.

    Args:
        value: the argument received.
        name: the argument's name, quoted in the message.
        low, high: inclusive bounds (``None``: unbounded).
        allow_none: accept (and return) ``None``.
        prefix: text put before the message (e.g. the model family).

    Raises:
        ValueError: ``value`` is not such an int (a bool never is).
    """
    if value is None and allow_none:
        return None
    if not (is_int(value) and _within(value, low, high, False, False)):
        if low == 1 and high is None:
            what = "a positive int"
        else:
            what = "an int" + _bounds(low, high, False, False)
        raise ValueError(f"{prefix}`{name}` must be {what}{' or None' if allow_none else ''}, got {value!r}.")
    return int(value)


def positive_int(value, name, *, allow_none=False, prefix=""):
    """Return ``value`` as an ``int >= 1`` (Python or NumPy int, not a bool); else raise ``ValueError`` naming ``name``."""
    return integer(value, name, low=1, allow_none=allow_none, prefix=prefix)


def number(value, name, *, low=None, high=None, low_open=False, high_open=False, finite=True,
           allow_none=False, type_error=False, what=None, prefix=""):
    """Return ``value`` as a ``float`` if it is a real number within the bounds.

    Args:
        value: the argument received.
        name: the argument's name, quoted in the message.
        low, high: bounds (``None``: unbounded); ``low_open`` / ``high_open`` exclude them.
        finite: reject NaN and infinities.
        allow_none: accept (and return) ``None``.
        type_error: raise ``TypeError`` (not ``ValueError``) when ``value`` is not a number.
        what: the description in the message (default: built from the bounds, e.g.
            ``"a number in [0, 1)"`` or ``"a finite number > 0"``).
        prefix: text put before the message.

    Raises:
        TypeError: ``value`` is not a number and ``type_error`` is set.
        ValueError: otherwise, when ``value`` is not an allowed number.
    """
    if value is None and allow_none:
        return None
    if what is None:
        both = low is not None and high is not None
        what = ("a finite number" if finite and not both else "a number") + _bounds(low, high, low_open, high_open)
    message = f"{prefix}`{name}` must be {what}{' or None' if allow_none else ''}, got {value!r}."
    if not is_number(value):
        raise (TypeError if type_error else ValueError)(message)
    if (finite and not math.isfinite(value)) or math.isnan(value) or not _within(value, low, high, low_open, high_open):
        raise ValueError(message)
    return float(value)


def nonnegative(value, name):
    """Return ``value`` as a ``float`` if it is a finite number ``>= 0``.

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is negative, NaN or infinite.
    """
    return number(value, name, low=0, type_error=True)


def boolean(value, name, *, prefix=""):
    """Return ``value`` if it is a ``bool`` (not merely truthy); else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{prefix}`{name}` must be a bool, got {value!r}.")
    return value


def seed(value, name="seed"):
    """Return ``value`` (as an ``int``) if it is an integer seed or ``None``; else raise ``TypeError``."""
    if value is None:
        return None
    if not is_int(value):
        raise TypeError(f"`{name}` must be an int or None, got {value!r}.")
    return int(value)


def one_of(value, name, allowed, *, prefix=""):
    """Return ``value`` if it is one of ``allowed`` (a bool only if a bool is listed); else raise ``ValueError``."""
    try:
        found = value in allowed
    except TypeError:  # an unhashable value against a set / dict
        found = False
    if found and isinstance(value, bool):
        found = any(v is value for v in allowed)
    if not found:
        raise ValueError(f"{prefix}`{name}` must be one of {list(allowed)}, got {value!r}.")
    return value


__all__ = ["boolean", "integer", "is_int", "is_number", "nonnegative", "number", "one_of", "positive_int", "seed"]
