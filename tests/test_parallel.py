"""Data parallelism on CPU (gloo): the real train stage with ``train.processes: 2``, started by torchrun.

Two processes with batch 4 each must train like one process with batch 8: the same examples in every
optimizer step, gradients averaged. The model has no dropout, so nothing random tells the runs
apart and they agree to float rounding: the order in which gloo and a single process add up
gradients differs, which moves losses and weights by ~1e-7; the tolerance is 1e-5.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import PROJECT_ROOT, kill_process_tree, live_curve, live_files, save_tiny_model
from safetensors.torch import load_file

from pipeline.batching import BatchLoader, LengthGroupedBatches
from pipeline.config import DataConfig, ModelConfig, Params, TokenizeConfig, TrainConfig
from pipeline.data import download
from pipeline.errors import PipelineError
from pipeline.evaluation import predict
from pipeline.parallel import THREADS_VARIABLE, limit_cpu_threads, usable_cpu_cores
from pipeline.tokenization import load_split, tokenize
from pipeline.training import train

STAGE = PROJECT_ROOT / "stages" / "train_model.py"
TOLERANCE = 1e-5
TRAIN = {
    "seed": 3,
    "epochs": 2,
    "lr": 1e-3,
    "precision": "fp32",
    "group_by_length_batches": 4,
    "log_every_steps": 2,
    "checkpoint_every_steps": 3,
}


@pytest.fixture(scope="module")
def setup(glue_dir, tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    model = save_tiny_model(root / "model", tokenizer, dropout=0.0)
    download(DataConfig(path=str(glue_dir), config=None), root / "raw")
    tokenize(ModelConfig(name=str(model)), TokenizeConfig(max_length=32), root / "raw", root / "tok")
    return model, root / "tok"


def start_train(folder: Path, setup, environment: dict[str, str] | None = None, **train) -> subprocess.Popen:
    model, tokenized = setup
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump({"model": {"name": str(model)}, "train": {**TRAIN, **train}}))
    command = [
        sys.executable,
        str(STAGE),
        "--params",
        "params.yaml",
        "--tokenized",
        str(tokenized),
        "--model-out",
        "model",
        "--live",
        "live",
        "--checkpoints",
        "checkpoints",
    ]
    return subprocess.Popen(
        command,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src"), **(environment or {})},
    )


def run_train(folder: Path, setup, environment: dict[str, str] | None = None, **train) -> tuple[int, str, str]:
    process = start_train(folder, setup, environment, **train)
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def curve(folder: Path, name: str) -> np.ndarray:
    """A DVCLive curve of the run in ``folder``: its (step, value) rows."""
    return np.array(live_curve(folder / "live", name))


def final_metrics(folder: Path) -> dict:
    return json.loads((folder / "live" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(setup, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    one = run_train(root / "one", setup, batch_size=8)
    two = run_train(root / "two", setup, batch_size=4, processes=2)
    assert one[0] == 0, one[2]
    assert two[0] == 0, two[2]
    return root / "one", root / "two", two


def test_two_processes_train_like_one_with_the_same_global_batch(runs):
    one, two, _ = runs
    a, b = curve(one, "train/loss"), curve(two, "train/loss")
    assert a.shape == b.shape == (8, 2)  # 64 sentences / global batch 8 = 8 steps per epoch, a row every 2
    assert np.array_equal(a[:, 0], b[:, 0])
    assert np.abs(a[:, 1] - b[:, 1]).max() <= TOLERANCE
    assert np.array_equal(curve(one, "train/lr"), curve(two, "train/lr"))
    metrics_one, metrics_two = final_metrics(one), final_metrics(two)
    assert metrics_one["steps"] == metrics_two["steps"] == 16
    # Validation is shared out between the processes; every sentence is scored exactly once.
    assert metrics_one["val"]["accuracy"] == metrics_two["val"]["accuracy"]
    assert abs(metrics_one["val"]["loss"] - metrics_two["val"]["loss"]) <= TOLERANCE
    weights_one, weights_two = (
        load_file(one / "model" / "model.safetensors"),
        load_file(two / "model" / "model.safetensors"),
    )
    assert weights_one.keys() == weights_two.keys()
    assert max((weights_one[k] - weights_two[k]).abs().max().item() for k in weights_one) <= TOLERANCE


def test_only_rank_zero_writes_and_reports(runs):
    _, two, (_, stdout, stderr) = runs
    assert stdout.count('"steps_run"') == 1  # the stage's result, printed once
    for line in ["epoch 1/2: validating on 24 sentences", "epoch 2/2: train loss", "checkpoint: step 3 saved"]:
        assert stderr.count(line) == 1, line
    assert sorted(p.name for p in two.iterdir()) == [
        "checkpoints",
        "live",
        "model",
        "params.yaml",
    ]
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["finished.json"]


@pytest.fixture(scope="module")
def with_dropout(glue_dir, tokenizer, setup, tmp_path_factory):
    """A model with dropout, so that each process's random state shapes the weights, and its 2-process run."""
    _, tokenized = setup
    root = tmp_path_factory.mktemp("dropout")
    model = save_tiny_model(root / "model", tokenizer, dropout=0.1)
    code, _, stderr = run_train(root / "uninterrupted", (model, tokenized), batch_size=4, processes=2)
    assert code == 0, stderr
    return (model, tokenized), root / "uninterrupted"


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", ["checkpoint: step 6 saved", "checkpoint: step 9 saved"])  # epoch 1; epoch 2
def test_a_killed_two_process_run_resumes_to_the_same_results(with_dropout, kill_after, tmp_path):
    setup, uninterrupted = with_dropout
    process = start_train(tmp_path, setup, batch_size=4, processes=2)
    for line in process.stderr:
        if kill_after in line:
            kill_process_tree(process.pid)  # torchrun's workers run in sessions of their own
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert "steps_run" not in final_metrics(tmp_path)  # killed before the run's end

    code, _, stderr = run_train(tmp_path, setup, batch_size=4, processes=2)
    assert code == 0, stderr
    assert "resuming from checkpoints/step-" in stderr
    # Each process got its own random state back: with dropout, another process's would change the weights.
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == (
        uninterrupted / "model" / "model.safetensors"
    ).read_bytes()
    resumed, whole = live_files(tmp_path / "live"), live_files(uninterrupted / "live")
    assert {name: text for name, text in resumed.items() if name != "metrics.json"} == {
        name: text for name, text in whole.items() if name != "metrics.json"
    }
    metrics = final_metrics(tmp_path)
    resumed_from = int(kill_after.split()[2])
    assert (metrics["resumed_from_step"], metrics["steps_run"]) == (resumed_from, 16 - resumed_from)


