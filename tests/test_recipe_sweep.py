"""The recipe sweep's paired comparison: its t-test p-values and its seed-by-seed pairing."""

from __future__ import annotations

import math
import sys

import pytest
from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
from recipe_sweep import paired_comparison, student_t_two_sided_p  # noqa: E402


@pytest.mark.parametrize("t", [0.0, 0.5, 1.7, 4.0, -2.5])
def test_t_test_p_values_match_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    assert student_t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(abs(t)), abs=1e-9)  # Cauchy
    assert student_t_two_sided_p(t, 2) == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), abs=1e-9)


def test_t_test_p_value_matches_the_printed_table():
    assert student_t_two_sided_p(2.776, 4) == pytest.approx(0.05, abs=1e-4)  # the two-sided 5% critical value
    assert student_t_two_sided_p(12.706, 1) == pytest.approx(0.05, abs=1e-4)


def test_recipes_are_paired_seed_by_seed_with_the_baseline():
    rows = [
        {"recipe": "base", "seed": 1, "val_accuracy": 0.80},
        {"recipe": "base", "seed": 2, "val_accuracy": 0.90},
        {"recipe": "new", "seed": 2, "val_accuracy": 0.92},
        {"recipe": "new", "seed": 1, "val_accuracy": 0.81},
        {"recipe": "new", "seed": 3, "val_accuracy": 0.99},  # no baseline run at seed 3: left out
        {"recipe": "lonely", "seed": 1, "val_accuracy": 0.5},  # one pair: no spread, no test
        {"recipe": "elsewhere", "seed": 9, "val_accuracy": 0.5},  # no pair at all: left out
    ]
    lines = paired_comparison(rows, "base").splitlines()
    (new,) = [line for line in lines if line.startswith("new")]
    # Differences +1 and +2 points: mean 1.5, standard error 0.5, t = 3 with 1 degree of freedom.
    expected_p = 1 - 2 / math.pi * math.atan(3)
    assert new.split()[1:5] == ["2", "+1.50", "0.50", f"{expected_p:.3f}"]
    assert "1: +1.00, 2: +2.00" in new
    (lonely,) = [line for line in lines if line.startswith("lonely")]
    assert lonely.split()[1:6] == ["1", "-30.00", "-", "-", "1:"]
    assert not [line for line in lines if line.startswith(("elsewhere", "base "))]
