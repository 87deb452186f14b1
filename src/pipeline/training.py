"""Stage 3, train: fine-tune a pretrained classifier with a hand-written PyTorch loop.

Read :func:`train` first: one screen from ``zero_grad`` through forward, loss, ``backward``, clipping,
the optimizer step and the schedule, then logging, validation after every epoch and checkpoints.
:func:`set_up` builds what it runs on and :func:`wrap_up` saves what it made; both sit right below it.

What the loop adds to the reference tutorial's: no weight decay on biases and norms, layer-wise learning
rates, a linear schedule with warmup, gradient clipping, length-grouped batches padded per batch, bf16
(or, on GPUs, fp16) autocast, gradient accumulation, data-parallel processes (the mechanics behind
:class:`pipeline.parallel.ProcessGroup`), checkpoints it resumes from exactly, and seeds for everything.
What each is worth, and how it was measured: docs/notebook.md.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from dvclive import Live
from torch.nn.utils import clip_grad_norm_

from pipeline import parallel, tasks
from pipeline.batching import BatchLoader, LengthGroupedBatches
from pipeline.checkpoint import CheckpointFolder, capture_rng
from pipeline.config import AUTO, Params, TrainConfig
from pipeline.data import EVAL_SPLIT, SELECT_SPLIT, TRAIN_SPLIT
from pipeline.distillation import logits_sha256, student_split
from pipeline.dropout import FastCpuDropout, rounded_rate
from pipeline.errors import PipelineError
from pipeline.evaluation import eval_loader, predict, score
from pipeline.metrics import best_threshold
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
    plain attention does, so on CPUs the plain one is faster (docs/notebook.md); on GPUs SDPA's fused
    kernels win, but their backward passes add in a varying order, so a ``deterministic`` GPU run
    trains with the plain attention too.
    """
    return "eager" if device.type == "cpu" or deterministic else None


def dropout_masks(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """What draws the dropout masks in training forward passes: the fast generator on CPUs if
    ``train.fast_dropout`` is on, else torch (whose GPU kernels are fast already). The loop enters it
    around each training forward pass only, so evaluation and everything else run torch's own dropout."""
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


def loss_weights(setting: str | tuple[float, ...] | None, labels: torch.Tensor, label_names: list[str]):
    """``train.class_weights`` as one fp32 weight per class, or None for none.

    ``balanced``: n / (k × n_c), so every class carries the same total weight in an epoch.
    """
    if setting is None:
        return None
    if setting == "balanced":
        counts = torch.bincount(labels, minlength=len(label_names))
        if (counts == 0).any():
            missing = label_names[int((counts == 0).nonzero()[0])]
            raise PipelineError(
                f"train.class_weights=balanced: class {missing!r} has no training examples, so it has no "
                f"frequency to balance; list the weights instead (one per class: {', '.join(label_names)})"
            )
        return (len(labels) / (len(label_names) * counts.double())).float()
    if len(setting) != len(label_names):
        raise PipelineError(
            f"train.class_weights has {len(setting)} weights but the data has {len(label_names)} classes "
            f"({', '.join(label_names)}); give one weight per class, in that order"
        )
    return torch.tensor(setting, dtype=torch.float32)


TARGETS = ("labels", "teacher_logits")  # what a batch holds for the loss, not for the model


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in batch.items() if name not in TARGETS}


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on the training device; to a GPU from pinned memory, so the copy does not block."""
    if device.type == "cpu":
        return batch
    return {name: tensor.pin_memory().to(device, non_blocking=True) for name, tensor in batch.items()}


class StepRow(NamedTuple):
    """A logged step: the mean loss of the steps since the previous row, and the learning rate."""

    step: int
    epoch: int
    loss: float
    lr: float


class EpochRow(NamedTuple):
    """A logged epoch: its mean training loss, its validation results and, on the carved select slice,
    its ``train.select_metric`` (``train.select_best``) and its best threshold with that threshold's
    macro-F1 (``train.select_threshold``)."""

    epoch: int
    step: int
    train_loss: float
    val_loss: float
    val_score: float  # the task's headline metric (pipeline.tasks.HEADLINE): accuracy, macro_f1 or pearson
    select_score: float | None = None
    threshold: float | None = None
    threshold_macro_f1: float | None = None

    def summary(self, epochs: int, headline: str, select_metric: str) -> str:
        """The line printed at the epoch's end."""
        line = (
            f"epoch {self.epoch}/{epochs}: train loss {self.train_loss:.4f}, validation loss {self.val_loss:.4f}, "
            f"{headline} {self.val_score:.4f}"
        )
        if self.select_score is not None:
            line += f", select {select_metric} {self.select_score:.4f}"
        if self.threshold is not None:
            line += f", threshold {self.threshold:.2f} (select macro_f1 {self.threshold_macro_f1:.4f})"
        return line