def test_a_failing_worker_ends_the_stage_with_its_one_line_error(setup, tmp_path):
    model, tokenized = setup
    code, _, stderr = run_train(tmp_path, (model, tmp_path / "no-such-cache"), batch_size=4, processes=2)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert any(
        line.startswith("error: ") and "meta.json not found: run the tokenize stage first" in line for line in lines
    ), stderr
    assert lines[-1].startswith("error: a training process failed (its error is printed above)"), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "model").exists() and not (tmp_path / "live" / "metrics.json").exists()


def test_gradient_accumulation_trains_like_a_bigger_batch(setup, tmp_path):
    model, tokenized = setup
    big = train(
        Params(model=ModelConfig(name=str(model)), train=TrainConfig(**TRAIN, batch_size=8)),
        tokenized,
        tmp_path / "big",
        tmp_path / "big-live",
    )
    accumulated = train(
        Params(model=ModelConfig(name=str(model)), train=TrainConfig(**TRAIN, batch_size=4, grad_accum_steps=2)),
        tokenized,
        tmp_path / "acc",
        tmp_path / "acc-live",
    )
    assert big["steps"] == accumulated["steps"] == 16
    big_loss, accumulated_loss = (
        np.array(live_curve(tmp_path / run, "train/loss")) for run in ("big-live", "acc-live")
    )
    assert np.abs(big_loss[:, 1] - accumulated_loss[:, 1]).max() <= TOLERANCE
    a, b = load_file(tmp_path / "big" / "model.safetensors"), load_file(tmp_path / "acc" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= TOLERANCE


def test_predictions_gathered_from_processes_count_every_example_exactly_once(setup):
    from transformers import AutoModelForSequenceClassification

    model_dir, tokenized = setup
    split = load_split(tokenized, "validation")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    cpu = torch.device("cpu")
    whole = predict(model, BatchLoader(split, LengthGroupedBatches(split.lengths, 5, shuffle=False), 0), cpu)
    shares = [
        BatchLoader(split, LengthGroupedBatches(split.lengths, 5, shuffle=False, num_replicas=2, rank=r), 0)
        for r in range(2)
    ]
    own = []
    for loader in shares:  # what each process would contribute
        with pytest.raises(RuntimeError, match="exactly once"):
            predict(model, loader, cpu, gather=lambda share: own.append(share) or [share])
    both = predict(model, shares[0], cpu, gather=lambda share: [share, own[1]])
    assert torch.allclose(both.logits, whole.logits, atol=1e-6) and both.loss == pytest.approx(whole.loss, abs=1e-6)
    with pytest.raises(RuntimeError, match="exactly once"):
        predict(model, shares[0], cpu, gather=lambda share: [share, share])


def test_a_stage_process_computes_with_the_threads_it_is_given(setup, tmp_path):
    """What each `dvc queue start -j N` worker gets from PIPELINE_CPU_THREADS (docs/scaling.md)."""
    code, _, stderr = run_train(tmp_path, setup, {THREADS_VARIABLE: "1"}, batch_size=8, epochs=1)
    assert code == 0, stderr
    assert "device cpu (1 threads)" in stderr


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5", str(usable_cpu_cores() + 1)])
def test_a_thread_limit_beyond_the_cores_or_not_a_count_is_refused(value, monkeypatch):
    monkeypatch.setenv(THREADS_VARIABLE, value)
    with pytest.raises(PipelineError, match=rf"^{THREADS_VARIABLE}=.*from 1 to {usable_cpu_cores()}"):
        limit_cpu_threads()


def test_the_thread_limit_sets_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(THREADS_VARIABLE, "1")
        assert limit_cpu_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv(THREADS_VARIABLE)
        assert limit_cpu_threads() == 1  # unset: leaves torch's setting alone
    finally:
        torch.set_num_threads(before)
