"""Training throughput, side by side: the reference tutorial's recipe, Hugging Face Trainer, this project's loop.

Every configuration trains the same model on the same pool of SST-2 training sentences (a seeded
sample of the tokenized cache, so run ``dvc repro tokenize`` first) at the same batch size, each in
its own process so that its peak memory is its own. The machine this was built on is a shared
2-core VM whose speed drifts by ±20% within a minute, so the configurations are not timed one
after the other: all of them load and warm up, then take turns in rounds (one pass over the pool
for those that group by length, a few seconds for the others), the matrix-product peak is
measured again every round, and the table reports medians over the rounds (ratios are medians of
the per-round ratios, which drift cancels out of).

    python benchmarks/train_throughput.py               # the table; JSON in benchmarks/results/train_throughput.json
    python benchmarks/train_throughput.py --only c_torch_dropout --only-vs-c   # what train.fast_dropout buys

Reported per configuration: training samples/s, real (non-padding) tokens/s, padding fraction,
peak RSS, and model FLOP utilisation: 6 × non-embedding parameters × real tokens per second over
the bf16 matrix-product peak (2048³) measured in the same round.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.batching import BatchLoader, LengthGroupedBatches, collate
from pipeline.config import load_params
from pipeline.data import subsample_indices
from pipeline.modeling import load_pretrained_classifier, load_tokenizer
from pipeline.precision import autocast_for, grad_scaler_for, precision_on
from pipeline.tasks import loss as task_loss
from pipeline.tokenization import TokenizedSplit, load_split, read_meta
from pipeline.training import (
    build_optimizer,
    dropout_masks,
    get_scheduler,
    model_inputs,
    training_attention,
)


@dataclass(frozen=True)
class Config:
    description: str


CONFIGS = {
    "a_tutorial": Config("(a) tutorial: pad to dataset max, random batches, fp32, AdamW"),
    "b_trainer": Config("(b) Trainer defaults: dynamic padding, random batches, fp32"),
    "b_trainer_grouped_bf16": Config("(b) Trainer: group_by_length + bf16 (+ fused AdamW, its default)"),
    "c_pipeline": Config("(c) this project's loop, default params"),
    "c_torch_dropout": Config("(c) with torch's dropout masks (train.fast_dropout=false)"),
}


POOL_BATCHES = 200


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an n×n×n matrix product in ``dtype``: the ceiling this machine offers."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def sample(split: TokenizedSplit, n: int, seed: int = 0) -> TokenizedSplit:
    """The same ``n`` training sentences for every configuration."""
    keep = subsample_indices(len(split), n, seed)
    ids = [split[i][0] for i in keep]
    offsets = torch.zeros(n + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor([len(x) for x in ids]), 0)
    return TokenizedSplit(torch.cat(ids), offsets, split.labels[torch.from_numpy(keep)])


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """What MFU counts 6 FLOPs per real token for: an embedding lookup does no matrix product."""
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


class TokenCounter:
    """Counts what each training forward pass receives: one per step for every configuration."""

    def __init__(self, model: torch.nn.Module):
        self.samples = self.real_tokens = self.padded_tokens = 0
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        mask = kwargs["attention_mask"]
        self.samples += mask.shape[0]
        self.real_tokens += int(mask.sum())
        self.padded_tokens += mask.numel()

    def take(self) -> dict:
        counts = {"samples": self.samples, "real_tokens": self.real_tokens, "padded_tokens": self.padded_tokens}
        self.samples = self.real_tokens = self.padded_tokens = 0
        return counts


class Rounds:
    """The worker's side of the protocol: warm up, say "ready", then time one round per "run" received.

    A round is either ``round_steps`` steps (one pass over the pool, for the configurations that
    group by length: which batches they meet decides how long their sentences are, so every round
    has to meet all of them) or, for those padding close to the longest sentence anyway, as many
    steps as fit in ``round_seconds``.
    """

    def __init__(self, connection, warmup: int, round_steps: int | None, round_seconds: float):
        self.connection, self.warmup, self.round_steps, self.round_seconds = (
            connection,
            warmup,
            round_steps,
            round_seconds,
        )
        self.counter: TokenCounter | None = None  # set by the loop, once it has a model
        self.steps, self.started = 0, None

    def after_step(self) -> bool:
        """Call after every training step; False once the coordinator says stop."""
        self.steps += 1
        if self.steps < self.warmup:
            return True
        now = time.perf_counter()
        if self.started is None:
            self.connection.send("ready")
        elif (self.steps < self.round_steps) if self.round_steps else (now - self.started < self.round_seconds):
            return True
        else:
            self.connection.send({"seconds": now - self.started, "steps": self.steps, **self.counter.take()})
        if self.connection.recv() != "run":
            return False
        self.counter.take()  # what warm-up or the last round counted
        self.steps, self.started = 0, time.perf_counter()
        return True


def loop_step(model, batch, optimizer, scheduler, autocast, scaler, dropout, cfg) -> None:
    """One optimizer step as :func:`pipeline.training.train` takes it, for one process and one micro-batch
    (the data-parallel and accumulation mechanics are no-ops there)."""
    optimizer.zero_grad(set_to_none=True)
    with autocast, dropout:
        loss = task_loss("single_label", model(**model_inputs(batch)).logits, batch["labels"])
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def batches_forever(make_epoch: Callable[[int], Iterator]) -> Iterator:
    for epoch in itertools.count():
        yield from make_epoch(epoch)


def run_manual(name: str, split, meta, model_name, cfg, rounds: Rounds) -> dict:
    torch.manual_seed(cfg.seed)
    # The tutorial gets the library's default attention; the loop, what it trains with.
    attention = None if name == "a_tutorial" else training_attention(torch.device("cpu"))
    model = load_pretrained_classifier(model_name, meta["label_names"], attn_implementation=attention)
    model.train()
    pad = meta["pad_token_id"]
    if name == "a_tutorial":
        # The tutorial pads every sentence to the longest of the dataset and uses AdamW as it comes.
        width = meta["splits"]["train"]["length_max"]
        batches = LengthGroupedBatches(split.lengths, cfg.batch_size, shuffle=True, seed=cfg.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def make_epoch(epoch):
            batches.set_epoch(epoch)
            return (collate(split, indices, pad, pad_to_multiple_of=width) for indices in batches)

        def step(batch):
            optimizer.zero_grad()
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
    else:
        batches = LengthGroupedBatches(
            split.lengths, cfg.batch_size, shuffle=True, seed=cfg.seed, group_batches=cfg.group_by_length_batches
        )
        loader = BatchLoader(split, batches, pad, cfg.pad_to_multiple_of)
        optimizer = build_optimizer(model, cfg)
        scheduler = get_scheduler(optimizer, cfg, 1_000_000)
        cpu = torch.device("cpu")
        precision = precision_on(cfg.precision, cpu)  # what the train stage runs on this CPU
        autocast, scaler = autocast_for(precision, cpu), grad_scaler_for(precision, cpu)
        dropout = dropout_masks(
            dataclasses.replace(cfg, fast_dropout=cfg.fast_dropout and name != "c_torch_dropout"), cpu
        )

        def make_epoch(epoch):
            batches.set_epoch(epoch)
            return iter(loader)

        def step(batch):
            loop_step(model, batch, optimizer, scheduler, autocast, scaler, dropout, cfg)

    data = batches_forever(make_epoch)
    rounds.counter = TokenCounter(model)
    while True:
        step(next(data))
        if not rounds.after_step():
            break
    return {}


def run_trainer(name: str, split, meta, model_name, cfg, rounds: Rounds, workdir: Path) -> dict:
    import datasets
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(model_name)
    model = load_pretrained_classifier(model_name, meta["label_names"])
    dataset = datasets.Dataset.from_dict(
        {
            "input_ids": [split[i][0].tolist() for i in range(len(split))],
            "labels": split.labels.tolist(),
            "length": split.lengths.tolist(),
        }
    )
    rounds.counter = TokenCounter(model)

    class RoundsCallback(TrainerCallback):
        # Steps are timed end to end, so fetching and collating the next batch counts, as in the other loops.
        def on_step_end(self, args, state, control, **kwargs):
            if not rounds.after_step():
                control.should_training_stop = True

    extra = {"train_sampling_strategy": "group_by_length", "bf16": True} if "grouped_bf16" in name else {}
    args = TrainingArguments(
        output_dir=str(workdir),
        per_device_train_batch_size=cfg.batch_size,
        max_steps=1_000_000,
        learning_rate=cfg.lr,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=cfg.seed,
        **extra,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[RoundsCallback()],
    )
    trainer.train()
    return {}


def worker(name: str, connection, warmup: int, round_seconds: float, workdir: str, batch_size: int | None) -> None:
    params = load_params("params.yaml")
    if batch_size:
        params = dataclasses.replace(params, train=dataclasses.replace(params.train, batch_size=batch_size))
    meta = read_meta("data/tokenized")
    # The Trainer shrinks its length-grouping windows ("megabatches", 50 batches) to a quarter of a
    # small dataset; with 200 batches' worth it uses full ones, as in a real epoch. A pass over the
    # pool meets every length.
    pool_steps = max(POOL_BATCHES, params.train.group_by_length_batches)
    split = sample(load_split("data/tokenized", "train"), params.train.batch_size * pool_steps)
    grouped = name.startswith("c_") or "grouped_bf16" in name
    # Grouped configurations warm up for one pass, so that their rounds start where a pass does.
    rounds = Rounds(connection, pool_steps if grouped else warmup, pool_steps if grouped else None, round_seconds)
    if name.startswith("b_"):
        result = run_trainer(
            name, split, meta, params.model.name, params.train, rounds, Path(workdir) / f"trainer-{name}"
        )
    else:
        result = run_manual(name, split, meta, params.model.name, params.train, rounds)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    connection.send(result)


def start_worker(name: str, context, args) -> tuple[multiprocessing.Process, object]:
    parent_end, child_end = context.Pipe()
    process = context.Process(
        target=worker, args=(name, child_end, args.warmup, args.round_seconds, str(args.out.parent), args.batch_size)
    )
    process.start()
    if parent_end.recv() != "ready":
        raise RuntimeError(f"worker {name} did not start")
    return process, parent_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="turns each configuration takes")
    parser.add_argument("--round-seconds", type=float, default=4.0, help="length of one turn")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the first round")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(CONFIGS),
        default=None,
        metavar="NAME",
        help="measure only these configurations (and the (a), fastest (b) and (c) the ratios need)",
    )
    parser.add_argument(
        "--only-vs-c", action="store_true", help="with --only: compare with (c) alone, without measuring (a) and (b)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="instead of train.batch_size of params.yaml, for all"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    params = load_params("params.yaml")
    if args.batch_size:
        params = dataclasses.replace(params, train=dataclasses.replace(params.train, batch_size=args.batch_size))
    model = load_pretrained_classifier(params.model.name, read_meta("data/tokenized")["label_names"])
    non_embedding = non_embedding_parameters(model)
    del model

    if args.only:
        # (c) is what every other row is compared with; --only-vs-c leaves out (a) and (b).
        required = {"c_pipeline"} if args.only_vs_c else {"a_tutorial", "b_trainer_grouped_bf16", "c_pipeline"}
        names = [name for name in CONFIGS if name in required or name in args.only]
    else:
        names = list(CONFIGS)
    context = multiprocessing.get_context("spawn")
    workers = {}
    for name in names:
        workers[name] = start_worker(name, context, args)
        print(f"  {name}: loaded and warmed up", flush=True)

    rounds = {name: [] for name in names}
    peaks = {"fp32": [], "bf16": []}
    for r in range(args.rounds):
        peaks["fp32"].append(matmul_peak(torch.float32))
        peaks["bf16"].append(matmul_peak(torch.bfloat16))
        for name in names[r % len(names) :] + names[: r % len(names)]:  # each takes every place in the order
            workers[name][1].send("run")
            rounds[name].append(workers[name][1].recv())
        print(
            f"  round {r + 1}/{args.rounds}: bf16 peak {peaks['bf16'][-1] / 1e9:.0f} GFLOP/s, "
            + ", ".join(f"{n} {rounds[n][-1]['real_tokens'] / rounds[n][-1]['seconds']:.0f}" for n in names)
            + " tokens/s",
            flush=True,
        )
    extras = {}
    for name, (process, connection) in workers.items():
        connection.send("stop")
        extras[name] = connection.recv()
        process.join()

    def tokens_per_s(name: str) -> list[float]:
        return [r["real_tokens"] / r["seconds"] for r in rounds[name]]

    def ratio(speed: list[float], reference: list[float] | None) -> tuple[float | None, list[float] | None]:
        """The median of the per-round ratios, and their range; None without a reference."""
        if not reference:
            return None, None
        ratios = [s / r for s, r in zip(speed, reference)]
        return statistics.median(ratios), [min(ratios), max(ratios)]

    trainers = [n for n in names if n.startswith("b_")]
    best_trainer_by_round = [max(values) for values in zip(*(tokens_per_s(n) for n in trainers))]
    tutorial = tokens_per_s("a_tutorial") if "a_tutorial" in names else None
    rows = {}
    for name in names:
        counted = {
            key: sum(r[key] for r in rounds[name]) for key in ("seconds", "samples", "real_tokens", "padded_tokens")
        }
        speed = tokens_per_s(name)
        rows[name] = {
            "description": CONFIGS[name].description,
            "samples_per_s": statistics.median(r["samples"] / r["seconds"] for r in rounds[name]),
            "real_tokens_per_s": statistics.median(speed),
            "real_tokens_per_s_by_round": speed,
            "padding_fraction": 1 - counted["real_tokens"] / counted["padded_tokens"],
            "peak_rss_mb": extras[name]["peak_rss_mb"],
            "mfu_bf16_peak": statistics.median(6 * non_embedding * s / p for s, p in zip(speed, peaks["bf16"])),
            "vs_tutorial": ratio(speed, tutorial)[0],
            "vs_best_trainer": ratio(speed, best_trainer_by_round)[0],
            "vs_best_trainer_range": ratio(speed, best_trainer_by_round)[1],
            "vs_pipeline": ratio(speed, tokens_per_s("c_pipeline"))[0],
            "vs_pipeline_range": ratio(speed, tokens_per_s("c_pipeline"))[1],
            "timed_steps_samples": counted["samples"],
        }

    median_peaks = {dtype: statistics.median(values) for dtype, values in peaks.items()}
    print(
        f"\nmatrix-product peak (median of {args.rounds} rounds): fp32 {median_peaks['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {median_peaks['bf16'] / 1e9:.0f} GFLOP/s; {torch.get_num_threads()} threads; "
        f"batch {params.train.batch_size}; "
        f"{args.rounds} rounds of {args.round_seconds:g} s\n"
    )

    def shown(median: float | None, span: list[float] | None = None) -> str:
        if median is None:
            return "–"
        return f"{median:.2f}" + (f" ({span[0]:.2f}–{span[1]:.2f})" if span else "")

    print(
        "| configuration | samples/s | real tokens/s | padding | peak RSS | MFU (bf16 peak) "
        "| × (a) | × best (b) | × (c) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows.values():
        print(
            f"| {row['description']} | {row['samples_per_s']:.0f} | {row['real_tokens_per_s']:.0f} | "
            f"{row['padding_fraction']:.0%} | {row['peak_rss_mb'] / 1024:.2f} GB | {row['mfu_bf16_peak']:.1%} | "
            f"{shown(row['vs_tutorial'])} | {shown(row['vs_best_trainer'], row['vs_best_trainer_range'])} | "
            f"{shown(row['vs_pipeline'], row['vs_pipeline_range'])} |"
        )
    report = {
        "peaks_flop_per_s": median_peaks,
        "peaks_by_round": peaks,
        "threads": torch.get_num_threads(),
        "batch_size": params.train.batch_size,
        "rounds": args.rounds,
        "round_seconds": args.round_seconds,
        "warmup_steps": args.warmup,
        "non_embedding_parameters": non_embedding,
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
