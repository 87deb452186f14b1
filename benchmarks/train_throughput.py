"""Training throughput, side by side: the reference tutorial's recipe, Hugging Face Trainer, this project's loop.

Every configuration trains the same model on the same SST-2 training sentences (a seeded sample of
the tokenized cache, so run ``dvc repro tokenize`` first) at the same batch size, each in its own
process so that peak memory is its own. After a few warm-up steps a fixed number of steps is timed.

    python benchmarks/train_throughput.py                  # prints the table, writes benchmarks/results/train_throughput.json
    python benchmarks/train_throughput.py --steps 30       # longer, steadier

Reported per configuration: training samples/s, real (non-padding) tokens/s, padding fraction,
peak RSS, and model FLOP utilisation: 6 × non-embedding parameters × real tokens per second,
divided by the bf16 matrix-product peak measured at the start of the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from pipeline.batching import BatchLoader, LengthGroupedBatches, collate
from pipeline.config import TrainConfig, load_params
from pipeline.data import subsample_indices
from pipeline.modeling import load_pretrained_classifier, load_tokenizer
from pipeline.tokenization import TokenizedSplit, load_split, read_meta
from pipeline.training import autocast_for, build_optimizer, get_scheduler, grad_scaler_for, train_step

CONFIGS = {
    "a_tutorial": "(a) tutorial: pad to dataset max, random batches, fp32, AdamW",
    "b_trainer": "(b) Trainer defaults: dynamic padding, random batches, fp32",
    "b_trainer_grouped_bf16": "(b) Trainer: group_by_length + bf16 (+ fused AdamW, its default)",
    "c_pipeline": "(c) this project's loop, default params",
}


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


class Meter:
    """Counts samples and real/padded tokens of the timed steps and the time they took."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.last, self.step, self.started = warmup, warmup + steps, 0, None
        self.samples = self.real_tokens = self.padded_tokens = 0

    def count(self, attention_mask: torch.Tensor) -> None:
        self.step += 1
        if self.step == self.warmup + 1:
            self.started = time.perf_counter()
        if self.warmup < self.step <= self.last:  # a loader may collate one batch ahead: not counted
            self.samples += attention_mask.shape[0]
            self.real_tokens += int(attention_mask.sum())
            self.padded_tokens += attention_mask.numel()

    def result(self) -> dict:
        seconds = time.perf_counter() - self.started
        return {"seconds": seconds, "samples": self.samples, "real_tokens": self.real_tokens,
                "padded_tokens": self.padded_tokens}


def run_manual(split, meta, model_name, cfg: TrainConfig, tutorial: bool, steps: int, warmup: int) -> dict:
    torch.manual_seed(cfg.seed)
    model = load_pretrained_classifier(model_name, meta["label_names"])
    model.train()
    pad = meta["pad_token_id"]
    if tutorial:
        # The tutorial pads every sentence to the longest of the dataset and uses AdamW as it comes.
        width = meta["splits"]["train"]["length_max"]
        batches = LengthGroupedBatches(split.lengths, cfg.batch_size, shuffle=True, seed=cfg.seed)
        loader = (collate(split, idx, pad, pad_to_multiple_of=width) for idx in batches)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        meter = Meter(warmup, steps)
        for batch in loader:
            meter.count(batch["attention_mask"])
            optimizer.zero_grad()
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            if meter.step == warmup + steps:
                break
        return meter.result()
    batches = LengthGroupedBatches(split.lengths, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                   group_batches=cfg.group_by_length_batches)
    loader = BatchLoader(split, batches, pad, cfg.pad_to_multiple_of)
    optimizer = build_optimizer(model, cfg)
    scheduler = get_scheduler(optimizer, cfg, steps + warmup)
    autocast, scaler = autocast_for(cfg.precision, torch.device("cpu")), grad_scaler_for(cfg.precision, torch.device("cpu"))
    meter = Meter(warmup, steps)
    for batch in loader:
        meter.count(batch["attention_mask"])
        train_step(model, [batch], optimizer, scheduler, autocast, scaler, cfg.max_grad_norm)
        if meter.step == warmup + steps:
            break
    return meter.result()


