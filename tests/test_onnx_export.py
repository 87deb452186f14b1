"""The export stage: a tiny classifier exported to ONNX labels like PyTorch, its checks decide what ships,
and predict --backend onnx runs it."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, sentiment_rows

from pipeline import onnx_export
from pipeline.cli import main
from pipeline.config import DataConfig, ExportConfig, ModelConfig, Params, TrainConfig
from pipeline.data import download
from pipeline.errors import PipelineError
from pipeline.training import train

SENTENCES = sentiment_rows(12)[0]
EVERY_INT8 = ExportConfig(int8_min_agreement=0.0, int8_max_accuracy_drop=1.0)  # checks that int8 cannot fail


@pytest.fixture(scope="module")
def raw(glue_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw") / "raw"
    download(DataConfig(path=str(glue_dir), config=None), folder)
    return folder


def trained(model, tokenized, folder):
    params = Params(model=ModelConfig(name=str(model)), train=TrainConfig(epochs=2, lr=2e-3, precision="fp32"))
    train(params, tokenized, folder / "model", folder / "live")
    return folder / "model"


@pytest.fixture(scope="module")
def classifier(tiny_bert, tokenized, tmp_path_factory):
    return trained(tiny_bert, tokenized, tmp_path_factory.mktemp("classifier"))


@pytest.fixture(scope="module")
def exported(classifier, raw, tmp_path_factory):
    """The export stage's folder with int8 shipped, and its report."""
    root = tmp_path_factory.mktemp("exported")
    report = onnx_export.export_onnx(EVERY_INT8, classifier, raw, root / "onnx", root / "export.json")
    return root / "onnx", report


