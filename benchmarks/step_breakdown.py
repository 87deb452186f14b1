"""Where a training step of this project's loop goes, measured without a profiler, and what bounds its MFU.

``torch.profiler`` puts its own cost on every operator and changes where memory lands: under it,
zero-filling the 47 MB word-embedding gradient took 84 ms of a 273 ms step, where the same steps
took 218 ms without it and, once warm, fault no pages. So this measures by subtraction instead,
every part on the same batches, the parts taking turns batch by batch:

- **step**: ``train_step`` as the train stage runs it, with the default params;
- **forward + backward**: the same without the optimizer step (clipping, fused AdamW, schedule);
- **forward + backward without dropout**: every ``nn.Dropout`` at rate 0;
- **fixed cost**: forward + backward of one 4-token sentence without dropout, once per batch:
  what operator dispatch, Python, autograd and autocast's weight casts cost however small the batch;
- **matrix products alone**: every ``mm``, ``addmm`` and ``bmm`` of the forward and backward
  passes, replayed with the same shapes, dtypes and memory layouts on random data;
- the bf16 matrix-product peak (2048³), measured every round, as in ``train_throughput.py``;
- unless ``--no-compile``, the step once more on a copy of the model whose encoder layers
  ``torch.compile`` (Inductor) has compiled, with dropout (Inductor's own) and without it. Fusing a
  layer's elementwise work and running it without Python is what a compiler offers against the
  parts above; the step without dropout bounds what any dropout implementation could reach.

The batches are one length-grouping window of a seeded sample of the tokenized training split
(``train.group_by_length_batches`` batches), so they span SST-2's sentence lengths as an epoch
does. MFU counts 6 × non-embedding parameters per real token, as ``train_throughput.py`` does.

    python benchmarks/step_breakdown.py      # about 7 minutes; JSON in benchmarks/results/step_breakdown.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from train_throughput import matmul_peak, non_embedding_parameters, sample

from pipeline.batching import BatchLoader, LengthGroupedBatches
from pipeline.config import load_params
from pipeline.modeling import load_pretrained_classifier
from pipeline.precision import autocast_for, grad_scaler_for
from pipeline.tokenization import load_split, read_meta
from pipeline.training import build_optimizer, dropout_masks, get_scheduler, train_step, training_attention

# The parts timed, and the parts of a step derived from them.
STEP, FORWARD_BACKWARD, NO_DROPOUT = "step", "forward + backward", "forward + backward without dropout"
FIXED, MATMULS_ALONE = "fixed cost (a 4-token batch)", "matrix products alone"
COMPILED, COMPILED_NO_DROPOUT = "step, layers compiled", "step, layers compiled, without dropout"
MATMUL_SHARE = "matrix products"
DROPOUT_SHARE = "dropout (masks and their application, both passes)"
OPTIMIZER_SHARE = "optimizer (norm, clipped fused AdamW, schedule)"
FIXED_SHARE = "fixed per-step cost (dispatch, Python, autograd, weight casts)"
REST_SHARE = "everything else (softmax, GELU, LayerNorm, activation casts, embedding gradient, ...)"

MATMULS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.baddbmm.default,
}


class MatmulRecorder(TorchDispatchMode):
    """Notes the shape, layout and dtype of every matrix product it sees (backward passes included)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            self.calls.append(
                (
                    func,
                    [(a.shape, a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a for a in args],
                    kwargs or {},
                )
            )
        return func(*args, **(kwargs or {}))


def matmul_flops(func, args) -> int:
    """2·M·N·K (times the batch for ``bmm``) of one recorded product."""
    left, right = (
        (args[1], args[2]) if func in (torch.ops.aten.addmm.default, torch.ops.aten.baddbmm.default) else args[:2]
    )
    return 2 * math.prod(left[0]) * right[0][-1]


def replayers(call_lists: list[list]) -> list[Callable[[], None]]:
    """For each list of recorded calls, a function that runs them again on random memory, same layouts."""

    def extent(shape, stride):
        return 1 + sum((n - 1) * s for n, s in zip(shape, stride))

    sizes = {}
    for _, args, _ in (call for calls in call_lists for call in calls):
        for a in args:
            if isinstance(a, tuple):
                sizes[a[2]] = max(sizes.get(a[2], 0), extent(a[0], a[1]))
    memory = {dtype: torch.randn(n, dtype=dtype) for dtype, n in sizes.items()}  # one pool, shared by all

    def replayer(calls: list) -> Callable[[], None]:
        ready = [
            (func, [memory[a[2]].as_strided(a[0], a[1]) if isinstance(a, tuple) else a for a in args], kwargs)
            for func, args, kwargs in calls
        ]

        def replay() -> None:
            for func, args, kwargs in ready:
                func(*args, **kwargs)

        return replay

    return [replayer(calls) for calls in call_lists]


@contextlib.contextmanager
def without_dropout(model: torch.nn.Module):
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    rates = [m.p for m in layers]
    for m in layers:
        m.p = 0.0  # torch returns its input untouched at rate 0
    try:
        yield
    finally:
        for m, p in zip(layers, rates):
            m.p = p


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of Transformer layers: the list of modules holding the most parameters, whatever the architecture."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of layers to compile")
    return max(lists, key=lambda layers: sum(p.numel() for p in layers.parameters()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the steps with compiled layers (saves about 3 minutes)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/step_breakdown.json"))
    args = parser.parse_args()

    params = load_params("params.yaml")
    cfg, cpu = params.train, torch.device("cpu")
    meta = read_meta("data/tokenized")
    window = cfg.group_by_length_batches
    split = sample(load_split("data/tokenized", "train"), cfg.batch_size * window)
    batches = list(
        BatchLoader(
            split,
            LengthGroupedBatches(split.lengths, cfg.batch_size, shuffle=True, seed=cfg.seed, group_batches=window),
            meta["pad_token_id"],
            cfg.pad_to_multiple_of,
        )
    )
    real_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    padded_tokens = sum(b["attention_mask"].numel() for b in batches)
    first = next(i for i in range(len(split)) if len(split[i][0]) >= 4)
    tiny = {
        "input_ids": split[first][0][None, :4],
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "labels": split.labels[first : first + 1],
    }

    def training_copy() -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
        torch.manual_seed(cfg.seed)
        model = load_pretrained_classifier(
            params.model.name, meta["label_names"], attn_implementation=training_attention(cpu)
        )
        model.train()
        optimizer = build_optimizer(model, cfg)
        return model, optimizer, get_scheduler(optimizer, cfg, 1_000_000)

    model, optimizer, scheduler = training_copy()
    autocast, scaler, dropout = (
        autocast_for(cfg.precision, cpu),
        grad_scaler_for(cfg.precision, cpu),
        dropout_masks(cfg, cpu),
    )
    counted_flops = 6 * non_embedding_parameters(model) * real_tokens

    def forward_backward(batch) -> None:
        with autocast, dropout:
            loss = model(**batch).loss
        loss.backward()
        optimizer.zero_grad(set_to_none=True)

    def forward_backward_without_dropout(batch) -> None:
        with without_dropout(model):
            forward_backward(batch)

    recorders = [MatmulRecorder() for _ in batches]
    for recorder, batch in zip(recorders, batches):
        with recorder:
            forward_backward(batch)
    replays = replayers([recorder.calls for recorder in recorders])
    matmul_flops_total = sum(matmul_flops(func, a) for recorder in recorders for func, a, _ in recorder.calls)

    # Each part runs on batch i, then the next part on batch i, and so on: this machine's speed
    # drifts within a minute, and taking turns batch by batch gives every part the same drift.
    parts: dict[str, Callable[[int], None]] = {
        STEP: lambda i: train_step(
            model, [batches[i]], optimizer, scheduler, autocast, scaler, cfg.max_grad_norm, dropout
        ),
        FORWARD_BACKWARD: lambda i: forward_backward(batches[i]),
        NO_DROPOUT: lambda i: forward_backward_without_dropout(batches[i]),
        # Without dropout, whose calls cost something at any size too: that counts under dropout.
        FIXED: lambda i: forward_backward_without_dropout(tiny),
        MATMULS_ALONE: lambda i: replays[i](),
    }
    if not args.no_compile:
        compiled, compiled_optimizer, compiled_scheduler = training_copy()
        for layer in encoder_layers(compiled):
            layer.compile(dynamic=True)  # one graph for every sentence length; the layers share its code

        def compiled_step(i: int) -> None:
            # The fast masks call numpy, which a compiled graph cannot hold: Inductor draws its own.
            train_step(
                compiled, [batches[i]], compiled_optimizer, compiled_scheduler, autocast, scaler, cfg.max_grad_norm
            )

        def compiled_step_without_dropout(i: int) -> None:
            with without_dropout(compiled):
                compiled_step(i)

        parts |= {COMPILED: compiled_step, COMPILED_NO_DROPOUT: compiled_step_without_dropout}
    warmup_start = time.perf_counter()
    for i in range(len(batches)):  # warm-up (and compilation): memory grows to what the longest batch needs
        for run in parts.values():
            run(i)
    warmup_seconds = time.perf_counter() - warmup_start
    seconds: dict[str, list[float]] = {name: [] for name in parts}
    peaks = []
    for r in range(args.rounds):
        peaks.append(matmul_peak(torch.bfloat16))
        names = list(parts)
        for name in names:
            seconds[name].append(0.0)
        for i in range(len(batches)):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                start = time.perf_counter()
                parts[name](i)
                seconds[name][-1] += time.perf_counter() - start
        print(
            f"  round {r + 1}/{args.rounds}: bf16 peak {peaks[-1] / 1e9:.0f} GFLOP/s, step "
            f"{1e3 * seconds[STEP][-1] / len(batches):.1f} ms",
            flush=True,
        )

    def per_round(f: Callable[[int], float]) -> float:
        return statistics.median(f(r) for r in range(args.rounds))

    def ms(name: str, r: int) -> float:
        return 1e3 * seconds[name][r] / len(batches)

    shares = {
        MATMUL_SHARE: lambda r: ms(MATMULS_ALONE, r),
        DROPOUT_SHARE: lambda r: ms(FORWARD_BACKWARD, r) - ms(NO_DROPOUT, r),
        OPTIMIZER_SHARE: lambda r: ms(STEP, r) - ms(FORWARD_BACKWARD, r),
        FIXED_SHARE: lambda r: ms(FIXED, r),
        REST_SHARE: lambda r: ms(NO_DROPOUT, r) - ms(MATMULS_ALONE, r) - ms(FIXED, r),
    }
    step_ms = per_round(lambda r: ms(STEP, r))
    peak = statistics.median(peaks)
    mfu = per_round(lambda r: counted_flops / (peaks[r] * seconds[STEP][r]))
    matmul_efficiency = per_round(lambda r: matmul_flops_total / (peaks[r] * seconds[MATMULS_ALONE][r]))

    def ceiling(removed: list[str]) -> float:
        """MFU if the parts named took no time and the rest stayed as measured."""
        return per_round(
            lambda r: (
                counted_flops * 1e3 / len(batches) / (peaks[r] * (ms(STEP, r) - sum(shares[k](r) for k in removed)))
            )
        )

    ceilings = {
        "without the optimizer": ceiling([OPTIMIZER_SHARE]),
        "without the optimizer and the fixed per-step cost": ceiling([OPTIMIZER_SHARE, FIXED_SHARE]),
        "without anything but the matrix products": ceiling([k for k in shares if k != MATMUL_SHARE]),
    }
    rows = {
        name: {"ms_per_step": per_round(f), "share": per_round(lambda r, f=f: f(r) / ms(STEP, r))}
        for name, f in shares.items()
    }
    compiled_rows = {
        name: {
            "ms_per_step": per_round(lambda r, name=name: ms(name, r)),
            "speed_vs_step": per_round(lambda r, name=name: seconds[STEP][r] / seconds[name][r]),
            "mfu_bf16_peak": per_round(lambda r, name=name: counted_flops / (peaks[r] * seconds[name][r])),
        }
        for name in (COMPILED, COMPILED_NO_DROPOUT)
        if name in parts
    }

    print(
        f"\n{len(batches)} batches of {cfg.batch_size} ({real_tokens / len(batches):.0f} real tokens per batch, "
        f"{1 - real_tokens / padded_tokens:.0%} padding), {torch.get_num_threads()} threads, "
        f"bf16 peak {peak / 1e9:.0f} GFLOP/s "
        f"(median of {args.rounds} rounds); a step takes {step_ms:.1f} ms\n"
    )
    print("| part of a step | ms per step | share of the step |\n|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['ms_per_step']:.1f} | {row['share']:.0%} |")
    print(
        f"\nMFU of the step: {mfu:.1%} of the bf16 peak. The matrix products alone run at {matmul_efficiency:.0%} of "
        f"the peak ({matmul_flops_total / counted_flops:.2f}× the counted FLOPs: padding, attention and the "
        f"classifier's products count there)."
    )
    for name, value in ceilings.items():
        print(f"MFU {name}: {value:.1%}")
    if compiled_rows:
        print(f"\nWith the encoder layers compiled (warm-up and compilation took {warmup_seconds:.0f} s):")
        for name, row in compiled_rows.items():
            print(
                f"  {name}: {row['ms_per_step']:.1f} ms, {row['speed_vs_step']:.2f}× the speed of the step, "
                f"MFU {row['mfu_bf16_peak']:.1%}"
            )

    report = {
        "batches": len(batches),
        "batch_size": cfg.batch_size,
        "real_tokens": real_tokens,
        "padded_tokens": padded_tokens,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "bf16_peak_flops": peak,
        "step_ms": step_ms,
        "mfu_bf16_peak": mfu,
        "matmul_efficiency": matmul_efficiency,
        "matmul_flops_over_counted": matmul_flops_total / counted_flops,
        "parts": rows,
        "mfu_ceilings": ceilings,
        "compiled": compiled_rows,
        "warmup_seconds": warmup_seconds,
        "raw_seconds": seconds,
        "raw_peaks": peaks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
