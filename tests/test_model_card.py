"""The model card that the train stage saves with the model (src/pipeline/model_card.py)."""

import subprocess
from pathlib import Path

import pytest
from conftest import PRETRAINED
from huggingface_hub import ModelCard

from pipeline import model_card as model_card_module
from pipeline import training
from pipeline.config import ModelConfig, Params, TrainConfig
from pipeline.model_card import code_files, git_revision, model_card
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
    card = model_card(params, ["negative", "positive"], "accuracy", 0.9, 0.25, command="python stages/train_model.py")
    parsed = ModelCard(str(card))  # what the Hub and ModelCard.load read back
    assert parsed.data.base_model == PRETRAINED
    assert parsed.data.license == "apache-2.0"  # from the base model's own card, in the offline cache
    assert parsed.data.datasets == ["nyu-mll/glue"]
    (result,) = [r for r in parsed.data.eval_results if r.metric_type == "accuracy"]
    assert (result.dataset_type, result.dataset_config, result.metric_value) == ("nyu-mll/glue", "sst2", 0.9)
    assert parsed.data.model_name == "all-MiniLM-L6-v2-finetuned-sst2"


def test_the_same_run_writes_the_same_card():
    params = Params(model=ModelConfig(name=PRETRAINED))
    first = model_card(params, ["negative", "positive"], "accuracy", 0.9, 0.25, command="python stages/train_model.py")
    second = model_card(params, ["negative", "positive"], "accuracy", 0.9, 0.25, command="python stages/train_model.py")
    assert str(first) == str(second)


def test_the_revision_is_the_latest_commit_of_the_code_the_run_ran(tmp_path, monkeypatch):
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "test@example.com")
    git("config", "user.name", "test")
    (tmp_path / "training.py").write_text("steps = 1\n")
    git("add", ".")
    git("commit", "-qm", "code")
    code_commit = git("rev-parse", "HEAD")
    (tmp_path / "dvc.lock").write_text("outs: []\n")  # outputs, docs, params: not the code
    git("add", ".")
    git("commit", "-qm", "outputs")
    monkeypatch.chdir(tmp_path)
    assert git_revision([tmp_path / "training.py"]) == code_commit
    assert git_revision([tmp_path.parent / "elsewhere.py"]) is None  # nothing of it in the repository


def test_the_code_of_a_run_is_the_pipeline_modules_it_imported():
    files = code_files()
    assert Path(training.__file__).resolve() in files and Path(model_card_module.__file__).resolve() in files
