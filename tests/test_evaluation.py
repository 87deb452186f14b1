import json

import pytest
import torch

from pipeline.config import DataConfig, EvaluateConfig, ModelConfig, Params, TokenizeConfig, TrainConfig
from pipeline.data import download
from pipeline.errors import PipelineError
from pipeline.evaluation import EvaluationOutputs, Predictions, evaluate_model, score
from pipeline.tokenization import tokenize
from pipeline.training import train


def predictions_from(predicted, labels, loss=0.5):
    logits = torch.nn.functional.one_hot(torch.tensor(predicted), 2).float()
    return Predictions(logits=logits, labels=torch.tensor(labels), loss=loss)


def test_metrics_match_hand_computed_values():
    # labels:    1 1 1 1 0 0 0 0 0 0
    # predicted: 1 1 1 0 1 1 0 0 0 0   -> TP=3, FN=1, FP=2, TN=4
    result = score(predictions_from([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]), n_classes=2)
    precision, recall = 3 / 5, 3 / 4
    f1_positive, f1_negative = 2 * precision * recall / (precision + recall), 2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6)
    mcc = (3 * 4 - 2 * 1) / ((3 + 2) * (3 + 1) * (4 + 2) * (4 + 1)) ** 0.5
    assert result == {
        "accuracy": 0.7,
        "macro_f1": round((f1_positive + f1_negative) / 2, 6),
        "mcc": round(mcc, 6),
        "precision": round(precision, 6),
        "recall": round(recall, 6),
        "f1": round(f1_positive, 6),
        "loss": 0.5,
        "n_examples": 10,
    }


def test_three_class_metrics_match_hand_computed_values():
    # labels:    0 0 1 1 2 2
    # predicted: 0 1 1 1 2 0
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 2, 0]), 3).float()
    result = score(Predictions(logits, torch.tensor([0, 0, 1, 1, 2, 2]), 0.5), n_classes=3, per_class=True)
    f1 = [0.5, 0.8, 2 / 3]  # class 0: P 1/2 R 1/2; class 1: P 2/3 R 1; class 2: P 1 R 1/2
    # Gorodkin's multi-class MCC: (correct × n − Σ predicted·actual) / √((n² − Σ predicted²)(n² − Σ actual²))
    mcc = (4 * 6 - (2 * 2 + 3 * 2 + 1 * 2)) / ((36 - (4 + 9 + 1)) * (36 - 12)) ** 0.5
    assert result["accuracy"] == round(4 / 6, 6) and result["macro_f1"] == round(sum(f1) / 3, 6)
    assert result["mcc"] == round(mcc, 6)
    assert "f1" not in result and "precision" not in result  # positive-class scores exist for two classes only
    assert result["per_class"]["f1"] == pytest.approx(f1) and result["per_class"]["support"] == [2, 2, 2]


def test_a_model_that_never_predicts_positive_has_zero_f1():
    result = score(predictions_from([0, 0, 0, 0], [1, 0, 1, 0]), n_classes=2)
    assert result["accuracy"] == 0.5 and result["precision"] == 0.0 and result["recall"] == 0.0 and result["f1"] == 0.0


def outputs(folder, suffix=""):
    names = ("eval.json", "confusion.csv", "predictions.csv", "calibration.csv", "misclassified.csv", "per_class.csv")
    names += ("scatter.csv",)
    return EvaluationOutputs(*(folder / name.replace(".", f"{suffix}.") for name in names))


def test_evaluate_stage_writes_metrics_and_confusion_rows(glue_dir, tiny_bert, tmp_path):
    download(DataConfig(path=str(glue_dir), config=None), tmp_path / "raw")
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), tmp_path / "raw", tmp_path / "tok")
    params = Params(model=ModelConfig(name=str(tiny_bert)), train=TrainConfig(epochs=1, batch_size=8, precision="fp32"))
    trained = train(params, tmp_path / "tok", tmp_path / "model", tmp_path / "live")

    def evaluate(batch_size, precision, suffix=""):
        config = EvaluateConfig(batch_size=batch_size, precision=precision)
        return evaluate_model(config, tmp_path / "model", tmp_path / "tok", tmp_path / "raw", outputs(tmp_path, suffix))

    metrics = evaluate(5, "fp32")
    scores = ("accuracy", "f1", "macro_f1", "mcc")
    intervals = {f"{m}_ci95_{end}" for m in scores for end in ("low", "high")}
    assert set(metrics) == {*scores, "precision", "recall", "loss", "n_examples", "ece"} | intervals
    for m in scores:
        assert metrics[f"{m}_ci95_low"] <= metrics[m] <= metrics[f"{m}_ci95_high"]
    per_class = (tmp_path / "per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,precision,recall,f1,support"
    assert [row.split(",")[0] for row in per_class[1:]] == ["negative", "positive"]
    assert sum(int(row.split(",")[4]) for row in per_class[1:]) == 24
    assert metrics["n_examples"] == 24
    assert json.loads((tmp_path / "eval.json").read_text()) == metrics
    # The stage and the end-of-epoch validation in the training loop agree.
    assert metrics["accuracy"] == trained["val"]["accuracy"] and metrics["loss"] == pytest.approx(
        trained["val"]["loss"], abs=1e-5
    )
    rows = (tmp_path / "confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 25
    assert {value for row in rows[1:] for value in row.split(",")} <= {"negative", "positive"}
    correct = sum(a == p for a, p in (row.split(",") for row in rows[1:]))
    assert correct / 24 == pytest.approx(metrics["accuracy"], abs=1e-6)
    # Per example: id, true and predicted label, the predicted label's probability; the same labels as above.
    predicted = [row.split(",") for row in (tmp_path / "predictions.csv").read_text().splitlines()]
    assert predicted[0] == ["id", "label", "predicted", "probability"] and len(predicted) == 25
    assert [(a, p) for _, a, p, _ in predicted[1:]] == [tuple(row.split(",")) for row in rows[1:]]
    assert [int(r[0]) for r in predicted[1:]] == list(range(24)) and all(0.5 <= float(r[3]) <= 1 for r in predicted[1:])
    # The mistakes with their text, most confident first; the calibration bins count every example once.
    wrong = (tmp_path / "misclassified.csv").read_text().splitlines()
    assert wrong[0] == "rank,id,text,label,predicted,probability" and len(wrong) == 1 + 24 - correct
    confidences = [float(line.rsplit(",", 1)[1]) for line in wrong[1:]]
    assert confidences == sorted(confidences, reverse=True)
    bins = [row.split(",") for row in (tmp_path / "calibration.csv").read_text().splitlines()[1:]]
    assert sum(int(b[4]) for b in bins) == 24
    # Batch size changes nothing but speed.
    again = evaluate(24, "fp32", "2")
    assert again["accuracy"] == metrics["accuracy"] and again["loss"] == pytest.approx(metrics["loss"], abs=1e-5)
    # bf16 autocast (the default) rounds the matrix products and nothing else.
    rounded = evaluate(5, "bf16", "3")
    assert rounded["n_examples"] == 24 and rounded["loss"] == pytest.approx(metrics["loss"], abs=0.02)


def test_missing_model_folder(tmp_path):
    with pytest.raises(PipelineError, match="no fine-tuned model here"):
        evaluate_model(EvaluateConfig(), tmp_path / "model", tmp_path, tmp_path, outputs(tmp_path))
