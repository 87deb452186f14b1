"""Bootstrap intervals, calibration and the paired test, on hand-built predictions with known answers."""

import math

import numpy as np
import pytest

from pipeline.uncertainty import bootstrap_interval, calibration, mcnemar


def test_the_bootstrap_interval_of_accuracy_is_the_binomial_one_and_repeats_exactly():
    labels = np.zeros(400, dtype=int)
    predicted = np.r_[np.zeros(360, dtype=int), np.ones(40, dtype=int)]  # 90% right
    low, high = bootstrap_interval(labels, predicted, "accuracy", n_classes=2)
    half_width = 1.96 * math.sqrt(0.9 * 0.1 / 400)  # the normal approximation: ±2.94 points
    assert low == pytest.approx(0.9 - half_width, abs=0.005) and high == pytest.approx(0.9 + half_width, abs=0.005)
    assert bootstrap_interval(labels, predicted, "accuracy", n_classes=2) == (low, high)  # seeded


def test_a_perfect_classifier_has_a_point_interval_and_f1_is_the_positive_classs():
    labels = np.array([0, 1] * 50)
    assert bootstrap_interval(labels, labels, "accuracy", n_classes=2) == (1.0, 1.0)
    assert bootstrap_interval(labels, labels, "f1", n_classes=2) == (1.0, 1.0)
    # Every positive missed: the positive class's F1 is 0 in every resample, whatever the accuracy.
    assert bootstrap_interval(labels, np.zeros(100, dtype=int), "f1", n_classes=2) == (0.0, 0.0)


def test_calibration_bins_and_expected_calibration_error():
    # Four predictions at confidence 0.95 (three right) and four at 0.65 (all right).
    probabilities = np.array([[0.05, 0.95]] * 4 + [[0.65, 0.35]] * 4)
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    bins, ece = calibration(probabilities, labels)
    assert [(b.low, b.high, b.count) for b in bins] == [(0.6, 0.7, 4), (0.9, 1.0, 4)]
    assert bins[0].accuracy == 1.0 and bins[1].accuracy == 0.75
    assert ece == pytest.approx(0.5 * abs(1.0 - 0.65) + 0.5 * abs(0.75 - 0.95))


@pytest.mark.parametrize(
    ("worse", "better", "p_value"),
    [
        (0, 6, 2 / 64),  # six changes, all one way: 2 × (1/2)^6
        (1, 9, 2 * (1 + 10) / 1024),  # 2 × P(X ≤ 1) for X ~ Binomial(10, 1/2)
        (5, 5, 1.0),
        (0, 0, 1.0),  # nothing changed
    ],
)
def test_exact_mcnemar_on_hand_built_disagreements(worse, better, p_value):
    same = 20  # examples both revisions get right, or both wrong, change nothing
    baseline = np.r_[np.ones(worse, bool), np.zeros(better, bool), np.ones(same, bool), np.zeros(same, bool)]
    current = np.r_[np.zeros(worse, bool), np.ones(better, bool), np.ones(same, bool), np.zeros(same, bool)]
    test = mcnemar(baseline, current)
    assert (test.worse, test.better) == (worse, better)
    assert test.p_value == pytest.approx(p_value, rel=1e-12)
    assert mcnemar(current, baseline).p_value == test.p_value  # two-sided
