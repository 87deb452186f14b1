"""Data-parallel training throughput: 1 process against N processes at the same global batch size.

Each configuration runs the project's own train step (``pipeline.training.train_step``) on the real
model and the tokenized SST-2 cache (run ``dvc repro tokenize`` first), wrapped in
DistributedDataParallel when there are several processes, which ``torchrun`` starts exactly as the
train stage does. After a few warm-up steps a fixed number of optimizer steps is timed.

    python benchmarks/data_parallel.py                     # 1 and 2 CPU processes; JSON in benchmarks/results/
    python benchmarks/data_parallel.py --processes 1 2 4 --device cuda --model distilbert-base-uncased

The data is cycled, epoch after epoch, so the warm-up and timed steps run whatever its size. Results go
to ``benchmarks/results/data_parallel.json`` for CPUs and ``data_parallel_cuda.json`` for GPUs, or
to ``--out``: a GPU run does not overwrite the committed CPU result.

On a 2-core CPU, 2 processes have the same cores as 1; the point there is correctness, not speed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def worker(args: argparse.Namespace) -> None:
    """One process of a configuration; rank 0 prints a JSON line with the timing."""
    from torch.nn.parallel import DistributedDataParallel

    from pipeline import parallel
    from pipeline.batching import BatchLoader, LengthGroupedBatches
    from pipeline.config import TrainConfig, load_params
    from pipeline.modeling import load_pretrained_classifier
    from pipeline.precision import autocast_for, grad_scaler_for
    from pipeline.tokenization import load_split, read_meta
    from pipeline.training import build_optimizer, get_scheduler, set_seed, train_step, training_attention

    params = load_params(args.params)
    group = parallel.join(args.device)
    cfg: TrainConfig = params.train
    global_batch = cfg.batch_size * cfg.grad_accum_steps
    per_process = global_batch // group.world_size
    set_seed(cfg.seed + group.rank)
    meta = read_meta(args.tokenized)
    split = load_split(args.tokenized, "train")
    model = load_pretrained_classifier(
        args.model or params.model.name, meta["label_names"], attn_implementation=training_attention(group.device)
    ).to(group.device)
    batches = LengthGroupedBatches(
        split.lengths,
        per_process,
        shuffle=True,
        seed=cfg.seed,
        group_batches=cfg.group_by_length_batches,
        num_replicas=group.world_size,
        rank=group.rank,
    )
    loader = BatchLoader(split, batches, meta["pad_token_id"], cfg.pad_to_multiple_of)
    if len(loader) == 0:
        sys.exit(f"error: {len(split)} training examples do not fill one batch of {global_batch}; use more data")
    optimizer = build_optimizer(model, cfg)
    scheduler = get_scheduler(optimizer, cfg, args.warmup + args.steps)
    autocast, scaler = autocast_for(cfg.precision, group.device), grad_scaler_for(cfg.precision, group.device)
    ddp_model = DistributedDataParallel(model) if group.distributed else model
    ddp_model.train()
    samples = 0
    for step, batch in enumerate(endless(loader, batches), start=1):
        if step == args.warmup + 1:
            group.barrier()
            if group.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        batch = {name: tensor.to(group.device) for name, tensor in batch.items()}
        train_step(ddp_model, [batch], optimizer, scheduler, autocast, scaler, cfg.max_grad_norm)
        if step > args.warmup:
            samples += len(batch["labels"])
        if step == args.warmup + args.steps:
            break
    if group.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    total = sum(group.all_gather(samples))
    if group.is_main:
        print(
            json.dumps(
                {
                    "processes": group.world_size,
                    "per_process_batch": per_process,
                    "global_batch": global_batch,
                    "threads_per_process": torch.get_num_threads(),
                    "steps": args.steps,
                    "seconds": round(seconds, 2),
                    "samples_per_s": round(total / seconds, 1),
                }
            ),
            flush=True,
        )
    parallel.leave(group)


def endless(loader, batches):
    """Batch after batch, epoch after epoch: the timing gets the steps it asks for, whatever the data's size."""
    for epoch in itertools.count(1):
        batches.set_epoch(epoch)
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--model", help="model id or folder instead of model.name (e.g. distilbert-base-uncased)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--tokenized", default="data/tokenized")
    parser.add_argument("--out", type=Path, help="JSON results (default: by device, in benchmarks/results/)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    rows = []
    for n in args.processes:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={n}",
            __file__,
            "--worker",
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--device",
            args.device,
            "--params",
            args.params,
            "--tokenized",
            args.tokenized,
        ]
        if args.model:
            command += ["--model", args.model]
        # Both configurations get the same cores: one process all of them, N processes a share each.
        threads = max(1, (os.cpu_count() or 1) // n) if args.device == "cpu" else 1
        done = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)}
        )
        if done.returncode != 0:
            sys.exit(f"error: {n} process(es) failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1]))

    base = rows[0]["samples_per_s"]
    print(
        f"{'processes':>9} {'batch/process':>13} {'global batch':>12} {'threads':>7} {'samples/s':>10} {'vs first':>8}"
    )
    for row in rows:
        print(
            f"{row['processes']:>9} {row['per_process_batch']:>13} {row['global_batch']:>12} "
            f"{row['threads_per_process']:>7} "
            f"{row['samples_per_s']:>10.1f} {row['samples_per_s'] / base:>7.2f}x"
        )
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "device": args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
    }
    if torch.cuda.is_available() and args.device != "cpu":
        machine["gpu"] = torch.cuda.get_device_name()
    out = args.out or RESULTS / ("data_parallel.json" if machine["device"] == "cpu" else "data_parallel_cuda.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
