"""data.task: multi_label, from each form of label file to the saved model, its metrics, predictions and export."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import NEGATIVE, POSITIVE, live_curve

from pipeline.config import (
    DataConfig,
    EvaluateConfig,
    ExportConfig,
    ModelConfig,
    Params,
    TokenizeConfig,
    TrainConfig,
    params_from_dict,
)
from pipeline.data import download, read_info, read_split
from pipeline.errors import PipelineError
from pipeline.gate import settings_from_pyproject
from pipeline.metrics import average_precision, multi_label_scores
from pipeline.tasks import loss
from pipeline.tokenization import read_meta, tokenize
from pipeline.uncertainty import bootstrap_interval

NAMES = ["praise", "scorn", "music"]  # the label order of labels.txt: ids 0, 1, 2


def label_rows(n: int, offset: int = 0) -> list[tuple[str, list[str]]]:
    """Reviews with zero, one or two labels, each label carried by words a model can learn."""
    rows = []
    for i in range(offset, offset + n):
        good, bad = POSITIVE[i % len(POSITIVE)], NEGATIVE[(i // 2) % len(NEGATIVE)]
        rows.append(
            [
                (good, ["praise"]),
                (bad, ["scorn"]),
                (f"{good} with great music", ["praise", "music"]),
                (f"{good} , then {bad}", ["praise", "scorn"]),
                (f"the film runs {i % 7 + 1} hours", []),
            ][i % 5]
        )
    return rows


SIZES = {"train": 60, "dev": 20, "test": 10}


def split_rows() -> dict[str, list[tuple[str, list[str]]]]:
    offsets = {"train": 0, "dev": SIZES["train"], "test": SIZES["train"] + SIZES["dev"]}
    return {split: label_rows(n, offsets[split]) for split, n in SIZES.items()}


def write_id_lists(folder):
    """GoEmotions' layout: headerless TSV of text, comma-separated label ids and an id; labels.txt names the ids."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in split_rows().items():
        lines = [
            f"{text}\t{','.join(str(NAMES.index(n)) for n in labels)}\tc{i}" for i, (text, labels) in enumerate(rows)
        ]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    (folder / "labels.txt").write_text("\n".join(NAMES))  # no newline after the last, as GoEmotions ships it
    return folder


def id_list_config(folder, **overrides) -> DataConfig:
    settings = dict(
        task="multi_label",
        path=str(folder),
        config=None,
        column_names=("text", "labels", "comment_id"),
        text_columns=("text",),
        label_column="labels",
        label_separator=",",
        label_names=str(folder / "labels.txt"),
        quoting=False,
    )
    return DataConfig(**(settings | overrides))


def write_flag_columns(folder):
    """One 0/1 column per label, as toxicity data sets ship them."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in split_rows().items():
        lines = ["text,praise,scorn,music", *(f'"{t}",' + ",".join(str(int(n in ls)) for n in NAMES) for t, ls in rows)]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return folder


def flag_config(folder, **overrides) -> DataConfig:
    settings = dict(
        task="multi_label", path=str(folder), config=None, text_columns=("text",), label_columns=tuple(NAMES)
    )
    return DataConfig(**(settings | overrides))


def write_name_lists(folder):
    """JSON Lines with a list of label names per row."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in split_rows().items():
        lines = [json.dumps({"text": text, "labels": labels}) for text, labels in rows]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def name_list_config(folder, **overrides) -> DataConfig:
    settings = dict(task="multi_label", path=str(folder), config=None, text_columns=("text",), label_column="labels")
    return DataConfig(**(settings | overrides))


def expected_targets(split: str, names=NAMES) -> np.ndarray:
    return np.array([[float(n in labels) for n in names] for _, labels in split_rows()[split]], dtype=np.float32)


