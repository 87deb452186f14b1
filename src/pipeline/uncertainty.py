"""How sure a score is: bootstrap intervals, calibration, and the paired test between two revisions.

A validation split of a few hundred examples leaves an accuracy a standard error as large as the
differences between recipes, so a single figure says little on its own. The evaluate stage adds a
95% interval to its metrics (a seeded bootstrap over the validation examples: the same predictions
always give the same interval) and the expected calibration error; the metric gate compares two
revisions example by example with an exact McNemar test (a classifier) or sign test (a regression).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from pipeline.metrics import pearson, ranks

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
CALIBRATION_BINS = 10


def _f1_per_resample(labels: np.ndarray, predicted: np.ndarray, classes) -> np.ndarray:
    """F1 of each row of resampled labels/predictions, averaged over ``classes``."""
    scores = []
    for c in classes:
        is_predicted, is_actual = predicted == c, labels == c
        tp = (is_predicted & is_actual).sum(axis=1)
        wrong = (is_predicted ^ is_actual).sum(axis=1)  # false positives + false negatives
        denominator = 2 * tp + wrong
        scores.append(np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0))
    return np.mean(scores, axis=0)


def _mcc_per_resample(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Matthews correlation of each row (the multi-class form; 0 where it is undefined)."""
    total = labels.shape[1]
    correct = (labels == predicted).sum(axis=1).astype(np.float64)
    actual = np.stack([(labels == c).sum(axis=1) for c in range(n_classes)], axis=1).astype(np.float64)
    guessed = np.stack([(predicted == c).sum(axis=1) for c in range(n_classes)], axis=1).astype(np.float64)
    numerator = correct * total - (actual * guessed).sum(axis=1)
    denominator = np.sqrt((total**2 - (guessed**2).sum(axis=1)) * (total**2 - (actual**2).sum(axis=1)))
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def bootstrap_interval(
    labels: np.ndarray,
    predicted: np.ndarray,
    metric: str,
    n_classes: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval over the examples, seeded, of a classifier's ``accuracy``,
    ``f1`` (the positive class's; two classes), ``macro_f1`` or ``mcc`` (from class ids), of a
    multi-label classifier's ``micro_f1``, ``macro_f1`` or ``exact_match`` (from rows of 0/1), or of
    a regression's ``pearson``, ``spearman`` or ``mse`` (from scores)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    rows = np.random.default_rng(seed).integers(0, len(labels), size=(samples, len(labels)))
    if labels.ndim == 2:  # multi-label: rows of 0/1
        low, high = np.percentile(_multi_label_per_resample(labels, predicted, metric, rows), [2.5, 97.5])
        return float(low), float(high)
    resampled_labels, resampled_predicted = labels[rows], predicted[rows]
    if metric == "pearson":
        values = pearson(resampled_labels, resampled_predicted)
    elif metric == "spearman":  # ranked within each resample, where repeated examples tie
        values = pearson(ranks(resampled_labels), ranks(resampled_predicted))
    elif metric == "mse":
        values = ((resampled_labels.astype(np.float64) - resampled_predicted) ** 2).mean(axis=1)
    elif metric == "accuracy":
        values = (resampled_labels == resampled_predicted).mean(axis=1)
    elif metric == "f1" and n_classes == 2:
        values = _f1_per_resample(resampled_labels, resampled_predicted, [1])
    elif metric == "macro_f1":
        values = _f1_per_resample(resampled_labels, resampled_predicted, range(n_classes))
    elif metric == "mcc":
        values = _mcc_per_resample(resampled_labels, resampled_predicted, n_classes)
    else:
        raise ValueError(f"no bootstrap for metric {metric!r}")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _multi_label_per_resample(labels: np.ndarray, predicted: np.ndarray, metric: str, rows: np.ndarray):
    """A multi-label metric of each resample, from how often each example was drawn into it."""
    truth, chosen = labels.astype(bool), predicted.astype(bool)
    drawn = np.stack([np.bincount(row, minlength=len(labels)) for row in rows]).astype(np.float64)
    if metric == "exact_match":
        return drawn @ (truth == chosen).all(axis=1) / len(labels)
    tp = drawn @ (truth & chosen)
    wrong = drawn @ (truth ^ chosen)  # false positives + false negatives, per label
    if metric == "micro_f1":
        denominator = 2 * tp.sum(axis=1) + wrong.sum(axis=1)
        return np.divide(2 * tp.sum(axis=1), denominator, out=np.zeros(len(rows)), where=denominator > 0)
    if metric == "macro_f1":
        denominator = 2 * tp + wrong
        return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0).mean(axis=1)
    raise ValueError(f"no bootstrap for multi-label metric {metric!r}")


class CalibrationBin(NamedTuple):
    """Predictions whose confidence (the top class's probability) fell in ``[low, high)``."""

    low: float
    high: float
    confidence: float  # mean confidence in the bin
    accuracy: float
    count: int


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS):
    """The reliability diagram's bins (empty ones left out) and the expected calibration error.

    ECE = sum over bins of (share of examples) × |accuracy − mean confidence|: 0 for a model whose
    90%-confident predictions are right 90% of the time, and so on for every bin.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # Bin b holds confidences in [b/bins, (b+1)/bins); a confidence of exactly 1 goes in the last bin.
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            row = CalibrationBin(
                b / bins,
                (b + 1) / bins,
                float(confidence[members].mean()),
                float(correct[members].mean()),
                int(members.sum()),
            )
            rows.append(row)
            ece += row.count / len(labels) * abs(row.accuracy - row.confidence)
    return rows, ece


class PairedTest(NamedTuple):
    """Two revisions' predictions on the same examples: where they disagree on being right."""

    worse: int  # right before, wrong now
    better: int  # wrong before, right now
    p_value: float  # exact two-sided McNemar test: how likely a split this uneven is by chance


def mcnemar(baseline_correct: np.ndarray, current_correct: np.ndarray) -> PairedTest:
    """The exact McNemar test: under "no difference", each changed example is a fair coin toss."""
    baseline_correct, current_correct = np.asarray(baseline_correct, bool), np.asarray(current_correct, bool)
    worse = int((baseline_correct & ~current_correct).sum())
    better = int((~baseline_correct & current_correct).sum())
    changed = worse + better
    if changed == 0:
        return PairedTest(0, 0, 1.0)
    tail = sum(math.comb(changed, k) for k in range(min(worse, better) + 1))
    return PairedTest(worse, better, float(min(Fraction(1), Fraction(2 * tail, 2**changed))))


def sign_test(baseline_error: np.ndarray, current_error: np.ndarray) -> PairedTest:
    """The exact sign test on each example's absolute error: under "no difference", an example whose
    error changed is as likely to have come closer as to have moved away (ties are left out)."""
    baseline_error, current_error = np.abs(np.asarray(baseline_error)), np.abs(np.asarray(current_error))
    return mcnemar(current_error >= baseline_error, current_error <= baseline_error)
