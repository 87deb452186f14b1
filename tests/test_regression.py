"""data.task: regression, from a file of scores to the saved model, its metrics, predictions and export."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import NEGATIVE, POSITIVE, live_curve
from scipy import stats

from pipeline.config import DataConfig, EvaluateConfig, ExportConfig, ModelConfig, Params, TokenizeConfig, TrainConfig
from pipeline.data import download, read_info, read_split
from pipeline.errors import PipelineError
from pipeline.gate import settings_from_pyproject
from pipeline.metrics import ranks, regression_scores
from pipeline.tasks import loss
from pipeline.tokenization import read_meta, tokenize
from pipeline.uncertainty import bootstrap_interval, sign_test


def pair_rows(n: int, offset: int = 0) -> list[tuple[str, str, float]]:
    """Sentence pairs scored 0 to 5: high when both texts share a sentiment, low when they do not."""
    rows = []
    for i in range(offset, offset + n):
        first = (POSITIVE if i % 2 else NEGATIVE)[i % len(POSITIVE)]
        same = i % 3 != 0
        second = (POSITIVE if (i % 2) == same else NEGATIVE)[(i // 3) % len(POSITIVE)]
        rows.append((first, second, round((4.0 if same else 0.5) + (i % 5) * 0.2, 2)))
    return rows


def write_pairs(folder, n_train=64, n_validation=24, n_test=8):
    """train.tsv and dev.tsv with scores, test.tsv without: the layout of GLUE's STS-B files."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": pair_rows(n_train), "dev": pair_rows(n_validation, n_train)}
    for name, rows in splits.items():
        lines = ["sentence1\tsentence2\tscore", *(f"{a}\t{b}\t{s:.3f}" for a, b, s in rows)]
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    test = ["sentence1\tsentence2", *(f"{a}\t{b}" for a, b, _ in pair_rows(n_test, n_train + n_validation))]
    (folder / "test.tsv").write_text("\n".join(test) + "\n")
    return folder


def scores_config(folder, **overrides) -> DataConfig:
    return DataConfig(
        task="regression",
        path=str(folder),
        config=None,
        text_columns=("sentence1", "sentence2"),
        label_column="score",
        **overrides,
    )


def test_scores_are_read_as_float32_and_an_unscored_test_file_as_nan(tmp_path):
    info = download(scores_config(write_pairs(tmp_path / "pairs")), tmp_path / "raw")
    assert info["task"] == "regression" and info["label_names"] == ["score"]
    assert info["splits"] == {"train": 64, "validation": 24, "test": 8}
    train = read_split(tmp_path / "raw", "train")
    assert train.labels.dtype == np.float32
    assert train.labels.tolist() == pytest.approx([s for _, _, s in pair_rows(64)])
    assert np.isnan(read_split(tmp_path / "raw", "test").labels).all()


def test_a_single_label_info_json_has_no_task_key(glue_dir, tmp_path):
    assert "task" not in download(DataConfig(path=str(glue_dir), config=None), tmp_path / "raw")


