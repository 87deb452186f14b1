import json

import pytest
import torch
from safetensors import safe_open

from pipeline.config import DataConfig, ModelConfig, TokenizeConfig
from pipeline.data import download
from pipeline.errors import PipelineError
from pipeline.tokenization import load_split, read_meta, tokenize


@pytest.fixture(scope="module")
def raw_dir(glue_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw") / "raw"
    download(DataConfig(path=str(glue_dir), config=None), folder)
    return folder


def test_round_trip_matches_the_tokenizer_without_padding(raw_dir, tmp_path, tiny_bert, tokenizer):
    meta = tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), raw_dir, tmp_path / "tok")
    assert meta["splits"]["train"]["n_examples"] == 64 and meta["splits"]["validation"]["n_examples"] == 24
    assert "test" not in meta["splits"]  # unlabeled: never tokenized for training or evaluation
    assert meta["label_names"] == ["negative", "positive"] and meta["pad_token_id"] == tokenizer.pad_token_id
    assert read_meta(tmp_path / "tok") == meta
    split = load_split(tmp_path / "tok", "train")
    from pipeline.data import read_split

    raw = read_split(raw_dir, "train")
    for i in (0, 7, 63):
        ids, label = split[i]
        assert ids.tolist() == tokenizer(raw.sentences[i])["input_ids"]
        assert label == raw.labels[i]
    assert int(split.lengths.sum()) == split.input_ids.numel() == meta["splits"]["train"]["n_tokens"]
    assert tokenizer.pad_token_id not in split.input_ids.tolist()  # stored unpadded


def test_cache_is_safetensors_with_three_flat_tensors(raw_dir, tmp_path, tiny_bert):
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), raw_dir, tmp_path / "tok")
    with safe_open(tmp_path / "tok" / "train.safetensors", framework="pt") as handle:
        assert sorted(handle.keys()) == ["input_ids", "labels", "offsets"]
        assert handle.get_tensor("input_ids").dtype == torch.int32


def test_same_inputs_give_byte_identical_files(raw_dir, tmp_path, tiny_bert):
    for name in ("a", "b"):
        tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), raw_dir, tmp_path / name)
    for file in ("train.safetensors", "validation.safetensors", "meta.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_truncation_and_length_statistics(raw_dir, tmp_path, tiny_bert):
    meta = tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=6), raw_dir, tmp_path / "tok")
    stats = meta["splits"]["train"]
    assert stats["length_max"] == 6 and stats["n_at_max_length"] > 0
    assert int(load_split(tmp_path / "tok", "train").lengths.max()) == 6


def test_max_length_beyond_the_model_limit_is_rejected_before_work(raw_dir, tmp_path, tiny_bert):
    # The tiny model has 64 position embeddings.
    with pytest.raises(PipelineError, match=r"tokenize.max_length=65: .* accepts at most 64 tokens"):
        tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=65), raw_dir, tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_missing_model_folder_and_unknown_hub_model(raw_dir, tmp_path):
    with pytest.raises(PipelineError, match="no such model folder"):
        tokenize(ModelConfig(name=str(tmp_path / "missing")), TokenizeConfig(), raw_dir, tmp_path / "tok")
    with pytest.raises(
        PipelineError, match=r"model 'nobody/no-such-model' \(model.name\) could not be loaded.*HF_HOME"
    ):
        tokenize(ModelConfig(name="nobody/no-such-model"), TokenizeConfig(), raw_dir, tmp_path / "tok")


def test_damaged_cache_gives_one_line(tmp_path):
    (tmp_path / "train.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(PipelineError, match="is damaged"):
        load_split(tmp_path, "train")
    with pytest.raises(PipelineError, match="run the tokenize stage first"):
        load_split(tmp_path, "validation")


def test_meta_is_plain_json(raw_dir, tmp_path, tiny_bert):
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), raw_dir, tmp_path / "tok")
    meta = json.loads((tmp_path / "tok" / "meta.json").read_text())
    assert meta["tokenizer"] == str(tiny_bert) and len(meta["tokenizer_fingerprint"]) == 16
