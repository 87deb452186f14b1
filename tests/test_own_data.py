"""A user's own data: delimited text, JSON Lines and Parquet files, sentence pairs, many classes, labels
of any kind, read through params alone; and the real MRPC, CoLA and emotion files with every row."""

import json

import numpy as np
import pytest
from conftest import SHARED, needs_shared

from pipeline.config import DataConfig, ModelConfig, TokenizeConfig
from pipeline.data import download, read_split
from pipeline.errors import PipelineError
from pipeline.tokenization import load_split, tokenize


def own(path, **overrides):
    return DataConfig(path=str(path), config=None, **overrides)


def write(folder, name, text, encoding="utf-8"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(text.encode(encoding))
    return folder / name


PAIRS = [
    ("a cat sits on the mat", "an animal sits", "yes"),
    ("the film was long", "the film was short", "no"),
    ("he bought a car", "he purchased a vehicle", "yes"),
    ("it rained all day", "the day was sunny", "no"),
]


def pair_csv(folder, rows=PAIRS):
    lines = ["premise,hypothesis,verdict", *(f"{a},{b},{label}" for a, b, label in rows)]
    write(folder, "train.csv", "\n".join(lines * 1) + "\n")
    write(folder, "validation.csv", "\n".join(lines[:3]) + "\n")
    return folder


def test_a_pair_csv_with_string_labels(tmp_path, tiny_bert):
    cfg = own(pair_csv(tmp_path / "pairs"), text_columns=("premise", "hypothesis"), label_column="verdict")
    info = download(cfg, tmp_path / "raw")
    assert info["label_names"] == ["no", "yes"]  # string labels: alphabetical
    assert info["splits"] == {"train": 4, "validation": 2}
    assert info["read"]["train"] == {"from": "train", "rows": 4, "files": ["train.csv"], "data_lines": 4}
    train = read_split(tmp_path / "raw", "train")
    assert train.texts[0] == "a cat sits on the mat" and train.text_pairs[0] == "an animal sits"
    assert train.labels.tolist() == [1, 0, 1, 0]

    meta = tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=8), tmp_path / "raw", tmp_path / "tok")
    split = load_split(tmp_path / "tok", "train")
    first = split.input_ids[split.offsets[0] : split.offsets[1]].tolist()
    types = split.token_type_ids[split.offsets[0] : split.offsets[1]].tolist()
    # [CLS] premise [SEP] hypothesis [SEP], cut longest_first to 8 tokens: the longer premise gave way first.
    assert len(first) == 8 and first.count(102) == 2 and types == [0] * 5 + [1] * 3
    assert meta["splits"]["train"]["n_truncated"] == 4 and meta["splits"]["validation"]["n_truncated"] == 2


def test_a_three_class_json_lines_file(tmp_path):
    rows = [("so happy today", "joy"), ("this is outrageous", "anger"), ("i am scared", "fear")] * 3
    text = "".join(json.dumps({"text": t, "emotion": e}) + "\n" for t, e in rows)
    folder = tmp_path / "emotion"
    write(folder, "train.jsonl", text)
    write(folder, "validation.jsonl", text)
    info = download(own(folder, text_columns=("text",), label_column="emotion"), tmp_path / "raw")
    assert info["label_names"] == ["anger", "fear", "joy"]
    assert read_split(tmp_path / "raw", "validation").labels.tolist() == [2, 0, 1] * 3


@pytest.mark.parametrize(
    ("labels", "names", "ids"),
    [([1, 2, 3, 1], ["1", "2", "3"], [0, 1, 2, 0]), ([0, 5, 9, 5], ["0", "5", "9"], [0, 1, 2, 1])],
    ids=["one-based", "sparse"],
)
def test_integer_labels_in_any_range_sort_by_value(tmp_path, labels, names, ids):
    text = "".join(json.dumps({"sentence": f"text {i}", "label": label}) + "\n" for i, label in enumerate(labels))
    folder = tmp_path / "ints"
    write(folder, "train.jsonl", text)
    write(folder, "dev.jsonl", text)  # dev: the validation split, by datasets' own file patterns
    info = download(own(folder), tmp_path / "raw")
    assert info["label_names"] == names
    assert read_split(tmp_path / "raw", "validation").labels.tolist() == ids


def test_a_headerless_tsv_with_column_names_given(tmp_path):
    lines = [
        "src1\t1\t\tthe book is on the table .",
        "src1\t0\t*\tthe book are on table the .",
        "src2\t1\t\tshe left .",
    ]
    folder = tmp_path / "cola"
    write(folder, "train.tsv", "\n".join(lines) + "\n")
    write(folder, "dev.tsv", "\n".join(lines[:2]))  # no newline after the last line, as CoLA's dev.tsv
    cfg = own(folder, column_names=("source", "label", "original", "sentence"), test_split=None)
    info = download(cfg, tmp_path / "raw")
    assert info["splits"] == {"train": 3, "validation": 2} and info["label_names"] == ["0", "1"]
    assert read_split(tmp_path / "raw", "train").texts[1] == "the book are on table the ."