@dataclass
class Progress:
    """Where the loop is, what it has counted and logged: with the model, optimizer, scheduler, loss
    scaler and random generators, exactly what a checkpoint saves. Each process keeps its own."""

    epoch: int = 1  # the epoch in progress
    steps_in_epoch: int = 0  # optimizer steps done in it
    step: int = 0  # optimizer steps done in all
    interval_steps: int = 0  # steps since the last logged row
    samples: int = 0  # counted by this process
    real_tokens: int = 0
    padded_tokens: int = 0
    elapsed_s: float = 0.0  # training time before the latest resume
    # Every row logged so far: a resumed run rewrites its DVCLive folder from these, not from whatever
    # the killed run logged after its checkpoint.
    step_rows: list[StepRow] = field(default_factory=list)
    epoch_rows: list[EpochRow] = field(default_factory=list)
    # Losses add up on the device and are read every log_every_steps, so steps never wait on .item().
    epoch_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    interval_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    # train.select_best: the epoch that scored best on the select slice so far, and its weights (rank 0's;
    # a checkpoint saves them beside the model's).
    best_epoch: int = 0
    best_step: int = 0
    best_score: float | None = None
    epochs_since_best: int = 0
    best_weights: dict[str, torch.Tensor] | None = None

    SCALARS = (
        "epoch",
        "steps_in_epoch",
        "step",
        "interval_steps",
        "samples",
        "real_tokens",
        "padded_tokens",
        "best_epoch",
        "best_step",
        "best_score",
        "epochs_since_best",
    )

    def count_examples(self, micro_batches: list[dict[str, torch.Tensor]]) -> None:
        """Count a step's examples and its real and padded tokens (on the CPU: no wait on a GPU)."""
        for batch in micro_batches:
            self.samples += len(batch["labels"])
            self.real_tokens += int(batch["attention_mask"].sum())
            self.padded_tokens += batch["attention_mask"].numel()

    def count_step(self, loss: torch.Tensor) -> None:
        self.step += 1
        self.steps_in_epoch += 1
        self.interval_steps += 1
        self.epoch_loss += loss
        self.interval_loss += loss

    def log_interval(self, epoch: int, interval_loss_sum: float, lr: float) -> StepRow:
        """The row for the steps since the last one (``interval_loss_sum``: their losses, summed)."""
        row = StepRow(self.step, epoch, interval_loss_sum / self.interval_steps, lr)
        self.step_rows.append(row)
        self.interval_loss.zero_()
        self.interval_steps = 0
        return row

    def consider(self, score: float, lower_is_better: bool, model: torch.nn.Module | None) -> None:
        """This epoch's select score: if it beats the best so far (ties keep the earlier epoch), it becomes
        the best and ``model``'s weights are kept (None: a process that saves no model keeps none)."""
        if self.best_score is None or (score < self.best_score if lower_is_better else score > self.best_score):
            self.best_epoch, self.best_step, self.best_score, self.epochs_since_best = self.epoch, self.step, score, 0
            if model is not None:
                self.best_weights = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
        else:
            self.epochs_since_best += 1

    def finish_epoch(self, epoch: int) -> None:
        self.epoch, self.steps_in_epoch = epoch + 1, 0
        self.epoch_loss.zero_()

    def to_checkpoint(self, elapsed_s: float) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        scalars = {name: getattr(self, name) for name in self.SCALARS}
        scalars |= {"elapsed_s": elapsed_s, "step_rows": self.step_rows, "epoch_rows": self.epoch_rows}
        return scalars, {"epoch_loss": self.epoch_loss.cpu(), "interval_loss": self.interval_loss.cpu()}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> Progress:
        return cls(
            **{name: saved[name] for name in (*cls.SCALARS, "elapsed_s")},
            step_rows=[StepRow(*row) for row in saved["step_rows"]],  # named tuples come back as JSON lists
            epoch_rows=[EpochRow(*row) for row in saved["epoch_rows"]],
            **saved["tensors"],
        )


