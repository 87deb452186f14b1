"""Checkpoints refuse what they must not resume from, and carry the fp16 loss scaler's state.

The end-to-end kill-and-resume runs are in test_resume.py; these build a checkpoint of a small
model directly, so each refusal is checked on its own in well under a second.
"""

import json

import pytest
import torch

from pipeline.checkpoint import FORMAT, CheckpointFolder, capture_rng
from pipeline.config import ModelConfig, Params, TrainConfig
from pipeline.errors import PipelineError
from pipeline.parallel import ProcessGroup
from pipeline.training import build_optimizer, run_params

CPU = torch.device("cpu")
PARAMS = {"model.name": "tiny", "train.lr": 0.01, "world_size": 1, "training data sha256": "aaaa"}


def training_parts(scaler_enabled: bool = False):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 2))
    optimizer = build_optimizer(model, TrainConfig(lr=1e-2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    # growth_interval=1: the scale doubles after every step without overflow, so its state moves.
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1, enabled=scaler_enabled)
    return model, optimizer, scheduler, scaler


def train_steps(parts, n: int) -> None:
    model, optimizer, scheduler, scaler = parts
    generator = torch.Generator().manual_seed(1)
    for _ in range(n):
        x = torch.randn(4, 8, generator=generator) * 100
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), (x.sum(dim=1) > 0).long())
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # large inputs: steps of a bounded size
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()


def save(root, parts, run=PARAMS):
    model, optimizer, scheduler, scaler = parts
    ranks = [{"rng": capture_rng(CPU), "loop": {"step": 2}, "loop_tensors": {"epoch_loss": torch.zeros(())}}]
    return CheckpointFolder(root, run).save(2, model, optimizer, scheduler, scaler, ranks)


@pytest.fixture
def saved(tmp_path):
    parts = training_parts()
    train_steps(parts, 2)
    return save(tmp_path / "checkpoints", parts)


def test_the_same_run_resumes(saved):
    assert CheckpointFolder(saved.parent, PARAMS).resumable().folder == saved


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("training data sha256", "bbbb", "training data sha256 was 'aaaa', now 'bbbb'; training starts over"),
        ("world_size", 2, "world_size was 1, now 2; training starts over"),
        ("train.lr", 0.02, "train.lr was 0.01, now 0.02; training starts over"),
    ],
)
def test_a_checkpoint_of_other_data_processes_or_params_is_not_resumed(saved, capsys, key, value, message):
    assert CheckpointFolder(saved.parent, {**PARAMS, key: value}).resumable() is None
    assert f"not resuming from {saved}: {message}" in capsys.readouterr().err


def test_a_checkpoint_of_another_format_version_is_not_resumed(saved, capsys):
    state = json.loads((saved / "state.json").read_text())
    (saved / "state.json").write_text(json.dumps({**state, "format": FORMAT + 1}))
    assert CheckpointFolder(saved.parent, PARAMS).resumable() is None
    assert "it was written by another version of the pipeline; training starts over" in capsys.readouterr().err


def test_a_checkpoint_without_state_json_is_an_error_that_says_how_to_start_over(saved):
    (saved / "state.json").unlink()
    with pytest.raises(PipelineError, match=rf"checkpoint {saved} is unusable: it has no state\.json .*rm -r {saved}"):
        CheckpointFolder(saved.parent, PARAMS).resumable()


def test_what_a_checkpoint_is_matched_on_includes_the_data_and_the_number_of_processes():
    params = Params(model=ModelConfig(name="tiny"), train=TrainConfig(checkpoint_every_steps=7))
    matched = run_params(params, ProcessGroup(world_size=2), "cafe", "bf16")
    assert matched["world_size"] == 2 and matched["training data sha256"] == "cafe"
    # The device and precision as run, not as asked: "auto" would let a CPU checkpoint resume on a GPU.
    assert matched["device"] == "cpu" and matched["precision"] == "bf16" and "train.device" not in matched
    assert matched["train.lr"] == params.train.lr and matched["model.name"] == "tiny"
    assert "train.checkpoint_every_steps" not in matched  # how often a run is saved changes nothing it computes


def test_loss_scaling_trains_like_no_scaling_and_clips_the_unscaled_gradients():
    # A power-of-two scale is exact, so fp16's scaler path must end where the unscaled path does; without
    # unscale_ before clipping, the scaled gradients would be clipped and then divided again.
    plain, scaled = training_parts(scaler_enabled=False), training_parts(scaler_enabled=True)
    train_steps(plain, 3)
    train_steps(scaled, 3)
    for a, b in zip(plain[0].parameters(), scaled[0].parameters()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    assert scaled[3].get_scale() == 1024.0 * 2**3


def test_a_checkpoint_carries_the_loss_scalers_state(tmp_path):
    parts = training_parts(scaler_enabled=True)
    train_steps(parts, 2)
    folder = save(tmp_path, parts)
    fresh = training_parts(scaler_enabled=True)
    CheckpointFolder(tmp_path, PARAMS).resumable().restore(*fresh, rank=0, device=CPU)
    assert fresh[3].state_dict() == parts[3].state_dict() and fresh[3].get_scale() == 4096.0
    assert json.loads((folder / "state.json").read_text())["scaler"]["scale"] == 4096.0