def test_label_ids_in_a_separated_column_are_named_by_labels_txt(tmp_path):
    info = download(id_list_config(write_id_lists(tmp_path / "ids")), tmp_path / "raw")
    assert info["task"] == "multi_label" and info["label_names"] == NAMES
    assert info["splits"] == {"train": 60, "validation": 20, "test": 10}
    train = read_split(tmp_path / "raw", "train")
    assert train.labels.dtype == np.float32 and train.labels.shape == (60, 3)
    assert np.array_equal(train.labels, expected_targets("train"))
    assert not train.labels[4::5].any()  # a row with no labels is an example of none
    assert np.array_equal(read_split(tmp_path / "raw", "test").labels, expected_targets("test"))


def test_one_flag_column_per_label_reads_the_same_targets(tmp_path):
    info = download(flag_config(write_flag_columns(tmp_path / "flags")), tmp_path / "raw")
    assert info["label_names"] == NAMES
    assert np.array_equal(read_split(tmp_path / "raw", "train").labels, expected_targets("train"))


def test_a_list_of_names_per_row_takes_the_sorted_names(tmp_path):
    info = download(name_list_config(write_name_lists(tmp_path / "lists")), tmp_path / "raw")
    assert info["label_names"] == sorted(NAMES)
    assert np.array_equal(read_split(tmp_path / "raw", "train").labels, expected_targets("train", sorted(NAMES)))


def test_a_list_of_names_follows_the_order_data_label_names_gives(tmp_path):
    data = name_list_config(write_name_lists(tmp_path / "lists"), label_names=tuple(NAMES))
    assert download(data, tmp_path / "raw")["label_names"] == NAMES
    assert np.array_equal(read_split(tmp_path / "raw", "validation").labels, expected_targets("dev"))


def test_a_sequence_of_class_labels_takes_its_names_from_the_feature(tmp_path):
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "labels": datasets.Sequence(datasets.ClassLabel(names=NAMES))}
    )
    folder = tmp_path / "hub"
    folder.mkdir()
    for split, rows in split_rows().items():
        columns = {"text": [t for t, _ in rows], "labels": [[NAMES.index(n) for n in ls] for _, ls in rows]}
        name = "validation" if split == "dev" else split
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(folder / f"{name}.parquet"))
    info = download(name_list_config(folder), tmp_path / "raw")
    assert info["label_names"] == NAMES
    assert np.array_equal(read_split(tmp_path / "raw", "train").labels, expected_targets("train"))


def test_an_id_outside_the_names_is_refused_with_its_row(tmp_path):
    folder = write_id_lists(tmp_path / "ids")
    lines = (folder / "train.tsv").read_text().splitlines()
    text, _, comment = lines[7].split("\t")
    lines[7] = f"{text}\t0,3\t{comment}"
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineError, match=r"split 'train' row 7 has label '3', not one of data.label_names \(ids 0"):
        download(id_list_config(folder), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_integer_ids_with_nothing_to_name_them_are_refused(tmp_path):
    with pytest.raises(PipelineError, match=r"integer ids, and nothing names them; set data.label_names"):
        download(id_list_config(write_id_lists(tmp_path / "ids"), label_names=None), tmp_path / "raw")


def test_a_flag_that_is_not_0_or_1_names_its_row_and_column(tmp_path):
    folder = write_flag_columns(tmp_path / "flags")
    lines = (folder / "dev.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",yes"
    (folder / "dev.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineError, match=r"split 'validation' row 2 has 'yes' in label column 'music'"):
        download(flag_config(folder), tmp_path / "raw")


def test_a_separated_column_without_data_label_separator_is_refused(tmp_path):
    with pytest.raises(
        PipelineError, match=r"holds text \('0' in split 'train'\), not a list of labels; set data.label_sep"
    ):
        download(id_list_config(write_id_lists(tmp_path / "ids"), label_separator=None), tmp_path / "raw")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"data": {"label_separator": ","}},
            r"data.label_separator=',': expected null unless data.task is multi_label",
        ),
        (
            {"data": {"task": "regression", "label_columns": ["a", "b"]}},
            r"data.label_columns=\['a', 'b'\]: expected null unless",
        ),
        ({"evaluate": {"threshold": 1.0}}, r"evaluate.threshold=1.0: expected a number in \(0, 1\)"),
        (
            {"data": {"task": "multi_label"}, "train": {"label_smoothing": 0.1}},
            r"train.label_smoothing=0.1: expected 0.0 with data.task=multi_label",
        ),
    ],
)
def test_params_a_multi_label_task_cannot_use_are_refused(overrides, message):
    with pytest.raises(PipelineError, match=message):
        params_from_dict(overrides)