class LiveLog:
    """The run's curves and metrics, written with DVCLive into one folder (by rank 0 alone).

    ``metrics.json`` holds the latest values and, once the run ends, its final figures; ``dvc exp
    show`` reads it while an experiment trains. ``plots/metrics/`` has one TSV per curve, with the
    optimizer step as x: ``train/loss``, ``train/lr`` every ``log_every_steps``; ``train/epoch_loss``,
    ``val/loss`` and the task's headline, ``val/accuracy``, ``val/macro_f1`` or ``val/pearson``, at each epoch's end. No
    timestamps, so two runs write the same bytes. DVCLive writes no dvc.yaml and saves no experiment:
    dvc.yaml declares these files itself, so the other tasks' headline curves are written with their header only.
    """

    def __init__(self, log_dir: Path, progress: Progress, headline: str = "accuracy") -> None:
        # resume=False empties the folder; the rows of the checkpoint (none for a fresh run) go back in.
        self.live = Live(dir=str(log_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)
        self.headline = headline
        plots = Path(self.live.plots_dir) / "metrics" / "val"
        plots.mkdir(parents=True, exist_ok=True)
        for other in sorted(set(tasks.HEADLINE.values()) - {headline}):
            (plots / f"{other}.tsv").write_text(f"step\t{other}\n", encoding="utf-8")
        rows = sorted(
            [*progress.step_rows, *progress.epoch_rows], key=lambda row: (row.step, isinstance(row, EpochRow))
        )
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
        self.live.log_metric(f"val/{self.headline}", round(row.val_score, 5))
        if row.select_score is not None:  # every epoch's is in metrics.json's "selected"
            self.live.log_metric("select/score", round(row.select_score, 5), plot=False)
        if row.threshold is not None:
            self.live.log_metric("select/threshold", row.threshold, plot=False)
        self.live.next_step()

    def finish(self, final: dict[str, Any]) -> dict[str, Any]:
        """Add the run's final figures to ``metrics.json``; return all of it."""
        self.live.summary.update(final)
        self.live.end()
        return self.live.summary


def run_train_stage(
    params: Params, tokenized_dir, model_dir, log_dir, checkpoint_dir=None, teacher_dir=None
) -> dict | None:
    """The train stage's entry point: under torchrun when ``train.processes > 1``, else right here."""
    if not parallel.launched_by_torchrun():
        parallel.check_processes(params.train.processes, params.train.device)
    if params.train.processes > 1 and not parallel.launched_by_torchrun():
        parallel.relaunch_with_torchrun(params.train.processes)  # the workers write every output
        return None
    return train(params, tokenized_dir, model_dir, log_dir, checkpoint_dir, teacher_dir)


def train(
    params: Params,
    tokenized_dir: str | Path,
    model_dir: str | Path,
    log_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    teacher_dir: str | Path | None = None,
) -> dict | None:
    """Train in this process, as one of the data-parallel workers if torchrun started it as one.

    ``log_dir`` gets the DVCLive folder (:class:`LiveLog`); ``teacher_dir`` holds the teacher stage's
    outputs, which ``train.distill_alpha`` < 1 trains on. Returns the contents of its
    ``metrics.json`` on rank 0 (the one process that writes outputs) and None on the others.
    """
    cfg = params.train
    group = parallel.join(cfg.device)
    try:
        run = set_up(
            params,
            group,
            Path(tokenized_dir),
            Path(checkpoint_dir) if checkpoint_dir else None,
            Path(teacher_dir) if teacher_dir else None,
        )
        model, optimizer, scheduler, scaler, progress = (
            run.model,
            run.optimizer,
            run.scheduler,
            run.scaler,
            run.progress,
        )
        device, checkpoints = group.device, run.checkpoints
        ddp_model = group.wrap(model)  # what trains; with several processes it averages gradients in backward
        live = LiveLog(Path(log_dir), progress, tasks.HEADLINE[run.task]) if group.is_main else None
        started = time.perf_counter()

        def elapsed_s() -> float:  # training time of the whole run, the parts before a resume included
            return progress.elapsed_s + time.perf_counter() - started

        def save_checkpoint() -> None:
            # Every process has its own random numbers, loss sums and counts; rank 0 writes them all.
            loop, loop_tensors = progress.to_checkpoint(elapsed_s())
            ranks = group.all_gather({"rng": capture_rng(device), "loop": loop, "loop_tensors": loop_tensors})
            if group.is_main:
                saved = checkpoints.save(
                    progress.step, model, optimizer, scheduler, scaler, ranks, best_weights=progress.best_weights
                )
                group.print(f"checkpoint: step {progress.step} saved to {saved}")

        for epoch in range(progress.epoch, run.epochs + 1):
            if cfg.patience and progress.epochs_since_best >= cfg.patience:
                group.print(
                    f"early stop: no better select score in {cfg.patience} epoch(s) after epoch {progress.best_epoch}"
                )
                break
            ddp_model.train()
            run.batches.set_epoch(epoch)
            remaining = run.train_loader.with_indices(start=progress.steps_in_epoch * cfg.grad_accum_steps)
            steps = group.progress_bar(
                chunks((batch for _, batch in remaining), cfg.grad_accum_steps),
                desc=f"epoch {epoch}/{run.epochs}",
                unit="step",
                total=run.steps_per_epoch,
                initial=progress.steps_in_epoch,
            )
            for micro_batches in steps:  # one optimizer step: grad_accum_steps micro-batches
                progress.count_examples(micro_batches)
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for i, batch in enumerate(micro_batches):
                    batch = to_device(batch, device)
                    with group.accumulating(ddp_model, last=i == len(micro_batches) - 1):
                        with run.autocast, run.dropout:
                            logits = ddp_model(**model_inputs(batch)).logits
                            loss = run.loss(logits, batch) / len(micro_batches)
                        scaler.scale(loss).backward()  # the scaler is a no-op unless fp16
                    step_loss += loss.detach().float()
                scaler.unscale_(optimizer)  # fp16: clip the true gradients, not the scaled ones
                clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                progress.count_step(step_loss)

                end_of_epoch = progress.steps_in_epoch == run.steps_per_epoch
                if progress.step % cfg.log_every_steps == 0 or end_of_epoch:
                    row = progress.log_interval(
                        epoch, group.mean(progress.interval_loss).item(), scheduler.get_last_lr()[0]
                    )
                    if live:
                        live.add_step(row)
                    speed = progress.samples * group.world_size / elapsed_s()
                    steps.set_postfix(
                        loss=f"{row.loss:.4f}", lr=f"{row.lr:.2e}", samples_s=f"{speed:.0f}", refresh=False
                    )
                every = cfg.checkpoint_every_steps
                if checkpoints and every and progress.step % every == 0 and not end_of_epoch:
                    save_checkpoint()
            steps.close()

            # Validation: each process predicts its share of the sentences; every process scores them all.
            train_loss = group.mean(progress.epoch_loss).item() / run.steps_per_epoch
            selected, (threshold, threshold_f1) = run.judge_on_select_slice(group)
            group.print(f"epoch {epoch}/{run.epochs}: validating on {len(run.val_loader.split)} sentences")
            val = run.score(run.val_loader, group, tasks.THRESHOLD if threshold is None else threshold)
            if selected is not None:
                lower_is_better = cfg.select_metric in tasks.LOWER_IS_BETTER
                progress.consider(selected, lower_is_better, model if group.is_main else None)
            if group.is_main:
                headline = tasks.HEADLINE[run.task]
                row = EpochRow(
                    epoch, progress.step, train_loss, val["loss"], val[headline], selected, threshold, threshold_f1
                )
                progress.epoch_rows.append(row)
                live.add_epoch(row)
                group.print(f"{row.summary(run.epochs, headline, cfg.select_metric)}, {elapsed_s():.0f} s")
            progress.finish_epoch(epoch)
            if checkpoints:
                save_checkpoint()

        return wrap_up(run, group, live, Path(model_dir), elapsed_s())
    finally:
        parallel.leave(group)


@dataclass(frozen=True)
class Run:
    """What :func:`set_up` builds for the loop."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    progress: Progress  # fresh, or as the checkpoint left it
    resumed_from_step: int  # the checkpoint's step when this process resumed a run; 0 for a fresh one
    autocast: contextlib.AbstractContextManager
    dropout: contextlib.AbstractContextManager
    batches: LengthGroupedBatches
    train_loader: BatchLoader
    val_loader: BatchLoader
    select_loader: BatchLoader | None  # the carved select slice, with train.select_best or select_threshold
    steps_per_epoch: int
    epochs: int  # train.epochs, with auto resolved for this data
    class_weights: torch.Tensor | None  # train.class_weights per class, on the device; None: all 1
    task: str  # data.task, as the tokenized cache records it
    teacher: dict | None  # with train.distill_alpha < 1, the teacher stage's meta.json; else None
    checkpoints: CheckpointFolder | None
    params: Params
    tokenizer: Any
    label_names: list[str]

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of a micro-batch (:mod:`pipeline.tasks`): the task's, mixed with the distance
        from the teacher's outputs when ``train.distill_alpha`` < 1."""
        cfg = self.params.train
        task_loss = tasks.loss(self.task, logits, batch["labels"], self.class_weights, cfg.label_smoothing)
        if cfg.distill_alpha == 1:
            return task_loss
        distance = tasks.distillation_loss(self.task, logits, batch["teacher_logits"], cfg.distill_temperature)
        return cfg.distill_alpha * task_loss + (1 - cfg.distill_alpha) * distance

    def score(self, loader: BatchLoader, group: ProcessGroup, threshold: float = tasks.THRESHOLD) -> dict:
        """The model's scores on a split (multi-label: its labels at ``threshold``): each process predicts
        its share, and every one scores them all."""
        predictions = predict(self.model, loader, group.device, group.all_gather, self.autocast, self.task)
        return score(replace(predictions, threshold=threshold), n_classes=len(self.label_names))

    def judge_on_select_slice(self, group: ProcessGroup) -> tuple[float | None, tuple[float | None, float | None]]:
        """The epoch judged on the select slice carved from training, never on the validation split: its
        ``train.select_metric`` (``train.select_best``; else None) and the threshold of best macro-F1 there,
        with that macro-F1 (``train.select_threshold``; else two None)."""
        cfg = self.params.train
        if self.select_loader is None:
            return None, (None, None)
        on_slice = predict(self.model, self.select_loader, group.device, group.all_gather, self.autocast, self.task)
        selected = score(on_slice, n_classes=len(self.label_names))[cfg.select_metric] if cfg.select_best else None
        if not cfg.select_threshold:
            return selected, (None, None)
        return selected, best_threshold(on_slice.logits.sigmoid().numpy(), on_slice.labels.numpy())


def set_up(
    params: Params, group: ProcessGroup, tokenized_dir: Path, checkpoint_dir: Path | None, teacher_dir: Path | None
) -> Run:
    """Seeds, data, model, optimizer, schedule, and the checkpoint to resume from; prints what will run."""
    cfg, device = params.train, group.device
    configure_cuda(device, cfg.deterministic, cfg.tf32)
    precision = precision_on(cfg.precision, device)
    set_seed(cfg.seed + group.rank)  # each process its own dropout masks; rank 0's are a lone process's
    meta = read_meta(tokenized_dir)
    tokenizer = load_tokenizer(params.model.name, trust_remote_code=params.model.trust_remote_code)
    check_cache_matches_model(meta, tokenizer, params.model.name)
    train_split, val_split = load_split(tokenized_dir, TRAIN_SPLIT), load_split(tokenized_dir, EVAL_SPLIT)
    pad = meta["pad_token_id"]
    task = tasks.task_of(meta)
    class_weights = loss_weights(cfg.class_weights, train_split.labels, meta["label_names"])
    if cfg.distill_alpha < 1:
        if teacher_dir is None:
            raise PipelineError("train.distill_alpha < 1 needs the teacher stage's outputs (--teacher data/teacher)")
        token_types = train_split.token_type_ids is not None
        train_split, teacher = student_split(train_split, teacher_dir, meta, tokenizer, token_types)
    else:
        teacher = None
    select_loader = None
    if cfg.select_best or cfg.select_threshold:
        if SELECT_SPLIT not in meta["splits"]:
            raise PipelineError(
                f"train.{'select_best' if cfg.select_best else 'select_threshold'} needs the select slice carved "
                "from training, and the tokenized cache has none: set data.select_fraction (e.g. 0.1) and rerun: "
                "dvc repro"
            )
        if cfg.select_best and cfg.select_metric == "f1" and len(meta["label_names"]) != 2:
            raise PipelineError(
                f"train.select_metric=f1 is the positive class's F1 of two classes, and the data has "
                f"{len(meta['label_names'])}; use macro_f1, accuracy, mcc or loss"
            )
        select_split = load_split(tokenized_dir, SELECT_SPLIT)
        select_loader = eval_loader(select_split, cfg.batch_size, pad, num_replicas=group.world_size, rank=group.rank)

    # The checkpoint, if any, is checked before anything big is loaded, so a damaged one fails fast.
    checkpoints, found = None, None
    if checkpoint_dir is not None:
        train_sha256 = hashlib.sha256((tokenized_dir / f"{TRAIN_SPLIT}.safetensors").read_bytes()).hexdigest()
        if cfg.distill_alpha < 1:  # the teacher's outputs are training data too
            train_sha256 += f" teacher {logits_sha256(teacher_dir)}"
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
        problem_type=tasks.PROBLEM_TYPES[task],
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
    epochs = cfg.epochs_for(steps_per_epoch)
    optimizer = build_optimizer(model, cfg)
    scheduler = get_scheduler(optimizer, cfg, epochs * steps_per_epoch)
    scaler = grad_scaler_for(precision, device)

    progress = Progress(epoch_loss=torch.zeros((), device=device), interval_loss=torch.zeros((), device=device))
    if found is not None:
        progress = Progress.from_checkpoint(found.restore(model, optimizer, scheduler, scaler, group.rank, device))
        if group.is_main:
            progress.best_weights = found.best_weights()
            if cfg.select_best and progress.best_epoch and progress.best_weights is None:
                raise found.unusable(f"it records epoch {progress.best_epoch} as the best but holds no best weights")
        group.print(f"resuming from {found.folder}: epoch {progress.epoch}, step {progress.step}")
    run = Run(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        progress=progress,
        resumed_from_step=progress.step,
        autocast=autocast_for(precision, device),
        dropout=dropout_masks(cfg, device),
        batches=batches,
        train_loader=train_loader,
        val_loader=eval_loader(val_split, cfg.batch_size, pad, num_replicas=group.world_size, rank=group.rank),
        select_loader=select_loader,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        class_weights=class_weights.to(device) if class_weights is not None else None,
        task=task,
        teacher=teacher,
        checkpoints=checkpoints,
        params=params,
        tokenizer=tokenizer,
        label_names=meta["label_names"],
    )
    group.print(describe(run, group, precision))
    return run


def wrap_up(run: Run, group: ProcessGroup, live: LiveLog | None, model_dir: Path, runtime: float) -> dict | None:
    """Save the model and the run's final figures (rank 0); mark the checkpoints finished."""
    progress = run.progress
    counts = torch.tensor([progress.samples, progress.real_tokens, progress.padded_tokens], dtype=torch.float64)
    samples, real_tokens, padded_tokens = (int(total) for total in sum(group.all_gather(counts)))
    if not group.is_main:
        return None
    cfg, kept = run.params.train, progress.epoch_rows[-1]
    chosen = {}  # what the select slice chose: the epoch (train.select_best), the threshold (select_threshold)
    if cfg.select_best:  # the best epoch's weights, not the last's
        run.model.load_state_dict(progress.best_weights)
        (kept,) = [row for row in progress.epoch_rows if row.epoch == progress.best_epoch]
        chosen = {
            "selected": {
                "epoch": progress.best_epoch,
                "step": progress.best_step,
                "metric": cfg.select_metric,
                "score": round(progress.best_score, 6),
                "on": f"the select slice carved from training ({len(run.select_loader.split)} examples)",
                f"val_{tasks.HEADLINE[run.task]}": kept.val_score,  # the top-level "val" is the last epoch's
                "val_loss": kept.val_loss,
                "epochs_trained": len(progress.epoch_rows),
                "scores": [round(row.select_score, 6) for row in progress.epoch_rows],  # epoch by epoch
            }
        }
    if cfg.select_threshold:  # evaluate and predict read it back from config.json
        setattr(run.model.config, tasks.SAVED_THRESHOLD, kept.threshold)
        chosen["threshold"] = {
            "value": kept.threshold,
            "select_macro_f1": round(kept.threshold_macro_f1, 6),
            "on": f"the select slice carved from training ({len(run.select_loader.split)} examples)",
        }
    card = model_card(
        run.params,
        run.label_names,
        tasks.HEADLINE[run.task],
        kept.val_score,
        kept.val_loss,
        teacher=run.teacher,
        threshold=kept.threshold,
    )
    save_finetuned(run.model.cpu(), run.tokenizer, model_dir, card)
    metrics = live.finish(
        {
            "epochs": run.epochs,
            "steps": progress.step,
            "train_runtime_s": round(runtime, 1),
            "train_samples_per_s": round(samples / runtime, 1),
            "padding_fraction": round(1 - real_tokens / padded_tokens, 4),
            # How this process got there: a resumed run ran only the steps after its checkpoint.
            "resumed_from_step": run.resumed_from_step,
            "steps_run": progress.step - run.resumed_from_step,
            **chosen,
        }
    )
    if run.checkpoints:
        run.checkpoints.finish(progress.step)
    return metrics


def describe(run: Run, group: ProcessGroup, precision: str) -> str:
    """What this run is about to do, printed once at its start."""
    cfg, device = run.params.train, group.device
    per_step = cfg.batch_size * group.world_size * cfg.grad_accum_steps
    outputs = {"multi_label": f"{len(run.label_names)} labels", "regression": "one score"}
    lines = [
        f"training {len(run.train_loader.split):,} examples, validating on {len(run.val_loader.split):,}; "
        f"{outputs.get(run.task, f'{len(run.label_names)} classes')}",
        f"{run.epochs} epochs{' (auto)' if cfg.epochs == AUTO else ''} × {run.steps_per_epoch:,} steps = "
        f"{run.epochs * run.steps_per_epoch:,} optimizer steps "
        f"of {per_step} examples ({cfg.batch_size} per process × {group.world_size} processes × "
        f"{cfg.grad_accum_steps} accumulated)",
        f"device {device}"
        + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else "")
        + f", precision {precision}, lr {cfg.lr:g}, seed {cfg.seed}",
    ]
    rates = sorted(
        {module.p for module in run.model.modules() if isinstance(module, torch.nn.Dropout) and module.p > 0}
    )
    if run.teacher is not None:
        lines.append(
            f"distilling {run.teacher['teacher']} (train.distill_alpha {cfg.distill_alpha:g}, temperature "
            f"{cfg.distill_temperature:g}), with {run.teacher['n_augmented']:,} augmented inputs it labelled"
        )
    if run.class_weights is not None:
        weights = ", ".join(f"{name} {w:.4g}" for name, w in zip(run.label_names, run.class_weights.tolist()))
        lines.append(f"class weights of the loss (train.class_weights={cfg.class_weights}): {weights}")
    if isinstance(run.dropout, FastCpuDropout) and rates:
        applied = ", ".join(f"{p:g} → {rounded_rate(p):.6f}" for p in rates)
        lines.append(f"fast CPU dropout is on (train.fast_dropout): rates rounded to a multiple of 1/65536 ({applied})")
    return "\n".join(f"  {line}" for line in lines)


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
