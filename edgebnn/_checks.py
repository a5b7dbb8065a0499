"""Argument checks shared across the pipeline (TensorFlow-free, like :mod:`edgebnn._io`)."""


def positive_int(value, name, *, prefix=""):
    """Return ``value`` if it is a Python ``int >= 1`` (not a bool); else raise naming ``name``.

    Args:
        value: the argument received.
        name: the argument's name, quoted in the message.
        prefix: text put before the message (e.g. the model family).

    Raises:
        ValueError: ``value`` is not a positive int.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{prefix}`{name}` must be a positive int, got {value!r}.")
    return value
