"""Classification metrics as an ``evaluate`` module loaded by path: it works offline.

``evaluate.load("glue", ...)`` downloads its scripts from the Hub. This module reports what any
single-label task is judged by, for two classes or many: accuracy, macro-averaged F1 and the
Matthews correlation coefficient (CoLA's official metric; Gorodkin's generalisation for more than
two classes); for two classes also precision, recall and F1 of the positive class (label 1), as GLUE
computes F1 for MRPC; and each class's precision, recall, F1 and support.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy, macro F1, Matthews correlation and per-class scores of class predictions."
_KWARGS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    num_labels (int, optional): number of classes; defaults to the largest id seen plus one.
Returns:
    accuracy, macro_f1, mcc; for two classes precision, recall, f1 of class 1; per_class (precision,
    recall, f1, support lists indexed by class) and confusion_matrix (rows: true, columns: predicted).
"""


def matthews(confusion: np.ndarray) -> float:
    """Matthews correlation of a confusion matrix (any number of classes); 0 where it is undefined."""
    confusion = confusion.astype(np.float64)
    total, correct = confusion.sum(), np.trace(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    numerator = correct * total - predicted @ actual
    denominator = np.sqrt((total**2 - predicted @ predicted) * (total**2 - actual @ actual))
    return float(numerator / denominator) if denominator > 0 else 0.0


class ClassificationMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if num_labels is None:
            num_labels = int(max(predictions.max(initial=1), references.max(initial=1))) + 1
        confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
        np.add.at(confusion, (references, predictions), 1)
        true_positive = np.diag(confusion).astype(np.float64)
        predicted = confusion.sum(axis=0)
        actual = confusion.sum(axis=1)
        # A class never predicted has precision 0, never present has recall 0 (scikit-learn's zero_division=0).
        precision = np.divide(true_positive, predicted, out=np.zeros(num_labels), where=predicted > 0)
        recall = np.divide(true_positive, actual, out=np.zeros(num_labels), where=actual > 0)
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(num_labels), where=denominator > 0)
        result = {
            "accuracy": float(true_positive.sum() / max(len(references), 1)),
            "macro_f1": float(f1.mean()),
            "mcc": matthews(confusion),
        }
        if num_labels == 2:
            result |= {"precision": float(precision[1]), "recall": float(recall[1]), "f1": float(f1[1])}
        result["per_class"] = {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": actual.tolist(),
        }
        result["confusion_matrix"] = confusion.tolist()
        return result
