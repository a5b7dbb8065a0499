"""The shared argument checks: accepted values come back converted, rejected ones name the argument."""

import numpy as np
import pytest

from edgebnn import _validate


def test_positive_int_accepts_numpy_ints_and_rejects_bools():
    assert _validate.positive_int(np.int64(3), "steps") == 3 and type(_validate.positive_int(np.int32(3), "s")) is int
    assert _validate.positive_int(None, "limit", allow_none=True) is None
    for bad in (0, -1, True, 2.0, "3", None):
        with pytest.raises(ValueError, match=r"^`steps` must be a positive int, got "):
            _validate.positive_int(bad, "steps")
    with pytest.raises(ValueError, match=r"^lenet: `n` must be an int >= 2, got 1\.$"):
        _validate.integer(1, "n", low=2, prefix="lenet: ")
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 10\], got 11"):
        _validate.integer(11, "k", low=1, high=10)


def test_number_bounds_and_error_types():
    assert _validate.number(np.float32(0.5), "rate", low=0, high=1, high_open=True) == 0.5
    with pytest.raises(ValueError, match=r"`rate` must be a number in \[0, 1\), got 1"):
        _validate.number(1, "rate", low=0, high=1, high_open=True)
    with pytest.raises(ValueError, match=r"`p` must be a number in \(0, 1\], got 0"):
        _validate.number(0, "p", low=0, high=1, low_open=True)
    with pytest.raises(ValueError, match=r"`lr` must be a finite number > 0, got inf"):
        _validate.number(float("inf"), "lr", low=0, low_open=True)
    with pytest.raises(ValueError, match="`lr`"):
        _validate.number(float("nan"), "lr", low=0, low_open=True)
    with pytest.raises(TypeError, match="`rate`"):
        _validate.number(True, "rate", low=0, high=1, type_error=True)
    with pytest.raises(ValueError, match="`rate`"):
        _validate.number("0.1", "rate", low=0, high=1)
    assert _validate.number(float("-inf"), "v", finite=False) == float("-inf")
    assert _validate.nonnegative(np.int64(0), "eps") == 0.0
    with pytest.raises(TypeError, match=r"`eps` must be a finite number >= 0"):
        _validate.nonnegative(None, "eps")
    with pytest.raises(ValueError, match=r"`eps` must be a finite number >= 0, got -0.1"):
        _validate.nonnegative(-0.1, "eps")


def test_boolean_seed_and_one_of():
    assert _validate.boolean(False, "flag") is False
    with pytest.raises(TypeError, match=r"`flag` must be a bool, got 1"):
        _validate.boolean(1, "flag")
    assert _validate.seed(None) is None and _validate.seed(np.int64(5)) == 5
    with pytest.raises(TypeError, match=r"`seed` must be an int or None, got True"):
        _validate.seed(True)
    assert _validate.one_of(64, "kernels", (32, 64)) == 64
    with pytest.raises(ValueError, match=r"`kernels` must be one of \[1, 2\], got True"):
        _validate.one_of(True, "kernels", (1, 2))  # True == 1, but a bool is not a kernel count
    with pytest.raises(ValueError, match="`mode`"):
        _validate.one_of(["a"], "mode", {"a"})
