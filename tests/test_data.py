import json

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import write_glue_like

from pipeline.config import DataConfig
from pipeline.data import download, read_split, subsample_indices
from pipeline.errors import PipelineError


def local(folder, **overrides):
    return DataConfig(path=str(folder), config=None, **overrides)


def test_download_writes_every_split_and_keeps_class_names(glue_dir, tmp_path):
    info = download(local(glue_dir), tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [
        "info.json",
        "test.parquet",
        "train.parquet",
        "validation.parquet",
    ]
    assert info["splits"] == {"train": 64, "validation": 24, "test": 8}
    assert info["label_names"] == ["negative", "positive"]
    assert json.loads((tmp_path / "raw" / "info.json").read_text()) == info
    assert info["read"]["train"] == {"from": "train", "rows": 64, "files": ["train.parquet"], "data_lines": 64}
    train = read_split(tmp_path / "raw", "train")
    assert train.texts[:2] == ["a gorgeous , witty film", "a dull , lifeless mess ."] and train.text_pairs is None
    assert train.labels[:2].tolist() == [1, 0]
    assert read_split(tmp_path / "raw", "test").labels.tolist() == [-1] * 8  # kept, apart from training


def test_download_is_byte_identical_when_repeated(glue_dir, tmp_path):
    download(local(glue_dir), tmp_path / "a")
    download(local(glue_dir), tmp_path / "b")
    for name in ("train.parquet", "validation.parquet", "test.parquet", "info.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_subsample_is_seeded_sorted_and_only_touches_train(glue_dir, tmp_path):
    info = download(local(glue_dir, max_train_samples=10, subsample_seed=3), tmp_path / "raw")
    assert info["splits"]["train"] == 10 and info["splits"]["validation"] == 24
    assert info["train_subsample"] == {"of": 64, "kept": 10, "seed": 3}
    idx = pq.read_table(tmp_path / "raw" / "train.parquet").column("idx").to_pylist()
    assert idx == sorted(idx) and idx == subsample_indices(64, 10, 3).tolist()
    assert subsample_indices(64, 10, 4).tolist() != idx
    assert not np.array_equal(subsample_indices(64, 10, 3), np.arange(10))


def test_subsample_larger_than_the_split_keeps_everything(glue_dir, tmp_path):
    assert download(local(glue_dir, max_train_samples=1000), tmp_path / "raw")["splits"]["train"] == 64


def _bad_folder(tmp_path, **kwargs):
    return write_glue_like(tmp_path / "bad", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"rows": {"train": {"sentence": ["good", "  "], "label": [1, 0], "idx": [0, 1]}}},
            r"split 'train' row 1 has an empty or missing 'sentence'",
        ),
        (
            {"rows": {"validation": {"sentence": ["good", "bad"], "label": [1, -1], "idx": [0, 1]}}},
            r"split 'validation' row 1 has no 'label' \(-1\); every validation example needs a label",
        ),
        ({"n_validation": 0}, r"could not read a dataset there: .*validation.*needs non-empty train and validation"),
    ],
)
def test_bad_data_is_rejected_in_one_line(tmp_path, kwargs, message):
    with pytest.raises(PipelineError, match=message) as error:
        download(local(_bad_folder(tmp_path, **kwargs)), tmp_path / "raw")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "raw").exists()  # nothing half-written


def test_missing_columns_and_splits(tmp_path):
    folder = tmp_path / "nocol"
    folder.mkdir()
    for split in ("train", "validation"):
        datasets.Dataset.from_dict({"text": ["good"], "label": [1]}).to_parquet(str(folder / f"{split}.parquet"))
    with pytest.raises(PipelineError, match=r"lacks column\(s\) \['sentence'\]; it has \['text', 'label'\]"):
        download(local(folder), tmp_path / "raw")
    only_train = tmp_path / "onlytrain"
    only_train.mkdir()
    datasets.Dataset.from_dict({"sentence": ["good"], "label": [1]}).to_parquet(str(only_train / "train.parquet"))
    with pytest.raises(PipelineError, match="has no 'validation' split"):
        download(local(only_train), tmp_path / "raw")


def test_missing_local_directory_and_unknown_hub_dataset(tmp_path):
    with pytest.raises(PipelineError, match="no such directory"):
        download(DataConfig(path=str(tmp_path / "nowhere")), tmp_path / "raw")
    with pytest.raises(
        PipelineError, match=r"dataset 'no-such-owner/no-such-data' \(data.path\) could not be loaded.*fix:"
    ):
        download(DataConfig(path="no-such-owner/no-such-data", config=None), tmp_path / "raw")


def test_a_failed_download_keeps_the_earlier_output(glue_dir, tmp_path):
    download(local(glue_dir), tmp_path / "raw")
    before = (tmp_path / "raw" / "train.parquet").read_bytes()
    with pytest.raises(PipelineError):
        download(DataConfig(path=str(tmp_path / "nowhere")), tmp_path / "raw")
    assert (tmp_path / "raw" / "train.parquet").read_bytes() == before