def test_a_missing_validation_score_names_its_row(tmp_path):
    folder = write_pairs(tmp_path / "pairs")
    lines = (folder / "dev.tsv").read_text().splitlines()
    a, b, _ = lines[3].split("\t")
    lines[3] = f"{a}\t{b}\t"
    (folder / "dev.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineError, match=r"split 'validation' row 2 has 'score' '', which is not a finite number"):
        download(scores_config(folder), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_a_score_that_is_not_finite_is_refused(tmp_path, value):
    folder = write_pairs(tmp_path / "pairs")
    text = (folder / "train.tsv").read_text().splitlines()
    a, b, _ = text[1].split("\t")
    text[1] = f"{a}\t{b}\t{value}"
    (folder / "train.tsv").write_text("\n".join(text) + "\n")
    with pytest.raises(PipelineError, match=rf"split 'train' row 0 has 'score' '{value}', which is not a finite"):
        download(scores_config(folder), tmp_path / "raw")


def test_ranks_share_their_mean_rank_on_ties():
    assert ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    values = np.random.default_rng(0).integers(0, 6, size=(4, 50)).astype(float)
    assert np.allclose(ranks(values), np.stack([stats.rankdata(row) for row in values]))


def test_regression_scores_match_scipy():
    rng = np.random.default_rng(1)
    truth = np.round(rng.uniform(0, 5, 200), 1)  # rounded: ties, as STS-B's scores have
    guess = truth + rng.normal(0, 1, 200)
    scores = regression_scores(guess, truth)
    assert scores["pearson"] == pytest.approx(stats.pearsonr(guess, truth)[0], abs=1e-12)
    assert scores["spearman"] == pytest.approx(stats.spearmanr(guess, truth)[0], abs=1e-12)
    assert scores["mse"] == pytest.approx(np.mean((guess - truth) ** 2))
    assert regression_scores(np.full(5, 2.0), np.arange(5.0))["pearson"] == 0.0  # a constant guess: no correlation


@pytest.mark.parametrize("metric", ["pearson", "spearman", "mse"])
def test_bootstrap_intervals_of_regression_metrics_hold_the_estimate_and_repeat(metric):
    rng = np.random.default_rng(2)
    truth = rng.uniform(0, 5, 300)
    guess = truth + rng.normal(0, 1, 300)
    low, high = bootstrap_interval(truth, guess, metric)
    assert low < regression_scores(guess, truth)[metric] < high
    assert (low, high) == bootstrap_interval(truth, guess, metric)
    assert high - low < (0.2 if metric != "mse" else 0.5)


def test_the_sign_test_counts_closer_and_further_and_leaves_ties_out():
    result = sign_test(np.array([1.0, -1.0, 0.5, 0.2, 2.0]), np.array([0.5, -2.0, -0.5, 0.1, 1.0]))
    assert (result.worse, result.better) == (1, 3)  # |-2| > |-1|; 0.5 -> -0.5 ties; three came closer
    assert result.p_value == pytest.approx(0.625)  # two-sided exact binomial, 1 of 4
    assert sign_test(np.ones(3), -np.ones(3)).p_value == 1.0


def test_the_loss_is_the_squared_error_of_the_one_output():
    logits, targets = torch.tensor([[1.0], [3.0], [0.5]]), torch.tensor([2.0, 3.0, 0.0])
    assert loss("regression", logits, targets).item() == pytest.approx((1 + 0 + 0.25) / 3)


def test_the_gate_watches_the_regression_metrics_of_pyproject(tmp_path):
    from conftest import PROJECT_ROOT

    settings = settings_from_pyproject(PROJECT_ROOT / "pyproject.toml", task="regression")
    assert settings.watched == ("metrics/eval.json:pearson", "metrics/eval.json:spearman")
    assert settings.task == "regression"
    assert settings_from_pyproject(tmp_path / "missing.toml", task="regression").watched == (
        "metrics/eval.json:pearson",
    )


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory):
    """A tiny model trained on scored pairs, evaluated, with its test split predicted and exported."""
    from test_evaluation import outputs

    from pipeline.evaluation import evaluate_model
    from pipeline.onnx_export import export_onnx
    from pipeline.predict import predict_test_split
    from pipeline.training import train

    root = tmp_path_factory.mktemp("regression")
    data = scores_config(write_pairs(root / "pairs"))
    download(data, root / "raw")
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), root / "raw", root / "tok")
    params = Params(
        data=data,
        model=ModelConfig(name=str(tiny_bert)),
        train=TrainConfig(epochs=3, batch_size=8, lr=1e-2, layer_lr_decay=1.0, precision="fp32", log_every_steps=4),
    )
    metrics = train(params, root / "tok", root / "model", root / "live")
    evaluate = EvaluateConfig(precision="fp32")
    evaluated = evaluate_model(evaluate, root / "model", root / "tok", root / "raw", outputs(root))
    predict_test_split(root / "model", root / "raw", root / "predictions")
    exported = export_onnx(ExportConfig(), root / "model", root / "raw", root / "onnx", root / "export.json")
    return {"root": root, "train": metrics, "eval": evaluated, "export": exported}


def test_the_tokenized_cache_keeps_the_scores_and_the_task(trained):
    from pipeline.tokenization import load_split

    assert read_meta(trained["root"] / "tok")["task"] == "regression"
    labels = load_split(trained["root"] / "tok", "train").labels
    assert labels.dtype == torch.float32 and labels.tolist() == pytest.approx([s for _, _, s in pair_rows(64)])


def test_training_lowers_the_squared_error_and_logs_validation_pearson(trained):
    live = trained["root"] / "live"
    epoch_losses = [loss for _, loss in live_curve(live, "train/epoch_loss")]
    assert len(epoch_losses) == 3 and epoch_losses[-1] < epoch_losses[0] / 2  # the scores' mean alone halves it
    assert [step for step, _ in live_curve(live, "val/pearson")] == [8, 16, 24]
    assert live_curve(live, "val/pearson")[-1][1] == trained["train"]["val"]["pearson"]
    assert (live / "plots/metrics/val/accuracy.tsv").read_text() == "step\taccuracy\n"  # declared, not a curve here


