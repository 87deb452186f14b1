"""train.select_best: the epoch kept is chosen on a slice carved from training, and a resumed run keeps the same."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import live_curve, sentiment_rows, write_glue_like
from test_resume import run_train, write_params

from pipeline.config import DataConfig, ModelConfig, TokenizeConfig
from pipeline.data import download, read_info, read_split
from pipeline.errors import PipelineError
from pipeline.evaluation import eval_loader, predict, score
from pipeline.modeling import load_finetuned
from pipeline.tokenization import load_split, read_meta, tokenize
from pipeline.training import Progress

EPOCHS = 4
# Labels drawn at random: nothing generalises, so a model that learns its training labels by heart
# scores worse on the held-out slice the longer it trains, and the best epoch comes before the last.
SELECTING = {"epochs": EPOCHS, "lr": 3e-3, "select_best": True, "select_metric": "loss", "checkpoint_every_steps": 4}


@pytest.fixture(scope="module")
def noisy(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("noisy")
    sentences, _ = sentiment_rows(96, 0)
    labels = np.random.default_rng(0).integers(0, 2, 96).tolist()
    rows = {"train": {"sentence": sentences, "label": labels, "idx": list(range(96))}}
    write_glue_like(root / "data", rows=rows)
    download(DataConfig(path=str(root / "data"), config=None, select_fraction=0.25), root / "raw")
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), root / "raw", root / "tok")
    return root


def test_the_select_slice_is_carved_from_training_and_tokenized(noisy):
    info = read_info(noisy / "raw")
    assert info["splits"]["train"] == 72 and info["splits"]["select"] == 24  # 96 × 0.25 held out
    assert info["select_split_carved"] == {"from": "train", "fraction": 0.25, "seed": 1}
    kept, held_out = read_split(noisy / "raw", "train").texts, read_split(noisy / "raw", "select").texts
    assert Counter(kept) + Counter(held_out) == Counter(sentiment_rows(96, 0)[0])  # every row once, in one or the other
    assert read_meta(noisy / "tok")["splits"]["select"]["n_examples"] == 24


def test_a_slice_without_every_class_is_refused(glue_dir, tmp_path):
    with pytest.raises(
        PipelineError, match=r"data.select_fraction=0.01 carves 1 example\(s\), with no example of class"
    ):
        download(DataConfig(path=str(glue_dir), config=None, select_fraction=0.01), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_the_best_score_wins_and_a_tie_keeps_the_earlier_epoch():
    progress, model = Progress(), torch.nn.Linear(2, 1)
    for epoch, loss in enumerate([0.7, 0.6, 0.6, 0.8], start=1):
        progress.epoch = epoch
        progress.consider(loss, lower_is_better=True, model=model)
    assert (progress.best_epoch, progress.best_score, progress.epochs_since_best) == (2, 0.6, 2)
    accuracy = Progress()
    for epoch, value in enumerate([0.5, 0.9, 0.7], start=1):
        accuracy.epoch = epoch
        accuracy.consider(value, lower_is_better=False, model=None)  # a process that saves no model
    assert (accuracy.best_epoch, accuracy.best_weights) == (2, None)


@pytest.fixture(scope="module")
def uninterrupted(noisy, tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("selecting")
    done = run_train(folder, noisy / "tok", write_params(folder, tiny_bert, **SELECTING))
    assert done.returncode == 0, done.stderr
    return folder


def test_the_saved_model_is_the_epoch_best_on_the_slice(uninterrupted, noisy):
    selected = json.loads((uninterrupted / "live" / "metrics.json").read_text())["selected"]
    scores = selected["scores"]
    assert len(scores) == EPOCHS
    best = scores.index(min(scores))
    assert best < EPOCHS - 1, scores  # the construction: the last epoch is not the best
    epoch_ends = [step for step, _ in live_curve(uninterrupted / "live", "val/accuracy")]
    assert (selected["epoch"], selected["step"], selected["metric"]) == (best + 1, epoch_ends[best], "loss")
    assert selected["epochs_trained"] == EPOCHS and "select slice carved from training (24 examples)" in selected["on"]
    # The saved weights are that epoch's: they score on the slice exactly what was recorded then.
    model = load_finetuned(uninterrupted / "model")
    loader = eval_loader(load_split(noisy / "tok", "select"), 8, read_meta(noisy / "tok")["pad_token_id"])
    rescored = score(predict(model, loader, torch.device("cpu")), n_classes=2)["loss"]
    assert rescored == pytest.approx(selected["score"], abs=1e-6)


@pytest.mark.parametrize("kill_at", [("step", 27), ("checkpoint", 6)], ids=["step-27", "checkpoint-6"])
def test_a_killed_selecting_run_resumes_into_the_same_choice(kill_at, uninterrupted, noisy, tiny_bert, tmp_path):
    params = write_params(tmp_path, tiny_bert, **SELECTING)  # 9 steps an epoch: kills in epochs 3 and 2
    assert run_train(tmp_path, noisy / "tok", params, kill_at=kill_at).returncode == -9
    resumed = run_train(tmp_path, noisy / "tok", params)
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr, resumed.stderr
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == (
        uninterrupted / "model" / "model.safetensors"
    ).read_bytes()
    selected = [
        json.loads((folder / "live" / "metrics.json").read_text())["selected"] for folder in (tmp_path, uninterrupted)
    ]
    assert selected[0] == selected[1]


def test_patience_stops_after_epochs_without_a_better_score(uninterrupted, noisy, tiny_bert, tmp_path):
    scores = json.loads((uninterrupted / "live" / "metrics.json").read_text())["selected"]["scores"]
    best = scores.index(min(scores))
    done = run_train(tmp_path, noisy / "tok", write_params(tmp_path, tiny_bert, **SELECTING, patience=1))
    assert done.returncode == 0, done.stderr
    assert f"early stop: no better select score in 1 epoch(s) after epoch {best + 1}" in done.stderr
    selected = json.loads((tmp_path / "live" / "metrics.json").read_text())["selected"]
    assert selected["epochs_trained"] == best + 2 and selected["epoch"] == best + 1
    # The same epoch of the same run up to there: the same weights as the run that trained every epoch.
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == (
        uninterrupted / "model" / "model.safetensors"
    ).read_bytes()


def test_select_best_without_a_slice_says_how_to_carve_one(tokenized, tiny_bert, tmp_path):
    done = run_train(tmp_path, tokenized, write_params(tmp_path, tiny_bert, select_best=True))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: train.select_best needs the select slice carved from training, and the tokenized cache has none: "
        "set data.select_fraction (e.g. 0.1) and rerun: dvc repro"
    )