def test_a_byte_order_mark_and_a_stray_quote_lose_no_row_with_quoting_off(tmp_path):
    # A field that opens with a quote and never closes it on its line, as about a fifth of MRPC's lines do.
    lines = ["Quality\t#1 String\t#2 String", '1\t"Yes, he said\tHe agreed', "0\tIt rained\tIt was dry", '1\tA"\tB']
    folder = tmp_path / "mrpc"
    write(folder, "train.tsv", "\ufeff" + "\n".join(lines) + "\n")
    write(folder, "dev.tsv", "\ufeff" + "\n".join(lines) + "\n")
    cfg = own(folder, text_columns=("#1 String", "#2 String"), label_column="Quality", quoting=False)
    info = download(cfg, tmp_path / "raw")  # the mark would otherwise stick to the first column's name
    assert info["splits"] == {"train": 3, "validation": 3}
    assert read_split(tmp_path / "raw", "train").texts[0] == '"Yes, he said'
    # With quotes honoured, the stray quote swallows the lines after it: refused, naming both counts.
    with pytest.raises(PipelineError, match=r"train.tsv: 3 data lines but 1 rows read.*set data.quoting: false"):
        download(own(folder, text_columns=("#1 String", "#2 String"), label_column="Quality"), tmp_path / "raw2")
    assert not (tmp_path / "raw2").exists()


def test_files_per_split_and_a_carved_validation_split(tmp_path):
    rows = [(f"review number {i}", "good" if i % 2 else "bad") for i in range(40)]
    file = write(tmp_path / "mine", "reviews.csv", "review,stars\n" + "".join(f"{t},{s}\n" for t, s in rows))
    cfg = DataConfig(
        path="",
        config=None,
        files={"train": str(file)},
        text_columns=("review",),
        label_column="stars",
        eval_fraction=0.25,
        subsample_seed=1,
    )
    info = download(cfg, tmp_path / "raw")
    assert info["splits"] == {"train": 30, "validation": 10}
    assert info["eval_split_carved"] == {"from": "train", "fraction": 0.25, "seed": 1}
    train, validation = read_split(tmp_path / "raw", "train"), read_split(tmp_path / "raw", "validation")
    assert sorted(train.texts + validation.texts) == sorted(t for t, _ in rows)  # every row, in one split
    assert download(cfg, tmp_path / "again")["splits"] == info["splits"]
    assert read_split(tmp_path / "again", "validation").texts == validation.texts  # seeded


def test_the_tokenized_pair_trains_and_validates(tmp_path, tiny_bert):
    from pipeline.config import Params, TrainConfig
    from pipeline.training import train

    rows = PAIRS * 8
    cfg = own(pair_csv(tmp_path / "pairs", rows), text_columns=("premise", "hypothesis"), label_column="verdict")
    download(cfg, tmp_path / "raw")
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), tmp_path / "raw", tmp_path / "tok")
    params = Params(model=ModelConfig(name=str(tiny_bert)), train=TrainConfig(epochs=1, batch_size=8, precision="fp32"))
    metrics = train(params, tmp_path / "tok", tmp_path / "model", tmp_path / "live")
    assert metrics["steps"] == 4 and 0 <= metrics["val"]["accuracy"] <= 1


@needs_shared("data")
@pytest.mark.parametrize(
    ("name", "overrides", "splits", "label_names"),
    [
        (
            "mrpc",
            {"text_columns": ("#1 String", "#2 String"), "label_column": "Quality", "quoting": False},
            {"train": 3667, "validation": 408, "test": 1725},
            ["0", "1"],
        ),
        (
            "cola",
            {"column_names": ("source", "label", "original_label", "sentence"), "test_split": None},
            {"train": 8551, "validation": 1043},
            ["0", "1"],
        ),
        (
            "emotion",
            {"text_columns": ("text",), "label_column": "label_name", "delimiter": ";"},
            {"train": 16000, "validation": 2000, "test": 2000},
            ["anger", "fear", "joy", "love", "sadness", "surprise"],
        ),
        (
            "stsb",
            {
                "task": "regression",
                "text_columns": ("sentence1", "sentence2"),
                "label_column": "score",
                "quoting": False,
            },
            {"train": 5749, "validation": 1500, "test": 1379},
            ["score"],
        ),
        (
            "goemotions",
            {
                "task": "multi_label",
                "column_names": ("text", "labels", "comment_id"),
                "text_columns": ("text",),
                "label_column": "labels",
                "label_separator": ",",
                "label_names": "goemotions/labels.txt",  # under $PIPELINE_SHARED/data
                "quoting": False,
            },
            {"train": 43410, "validation": 5426, "test": 5427},
            "admiration amusement anger annoyance approval caring confusion curiosity desire disappointment "
            "disapproval disgust embarrassment excitement fear gratitude grief joy love nervousness optimism pride "
            "realization relief remorse sadness surprise neutral".split(),
        ),
    ],
)
def test_the_shared_real_data_sets_are_read_with_every_row(tmp_path, name, overrides, splits, label_names):
    if "label_names" in overrides:
        overrides = overrides | {"label_names": str(SHARED / "data" / overrides["label_names"])}
    info = download(own(SHARED / "data" / name, **overrides), tmp_path / "raw")
    assert info["splits"] == splits and info["label_names"] == label_names
    for role, entry in info["read"].items():
        assert entry["rows"] == entry["data_lines"] == splits[role]
    labels = read_split(tmp_path / "raw", "train").labels
    if overrides.get("task") == "regression":  # STS-B's scores, 0 to 5; its test file has none
        assert labels.dtype == np.float32 and labels.min() == 0 and labels.max() == 5
        assert np.isnan(read_split(tmp_path / "raw", "test").labels).all()
    elif overrides.get("task") == "multi_label":  # GoEmotions: every label used, every comment labelled
        assert labels.shape == (splits["train"], 28) and labels.sum(axis=0).min() > 0 and labels.sum(axis=1).min() >= 1
    else:
        assert np.bincount(labels).min() > 0