def test_multi_label_scores_match_scikit_learn():
    from sklearn import metrics

    rng = np.random.default_rng(3)
    truth = rng.random((300, 5)) < [0.5, 0.3, 0.1, 0.05, 0.2]
    probabilities = np.clip(truth * 0.4 + rng.random((300, 5)) * 0.7, 0, 1).round(2)  # rounded: tied scores
    scores = multi_label_scores(probabilities, truth, threshold=0.5)
    chosen = probabilities >= 0.5
    assert scores["micro_f1"] == pytest.approx(metrics.f1_score(truth, chosen, average="micro"))
    assert scores["macro_f1"] == pytest.approx(metrics.f1_score(truth, chosen, average="macro"))
    assert scores["exact_match"] == pytest.approx(metrics.accuracy_score(truth, chosen))
    for k in range(5):
        assert average_precision(probabilities[:, k], truth[:, k]) == pytest.approx(
            metrics.average_precision_score(truth[:, k], probabilities[:, k])
        )
    assert scores["mean_average_precision"] == pytest.approx(
        metrics.average_precision_score(truth, probabilities, average="macro")
    )
    assert scores["per_class"]["support"] == truth.sum(axis=0).tolist()


@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1", "exact_match"])
def test_bootstrap_intervals_of_multi_label_metrics_hold_the_estimate_and_repeat(metric):
    rng = np.random.default_rng(4)
    truth = rng.random((400, 4)) < 0.3
    guess = truth ^ (rng.random((400, 4)) < 0.1)
    low, high = bootstrap_interval(truth, guess, metric)
    assert low < multi_label_scores(guess.astype(float), truth, 0.5)[metric] < high
    assert (low, high) == bootstrap_interval(truth, guess, metric)
    assert high - low < 0.15


