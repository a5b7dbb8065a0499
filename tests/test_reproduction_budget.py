"""The reproduction budget's scheduling and calibration (scripts/reproduction_budget.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import reproduction_budget as rb  # noqa: E402


def test_makespan_is_graham_lpt():
    # longest first onto the least loaded worker: 7 | 5 -> 7 | 5+4 -> 7+3 | 9 -> 10 | 9+2 -> 11
    assert rb.makespan([3, 5, 2, 7, 4], 2) == 11
    assert rb.makespan([3, 5, 2, 7, 4], 1) == 21
    assert rb.makespan([3, 5, 2, 7, 4], 8) == 7  # more workers than cells: the longest cell
    with pytest.raises(ValueError, match="workers must be at least 1"):
        rb.makespan([1], 0)


def test_rates_pool_per_family_and_phase_then_fall_back():
    table = rb.rates([("fcn", "train", 100.0, 2.0), ("fcn", "train", 300.0, 2.0),
                      ("fcn", "attacks", 10.0, 1.0), ("cnn", "clean", 50.0, 1.0)])
    assert table[("fcn", "train")] == pytest.approx(4.0 / 400.0)
    assert table[("fcn", None)] == pytest.approx(0.1)  # the family's evaluations pooled
    assert table[(None, None)] == pytest.approx(2.0 / 60.0)  # every family's evaluations
    assert rb.rate_of(table, "fcn", "attacks") == (pytest.approx(0.1), True)
    assert rb.rate_of(table, "fcn", "detection") == (pytest.approx(0.1), True)  # the family's other kinds
    assert rb.rate_of(table, "big_fcn", "train", like={"big_fcn": "fcn"}) == (pytest.approx(0.01), False)
    assert rb.rate_of(table, "rnn", "train") == (pytest.approx(0.01), False)  # pooled over families
    assert rb.rate_of(table, "cnn", "train") == (pytest.approx(0.01), False)
    with pytest.raises(ValueError, match="no measured rate"):
        rb.rate_of(rb.rates([]), "fcn", "train")


def test_walltimes_keep_each_recipe_first_successful_run(tmp_path):
    log = tmp_path / "walltimes.txt"
    log.write_text("guan/table4 exit 1 in 5 s\nguan/table4 exit 0 in 2683 s\nguan/table4 exit 0 in 18 s (08:03)\n")
    assert rb.walltimes(log) == {"guan/table4": 2683}


def test_clock():
    assert [rb.clock(s) for s in (45, 720, 3900)] == ["45 s", "12 min", "1 h 05 min"]