def test_the_saved_model_is_a_regression_model_that_pipeline_scores(trained):
    from transformers import AutoTokenizer, pipeline

    from pipeline.modeling import load_finetuned

    model_dir = trained["root"] / "model"
    model = load_finetuned(model_dir)
    assert model.config.problem_type == "regression" and model.config.num_labels == 1
    pair = {"text": POSITIVE[0], "text_pair": NEGATIVE[1]}
    (scored,) = pipeline("text-classification", model=str(model_dir), function_to_apply="none")([pair])
    encoded = AutoTokenizer.from_pretrained(model_dir)(POSITIVE[0], NEGATIVE[1], return_tensors="pt")
    with torch.no_grad():
        expected = model.eval()(**encoded).logits[0, 0].item()
    assert scored["score"] == pytest.approx(expected, abs=1e-5)  # the raw output, not squashed by a sigmoid
    card = (model_dir / "README.md").read_text()
    assert "type: pearson" in card and 'function_to_apply="none"' in card


def test_evaluation_gives_correlations_with_intervals_and_the_scatter(trained):
    root, metrics = trained["root"], trained["eval"]
    for metric in ("pearson", "spearman", "mse"):
        assert metrics[f"{metric}_ci95_low"] <= metrics[metric] <= metrics[f"{metric}_ci95_high"]
    assert metrics["n_examples"] == 24 and "accuracy" not in metrics and "ece" not in metrics
    assert json.loads((root / "eval.json").read_text()) == metrics
    with open(root / "scatter.csv") as handle:
        scatter = list(csv.DictReader(handle))
    truth = [float(row["label"]) for row in scatter]
    guess = [float(row["predicted"]) for row in scatter]
    assert truth == pytest.approx([s for _, _, s in pair_rows(24, 64)])
    assert regression_scores(np.array(guess), np.array(truth))["pearson"] == pytest.approx(metrics["pearson"], abs=1e-3)
    assert (root / "predictions.csv").read_text() == (root / "scatter.csv").read_text()
    for name in ("confusion.csv", "calibration.csv", "misclassified.csv", "per_class.csv"):
        assert len((root / name).read_text().splitlines()) == 1  # the header only: no classes to draw


def test_the_predict_stage_scores_the_test_pairs(trained):
    with open(trained["root"] / "predictions" / "test.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["text", "text_pair", "score"] and len(rows) == 8
    assert [(r["text"], r["text_pair"]) for r in rows] == [(a, b) for a, b, _ in pair_rows(8, 88)]
    assert all(np.isfinite(float(r["score"])) for r in rows)


def test_the_export_stage_checks_onnx_against_the_scores(trained):
    report = trained["export"]
    assert report["fp32_max_abs_logit_diff"] <= report["fp32_tolerance"]
    # Scores that each move by at most d move a correlation by at most about 2d/std(scores); a tiny
    # random model's scores barely spread, so its correlation is that sensitive to rounding.
    with open(trained["root"] / "scatter.csv") as handle:
        spread = np.std([float(row["predicted"]) for row in csv.DictReader(handle)])
    allowed = 2 * report["fp32_max_abs_logit_diff"] / spread + 1e-6  # + the report's rounding
    assert report["fp32_pearson"] == pytest.approx(report["eager_pearson"], abs=allowed)
    assert "int8_pearson" in report and "int8_label_agreement" not in report
    assert report["int8_shipped"] == (report["eager_pearson"] - report["int8_pearson"] <= 0.003 + 1e-9)


def test_select_best_chooses_the_epoch_by_a_regression_metric(tiny_bert, tmp_path):
    from pipeline.training import train

    data = scores_config(write_pairs(tmp_path / "pairs"), select_fraction=0.25)
    download(data, tmp_path / "raw")
    assert read_info(tmp_path / "raw")["splits"]["select"] == 16
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), tmp_path / "raw", tmp_path / "tok")
    train_cfg = TrainConfig(
        epochs=2, batch_size=8, lr=3e-3, precision="fp32", select_best=True, select_metric="mse", log_every_steps=4
    )
    params = Params(data=data, model=ModelConfig(name=str(tiny_bert)), train=train_cfg)
    selected = train(params, tmp_path / "tok", tmp_path / "model", tmp_path / "live")["selected"]
    assert selected["metric"] == "mse" and selected["score"] == min(selected["scores"])
    assert "val_pearson" in selected
