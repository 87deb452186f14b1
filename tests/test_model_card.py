"""The model card that the train stage saves with the model (src/pipeline/model_card.py)."""

import pytest
from conftest import PRETRAINED
from huggingface_hub import ModelCard

from pipeline.config import ModelConfig, Params, TrainConfig
from pipeline.model_card import model_card
from pipeline.training import train


def test_the_saved_model_has_a_card_that_parses_and_names_its_results(tiny_bert, tokenized, tmp_path):
    params = Params(model=ModelConfig(name=str(tiny_bert)), train=TrainConfig(epochs=1, batch_size=8, precision="fp32"))
    metrics = train(params, tokenized, tmp_path / "model", tmp_path / "live")
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    assert card.data.class_names == ["negative", "positive"]
    results = {result.metric_type: result for result in card.data.eval_results}
    # The log keeps 5 decimals, the card 6.
    assert results["accuracy"].metric_value == pytest.approx(metrics["val"]["accuracy"], abs=1e-5)
    assert results["loss"].metric_value == pytest.approx(metrics["val"]["loss"], abs=1e-5)
    assert results["accuracy"].dataset_split == "validation" and results["accuracy"].task_type == "text-classification"
    assert card.data.base_model is None  # a local folder is not a Hub id
    assert "train:\n  seed: 42\n  epochs: 1\n" in card.text  # the params that made it
    assert "Git revision:" in card.text and "```bash" in card.text


def test_a_hub_base_model_is_named_with_its_license_and_the_data_set(tmp_path):
    params = Params(model=ModelConfig(name=PRETRAINED))
    card = model_card(params, ["negative", "positive"], 0.9, 0.25, command="python stages/train_model.py")
    parsed = ModelCard(str(card))  # what the Hub and ModelCard.load read back
    assert parsed.data.base_model == PRETRAINED
    assert parsed.data.license == "apache-2.0"  # from the base model's own card, in the offline cache
    assert parsed.data.datasets == ["nyu-mll/glue"]
    (result,) = [r for r in parsed.data.eval_results if r.metric_type == "accuracy"]
    assert (result.dataset_type, result.dataset_config, result.metric_value) == ("nyu-mll/glue", "sst2", 0.9)
    assert parsed.data.model_name == "all-MiniLM-L6-v2-finetuned-sst2"


def test_the_same_run_writes_the_same_card():
    params = Params(model=ModelConfig(name=PRETRAINED))
    first = model_card(params, ["negative", "positive"], 0.9, 0.25, command="python stages/train_model.py")
    second = model_card(params, ["negative", "positive"], 0.9, 0.25, command="python stages/train_model.py")
    assert str(first) == str(second)