def run_trainer(split, meta, model_name, cfg: TrainConfig, grouped_bf16: bool, steps: int, warmup: int, workdir: Path) -> dict:
    import datasets
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(model_name)
    model = load_pretrained_classifier(model_name, meta["label_names"])
    dataset = datasets.Dataset.from_dict({
        "input_ids": [split[i][0].tolist() for i in range(len(split))],
        "labels": split.labels.tolist(),
        "length": split.lengths.tolist(),
    })
    meter = Meter(warmup, steps)
    pad = DataCollatorWithPadding(tokenizer)

    def collator(features):
        batch = pad(features)
        meter.count(batch["attention_mask"])
        return batch

    class Timer(TrainerCallback):
        # The Trainer's loader collates a batch ahead of the step that uses it, so time the steps themselves.
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                meter.step_started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup + steps:
                meter.finished = time.perf_counter()

    extra = {"train_sampling_strategy": "group_by_length", "bf16": True} if grouped_bf16 else {}
    args = TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=cfg.batch_size, max_steps=warmup + steps,
        learning_rate=cfg.lr, use_cpu=True, report_to="none", save_strategy="no", logging_strategy="no",
        disable_tqdm=True, seed=cfg.seed, **extra,
    )
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[Timer()]).train()
    result = meter.result()
    result["seconds"] = meter.finished - meter.step_started
    return result


def child(name: str, steps: int, warmup: int, result_path: Path) -> None:
    params = load_params("params.yaml")
    meta = read_meta("data/tokenized")
    # A pool as large as one grouping window, so length grouping works as it does in a real epoch.
    pool = params.train.batch_size * max(steps + warmup + 2, params.train.group_by_length_batches)
    split = sample(load_split("data/tokenized", "train"), pool)
    if name == "a_tutorial":
        result = run_manual(split, meta, params.model.name, params.train, True, steps, warmup)
    elif name == "c_pipeline":
        result = run_manual(split, meta, params.model.name, params.train, False, steps, warmup)
    else:
        result = run_trainer(split, meta, params.model.name, params.train, name.endswith("bf16"), steps, warmup,
                             result_path.parent / f"trainer-{name}")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result_path.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--only", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    args = parser.parse_args()
    if args.only:
        return child(args.only, args.steps, args.warmup, args.result)

    params = load_params("params.yaml")
    model = load_pretrained_classifier(params.model.name, read_meta("data/tokenized")["label_names"])
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding
    del model
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matrix-product peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; "
          f"{torch.get_num_threads()} threads; batch {params.train.batch_size}; {args.steps} timed steps", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in CONFIGS:
        result_path = args.out.parent / f".{name}.json"
        subprocess.run([sys.executable, __file__, "--only", name, "--steps", str(args.steps), "--warmup", str(args.warmup),
                        "--result", str(result_path)], check=True, stdout=subprocess.DEVNULL)
        r = json.loads(result_path.read_text())
        result_path.unlink()
        rows[name] = {
            "description": CONFIGS[name],
            "samples_per_s": r["samples"] / r["seconds"],
            "real_tokens_per_s": r["real_tokens"] / r["seconds"],
            "padding_fraction": 1 - r["real_tokens"] / r["padded_tokens"],
            "peak_rss_mb": r["peak_rss_mb"],
            "mfu_bf16_peak": 6 * non_embedding * r["real_tokens"] / r["seconds"] / peaks["bf16"],
        }
        print(f"  measured {name}", flush=True)

    best_trainer = max(rows[n]["real_tokens_per_s"] for n in rows if n.startswith("b_"))
    for row in rows.values():
        row["vs_tutorial"] = row["real_tokens_per_s"] / rows["a_tutorial"]["real_tokens_per_s"]
        row["vs_best_trainer"] = row["real_tokens_per_s"] / best_trainer
    print(f"\n| configuration | samples/s | real tokens/s | padding | peak RSS | MFU (bf16 peak) | × (a) | × best (b) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows.values():
        print(f"| {row['description']} | {row['samples_per_s']:.0f} | {row['real_tokens_per_s']:.0f} | "
              f"{row['padding_fraction']:.0%} | {row['peak_rss_mb'] / 1024:.2f} GB | {row['mfu_bf16_peak']:.1%} | "
              f"{row['vs_tutorial']:.2f} | {row['vs_best_trainer']:.2f} |")
    report = {"peaks_flop_per_s": peaks, "threads": torch.get_num_threads(), "batch_size": params.train.batch_size,
              "steps": args.steps, "warmup": args.warmup, "non_embedding_parameters": non_embedding, "rows": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
