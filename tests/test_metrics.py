"""pipeline.metrics against scikit-learn, on random predictions of 2, 3 and 6 classes and on edge cases."""

import numpy as np
import pytest
from sklearn import metrics as sk

from pipeline.metrics import classification_scores


def scikit_learn_scores(predicted, references, num_labels: int) -> dict:
    labels = list(range(num_labels))
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        references, predicted, labels=labels, zero_division=0
    )
    expected = {
        "accuracy": sk.accuracy_score(references, predicted),
        "macro_f1": sk.f1_score(references, predicted, labels=labels, average="macro", zero_division=0),
        "mcc": sk.matthews_corrcoef(references, predicted),
        "per_class": {"precision": precision, "recall": recall, "f1": f1, "support": support},
    }
    if num_labels == 2:
        expected |= {"precision": precision[1], "recall": recall[1], "f1": f1[1]}
    return expected


def assert_same(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for name in ours.keys() - {"per_class"}:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-12), name
    for name, values in ours["per_class"].items():
        np.testing.assert_allclose(values, theirs["per_class"][name], atol=1e-12, err_msg=name)


@pytest.mark.parametrize("num_labels", [2, 3, 6])
@pytest.mark.parametrize("seed", range(5))
def test_scores_match_scikit_learn_on_random_predictions(num_labels, seed):
    rng = np.random.default_rng(seed)
    references = rng.integers(0, num_labels, size=200)
    # Mostly right, as a trained model is; some classes rarer than others.
    predicted = np.where(rng.random(200) < 0.7, references, rng.integers(0, num_labels, size=200))
    assert_same(
        classification_scores(predicted, references, num_labels), scikit_learn_scores(predicted, references, num_labels)
    )


@pytest.mark.parametrize(
    "predicted, references, num_labels",
    [
        ([0, 0, 0, 0], [1, 0, 1, 0], 2),  # the positive class never predicted: its precision and F1 are 0
        ([1, 1, 1, 1], [1, 1, 1, 1], 2),  # one class only: the correlation is undefined, reported as 0
        ([0, 1, 2, 0], [0, 1, 1, 0], 4),  # a class neither present nor predicted
    ],
)
def test_scores_match_scikit_learn_on_edge_cases(predicted, references, num_labels):
    assert_same(
        classification_scores(np.array(predicted), np.array(references), num_labels),
        scikit_learn_scores(predicted, references, num_labels),
    )