def test_the_loss_is_binary_cross_entropy_over_every_label():
    logits, targets = torch.tensor([[2.0, -1.0], [0.0, 3.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    expected = -np.mean(np.log(1 / (1 + np.exp(-np.array([2.0, 1.0, 0.0, 3.0])))))
    assert loss("multi_label", logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_the_gate_watches_the_multi_label_metrics_of_pyproject(tmp_path):
    from conftest import PROJECT_ROOT

    settings = settings_from_pyproject(PROJECT_ROOT / "pyproject.toml", task="multi_label")
    assert settings.watched == ("metrics/eval.json:macro_f1", "metrics/eval.json:micro_f1")
    assert settings_from_pyproject(tmp_path / "none.toml", task="multi_label").watched == (
        "metrics/eval.json:macro_f1",
    )


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory):
    """A tiny model trained on GoEmotions-style id lists, evaluated, with its test split predicted and exported."""
    from test_evaluation import outputs

    from pipeline.evaluation import evaluate_model
    from pipeline.onnx_export import export_onnx
    from pipeline.predict import predict_test_split
    from pipeline.training import train

    root = tmp_path_factory.mktemp("multi_label")
    data = id_list_config(write_id_lists(root / "ids"))
    download(data, root / "raw")
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), root / "raw", root / "tok")
    params = Params(
        data=data,
        model=ModelConfig(name=str(tiny_bert)),
        train=TrainConfig(epochs=8, batch_size=8, lr=5e-3, layer_lr_decay=1.0, precision="fp32", log_every_steps=4),
    )
    metrics = train(params, root / "tok", root / "model", root / "live")
    evaluated = evaluate_model(
        EvaluateConfig(precision="fp32"), root / "model", root / "tok", root / "raw", outputs(root)
    )
    predict_test_split(root / "model", root / "raw", root / "predictions", threshold=0.5)
    exported = export_onnx(ExportConfig(), root / "model", root / "raw", root / "onnx", root / "export.json")
    return {"root": root, "train": metrics, "eval": evaluated, "export": exported}


def test_the_tokenized_cache_keeps_the_label_rows_and_the_task(trained):
    from pipeline.tokenization import load_split

    assert read_meta(trained["root"] / "tok")["task"] == "multi_label"
    labels = load_split(trained["root"] / "tok", "train").labels
    assert labels.dtype == torch.float32 and labels.shape == (60, 3)
    assert np.array_equal(labels.numpy(), expected_targets("train"))


def test_training_learns_the_labels_and_logs_validation_macro_f1(trained):
    live = trained["root"] / "live"
    epoch_losses = [value for _, value in live_curve(live, "train/epoch_loss")]
    assert len(epoch_losses) == 8 and epoch_losses[-1] < 0.8 * epoch_losses[0]
    assert [step for step, _ in live_curve(live, "val/macro_f1")] == list(range(8, 65, 8))
    assert live_curve(live, "val/macro_f1")[-1][1] == trained["train"]["val"]["macro_f1"]
    assert trained["train"]["val"]["macro_f1"] > 0.5  # each label is carried by its own words
    for other in ("accuracy", "pearson"):
        assert (live / f"plots/metrics/val/{other}.tsv").read_text() == f"step\t{other}\n"


def test_the_saved_model_is_multi_label_and_pipeline_gives_each_label_its_sigmoid(trained):
    from transformers import AutoTokenizer, pipeline

    from pipeline.modeling import load_finetuned

    model_dir = trained["root"] / "model"
    model = load_finetuned(model_dir)
    assert model.config.problem_type == "multi_label_classification"
    assert [model.config.id2label[i] for i in range(3)] == NAMES
    scored = pipeline("text-classification", model=str(model_dir), top_k=None)([POSITIVE[0]])[0]
    encoded = AutoTokenizer.from_pretrained(model_dir)(POSITIVE[0], return_tensors="pt")
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(**encoded).logits[0])
    assert {row["label"]: row["score"] for row in scored} == pytest.approx(
        dict(zip(NAMES, expected.tolist())), abs=1e-5
    )
    assert "multi-label" in (model_dir / "README.md").read_text()


def test_evaluation_gives_f1_exact_match_and_average_precision_with_intervals(trained):
    root, metrics = trained["root"], trained["eval"]
    for metric in ("micro_f1", "macro_f1", "exact_match"):
        assert metrics[f"{metric}_ci95_low"] <= metrics[metric] <= metrics[f"{metric}_ci95_high"]
    assert 0 <= metrics["mean_average_precision"] <= 1 and metrics["threshold"] == 0.5
    assert metrics["n_examples"] == 20 and "accuracy" not in metrics
    assert json.loads((root / "eval.json").read_text()) == metrics
    with open(root / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["label"] for row in rows] == ["|".join(labels) for _, labels in split_rows()["dev"]]
    exact = np.mean([row["label"] == row["predicted"] for row in rows])
    assert exact == pytest.approx(metrics["exact_match"], abs=1e-6)
    with open(root / "per_class.csv") as handle:
        per_label = list(csv.DictReader(handle))
    assert [row["class"] for row in per_label] == NAMES
    assert [int(row["support"]) for row in per_label] == expected_targets("dev").sum(axis=0).astype(int).tolist()
    for name in ("confusion.csv", "calibration.csv", "misclassified.csv", "scatter.csv"):
        assert len((root / name).read_text().splitlines()) == 1  # the header only


