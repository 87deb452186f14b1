"""Accuracy, precision, recall and F1 for SST-2, as an ``evaluate`` module loaded by path.

``evaluate.load("glue", "sst2")`` downloads its script from the Hub and reports accuracy only. This
module works offline and reports the metrics a binary classifier is judged by. For two classes,
precision, recall and F1 are those of the positive class (label 1), as GLUE computes F1; for more
classes they are macro averages.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy, precision, recall and F1 of integer class predictions against references."
_KWARGS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    num_labels (int, optional): number of classes; defaults to the largest id seen plus one.
Returns:
    accuracy, precision, recall, f1 (floats in [0, 1]) and confusion_matrix (rows: true, columns: predicted).
"""


class Sst2Metrics(evaluate.Metric):
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
        pick = (lambda per_class: per_class[1]) if num_labels == 2 else (lambda per_class: per_class.mean())
        return {
            "accuracy": float(true_positive.sum() / max(len(references), 1)),
            "precision": float(pick(precision)),
            "recall": float(pick(recall)),
            "f1": float(pick(f1)),
            "confusion_matrix": confusion.tolist(),
        }
