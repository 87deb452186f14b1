"""Kill the real train stage with SIGKILL at chosen points, run it again, and get what an uninterrupted run gets.

"The same" means: byte-identical model weights, byte-identical DVCLive curves (every TSV), an identical
DVCLive ``metrics.json`` except its two wall-clock fields (``train_runtime_s``, ``train_samples_per_s``)
and the two that say how the run got there (``resumed_from_step``, ``steps_run``). Those two are checked on
their own: training is deterministic, so a run that ignored its checkpoint and started over would end
with the same weights, and only the steps it ran tell a resume from a restart.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, live_files

KILLER = PROJECT_ROOT / "tests" / "helpers" / "kill_train_stage.py"
STAGE = PROJECT_ROOT / "stages" / "train_model.py"
TIMING = {"train_runtime_s", "train_samples_per_s"}
RUN_HISTORY = {"resumed_from_step", "steps_run"}
TOTAL_STEPS = 24
# 64 sentences, batch 8: 8 steps per epoch, 24 in all; a checkpoint every 3 steps and after each epoch.
TRAIN = {
    "seed": 7,
    "epochs": 3,
    "batch_size": 8,
    "lr": 1e-3,
    "precision": "fp32",
    "group_by_length_batches": 4,
    "log_every_steps": 2,
    "checkpoint_every_steps": 3,
}


def write_params(folder: Path, model: Path, **train) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": str(model)}, "train": {**TRAIN, **train}}))
    return path


def run_train(
    folder: Path, tokenized: Path, params: Path, kill_at: tuple[str, int] | None = None
) -> subprocess.CompletedProcess:
    entry = [str(KILLER), kill_at[0], str(kill_at[1])] if kill_at else [str(STAGE)]
    command = [
        sys.executable,
        *entry,
        "--params",
        str(params),
        "--tokenized",
        str(tokenized),
        "--model-out",
        str(folder / "model"),
        "--live",
        str(folder / "live"),
        "--checkpoints",
        str(folder / "checkpoints"),
    ]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=folder, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")}
    )


def final_metrics(folder: Path) -> dict:
    return json.loads((folder / "live" / "metrics.json").read_text())


def results(folder: Path) -> dict:
    return {
        "weights": (folder / "model" / "model.safetensors").read_bytes(),
        "metrics": {k: v for k, v in final_metrics(folder).items() if k not in TIMING | RUN_HISTORY},
        "curves": {name: text for name, text in live_files(folder / "live").items() if name != "metrics.json"},
    }


@pytest.fixture(scope="module")
def uninterrupted(tokenized, tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    done = run_train(folder, tokenized, write_params(folder, tiny_bert))
    assert done.returncode == 0, done.stderr
    return {**results(folder), "history": run_history(folder)}


def run_history(folder: Path) -> tuple[int, int]:
    metrics = final_metrics(folder)
    return metrics["resumed_from_step"], metrics["steps_run"]


def test_an_uninterrupted_run_runs_every_step(uninterrupted):
    assert uninterrupted["history"] == (0, TOTAL_STEPS)


@pytest.mark.parametrize(
    "kill_at",
    [
        ("step", 5),  # mid-epoch 1, two steps after the checkpoint at step 3
        # right after the checkpoint at the end of epoch 1 (steps 3, 6, then epoch end)
        pytest.param(("checkpoint", 3), marks=pytest.mark.slow),
        pytest.param(("validation", 2), marks=pytest.mark.slow),  # while validating epoch 2
        ("checkpoint-write", 9),  # half-way through writing the 5th checkpoint
        pytest.param(("step", 23), marks=pytest.mark.slow),  # in the last epoch
        ("model-save", 1),  # after the last step, half-way through saving the model
    ],
    ids=lambda k: f"{k[0]}-{k[1]}",
)
def test_a_killed_run_resumes_to_the_same_results(kill_at, tokenized, tiny_bert, uninterrupted, tmp_path):
    params = write_params(tmp_path, tiny_bert)
    killed = run_train(tmp_path, tokenized, params, kill_at=kill_at)
    assert killed.returncode == -9, killed.stderr
    assert "steps_run" not in final_metrics(tmp_path)  # the run's final figures are written at its end only
    if kill_at[0] == "model-save":  # killed with the weights written and the tokenizer not: nothing in place
        staged = [folder for folder in tmp_path.glob(".model.tmp-*") if (folder / "model.safetensors").is_file()]
        assert staged and not (staged[0] / "tokenizer.json").exists() and not (tmp_path / "model").exists()

    resumed = run_train(tmp_path, tokenized, params)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    assert results(tmp_path) == {k: v for k, v in uninterrupted.items() if k != "history"}
    # It went on from its checkpoint: only the steps after it ran (none, when killed after the last step).
    resumed_from, steps_run = run_history(tmp_path)
    assert resumed_from > 0 and resumed_from + steps_run == TOTAL_STEPS, (resumed_from, steps_run)
    # A finished run supersedes its checkpoints: nothing piles up.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["finished.json"]


def test_a_checkpoint_from_other_params_is_not_resumed(tokenized, tiny_bert, tmp_path):
    killed = run_train(tmp_path, tokenized, write_params(tmp_path, tiny_bert), kill_at=("step", 5))
    assert killed.returncode == -9
    changed = run_train(tmp_path, tokenized, write_params(tmp_path, tiny_bert, lr=2e-3))
    assert changed.returncode == 0, changed.stderr
    assert (
        "not resuming from" in changed.stderr
        and "train.lr was 0.001, now 0.002; training starts over" in changed.stderr
    )
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert run_train(fresh, tokenized, write_params(fresh, tiny_bert, lr=2e-3)).returncode == 0
    assert results(tmp_path) == results(fresh)
    assert run_history(tmp_path) == run_history(fresh) == (0, TOTAL_STEPS)


def test_checkpointing_changes_nothing_and_its_interval_does_not_block_resuming(
    tokenized, tiny_bert, uninterrupted, tmp_path
):
    killed = run_train(tmp_path, tokenized, write_params(tmp_path, tiny_bert), kill_at=("step", 8))
    assert killed.returncode == -9
    resumed = run_train(tmp_path, tokenized, write_params(tmp_path, tiny_bert, checkpoint_every_steps=0))
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr
    assert results(tmp_path) == {k: v for k, v in uninterrupted.items() if k != "history"}
    assert run_history(tmp_path) == (6, TOTAL_STEPS - 6)  # the checkpoint at step 6, before the kill at 8


# Layer-wise rates: each parameter group's own learning rate is part of what a checkpoint must carry.
LAYERWISE = {"layer_lr_decay": 0.8}


@pytest.fixture(scope="module")
def uninterrupted_layerwise(tokenized, tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted-layerwise")
    done = run_train(folder, tokenized, write_params(folder, tiny_bert, **LAYERWISE))
    assert done.returncode == 0, done.stderr
    return results(folder)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [("step", 5), ("validation", 2)], ids=lambda k: f"{k[0]}-{k[1]}")
def test_a_killed_run_with_layer_wise_rates_resumes_to_the_same_results(
    kill_at, tokenized, tiny_bert, uninterrupted, uninterrupted_layerwise, tmp_path
):
    params = write_params(tmp_path, tiny_bert, **LAYERWISE)
    assert run_train(tmp_path, tokenized, params, kill_at=kill_at).returncode == -9
    resumed = run_train(tmp_path, tokenized, params)
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr, resumed.stderr
    assert results(tmp_path) == uninterrupted_layerwise
    assert uninterrupted_layerwise["weights"] != uninterrupted["weights"]
