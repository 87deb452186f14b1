"""Stage 3, train: fine-tune a pretrained classifier with a hand-written PyTorch loop.

The loop in :func:`train` is the reference tutorial's (``zero_grad`` → forward → ``backward`` →
``step``, validation after every epoch), with what a careful fine-tuning run adds: no weight decay
on biases and LayerNorm, a linear schedule with warmup, gradient clipping, length-grouped batches
padded per batch, bf16 (or, on GPUs, fp16) autocast, gradient accumulation, data parallelism across
processes, checkpoints it resumes from exactly, and seeds for everything. It clips gradients inside
the fused AdamW step (:func:`clipped_step`), and on CPUs it draws dropout masks with a faster
generator (``dropout.py``) and keeps freed memory for reuse (``allocator.py``);
``benchmarks/train_throughput.py --only c_clip_pass c_torch_dropout c_default_allocator`` measures
what each is worth.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipeline import parallel
from pipeline.allocator import keep_freed_memory
from pipeline.batching import BatchLoader, LengthGroupedBatches
from pipeline.checkpoint import CheckpointFolder, capture_rng
from pipeline.config import Params, TrainConfig
from pipeline.data import EVAL_SPLIT, TRAIN_SPLIT
from pipeline.dropout import FastCpuDropout
from pipeline.errors import PipelineError
from pipeline.evaluation import eval_loader, predict, score
from pipeline.modeling import load_pretrained_classifier, load_tokenizer, save_finetuned
from pipeline.outputs import write_csv_atomic, write_json_atomic
from pipeline.parallel import ProcessGroup
from pipeline.precision import autocast_for, grad_scaler_for
from pipeline.tokenization import load_split, read_meta, tokenizer_fingerprint

# Changing these does not change what training computes, so a checkpoint made under other values resumes.
NOT_AFFECTING_RESULTS = ("checkpoint_every_steps",)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def training_attention(device: torch.device) -> str | None:
    """The attention code to train with: "eager" on CPUs, the library's default (SDPA) elsewhere.

    With dropout, SDPA has no fused CPU kernel and falls back to a generic path that copies and
    rescales more than the plain attention does: ``benchmarks/train_throughput.py --trials``
    measured the plain one faster per step (by 4%; 12% in a run with other settings). On GPUs,
    SDPA's fused kernels win.
    """
    return "eager" if device.type == "cpu" else None


def dropout_masks(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """What draws the dropout masks in training forward passes: the fast generator on CPUs if
    ``train.fast_dropout`` is on, else torch (whose GPU kernels are fast already)."""
    return FastCpuDropout() if cfg.fast_dropout and device.type == "cpu" else contextlib.nullcontext()


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only: not on biases, LayerNorm or other norms."""
    no_decay = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if name == "bias" or "norm" in type(module).__name__.lower():
                no_decay.add(parameter)
    groups = [
        {"params": [p for p in model.parameters() if p not in no_decay], "weight_decay": cfg.weight_decay},
        {"params": [p for p in model.parameters() if p in no_decay], "weight_decay": 0.0},
    ]
    # The fused kernel does the whole update in one pass: several times faster than the default.
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)


@dataclass
class TrainingLog:
    """What the loop records: per-step loss and learning rate, per-epoch validation results."""

    steps: list[tuple[int, int, float, float]] = field(default_factory=list)  # step, epoch, loss, lr
    epochs: list[tuple[int, int, float, float, float]] = field(default_factory=list)  # epoch, step, train_loss, val_loss, val_accuracy

    def write(self, plots_dir: Path) -> None:
        write_csv_atomic(plots_dir / "train_steps.csv", ["step", "epoch", "loss", "lr"],
                         [(s, e, f"{loss:.5f}", f"{lr:.4e}") for s, e, loss, lr in self.steps])
        write_csv_atomic(plots_dir / "train_epochs.csv", ["epoch", "step", "train_loss", "val_loss", "val_accuracy"],
                         [(e, s, f"{tl:.5f}", f"{vl:.5f}", f"{va:.5f}") for e, s, tl, vl, va in self.epochs])


def check_cache_matches_model(meta: dict, tokenizer, model_name: str) -> None:
    if meta["tokenizer_fingerprint"] != tokenizer_fingerprint(tokenizer):
        raise PipelineError(
            f"the tokenized cache was made with the tokenizer of {meta['tokenizer']!r}, not that of model.name={model_name!r} "
            f"(rerun the tokenize stage: dvc repro tokenize)"
        )


