"""Stage 3, train: fine-tune a pretrained classifier with a hand-written PyTorch loop.

Read :func:`train_loop` first: it is the reference tutorial's loop (``zero_grad`` → forward →
``backward`` → ``step``, validation after every epoch) plus logging and checkpoints, on one screen.
:func:`set_up` builds what it runs on and :func:`wrap_up` saves what it made.

What a careful fine-tuning run adds to the tutorial: no weight decay on biases and LayerNorm, a linear
schedule with warmup, gradient clipping, optionally layer-wise learning rates and a moving average of
the weights (``averaging.py``), length-grouped batches padded per batch, bf16 (or, on GPUs,
fp16) autocast, gradient accumulation, data parallelism across processes, checkpoints it resumes from
exactly, and seeds for everything. On CPUs the dropout masks come from a faster generator
(``dropout.py``); docs/speed.md has what each of these is worth and how it was measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import random
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from dvclive import Live
from torch.nn.parallel import DistributedDataParallel

from pipeline import parallel
from pipeline.averaging import WeightAverage
from pipeline.batching import BatchLoader, LengthGroupedBatches
from pipeline.checkpoint import CheckpointFolder, capture_rng
from pipeline.config import Params, TrainConfig
from pipeline.data import EVAL_SPLIT, TRAIN_SPLIT
from pipeline.dropout import FastCpuDropout, rounded_rate
from pipeline.errors import PipelineError
from pipeline.evaluation import eval_loader, predict, score
from pipeline.model_card import model_card
from pipeline.modeling import load_pretrained_classifier, load_tokenizer, save_finetuned
from pipeline.parallel import ProcessGroup
from pipeline.precision import autocast_for, configure_cuda, grad_scaler_for, precision_on
from pipeline.tokenization import load_split, read_meta, tokenizer_fingerprint

# Changing these does not change what training computes, so a checkpoint made under other values resumes.
NOT_AFFECTING_RESULTS = ("checkpoint_every_steps",)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def training_attention(device: torch.device, deterministic: bool = False) -> str | None:
    """The attention code to train with: "eager" on CPUs, the library's default (SDPA) on GPUs.

    With dropout, SDPA has no fused CPU kernel and its generic path copies and rescales more than the
    plain attention does, so on CPUs the plain one is faster (docs/speed.md); on GPUs SDPA's fused
    kernels win, but their backward passes add in a varying order, so a ``deterministic`` GPU run
    trains with the plain attention too.
    """
    return "eager" if device.type == "cpu" or deterministic else None


def dropout_masks(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """What draws the dropout masks in training forward passes: the fast generator on CPUs if
    ``train.fast_dropout`` is on, else torch (whose GPU kernels are fast already)."""
    return FastCpuDropout() if cfg.fast_dropout and device.type == "cpu" else contextlib.nullcontext()


# ``encoder.layer.3.``, ``transformer.layer.3.`` (DistilBERT), ``layers.3.``, ``h.3.`` (GPT-style), ...
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")


def layer_depths(model: torch.nn.Module) -> dict[str, int]:
    """Each parameter's depth in the network: 0 for the embeddings, i + 1 for the transformer layer i,
    and one above the last layer for everything on top of them (pooler, classification head)."""
    names = [name for name, _ in model.named_parameters()]
    layers = {name: int(found.group(1)) for name in names if (found := _LAYER_INDEX.search(name))}
    top = max(layers.values(), default=-1) + 2
    return {name: layers[name] + 1 if name in layers else 0 if "embed" in name else top for name in names}


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not on biases, LayerNorm or other norms), and
    with ``layer_lr_decay`` < 1 a learning rate that shrinks layer by layer from the head down: the
    pretrained lower layers change least."""
    no_decay = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if name == "bias" or "norm" in type(module).__name__.lower():
                no_decay.add(parameter)
    depths = layer_depths(model)
    top = max(depths.values())
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        steps_down = top - depths[name] if cfg.layer_lr_decay < 1 else 0
        group = groups.setdefault(
            (steps_down, parameter in no_decay),
            {
                "params": [],
                "weight_decay": 0.0 if parameter in no_decay else cfg.weight_decay,
                "lr": cfg.lr * cfg.layer_lr_decay**steps_down,
            },
        )
        group["params"].append(parameter)
    # The fused kernel does the whole update in one pass over the parameters, not one per operation.
    return torch.optim.AdamW([groups[key] for key in sorted(groups)], lr=cfg.lr, fused=True)