def predict(capsys, *args):
    assert main(["predict", "--params", str(PROJECT_ROOT / "params.yaml"), *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_onnx_model_gives_pytorchs_labels_and_probabilities(classifier, exported, capsys):
    folder, report = exported
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["model.onnx", "model_int8.onnx"]
    assert report["fp32_max_abs_logit_diff"] <= report["fp32_tolerance"] == 1e-4
    assert report["fp32_accuracy"] == report["eager_accuracy"]
    eager = predict(capsys, "--model", str(classifier), "--precision", "fp32", *SENTENCES)  # on a GPU if any
    onnx = predict(capsys, "--backend", "onnx", "--model", str(folder), "--precision", "fp32", *SENTENCES)
    assert [r["label"] for r in onnx] == [r["label"] for r in eager]
    assert [r["p_positive"] for r in onnx] == pytest.approx([r["p_positive"] for r in eager], abs=1e-4)
    # Batches of one: lengths and a batch size the export never saw (its axes are dynamic).
    args = ["--backend", "onnx", "--model", str(folder), "--precision", "fp32", "--batch-size", "1", *SENTENCES]
    batches_of_one = [r["p_positive"] for r in predict(capsys, *args)]
    assert batches_of_one == pytest.approx([r["p_positive"] for r in eager], abs=1e-4)


def test_the_export_names_no_install_path_so_its_bytes_repeat(classifier, exported, raw, tmp_path):
    """DVC hashes models/onnx: a fresh clone installed elsewhere must write the same bytes."""
    import torch
    import transformers

    folder, _ = exported
    graph = (folder / "model.onnx").read_bytes()
    for package in (torch, transformers):
        assert str(Path(package.__file__).parent).encode() not in graph
    assert onnx_export.STACK_TRACE_KEY.encode() not in graph
    assert b"pkg.torch.onnx.class_hierarchy" in graph  # the exporter's other notes stay
    onnx_export.export_onnx(ExportConfig(quantize=False), classifier, raw, tmp_path / "again", tmp_path / "x.json")
    assert (tmp_path / "again" / "model.onnx").read_bytes() == graph


def test_auto_precision_runs_the_shipped_int8_model(exported, capsys):
    folder, report = exported
    assert report["int8_shipped"]
    auto = predict(capsys, "--backend", "onnx", "--model", str(folder), *SENTENCES)
    int8 = predict(capsys, "--backend", "onnx", "--model", str(folder), "--precision", "int8", *SENTENCES)
    fp32 = predict(capsys, "--backend", "onnx", "--model", str(folder), "--precision", "fp32", *SENTENCES)
    assert auto == int8
    assert [r["p_positive"] for r in int8] != [r["p_positive"] for r in fp32]  # it really is another model


def test_a_distilbert_model_without_token_type_ids_exports(tiny_distilbert, raw, tmp_path):
    model = tiny_distilbert_classifier(tiny_distilbert)
    report = onnx_export.export_onnx(ExportConfig(quantize=False), model, raw, tmp_path / "onnx", tmp_path / "x.json")
    assert report["fp32_max_abs_logit_diff"] <= 1e-4 and "int8_label_agreement" not in report
    assert not (tmp_path / "onnx" / "model_int8.onnx").exists()


def test_predict_runs_a_distilbert_model_whose_tokenizer_gives_token_type_ids(tiny_distilbert, capsys):
    """The BERT tokenizer saved with the tiny DistilBERT emits token_type_ids, which DistilBERT does not take."""
    rows = predict(capsys, "--model", str(tiny_distilbert_classifier(tiny_distilbert)), *SENTENCES[:3])
    assert [r["text"] for r in rows] == SENTENCES[:3]


def tiny_distilbert_classifier(folder):
    """An untrained DistilBERT classifier (random head): parity does not need a trained model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = folder.parent / f"{folder.name}-classifier"
    if not out.exists():
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
        )
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(folder).save_pretrained(out)
    return out


def test_int8_that_answers_differently_is_left_out(classifier, raw, tmp_path, monkeypatch, capsys):
    measured = onnx_export._logits_of

    def int8_flips_every_label(folder, file, config, tokenizer, inputs):
        logits = measured(folder, file, config, tokenizer, inputs)
        return -logits if file == onnx_export.INT8_FILE else logits

    monkeypatch.setattr(onnx_export, "_logits_of", int8_flips_every_label)
    report = onnx_export.export_onnx(ExportConfig(), classifier, raw, tmp_path / "onnx", tmp_path / "export.json")
    assert report["int8_label_agreement"] == 0 and not report["int8_shipped"]
    assert json.loads((tmp_path / "export.json").read_text()) == report
    assert sorted(p.name for p in (tmp_path / "onnx").glob("*.onnx")) == ["model.onnx"]
    assert "int8 left out (label agreement 0.0000" in capsys.readouterr().err
    with pytest.raises(PipelineError, match="no int8 model; the export stage left it out"):
        onnx_export.load_onnx_classifier(tmp_path / "onnx", "int8")
    assert onnx_export.load_onnx_classifier(tmp_path / "onnx", "auto") is not None  # fp32


def test_a_quantizer_failure_ships_fp32_and_says_why(classifier, raw, tmp_path, monkeypatch, capsys):
    def quantizer_fails(fp32_path, int8_path):
        int8_path.write_bytes(b"half a model")
        raise RuntimeError("Unable to find data type for weight_name='x'")

    monkeypatch.setattr(onnx_export, "quantize_int8", quantizer_fails)
    report = onnx_export.export_onnx(ExportConfig(), classifier, raw, tmp_path / "onnx", tmp_path / "export.json")
    assert report["int8_error"] == "Unable to find data type for weight_name='x'" and not report["int8_shipped"]
    assert sorted(p.name for p in (tmp_path / "onnx").glob("*.onnx")) == ["model.onnx"]
    assert "int8 left out, quantization failed" in capsys.readouterr().err


def test_a_model_the_exporter_cannot_handle_is_one_line_and_writes_nothing(classifier, raw, tmp_path, monkeypatch):
    import torch

    def exporter_fails(*args, **kwargs):
        raise torch.onnx.errors.UnsupportedOperatorError("aten::fancy_op", 18, 0)

    monkeypatch.setattr(torch.onnx, "export", exporter_fails)
    with pytest.raises(PipelineError, match=r"^export: torch.onnx could not export BertForSequenceClassification \("):
        onnx_export.export_onnx(ExportConfig(), classifier, raw, tmp_path / "onnx", tmp_path / "export.json")
    assert list(tmp_path.iterdir()) == []


def test_a_model_file_that_cannot_be_written_is_reported_as_a_write_not_an_export(classifier, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(classifier)
    path = tmp_path / "no such folder" / "model.onnx"
    with pytest.raises(PipelineError, match=r"^export: could not write the ONNX model to .*model\.onnx \("):
        onnx_export.export_fp32(model, AutoTokenizer.from_pretrained(classifier), path)
    assert list(tmp_path.iterdir()) == []


def test_an_fp32_graph_that_computes_something_else_fails_the_stage_and_writes_nothing(
    classifier, raw, tmp_path, monkeypatch
):
    export = onnx_export.export_fp32

    def export_a_shifted_model(model, tokenizer, path):
        import torch

        with torch.no_grad():
            model.classifier.bias += 0.01  # a small error, as a wrong graph would make
        export(model, tokenizer, path)

    monkeypatch.setattr(onnx_export, "export_fp32", export_a_shifted_model)
    with pytest.raises(PipelineError, match=r"differ from PyTorch's by up to 0\.01.*nothing was written"):
        onnx_export.export_onnx(ExportConfig(), classifier, raw, tmp_path / "onnx", tmp_path / "export.json")
    assert list(tmp_path.iterdir()) == []


def test_the_export_is_the_same_bytes_twice(classifier, raw, exported, tmp_path):
    folder, report = exported
    again = onnx_export.export_onnx(EVERY_INT8, classifier, raw, tmp_path / "onnx", tmp_path / "export.json")
    assert again == report
    for file in sorted(folder.iterdir()):
        assert (tmp_path / "onnx" / file.name).read_bytes() == file.read_bytes(), file.name


def test_int8_logits_stay_close_to_fp32(exported, capsys):
    """Dynamic quantization perturbs the logits; it does not scramble them."""
    folder, _ = exported
    args = ["--backend", "onnx", "--model", str(folder), *SENTENCES]
    fp32 = np.array([r["p_positive"] for r in predict(capsys, *args, "--precision", "fp32")])
    int8 = np.array([r["p_positive"] for r in predict(capsys, *args, "--precision", "int8")])
    assert np.abs(fp32 - int8).max() < 0.1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "int8"], "--precision int8 runs the exported model: add --backend onnx"),
        (["--backend", "onnx", "--precision", "bf16"], "--backend onnx runs fp32 or int8"),
    ],
)
def test_precision_that_the_backend_cannot_run_is_refused(exported, classifier, args, message, capsys):
    folder, _ = exported
    model = folder if "onnx" in args else classifier
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--params", str(PROJECT_ROOT / "params.yaml"), "--model", str(model), *args, "a text"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "value"),
    [("fp32_tolerance", 0), ("fp32_tolerance", 1), ("int8_min_agreement", 1.5), ("int8_max_accuracy_drop", -0.1)],
)
def test_bad_export_params_are_refused_in_one_line(key, value):
    from pipeline.config import params_from_dict

    with pytest.raises(PipelineError, match=rf"invalid parameter export\.{key}="):
        params_from_dict({"export": {key: value}})