def train_step(model, micro_batches, optimizer, scheduler, autocast, scaler, max_grad_norm: float,
               dropout=contextlib.nullcontext()) -> torch.Tensor:
    """One optimizer step, as in the reference tutorial, over ``grad_accum_steps`` micro-batches.

    Plus gradient clipping, the learning-rate schedule and, in fp16 only, loss scaling. Forward
    passes run under ``autocast`` and ``dropout`` (see :func:`dropout_masks`). Returns the step's
    loss: the mean of its micro-batches' mean losses.
    """
    optimizer.zero_grad(set_to_none=True)
    step_loss = 0.0
    for i, batch in enumerate(micro_batches):
        # Data-parallel processes average their gradients once per step, on the last micro-batch.
        last = i == len(micro_batches) - 1
        with contextlib.nullcontext() if last or not isinstance(model, DistributedDataParallel) else model.no_sync():
            with autocast, dropout:
                loss = model(**batch).loss / len(micro_batches)
            scaler.scale(loss).backward()
        step_loss += loss.detach().float()
    if scaler.is_enabled():  # fp16: GradScaler sets the fused step's gradient divisor itself
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        clipped_step(optimizer, max_grad_norm)
    scheduler.step()
    return step_loss


def clipped_step(optimizer: torch.optim.Optimizer, max_grad_norm: float) -> None:
    """``clip_grad_norm_(max_grad_norm)`` then ``optimizer.step()``, with the clipping done by the step.

    ``clip_grad_norm_`` multiplies every gradient by ``max_grad_norm / norm`` in a pass of its own
    over all of them. The fused AdamW kernel divides each gradient by ``optimizer.grad_scale`` as it
    reads it (the hook ``GradScaler`` unscales fp16 gradients through), so setting that to
    ``norm / max_grad_norm`` clips the same gradients without the extra pass: about 2% of a CPU step
    (``benchmarks/optimizer_step.py``). Other optimizers get ``clip_grad_norm_``.
    """
    if not all(group.get("fused") for group in optimizer.param_groups):
        clip_then_step(optimizer, max_grad_norm)
        return
    norm = torch.nn.utils.get_total_norm([p.grad for p in _parameters_with_grads(optimizer)])
    # clip_grad_norm_'s factor, max_grad_norm / (norm + 1e-6) where that is under 1, as a divisor.
    optimizer.grad_scale = ((norm + 1e-6) / max_grad_norm).clamp(min=1.0)
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale


def clip_then_step(optimizer: torch.optim.Optimizer, max_grad_norm: float) -> None:
    """Clipping in a pass of its own, as Hugging Face Trainer does: ``clip_grad_norm_``, then the step."""
    torch.nn.utils.clip_grad_norm_(_parameters_with_grads(optimizer), max_grad_norm)
    optimizer.step()


