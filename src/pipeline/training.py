"""Stage 3, train: fine-tune a pretrained classifier with a hand-written PyTorch loop.

The loop in :func:`train` is the reference tutorial's (``zero_grad`` → forward → ``backward`` →
``step``, validation after every epoch), with what a careful fine-tuning run adds: no weight decay
on biases and LayerNorm, a linear schedule with warmup, gradient clipping, length-grouped batches
padded per batch, optional bf16 autocast, and seeds for everything.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.batching import BatchLoader, LengthGroupedBatches
from pipeline.config import Params, TrainConfig
from pipeline.data import EVAL_SPLIT, TRAIN_SPLIT
from pipeline.errors import PipelineError
from pipeline.evaluation import eval_loader, predict, score
from pipeline.modeling import load_pretrained_classifier, load_tokenizer, save_finetuned
from pipeline.outputs import write_csv_atomic, write_json_atomic
from pipeline.tokenization import load_split, read_meta, tokenizer_fingerprint


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_is_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast keeps fp32 master weights and runs matrix products in bf16; fp32 changes nothing."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if not bf16_is_native(device):
        print(f"warning: train.precision=bf16 but this {device.type} has no native bf16; it may be slower than fp32", file=sys.stderr)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


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


def train_step(model, batch, optimizer, scheduler, autocast, max_grad_norm: float) -> torch.Tensor:
    """One optimizer step on one batch, as in the reference tutorial, plus clipping and the schedule."""
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    return loss


def train(params: Params, tokenized_dir: str | Path, model_dir: str | Path, metrics_path: str | Path, plots_dir: str | Path) -> dict:
    cfg = params.train
    set_seed(cfg.seed)
    device = pick_device()
    meta = read_meta(tokenized_dir)
    tokenizer = load_tokenizer(params.model.name)
    check_cache_matches_model(meta, tokenizer, params.model.name)
    train_split, val_split = load_split(tokenized_dir, TRAIN_SPLIT), load_split(tokenized_dir, EVAL_SPLIT)
    pad = meta["pad_token_id"]

    model = load_pretrained_classifier(params.model.name, meta["label_names"]).to(device)
    batches = LengthGroupedBatches(
        train_split.lengths, cfg.batch_size, shuffle=True, seed=cfg.seed, group_batches=cfg.group_by_length_batches
    )
    train_loader = BatchLoader(train_split, batches, pad, cfg.pad_to_multiple_of)
    val_loader = eval_loader(val_split, cfg.batch_size, pad)
    optimizer = build_optimizer(model, cfg)
    total_steps = cfg.epochs * len(train_loader)
    scheduler = get_scheduler(optimizer, cfg, total_steps)
    autocast = autocast_for(cfg.precision, device)

    log = TrainingLog()
    step, started = 0, time.perf_counter()
    n_samples = n_real_tokens = n_padded_tokens = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        batches.set_epoch(epoch)
        # Losses add up on the device and are read every log_every_steps, so steps never wait on .item().
        epoch_loss = torch.zeros((), device=device)
        interval_loss, interval_steps = torch.zeros((), device=device), 0
        progress = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", file=sys.stderr,
                        mininterval=0.5 if sys.stderr.isatty() else 60, dynamic_ncols=True)
        for batch in progress:
            n_samples += len(batch["labels"])
            n_real_tokens += int(batch["attention_mask"].sum())
            n_padded_tokens += batch["attention_mask"].numel()
            batch = {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}

            loss = train_step(model, batch, optimizer, scheduler, autocast, cfg.max_grad_norm)

            step += 1
            epoch_loss += loss.detach().float()
            interval_loss += loss.detach().float()
            interval_steps += 1
            if step % cfg.log_every_steps == 0 or step == epoch * len(train_loader):
                mean_loss = interval_loss.item() / interval_steps
                interval_loss.zero_()
                interval_steps = 0
                lr = scheduler.get_last_lr()[0]
                log.steps.append((step, epoch, mean_loss, lr))
                speed = n_samples / (time.perf_counter() - started)
                progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{speed:.0f}", refresh=False)

        train_loss = epoch_loss.item() / len(train_loader)
        val = score(predict(model, val_loader, device), n_classes=len(meta["label_names"]))
        log.epochs.append((epoch, step, train_loss, val["loss"], val["accuracy"]))
        print(f"epoch {epoch}/{cfg.epochs}: train loss {train_loss:.4f}, validation loss {val['loss']:.4f}, "
              f"accuracy {val['accuracy']:.4f}, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    runtime = time.perf_counter() - started
    save_finetuned(model.cpu(), tokenizer, model_dir)
    plots_dir = Path(plots_dir)
    log.write(plots_dir)
    metrics = {
        "epochs": cfg.epochs,
        "steps": step,
        "train_loss": round(log.epochs[-1][2], 6),
        "val_loss": round(log.epochs[-1][3], 6),
        "val_accuracy": round(log.epochs[-1][4], 6),
        "train_runtime_s": round(runtime, 1),
        "train_samples_per_s": round(n_samples / runtime, 1),
        "padding_fraction": round(1 - n_real_tokens / n_padded_tokens, 4),
    }
    write_json_atomic(metrics_path, metrics)
    return metrics


def get_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warmup over ``warmup_ratio`` of the steps, then linear decay to zero."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
