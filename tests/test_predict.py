"""python -m pipeline predict: texts from arguments, stdin or files; labels in input order; files written
once and never over a user's file."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import PROJECT_ROOT, SHARED, needs_shared, sentiment_rows

from pipeline.cli import main
from pipeline.config import ModelConfig, Params, TrainConfig
from pipeline.training import train

SENTENCES = sentiment_rows(12)[0]


@pytest.fixture(scope="module")
def classifier(tiny_bert, tokenized, tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    params = Params(model=ModelConfig(name=str(tiny_bert)), train=TrainConfig(epochs=2, lr=2e-3, precision="fp32"))
    train(params, tokenized, folder / "model", folder / "live")
    return folder / "model"


def predict(capsys, *args):
    assert main(["predict", "--params", str(PROJECT_ROOT / "params.yaml"), *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_texts_as_arguments_get_a_label_a_score_and_every_probability(classifier, capsys):
    rows = predict(capsys, "--model", str(classifier), *SENTENCES)
    assert [row["text"] for row in rows] == SENTENCES  # input order, though batches go by length
    for row in rows:
        probabilities = {row["p_negative"], row["p_positive"]}
        assert row["label"] in {"negative", "positive"} and row["score"] == max(probabilities)
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)


def test_batch_size_and_precision_change_no_label(classifier, capsys):
    one = predict(capsys, "--model", str(classifier), "--batch-size", "1", "--precision", "fp32", *SENTENCES)
    many = predict(capsys, "--model", str(classifier), "--batch-size", "64", "--precision", "fp32", *SENTENCES)
    assert [r["label"] for r in one] == [r["label"] for r in many]
    assert [r["score"] for r in one] == pytest.approx([r["score"] for r in many], abs=1e-5)


def test_lines_on_stdin(classifier):
    command = [sys.executable, "-m", "pipeline", "predict", "--model", str(classifier)]
    command += ["--params", str(PROJECT_ROOT / "params.yaml")]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")}
    done = subprocess.run(command, input="\n".join(SENTENCES[:3]) + "\n\n", capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["text"] for line in done.stdout.splitlines()] == SENTENCES[:3]  # blank lines skipped


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_a_file_in_and_a_file_out(classifier, tmp_path, capsys, suffix):
    frame = pd.DataFrame({"review": SENTENCES, "stars": range(len(SENTENCES))})
    source = tmp_path / f"reviews{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(source)
    elif suffix == ".jsonl":
        frame.to_json(source, orient="records", lines=True)
    else:
        frame.to_csv(source, sep="," if suffix == ".csv" else "\t", index=False)
    out = tmp_path / f"labels{suffix}"
    args = ["--model", str(classifier), "--input", str(source), "--text-column", "review", "--output", str(out)]
    assert predict(capsys, *args) == []  # nothing on stdout: the labels are in the file
    written = {
        ".csv": lambda: pd.read_csv(out),
        ".tsv": lambda: pd.read_csv(out, sep="\t"),
        ".jsonl": lambda: pd.read_json(out, lines=True),
        ".parquet": lambda: pd.read_parquet(out),
    }[suffix]()
    assert written["text"].tolist() == SENTENCES
    assert list(written.columns) == ["text", "label", "score", "p_negative", "p_positive"]
    # The file is a user's now: not replaced unless asked.
    with pytest.raises(SystemExit) as refused:
        main(["predict", "--params", str(PROJECT_ROOT / "params.yaml"), *args])
    assert refused.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert predict(capsys, *args, "--overwrite") == []


def test_a_pair_model_reads_two_columns(classifier, tmp_path, capsys):
    frame = pd.DataFrame({"premise": SENTENCES[:4], "hypothesis": SENTENCES[4:8]})
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    rows = predict(
        capsys,
        "--model",
        str(classifier),
        "--input",
        str(tmp_path / "pairs.csv"),
        "--text-column",
        "premise",
        "--text-column",
        "hypothesis",
    )
    assert [(r["text"], r["text_pair"]) for r in rows] == list(zip(SENTENCES[:4], SENTENCES[4:8]))


def test_the_predict_stage_writes_other_data_as_csv(classifier, glue_dir, tmp_path):
    from pipeline.config import DataConfig
    from pipeline.data import download
    from pipeline.predict import predict_test_split

    download(DataConfig(path=str(glue_dir), config=None), tmp_path / "raw")
    result = predict_test_split(classifier, tmp_path / "raw", tmp_path / "predictions")
    written = pd.read_csv(tmp_path / "predictions" / "test.csv")
    assert result["examples"] == 8 and list(written.columns) == ["text", "label", "score"] and len(written) == 8
    assert written["text"].tolist() == sentiment_rows(8, offset=64 + 24)[0]  # commas and all, in order


@needs_shared("data/glue")
def test_the_predict_stage_writes_the_file_the_glue_server_takes(classifier, tmp_path):
    from pipeline.config import DataConfig
    from pipeline.data import download
    from pipeline.predict import predict_test_split

    download(DataConfig(path=str(SHARED / "data" / "glue"), config="sst2", max_train_samples=100), tmp_path / "raw")
    predict_test_split(classifier, tmp_path / "raw", tmp_path / "predictions")
    lines = (tmp_path / "predictions" / "SST-2.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 1 + 1821
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(i) for i, _ in rows] == list(range(1821)) and {p for _, p in rows} <= {"0", "1"}
