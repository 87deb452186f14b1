"""What a single-label classifier is judged by, from its predicted and true class ids.

Accuracy, macro-averaged F1 and the Matthews correlation coefficient (CoLA's official metric, in
Gorodkin's form for more than two classes); for two classes also precision, recall and F1 of the
positive class (label 1), as GLUE computes F1 for MRPC; and each class's precision, recall, F1 and
support. Plain numpy; tests/test_metrics.py checks every figure against scikit-learn.
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