def get_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warmup over ``warmup_ratio`` of the steps, then linear decay to zero."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)


def train_step(
    model,
    micro_batches,
    optimizer,
    scheduler,
    autocast: contextlib.AbstractContextManager | None,
    scaler: torch.amp.GradScaler,
    max_grad_norm: float,
    dropout: contextlib.AbstractContextManager | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """One optimizer step, as in the reference tutorial, over ``grad_accum_steps`` micro-batches.

    Plus gradient clipping, the learning-rate schedule and, in fp16 only, loss scaling (a disabled
    scaler passes everything through). Forward passes run under ``autocast`` and ``dropout`` (see
    :func:`dropout_masks`). The loss is the model's own (cross-entropy), with ``label_smoothing``.
    Returns the step's loss: the mean of its micro-batches' mean losses.
    """
    optimizer.zero_grad(set_to_none=True)
    step_loss = 0.0
    for i, batch in enumerate(micro_batches):
        # Data-parallel processes average their gradients once per step, on the last micro-batch.
        last = i == len(micro_batches) - 1
        with contextlib.nullcontext() if last or not isinstance(model, DistributedDataParallel) else model.no_sync():
            with autocast or contextlib.nullcontext(), dropout or contextlib.nullcontext():
                inputs = {name: tensor for name, tensor in batch.items() if name != "labels"}
                logits = model(**inputs).logits
                loss = torch.nn.functional.cross_entropy(
                    logits, batch["labels"], label_smoothing=label_smoothing
                ) / len(micro_batches)
            scaler.scale(loss).backward()
        step_loss += loss.detach().float()
    scaler.unscale_(optimizer)  # fp16: clip the true gradients, not the scaled ones
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return step_loss


class StepRow(NamedTuple):
    """A logged step: the mean loss of the steps since the previous row, and the learning rate."""

    step: int
    epoch: int
    loss: float
    lr: float


class EpochRow(NamedTuple):
    """A logged epoch: its mean training loss and its validation results."""

    epoch: int
    step: int
    train_loss: float
    val_loss: float
    val_accuracy: float


@dataclass
class TrainingLog:
    """Every row the loop has logged. It is saved in each checkpoint, so that a resumed run rewrites
    its DVCLive folder from the rows of the checkpoint, not from whatever the killed run logged after it."""

    steps: list[StepRow] = field(default_factory=list)
    epochs: list[EpochRow] = field(default_factory=list)


class LiveLog:
    """The run's curves and metrics, written with DVCLive into one folder (by rank 0 alone).

    ``metrics.json`` holds the latest values and, once the run ends, its final figures; ``dvc exp
    show`` reads it while an experiment trains. ``plots/metrics/`` has one TSV per curve, with the
    optimizer step as x: ``train/loss``, ``train/lr`` every ``log_every_steps``; ``train/epoch_loss``,
    ``val/loss``, ``val/accuracy`` at each epoch's end. No timestamps, so two runs write the same bytes.
    DVCLive writes no dvc.yaml and saves no experiment: dvc.yaml declares these files itself.
    """

    def __init__(self, log_dir: Path, log: TrainingLog) -> None:
        # resume=False empties the folder; the rows of the checkpoint (none for a fresh run) go back in.
        self.live = Live(dir=str(log_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)
        rows = sorted([*log.steps, *log.epochs], key=lambda row: (row.step, isinstance(row, EpochRow)))
        for row in rows:
            self.add_step(row) if isinstance(row, StepRow) else self.add_epoch(row)

    def add_step(self, row: StepRow) -> None:
        self.live.step = row.step
        self.live.log_metric("epoch", row.epoch, plot=False)
        self.live.log_metric("train/loss", round(row.loss, 5))
        self.live.log_metric("train/lr", float(f"{row.lr:.4e}"))
        self.live.next_step()

    def add_epoch(self, row: EpochRow) -> None:
        self.live.step = row.step
        self.live.log_metric("train/epoch_loss", round(row.train_loss, 5))
        self.live.log_metric("val/loss", round(row.val_loss, 5))
        self.live.log_metric("val/accuracy", round(row.val_accuracy, 5))
        self.live.next_step()

    def finish(self, final: dict[str, Any]) -> dict[str, Any]:
        """Add the run's final figures to ``metrics.json``; return all of it."""
        self.live.summary.update(final)
        self.live.end()
        return self.live.summary


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

    def count_examples(self, micro_batches: list[dict[str, torch.Tensor]]) -> None:
        """Count a step's examples and its real and padded tokens (on the CPU: no wait on a GPU)."""
        for batch in micro_batches:
            self.samples += len(batch["labels"])
            self.real_tokens += int(batch["attention_mask"].sum())
            self.padded_tokens += batch["attention_mask"].numel()

    def count_step(self, loss: torch.Tensor) -> None:
        """Count a finished optimizer step and add its loss to the epoch's and the log interval's sums."""
        self.step += 1
        self.steps_in_epoch += 1
        self.interval_steps += 1
        self.epoch_loss += loss
        self.interval_loss += loss

    def finish_epoch(self, epoch: int) -> None:
        self.epoch, self.steps_in_epoch = epoch + 1, 0
        self.epoch_loss.zero_()

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        scalars = {
            name: getattr(self, name)
            for name in (
                "epoch",
                "steps_in_epoch",
                "step",
                "interval_steps",
                "samples",
                "real_tokens",
                "padded_tokens",
                "elapsed_s",
            )
        }
        scalars["log"] = {"steps": self.log.steps, "epochs": self.log.epochs}  # named tuples are JSON lists
        return scalars, {"epoch_loss": self.epoch_loss.cpu(), "interval_loss": self.interval_loss.cpu()}

    @classmethod
    def from_checkpoint(cls, loop: dict[str, Any]) -> LoopState:
        log = TrainingLog(
            [StepRow(*row) for row in loop["log"]["steps"]], [EpochRow(*row) for row in loop["log"]["epochs"]]
        )
        scalars = {key: value for key, value in loop.items() if key not in ("log", "tensors")}
        return cls(**scalars, log=log, **loop["tensors"])


def check_cache_matches_model(meta: dict, tokenizer, model_name: str) -> None:
    if meta["tokenizer_fingerprint"] != tokenizer_fingerprint(tokenizer):
        raise PipelineError(
            f"the tokenized cache was made with the tokenizer of {meta['tokenizer']!r}, "
            f"not that of model.name={model_name!r} "
            f"(rerun the tokenize stage: dvc repro tokenize)"
        )


def run_params(params: Params, group: ProcessGroup, train_data_sha256: str, precision: str) -> dict[str, Any]:
    """What a run's results depend on; a checkpoint made with anything else is not resumed from.

    The device is recorded as the run used it (``cpu``, ``cuda``), not as asked (``auto``), and so is
    the precision, so that a checkpoint made on a CPU is not resumed on a GPU, where the kernels differ.
    """
    relevant = {
        f"train.{key}": value
        for key, value in params.to_dict()["train"].items()
        if key not in NOT_AFFECTING_RESULTS and key != "device"
    }
    return {
        "model.name": params.model.name,
        **relevant,
        "device": group.device.type,
        "precision": precision,
        "world_size": group.world_size,
        "training data sha256": train_data_sha256,
    }


def chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@dataclass
class Run:
    """Everything the loop works with, built by :func:`set_up`."""

    params: Params
    group: ProcessGroup
    model: torch.nn.Module  # the model itself, for validation and saving
    ddp_model: torch.nn.Module  # what trains: the model, or its DistributedDataParallel wrapper
    tokenizer: Any
    label_names: list[str]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    precision: str  # train.precision as this device runs it (precision.precision_on)
    autocast: contextlib.AbstractContextManager
    dropout: contextlib.AbstractContextManager
    batches: LengthGroupedBatches
    train_loader: BatchLoader
    val_loader: BatchLoader
    steps_per_epoch: int
    checkpoints: CheckpointFolder | None
    average: WeightAverage | None  # the moving average of the weights, with train.ema_decay > 0
    state: LoopState
    live: LiveLog | None  # rank 0's log; None on the other ranks
    resumed_from_step: int = 0  # the checkpoint's step when this process resumed a run; 0 for a fresh one
    started: float = field(default_factory=time.perf_counter)
    progress: Any = None  # the current epoch's progress bar

    @property
    def cfg(self) -> TrainConfig:
        """The train section of the params: what the loop reads most."""
        return self.params.train

    @property
    def device(self) -> torch.device:
        return self.group.device

    def elapsed_s(self) -> float:
        """Training time of the whole run, the parts before a resume included."""
        return self.state.elapsed_s + time.perf_counter() - self.started

    def epoch_steps(self, epoch: int) -> Iterator[list[dict[str, torch.Tensor]]]:
        """The epoch's remaining optimizer steps, each a list of micro-batches on the device, with a progress bar."""
        self.batches.set_epoch(epoch)
        micro_batches = self.train_loader.with_indices(start=self.state.steps_in_epoch * self.cfg.grad_accum_steps)
        self.progress = self.group.progress_bar(
            chunks(micro_batches, self.cfg.grad_accum_steps),
            desc=f"epoch {epoch}/{self.cfg.epochs}",
            unit="step",
            total=self.steps_per_epoch,
            initial=self.state.steps_in_epoch,
        )
        for step in self.progress:
            micro_batches = [batch for _, batch in step]
            self.state.count_examples(micro_batches)
            yield [self.to_device(batch) for batch in micro_batches]
        self.progress.close()

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch on the training device; to a GPU from pinned memory, so the copy does not block."""
        if self.device.type == "cpu":
            return batch
        return {name: tensor.pin_memory().to(self.device, non_blocking=True) for name, tensor in batch.items()}

    def log_step(self, epoch: int) -> None:
        """A row with the mean loss since the last one, shown on the progress bar."""
        state = self.state
        mean_loss = self.group.mean(state.interval_loss).item() / state.interval_steps
        state.interval_loss.zero_()
        state.interval_steps = 0
        lr = self.scheduler.get_last_lr()[0]
        row = StepRow(state.step, epoch, mean_loss, lr)
        state.log.steps.append(row)
        if self.live:
            self.live.add_step(row)
        speed = state.samples * self.group.world_size / self.elapsed_s()
        self.progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{speed:.0f}", refresh=False)

    def checkpoint_due(self, end_of_epoch: bool) -> bool:
        """Every ``checkpoint_every_steps`` steps; the end of an epoch gets its own, after validation."""
        every = self.cfg.checkpoint_every_steps
        return bool(self.checkpoints and every and self.state.step % every == 0 and not end_of_epoch)

    def final_weights(self) -> contextlib.AbstractContextManager:
        """Inside it, the model holds the weights that are validated and saved: the average, if kept."""
        return self.average.applied(self.model) if self.average else contextlib.nullcontext()

    def validate(self, epoch: int) -> None:
        """Score the validation split and log the epoch; each process predicts its share of the sentences."""
        state = self.state
        train_loss = self.group.mean(state.epoch_loss).item() / self.steps_per_epoch
        weights = " the weight average" if self.average else ""
        self.group.print(
            f"epoch {epoch}/{self.cfg.epochs}: validating{weights} on {len(self.val_loader.split)} sentences"
        )
        with self.final_weights():
            predictions = predict(
                self.model, self.val_loader, self.device, gather=self.group.all_gather, autocast=self.autocast
            )
        if self.group.is_main:
            val = score(predictions, n_classes=len(self.label_names))
            row = EpochRow(epoch, state.step, train_loss, val["loss"], val["accuracy"])
            state.log.epochs.append(row)
            self.live.add_epoch(row)
            self.group.print(
                f"epoch {epoch}/{self.cfg.epochs}: train loss {train_loss:.4f}, validation loss "
                f"{val['loss']:.4f}, accuracy {val['accuracy']:.4f}, {self.elapsed_s():.0f} s"
            )

    def save_checkpoint(self) -> None:
        loop, loop_tensors = self.state.to_checkpoint()
        loop["elapsed_s"] = self.elapsed_s()
        # Every process has its own random numbers, loss sums and counts; rank 0 writes them all.
        ranks = self.group.all_gather({"rng": capture_rng(self.device), "loop": loop, "loop_tensors": loop_tensors})
        if self.group.is_main:
            saved = self.checkpoints.save(
                self.state.step, self.model, self.optimizer, self.scheduler, self.scaler, ranks, self.average
            )
            self.group.print(f"checkpoint: step {self.state.step} saved to {saved}")

    def summary(self) -> str:
        """What this run is about to do, printed once at its start."""
        cfg, group = self.cfg, self.group
        per_step = cfg.batch_size * group.world_size * cfg.grad_accum_steps
        lines = [
            f"training {len(self.train_loader.split):,} examples, validating on {len(self.val_loader.split):,}; "
            f"{len(self.label_names)} classes",
            f"{cfg.epochs} epochs × {self.steps_per_epoch:,} steps = "
            f"{cfg.epochs * self.steps_per_epoch:,} optimizer steps "
            f"of {per_step} examples ({cfg.batch_size} per process × {group.world_size} processes × "
            f"{cfg.grad_accum_steps} accumulated)",
            f"device {self.device}"
            + (f" ({torch.get_num_threads()} threads)" if self.device.type == "cpu" else "")
            + f", precision {self.precision}, lr {cfg.lr:g}, seed {cfg.seed}",
        ]
        if self.average:
            lines.append(f"validating and saving a moving average of the weights (decay {cfg.ema_decay:g} per step)")
        rates = sorted(
            {module.p for module in self.model.modules() if isinstance(module, torch.nn.Dropout) and module.p > 0}
        )
        if isinstance(self.dropout, FastCpuDropout) and rates:
            applied = ", ".join(f"{p:g} → {rounded_rate(p):.6f}" for p in rates)
            lines.append(
                f"fast CPU dropout is on (train.fast_dropout): rates rounded to a multiple of 1/65536 ({applied})"
            )
        return "\n".join(f"  {line}" for line in lines)


def run_train_stage(params: Params, tokenized_dir, model_dir, log_dir, checkpoint_dir=None) -> dict | None:
    """The train stage's entry point: under torchrun when ``train.processes > 1``, else right here."""
    if not parallel.launched_by_torchrun():
        parallel.check_processes(params.train.processes, params.train.device)
    if params.train.processes > 1 and not parallel.launched_by_torchrun():
        parallel.relaunch_with_torchrun(params.train.processes)  # the workers write every output
        return None
    return train(params, tokenized_dir, model_dir, log_dir, checkpoint_dir)


def train(
    params: Params,
    tokenized_dir: str | Path,
    model_dir: str | Path,
    log_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> dict | None:
    """Train in this process, as one of the data-parallel workers if torchrun started it as one.

    ``log_dir`` gets the DVCLive folder (:class:`LiveLog`). Returns the contents of its
    ``metrics.json`` on rank 0 (the one process that writes outputs) and None on the others.
    """
    group = parallel.join(params.train.device)
    try:
        run = set_up(
            params, group, Path(tokenized_dir), Path(log_dir), Path(checkpoint_dir) if checkpoint_dir else None
        )
        group.print(run.summary())
        train_loop(run)
        return wrap_up(run, Path(model_dir))
    finally:
        parallel.leave(group)


def train_loop(run: Run) -> None:
    """The loop: every epoch, every step, then validation; logging and checkpoints on the way."""
    cfg, state = run.cfg, run.state
    for epoch in range(state.epoch, cfg.epochs + 1):
        run.ddp_model.train()
        for micro_batches in run.epoch_steps(epoch):
            # zero_grad → forward → backward → step, for each micro-batch of the step.
            loss = train_step(
                run.ddp_model,
                micro_batches,
                run.optimizer,
                run.scheduler,
                run.autocast,
                run.scaler,
                cfg.max_grad_norm,
                run.dropout,
                cfg.label_smoothing,
            )
            if run.average:
                run.average.update(run.model)
            state.count_step(loss)
            end_of_epoch = state.steps_in_epoch == run.steps_per_epoch
            if state.step % cfg.log_every_steps == 0 or end_of_epoch:
                run.log_step(epoch)
            if run.checkpoint_due(end_of_epoch):
                run.save_checkpoint()
        run.validate(epoch)
        state.finish_epoch(epoch)
        if run.checkpoints:
            run.save_checkpoint()


def set_up(params: Params, group: ProcessGroup, tokenized_dir: Path, log_dir: Path, checkpoint_dir: Path | None) -> Run:
    """Seeds, data, model, optimizer, schedule, the checkpoint to resume from, and data-parallel wrapping."""
    cfg, device = params.train, group.device
    configure_cuda(device, cfg.deterministic, cfg.tf32)
    precision = precision_on(cfg.precision, device)
    set_seed(cfg.seed + group.rank)  # each process its own dropout masks; rank 0's are a lone process's
    meta = read_meta(tokenized_dir)
    tokenizer = load_tokenizer(params.model.name, trust_remote_code=params.model.trust_remote_code)
    check_cache_matches_model(meta, tokenizer, params.model.name)
    train_split, val_split = load_split(tokenized_dir, TRAIN_SPLIT), load_split(tokenized_dir, EVAL_SPLIT)
    pad = meta["pad_token_id"]

    # The checkpoint, if any, is checked before anything big is loaded, so a damaged one fails fast.
    checkpoints, found = None, None
    if checkpoint_dir is not None:
        train_sha256 = hashlib.sha256((tokenized_dir / f"{TRAIN_SPLIT}.safetensors").read_bytes()).hexdigest()
        checkpoints = CheckpointFolder(checkpoint_dir, run_params(params, group, train_sha256, precision))
        if group.is_main:
            checkpoints.remove_partial()
        group.barrier()
        found = checkpoints.resumable()

    model = load_pretrained_classifier(
        params.model.name,
        meta["label_names"],
        params.model.trust_remote_code,
        attn_implementation=training_attention(device, cfg.deterministic),
    ).to(device)
    batches = LengthGroupedBatches(
        train_split.lengths,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        group_batches=cfg.group_by_length_batches,
        num_replicas=group.world_size,
        rank=group.rank,
        micro_batches=cfg.grad_accum_steps,
    )
    train_loader = BatchLoader(train_split, batches, pad, cfg.pad_to_multiple_of)
    steps_per_epoch = len(train_loader) // cfg.grad_accum_steps
    optimizer = build_optimizer(model, cfg)
    scheduler = get_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)
    scaler = grad_scaler_for(precision, device)
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None

    state = LoopState(epoch_loss=torch.zeros((), device=device), interval_loss=torch.zeros((), device=device))
    if found is not None:
        loop = found.restore(model, optimizer, scheduler, scaler, group.rank, device, average)
        state = LoopState.from_checkpoint(loop)
        group.print(f"resuming from {found.folder}: epoch {state.epoch}, step {state.step}")
    live = LiveLog(log_dir, state.log) if group.is_main else None
    return Run(
        params=params,
        group=group,
        model=model,
        # Gradients are averaged across processes during backward; the model each process holds stays identical.
        ddp_model=DistributedDataParallel(model) if group.distributed else model,
        tokenizer=tokenizer,
        label_names=meta["label_names"],
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        precision=precision,
        autocast=autocast_for(precision, device),
        dropout=dropout_masks(cfg, device),
        batches=batches,
        train_loader=train_loader,
        val_loader=eval_loader(val_split, cfg.batch_size, pad, num_replicas=group.world_size, rank=group.rank),
        steps_per_epoch=steps_per_epoch,
        checkpoints=checkpoints,
        average=average,
        state=state,
        live=live,
        resumed_from_step=state.step,
    )


def wrap_up(run: Run, model_dir: Path) -> dict | None:
    """Save the model and the run's final figures (rank 0); mark the checkpoints finished."""
    state, group = run.state, run.group
    runtime = run.elapsed_s()
    counts = torch.tensor([state.samples, state.real_tokens, state.padded_tokens], dtype=torch.float64)
    samples, real_tokens, padded_tokens = (int(total) for total in sum(group.all_gather(counts)))
    if not group.is_main:
        return None
    last = state.log.epochs[-1]
    card = model_card(run.params, run.label_names, last.val_accuracy, last.val_loss)
    with run.final_weights():
        save_finetuned(run.model.cpu(), run.tokenizer, model_dir, card)
    metrics = run.live.finish(
        {
            "epochs": run.cfg.epochs,
            "steps": state.step,
            "train_runtime_s": round(runtime, 1),
            "train_samples_per_s": round(samples / runtime, 1),
            "padding_fraction": round(1 - real_tokens / padded_tokens, 4),
            # How this process got there: a resumed run ran only the steps after its checkpoint.
            "resumed_from_step": run.resumed_from_step,
            "steps_run": state.step - run.resumed_from_step,
        }
    )
    if run.checkpoints:
        run.checkpoints.finish(state.step)
    return metrics
