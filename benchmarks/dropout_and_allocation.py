"""The two costs behind (c)'s CPU speed-ups, measured alone: drawing dropout masks, and allocating a large gradient.

1. Training-mode dropout of one bf16 activation and of one fp32 attention-probability tensor the
   size MiniLM meets at batch 64, with torch's ``F.dropout`` and with ``pipeline.dropout``.
2. ``torch.zeros(30522, 384)``, the shape of the word-embedding gradient every step allocates.

Both in a fresh process with glibc's default settings and in one after
``pipeline.allocator.keep_freed_memory()``, as the train stage runs: a fresh buffer costs page
faults under the defaults, and that shows in the dropout timings too.

    python benchmarks/dropout_and_allocation.py      # under a minute; JSON in benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.allocator import keep_freed_memory
from pipeline.dropout import dropout

ALLOCATORS = {"default": "glibc's defaults", "keep_freed": "freed memory kept (the train stage's)"}
SHAPES = {"hidden states (64, 24, 384), bf16": ((64, 24, 384), torch.bfloat16),
          "attention probabilities (64, 12, 24, 24), fp32": ((64, 12, 24, 24), torch.float32)}


def seconds_per_call(fn, repeats: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean time of ``repeats`` calls, after a warm-up."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(times)


def measure(allocator: str) -> dict:
    """In a process of its own: the allocator settings cannot be undone once made."""
    if allocator == "keep_freed":
        keep_freed_memory()
    result = {"dropout_ns_per_element": {}}
    for label, (shape, dtype) in SHAPES.items():
        x = torch.randn(shape, dtype=dtype)
        result["dropout_ns_per_element"][label] = {
            "torch": 1e9 * seconds_per_call(lambda: F.dropout(x, 0.1, training=True), repeats=50) / x.numel(),
            "pipeline": 1e9 * seconds_per_call(lambda: dropout(x, 0.1), repeats=50) / x.numel(),
        }
    result["zeros_30522x384_ms"] = 1e3 * seconds_per_call(lambda: torch.zeros(30522, 384), repeats=20)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dropout_and_allocation.json"))
    parser.add_argument("--child", choices=ALLOCATORS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return

    report = {"threads": torch.get_num_threads()}
    for allocator in ALLOCATORS:
        child = subprocess.run([sys.executable, __file__, "--child", allocator], capture_output=True, text=True, check=True)
        report[allocator] = json.loads(child.stdout)
    print("| dropout, p = 0.1 | allocator | torch | this project's | × |\n|---|---|---|---|---|")
    for label in SHAPES:
        for allocator in ALLOCATORS:
            cost = report[allocator]["dropout_ns_per_element"][label]
            print(f"| {label} | {ALLOCATORS[allocator]} | {cost['torch']:.2f} ns/element | {cost['pipeline']:.2f} ns/element "
                  f"| {cost['torch'] / cost['pipeline']:.1f} |")
    print("\n| torch.zeros(30522, 384) | time |\n|---|---|")
    for allocator, description in ALLOCATORS.items():
        print(f"| {description} | {report[allocator]['zeros_30522x384_ms']:.1f} ms |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