def _parameters_with_grads(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


@dataclass
class LoopState:
    """Where the loop is and what it has counted: what a checkpoint holds besides model and optimizer."""

    epoch: int = 1  # the epoch in progress
    steps_in_epoch: int = 0  # optimizer steps done in it
    step: int = 0  # optimizer steps done in all
    interval_steps: int = 0  # steps since the last logged row
    samples: int = 0  # counted by this process
    real_tokens: int = 0
    padded_tokens: int = 0
    elapsed_s: float = 0.0  # training time before the latest resume
    log: TrainingLog = field(default_factory=TrainingLog)
    # Losses add up on the device and are read every log_every_steps, so steps never wait on .item().
    epoch_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    interval_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        scalars = {name: getattr(self, name) for name in ("epoch", "steps_in_epoch", "step", "interval_steps",
                                                           "samples", "real_tokens", "padded_tokens", "elapsed_s")}
        scalars["log"] = {"steps": self.log.steps, "epochs": self.log.epochs}
        return scalars, {"epoch_loss": self.epoch_loss.cpu(), "interval_loss": self.interval_loss.cpu()}

    @classmethod
    def from_checkpoint(cls, loop: dict[str, Any]) -> LoopState:
        log = TrainingLog([tuple(row) for row in loop["log"]["steps"]], [tuple(row) for row in loop["log"]["epochs"]])
        scalars = {key: value for key, value in loop.items() if key not in ("log", "tensors")}
        return cls(**scalars, log=log, **loop["tensors"])


def run_params(params: Params, group: ProcessGroup, train_data_sha256: str) -> dict[str, Any]:
    """What a run's results depend on; a checkpoint made with anything else is not resumed from."""
    relevant = {f"train.{key}": value for key, value in params.to_dict()["train"].items() if key not in NOT_AFFECTING_RESULTS}
    return {"model.name": params.model.name, **relevant, "world_size": group.world_size, "training data sha256": train_data_sha256}


def chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def run_train_stage(params: Params, tokenized_dir, model_dir, metrics_path, plots_dir, checkpoint_dir=None) -> dict | None:
    """The train stage's entry point: under torchrun when ``train.processes > 1``, else right here."""
    if params.train.processes > 1 and not parallel.launched_by_torchrun():
        parallel.relaunch_with_torchrun(params.train.processes)  # the workers write every output
        return None
    return train(params, tokenized_dir, model_dir, metrics_path, plots_dir, checkpoint_dir)


def train(params: Params, tokenized_dir: str | Path, model_dir: str | Path, metrics_path: str | Path,
          plots_dir: str | Path, checkpoint_dir: str | Path | None = None) -> dict | None:
    """Train in this process, as one of the data-parallel workers if torchrun started it as one.

    Returns the metrics on rank 0 (the one process that writes outputs) and None on the others.
    """
    group = parallel.join(params.train.device)
    try:
        return _train(params, group, Path(tokenized_dir), Path(model_dir), Path(metrics_path), Path(plots_dir),
                      Path(checkpoint_dir) if checkpoint_dir else None)
    finally:
        parallel.leave(group)


def _train(params: Params, group: ProcessGroup, tokenized_dir: Path, model_dir: Path, metrics_path: Path,
           plots_dir: Path, checkpoint_dir: Path | None) -> dict | None:
    cfg, device = params.train, group.device
    set_seed(cfg.seed + group.rank)  # each process its own dropout masks; rank 0's are a lone process's
    meta = read_meta(tokenized_dir)
    tokenizer = load_tokenizer(params.model.name, trust_remote_code=params.model.trust_remote_code)
    check_cache_matches_model(meta, tokenizer, params.model.name)
    train_split, val_split = load_split(tokenized_dir, TRAIN_SPLIT), load_split(tokenized_dir, EVAL_SPLIT)
    pad = meta["pad_token_id"]
    autocast, scaler = autocast_for(cfg.precision, device), grad_scaler_for(cfg.precision, device)
    dropout = dropout_masks(cfg, device)
    if device.type == "cpu":
        keep_freed_memory()  # before the model and its gradients are allocated

    # The checkpoint, if any, is checked before anything big is loaded, so a damaged one fails fast.
    checkpoints, found = None, None
    if checkpoint_dir is not None:
        train_sha256 = hashlib.sha256((tokenized_dir / f"{TRAIN_SPLIT}.safetensors").read_bytes()).hexdigest()
        checkpoints = CheckpointFolder(checkpoint_dir, run_params(params, group, train_sha256))
        if group.is_main:
            checkpoints.remove_partial()
        group.barrier()
        found = checkpoints.resumable()

    model = load_pretrained_classifier(params.model.name, meta["label_names"], params.model.trust_remote_code,
                                       attn_implementation=training_attention(device)).to(device)
    batches = LengthGroupedBatches(train_split.lengths, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                   group_batches=cfg.group_by_length_batches, num_replicas=group.world_size, rank=group.rank,
                                   micro_batches=cfg.grad_accum_steps)
    train_loader = BatchLoader(train_split, batches, pad, cfg.pad_to_multiple_of)
    val_loader = eval_loader(val_split, cfg.batch_size, pad, num_replicas=group.world_size, rank=group.rank)
    steps_per_epoch = len(train_loader) // cfg.grad_accum_steps
    optimizer = build_optimizer(model, cfg)
    scheduler = get_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)

    state = LoopState(epoch_loss=torch.zeros((), device=device), interval_loss=torch.zeros((), device=device))
    if found is not None:
        state = LoopState.from_checkpoint(found.restore(model, optimizer, scheduler, scaler, group.rank, device))
        if group.is_main:
            print(f"resuming from {found.folder}: epoch {state.epoch}, step {state.step}", file=sys.stderr, flush=True)
    # Gradients are averaged across processes during backward; the model each process holds stays identical.
    ddp_model = DistributedDataParallel(model) if group.distributed else model

    def save_checkpoint() -> None:
        loop, loop_tensors = state.to_checkpoint()
        loop["elapsed_s"] = state.elapsed_s + time.perf_counter() - started
        # Every process has its own random numbers, loss sums and counts; rank 0 writes them all.
        ranks = group.all_gather({"rng": capture_rng(device), "loop": loop, "loop_tensors": loop_tensors})
        if group.is_main:
            saved = checkpoints.save(state.step, model, optimizer, scheduler, scaler, ranks)
            print(f"checkpoint: step {state.step} saved to {saved}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    for epoch in range(state.epoch, cfg.epochs + 1):
        ddp_model.train()
        batches.set_epoch(epoch)
        micro_batches = train_loader.with_indices(start=state.steps_in_epoch * cfg.grad_accum_steps)
        progress = tqdm(chunks(micro_batches, cfg.grad_accum_steps), desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                        total=steps_per_epoch, initial=state.steps_in_epoch, file=sys.stderr, disable=not group.is_main,
                        mininterval=0.5 if sys.stderr.isatty() else 60, dynamic_ncols=True)
        for step_batches in progress:
            step_batches = [batch for _, batch in step_batches]
            for batch in step_batches:
                state.samples += len(batch["labels"])
                state.real_tokens += int(batch["attention_mask"].sum())
                state.padded_tokens += batch["attention_mask"].numel()
            step_batches = [{name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()} for batch in step_batches]

            loss = train_step(ddp_model, step_batches, optimizer, scheduler, autocast, scaler, cfg.max_grad_norm, dropout)

            state.step += 1
            state.steps_in_epoch += 1
            state.epoch_loss += loss
            state.interval_loss += loss
            state.interval_steps += 1
            end_of_epoch = state.steps_in_epoch == steps_per_epoch
            if state.step % cfg.log_every_steps == 0 or end_of_epoch:
                mean_loss = group.mean(state.interval_loss).item() / state.interval_steps
                state.interval_loss.zero_()
                state.interval_steps = 0
                lr = scheduler.get_last_lr()[0]
                state.log.steps.append((state.step, epoch, mean_loss, lr))
                speed = state.samples * group.world_size / (state.elapsed_s + time.perf_counter() - started)
                progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{speed:.0f}", refresh=False)
            # The end of an epoch gets its checkpoint after validation, below.
            if checkpoints and cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0 and not end_of_epoch:
                save_checkpoint()
        progress.close()

        train_loss = group.mean(state.epoch_loss).item() / steps_per_epoch
        if group.is_main:
            print(f"epoch {epoch}/{cfg.epochs}: validating on {len(val_split)} sentences", file=sys.stderr, flush=True)
        # Each process predicts its share of the sentences; every process receives all predictions.
        predictions = predict(model, val_loader, device, gather=group.all_gather, autocast=autocast)
        if group.is_main:
            val = score(predictions, n_classes=len(meta["label_names"]))
            state.log.epochs.append((epoch, state.step, train_loss, val["loss"], val["accuracy"]))
            print(f"epoch {epoch}/{cfg.epochs}: train loss {train_loss:.4f}, validation loss {val['loss']:.4f}, "
                  f"accuracy {val['accuracy']:.4f}, {state.elapsed_s + time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
        state.epoch, state.steps_in_epoch = epoch + 1, 0
        state.epoch_loss.zero_()
        if checkpoints:
            save_checkpoint()

    runtime = state.elapsed_s + time.perf_counter() - started
    counts = torch.tensor([state.samples, state.real_tokens, state.padded_tokens], dtype=torch.float64)
    samples, real_tokens, padded_tokens = (int(total) for total in sum(group.all_gather(counts)))
    if not group.is_main:
        return None
    save_finetuned(model.cpu(), tokenizer, model_dir)
    state.log.write(plots_dir)
    last = state.log.epochs[-1]
    metrics = {
        "epochs": cfg.epochs,
        "steps": state.step,
        "train_loss": round(last[2], 6),
        "val_loss": round(last[3], 6),
        "val_accuracy": round(last[4], 6),
        "train_runtime_s": round(runtime, 1),
        "train_samples_per_s": round(samples / runtime, 1),
        "padding_fraction": round(1 - real_tokens / padded_tokens, 4),
    }
    write_json_atomic(metrics_path, metrics)
    if checkpoints:
        checkpoints.finish(state.step)
    return metrics


def get_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warmup over ``warmup_ratio`` of the steps, then linear decay to zero."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
