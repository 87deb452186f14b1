"""What gradient clipping adds to the optimizer step, in its own pass and inside the fused AdamW step.

On all-MiniLM-L6-v2's 22.7M parameters with gradients whose norm is over ``train.max_grad_norm``
(as most steps' are late in training), in one process with the train stage's allocator settings.
The ways of stepping take turns in rounds, so the machine's drift hits them alike:

- the fused AdamW step alone (no clipping: the floor);
- ``clip_grad_norm_`` then the step (what Hugging Face Trainer does, and this loop did before);
- ``pipeline.training.clipped_step``: the norm, then the step dividing by it as it reads each gradient;
- ``get_total_norm`` alone (what clipping costs at the least).

    python benchmarks/optimizer_step.py      # under a minute; JSON in benchmarks/results/optimizer_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pipeline.allocator import keep_freed_memory
from pipeline.config import load_params
from pipeline.modeling import load_pretrained_classifier
from pipeline.training import build_optimizer, clip_then_step, clipped_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per way and round")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/optimizer_step.json"))
    args = parser.parse_args()

    keep_freed_memory()
    cfg = load_params("params.yaml").train
    model = load_pretrained_classifier(load_params("params.yaml").model.name, ["negative", "positive"])
    parameters = list(model.parameters())
    optimizer = build_optimizer(model, cfg)
    torch.manual_seed(0)
    for p in parameters:
        # About 30 in all: clipping scales every gradient down. clip_grad_norm_ multiplies even when the
        # factor is clamped to 1, so its cost does not depend on how far over the limit the norm is.
        p.grad = torch.randn_like(p) * 3e-3

    ways = {
        "fused AdamW step, no clipping": optimizer.step,
        "clip_grad_norm_, then the fused AdamW step": lambda: clip_then_step(optimizer, cfg.max_grad_norm),
        "clipped_step: clipping inside the fused AdamW step": lambda: clipped_step(optimizer, cfg.max_grad_norm),
        "get_total_norm alone": lambda: torch.nn.utils.get_total_norm([p.grad for p in parameters]),
    }
    times = {name: [] for name in ways}
    names = list(ways)
    for r in range(args.rounds + 1):  # the first round warms up
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            for _ in range(args.steps):
                ways[name]()
            if r:
                times[name].append((time.perf_counter() - start) / args.steps)

    ms = {name: 1e3 * statistics.median(values) for name, values in times.items()}
    separate, folded = "clip_grad_norm_, then the fused AdamW step", "clipped_step: clipping inside the fused AdamW step"
    saved = [a - b for a, b in zip(times[separate], times[folded])]
    print(f"{sum(p.numel() for p in parameters) / 1e6:.1f}M parameters, {torch.get_num_threads()} threads, "
          f"medians of {args.rounds} rounds of {args.steps} steps\n")
    print("| way | ms per step |\n|---|---|")
    for name in ways:
        print(f"| {name} | {ms[name]:.1f} |")
    print(f"\nclipping inside the step saves {1e3 * statistics.median(saved):.1f} ms per step "
          f"(rounds: {1e3 * min(saved):.1f} to {1e3 * max(saved):.1f})")
    report = {"threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in parameters),
              "rounds": args.rounds, "steps_per_round": args.steps, "ms_per_step": ms,
              "ms_per_step_by_round": {name: [1e3 * t for t in values] for name, values in times.items()},
              "saved_ms_per_step": 1e3 * statistics.median(saved)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
