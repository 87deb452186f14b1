"""What a model is judged by: a single-label classifier from its predicted and true class ids, a
regression model from its predicted and true scores.

Accuracy, macro-averaged F1 and the Matthews correlation coefficient (CoLA's official metric, in
Gorodkin's form for more than two classes); for two classes also precision, recall and F1 of the
positive class (label 1), as GLUE computes F1 for MRPC; and each class's precision, recall, F1 and
support. Regression: Pearson and Spearman correlation (STS-B's official pair) and the mean squared
error. Plain numpy; tests/test_metrics.py checks every figure against scikit-learn and scipy.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(references: np.ndarray, predicted: np.ndarray, num_labels: int) -> np.ndarray:
    """Counts of (true class, predicted class): rows are true classes, columns predicted ones."""
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (np.asarray(references, np.int64), np.asarray(predicted, np.int64)), 1)
    return confusion


def matthews(confusion: np.ndarray) -> float:
    """Matthews correlation of a confusion matrix (any number of classes); 0 where it is undefined."""
    confusion = confusion.astype(np.float64)
    total, correct = confusion.sum(), np.trace(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    numerator = correct * total - predicted @ actual
    denominator = np.sqrt((total**2 - predicted @ predicted) * (total**2 - actual @ actual))
    return float(numerator / denominator) if denominator > 0 else 0.0


def classification_scores(predicted, references, num_labels: int) -> dict:
    """accuracy, macro_f1, mcc; for two classes precision, recall and f1 of class 1; and ``per_class``:
    lists of precision, recall, f1 and support indexed by class."""
    confusion = confusion_matrix(references, predicted, num_labels)
    true_positive = np.diag(confusion).astype(np.float64)
    predicted_count, actual_count = confusion.sum(axis=0), confusion.sum(axis=1)
    # A class never predicted has precision 0, never present has recall 0 (scikit-learn's zero_division=0).
    precision = np.divide(true_positive, predicted_count, out=np.zeros(num_labels), where=predicted_count > 0)
    recall = np.divide(true_positive, actual_count, out=np.zeros(num_labels), where=actual_count > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(num_labels), where=denominator > 0)
    result = {
        "accuracy": float(true_positive.sum() / max(int(confusion.sum()), 1)),
        "macro_f1": float(f1.mean()),
        "mcc": matthews(confusion),
    }
    if num_labels == 2:
        result |= {"precision": float(precision[1]), "recall": float(recall[1]), "f1": float(f1[1])}
    result["per_class"] = {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": actual_count.tolist(),
    }
    return result


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, ties sharing their mean rank (as Spearman's coefficient needs)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim > 1:
        return np.stack([ranks(row) for row in values])
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # where each run of equal values begins
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2  # the mean of the 1-based ranks starts+1 .. ends
    result = np.empty(len(values))
    result[order] = np.repeat(mean_rank, ends - starts)
    return result


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Pearson correlation along the last axis; 0 where either side does not vary."""
    a = np.asarray(a, np.float64) - np.mean(a, axis=-1, keepdims=True)
    b = np.asarray(b, np.float64) - np.mean(b, axis=-1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    numerator = (a * b).sum(axis=-1)
    result = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
    return float(result) if result.ndim == 0 else result


def regression_scores(predicted: np.ndarray, references: np.ndarray) -> dict:
    """pearson, spearman and mse of predicted against true scores."""
    predicted, references = np.asarray(predicted, np.float64), np.asarray(references, np.float64)
    return {
        "pearson": pearson(predicted, references),
        "spearman": pearson(ranks(predicted), ranks(references)),
        "mse": float(np.mean((predicted - references) ** 2)),
    }


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision of one label's scores: the mean, over the thresholds at each distinct score, of
    precision weighted by the recall gained there (scikit-learn's ``average_precision_score``); 0 for a
    label with no positive example."""
    truth = np.asarray(truth, bool)
    if not truth.any():
        return 0.0
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    ordered, hits = np.asarray(scores, np.float64)[order], truth[order]
    last_of_tie = np.r_[ordered[1:] != ordered[:-1], True]  # a threshold takes every example of its score
    true_positives = np.cumsum(hits)[last_of_tie]
    predicted = (np.arange(1, len(hits) + 1))[last_of_tie]
    precision, recall = true_positives / predicted, true_positives / truth.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def label_scores(chosen: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each label's precision, recall and F1 of the 0/1 decisions ``chosen`` (0 where undefined)."""
    chosen, targets = np.asarray(chosen, bool), np.asarray(targets, bool)
    tp = (chosen & targets).sum(axis=0).astype(np.float64)
    predicted_count, actual_count = chosen.sum(axis=0), targets.sum(axis=0)
    precision = np.divide(tp, predicted_count, out=np.zeros(len(tp)), where=predicted_count > 0)
    recall = np.divide(tp, actual_count, out=np.zeros(len(tp)), where=actual_count > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(len(tp)), where=denominator > 0)
    return precision, recall, f1


# The thresholds train.select_threshold tries: every hundredth in (0, 1).
THRESHOLD_GRID = tuple(round(k / 100, 2) for k in range(1, 100))


def best_threshold(probabilities: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """The threshold of :data:`THRESHOLD_GRID` whose labels have the highest macro-F1, and that macro-F1.
    Of equally good thresholds, the one nearest 0.5 wins, so a flat stretch does not drift to an end."""
    probabilities = np.asarray(probabilities)
    best, best_f1 = 0.5, -1.0
    for threshold in sorted(THRESHOLD_GRID, key=lambda t: (abs(t - 0.5), t)):
        macro_f1 = float(label_scores(probabilities >= threshold, targets)[2].mean())
        if macro_f1 > best_f1:
            best, best_f1 = threshold, macro_f1
    return best, best_f1


def multi_label_scores(probabilities: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    """micro_f1, macro_f1 and exact_match of the labels at ``threshold``, the threshold-free
    mean_average_precision, and ``per_class``: each label's precision, recall, f1 and support."""
    targets = np.asarray(targets, bool)
    chosen = np.asarray(probabilities) >= threshold
    precision, recall, f1 = label_scores(chosen, targets)
    tp = (chosen & targets).sum()
    predicted_count, actual_count = chosen.sum(axis=0), targets.sum(axis=0)
    micro_denominator = predicted_count.sum() + actual_count.sum()
    return {
        "micro_f1": float(2 * tp / micro_denominator) if micro_denominator else 0.0,
        "macro_f1": float(f1.mean()),
        "exact_match": float((chosen == targets).all(axis=1).mean()),
        "mean_average_precision": float(
            np.mean([average_precision(probabilities[:, k], targets[:, k]) for k in range(targets.shape[1])])
        ),
        "per_class": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": actual_count.tolist(),
        },
    }
