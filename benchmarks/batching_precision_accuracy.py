"""Does speed cost accuracy? Length-grouped vs plain random batches, bf16 vs fp32, fast vs torch dropout.

Three speed-ups of the default recipe change what is computed: length grouping changes which
sentences share a batch, bf16 autocast rounds the matrix products, and the fast dropout draws its
masks from another generator (at a rate rounded to 1/65,536). This trains the 2 × 2 grid of the
first two, plus the default recipe with torch's dropout, with the pipeline's own download,
tokenize and train code and otherwise the params of ``params.yaml``, on a seeded subsample of
the training split (all runs see the same sentences), and reports validation accuracy after every
epoch next to its binomial standard error.

    python benchmarks/batching_precision_accuracy.py                          # 10,000 sentences
    python benchmarks/batching_precision_accuracy.py --train-samples 67349    # the whole split
    python benchmarks/batching_precision_accuracy.py --variants grouped_bf16 grouped_bf16_torch_dropout

Results go to benchmarks/results/batching_precision_accuracy.json; the runs' files to a scratch folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

from pipeline.config import load_params
from pipeline.data import download
from pipeline.tokenization import tokenize
from pipeline.training import train

VARIANTS = {
    "grouped_bf16": {"group_by_length_batches": None, "precision": "bf16"},  # None: the value in params.yaml
    "grouped_fp32": {"group_by_length_batches": None, "precision": "fp32"},
    "plain_bf16": {"group_by_length_batches": 1, "precision": "bf16"},
    "plain_fp32": {"group_by_length_batches": 1, "precision": "fp32"},
    "grouped_bf16_torch_dropout": {"group_by_length_batches": None, "precision": "bf16", "fast_dropout": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=10_000, help="training sentences (seeded subsample)")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="which runs (default: all)"
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/batching_precision_accuracy.json"))
    args = parser.parse_args()

    params = load_params(args.params)
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, max_train_samples=args.train_samples))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="accuracy-grid-") as scratch:
        scratch = Path(scratch)
        download(params.data, scratch / "raw")
        meta = tokenize(params.model, params.tokenize, scratch / "raw", scratch / "tokenized")
        n_val = meta["splits"]["validation"]["n_examples"]
        for name in args.variants:
            change = VARIANTS[name]
            change = {key: value for key, value in change.items() if value is not None}
            run = dataclasses.replace(params, train=dataclasses.replace(params.train, **change))
            started = time.perf_counter()
            metrics = train(run, scratch / "tokenized", scratch / name / "model", scratch / name / "live")
            epochs = (
                (scratch / name / "live" / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()[1:]
            )
            accuracy_by_epoch = [float(line.split("\t")[1]) for line in epochs]
            rows[name] = {
                "group_by_length_batches": run.train.group_by_length_batches,
                "precision": run.train.precision,
                "fast_dropout": run.train.fast_dropout,
                "val_accuracy_by_epoch": accuracy_by_epoch,
                "val_accuracy": metrics["val"]["accuracy"],
                "val_loss": metrics["val"]["loss"],
                "padding_fraction": metrics["padding_fraction"],
                "train_samples_per_s": metrics["train_samples_per_s"],
                "wall_s": round(time.perf_counter() - started, 1),
            }
            print(f"  trained {name}: accuracy {metrics['val_accuracy']:.4f}", flush=True)

    best = max(row["val_accuracy"] for row in rows.values())
    standard_error = math.sqrt(best * (1 - best) / n_val)
    print(
        f"\n{args.train_samples} training sentences, {params.train.epochs} epochs, {n_val} validation sentences; "
        f"one standard error of an accuracy near {best:.3f}: {standard_error:.4f}\n"
    )
    print("| batches | precision | dropout masks | validation accuracy by epoch | padding |")
    print("|---|---|---|---|---|")
    for row in rows.values():
        batches = (
            "plain random" if row["group_by_length_batches"] == 1 else f"grouped ({row['group_by_length_batches']})"
        )
        by_epoch = " / ".join(f"{a:.4f}" for a in row["val_accuracy_by_epoch"])
        masks = "fast (16-bit PCG64)" if row["fast_dropout"] else "torch"
        print(f"| {batches} | {row['precision']} | {masks} | {by_epoch} | {row['padding_fraction']:.0%} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "train_samples": args.train_samples,
        "epochs": params.train.epochs,
        "validation_examples": n_val,
        "standard_error": standard_error,
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