def test_the_predict_stage_gives_each_test_text_its_labels_and_probabilities(trained):
    with open(trained["root"] / "predictions" / "test.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["text", "labels", "p_praise", "p_scorn", "p_music"] and len(rows) == 10
    assert [row["text"] for row in rows] == [text for text, _ in split_rows()["test"]]
    for row in rows:
        given = {name for name in NAMES if float(row[f"p_{name}"]) >= 0.5}
        assert set(filter(None, row["labels"].split("|"))) == given


def test_predict_prints_the_label_set_at_the_threshold_asked(trained, capsys):
    from pipeline.cli import main

    model_dir = str(trained["root"] / "model")
    params = trained["root"] / "params.yaml"
    params.write_text("data:\n  task: multi_label\n  text_columns: [text]\n")
    command = ["predict", "--model", model_dir, "--params", str(params), POSITIVE[1]]
    assert main([*command, "--threshold", "0.01"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["labels"] == [name for name in NAMES if row[f"p_{name}"] >= 0.01] and len(row["labels"]) == 3
    assert set(row) == {"text", "labels", "p_praise", "p_scorn", "p_music"}
    with pytest.raises(SystemExit) as exited:
        main([*command, "--threshold", "1.5"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --threshold 1.5: give a probability in (0, 1), e.g. 0.5"


def test_the_export_stage_checks_onnx_on_the_label_decisions(trained):
    report = trained["export"]
    assert report["fp32_max_abs_logit_diff"] <= report["fp32_tolerance"]
    assert report["fp32_macro_f1"] == pytest.approx(report["eager_macro_f1"], abs=1e-6)
    assert "int8_macro_f1" in report and 0 <= report["int8_label_agreement"] <= 1


def test_select_best_chooses_the_epoch_by_a_multi_label_metric(tiny_bert, tmp_path):
    from pipeline.training import train

    data = id_list_config(write_id_lists(tmp_path / "ids"), select_fraction=0.25)
    download(data, tmp_path / "raw")
    assert read_info(tmp_path / "raw")["splits"]["select"] == 15
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), tmp_path / "raw", tmp_path / "tok")
    train_cfg = TrainConfig(
        epochs=2,
        batch_size=8,
        lr=3e-3,
        precision="fp32",
        select_best=True,
        select_metric="mean_average_precision",
        log_every_steps=4,
    )
    params = Params(data=data, model=ModelConfig(name=str(tiny_bert)), train=train_cfg)
    selected = train(params, tmp_path / "tok", tmp_path / "model", tmp_path / "live")["selected"]
    assert selected["metric"] == "mean_average_precision" and selected["score"] == max(selected["scores"])
    assert "val_macro_f1" in selected


def test_best_threshold_is_the_grid_point_of_best_macro_f1_nearest_one_half():
    from pipeline.metrics import THRESHOLD_GRID, best_threshold

    # Both labels are right from any threshold in (0.2, 0.35]: of those, 0.35 lies nearest 0.5.
    probabilities = np.array([[0.35, 0.2], [0.1, 0.4], [0.35, 0.4], [0.1, 0.2]])
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert best_threshold(probabilities, truth) == (0.35, 1.0)
    rng = np.random.default_rng(0)
    probabilities, truth = rng.random((50, 4)), rng.random((50, 4)) < 0.3
    threshold, macro_f1 = best_threshold(probabilities, truth)
    every = [multi_label_scores(probabilities, truth, t)["macro_f1"] for t in THRESHOLD_GRID]
    assert (
        macro_f1
        == pytest.approx(max(every))
        == pytest.approx(multi_label_scores(probabilities, truth, threshold)["macro_f1"])
    )
    assert best_threshold(probabilities, np.zeros((50, 4), bool)) == (0.5, 0.0)  # all equally bad: 0.5


def test_select_threshold_picks_it_on_the_slice_and_evaluate_and_predict_apply_it(tiny_bert, tmp_path, capsys):
    from test_evaluation import outputs
    from transformers import AutoConfig

    from pipeline.cli import main
    from pipeline.evaluation import eval_loader, evaluate_model, predict
    from pipeline.metrics import THRESHOLD_GRID, best_threshold
    from pipeline.modeling import load_finetuned
    from pipeline.onnx_export import export_onnx
    from pipeline.predict import predict_test_split
    from pipeline.tokenization import load_split
    from pipeline.training import train

    data = id_list_config(write_id_lists(tmp_path / "ids"), select_fraction=0.25)
    download(data, tmp_path / "raw")
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), tmp_path / "raw", tmp_path / "tok")
    train_cfg = TrainConfig(
        epochs=3, batch_size=8, lr=5e-3, layer_lr_decay=1.0, precision="fp32", select_threshold=True, log_every_steps=4
    )
    params = Params(data=data, model=ModelConfig(name=str(tiny_bert)), train=train_cfg)
    metrics = train(params, tmp_path / "tok", tmp_path / "model", tmp_path / "live")
    chosen = metrics["threshold"]
    assert chosen["value"] in THRESHOLD_GRID and chosen["on"].endswith("(15 examples)")
    assert "selected" not in metrics  # the epoch is the last one: train.select_best is off

    # The threshold is the best on the select slice for the weights saved, and is saved with them.
    model = load_finetuned(tmp_path / "model")
    assert model.config.multi_label_threshold == chosen["value"]
    on_slice = predict(
        model, eval_loader(load_split(tmp_path / "tok", "select"), 8, 0), torch.device("cpu"), task="multi_label"
    )
    expected = best_threshold(on_slice.logits.sigmoid().numpy(), on_slice.labels.numpy())
    assert (chosen["value"], chosen["select_macro_f1"]) == (expected[0], pytest.approx(expected[1], abs=1e-6))
    assert f"from probability {chosen['value']:g}" in (tmp_path / "model" / "README.md").read_text()

    # Validation during training and the evaluate stage score the same labels at it.
    evaluated = evaluate_model(
        EvaluateConfig(precision="fp32"), tmp_path / "model", tmp_path / "tok", tmp_path / "raw", outputs(tmp_path)
    )
    assert (evaluated["threshold"], evaluated["threshold_from"]) == (chosen["value"], "train.select_threshold")
    assert evaluated["macro_f1"] == pytest.approx(metrics["val"]["macro_f1"], abs=1e-4)
    exported = export_onnx(ExportConfig(), tmp_path / "model", tmp_path / "raw", tmp_path / "onnx", tmp_path / "e.json")
    assert exported["eager_macro_f1"] == pytest.approx(evaluated["macro_f1"], abs=1e-6)
    assert AutoConfig.from_pretrained(tmp_path / "onnx").multi_label_threshold == chosen["value"]

    # The predict stage and command give the labels at it, unless --threshold says otherwise.
    predict_test_split(tmp_path / "model", tmp_path / "raw", tmp_path / "predictions", threshold=0.5)
    with open(tmp_path / "predictions" / "test.csv") as handle:
        for row in csv.DictReader(handle):
            given = {name for name in NAMES if float(row[f"p_{name}"]) >= chosen["value"]}
            assert set(filter(None, row["labels"].split("|"))) == given
    (tmp_path / "params.yaml").write_text("data:\n  task: multi_label\n  text_columns: [text]\n")
    command = ["predict", "--model", str(tmp_path / "model"), "--params", str(tmp_path / "params.yaml"), POSITIVE[1]]
    for extra, threshold in (([], chosen["value"]), (["--threshold", "0.01"], 0.01)):
        assert main([*command, *extra]) == 0
        (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert row["labels"] == [name for name in NAMES if row[f"p_{name}"] >= threshold]


def test_without_select_threshold_the_model_saves_none_and_evaluate_threshold_applies(trained):
    from transformers import AutoConfig

    assert trained["eval"]["threshold_from"] == "evaluate.threshold"
    assert not hasattr(AutoConfig.from_pretrained(trained["root"] / "model"), "multi_label_threshold")


def test_a_select_slice_for_the_threshold_alone_is_accepted():
    params = params_from_dict(
        {"data": {"task": "multi_label", "select_fraction": 0.1}, "train": {"select_threshold": True}}
    )
    assert params.train.select_threshold and not params.train.select_best
