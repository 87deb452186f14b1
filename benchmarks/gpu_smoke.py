"""GPU smoke run: the pipeline's CUDA paths end to end, offline, in a few minutes.

Each check is a row of the report (``smoke.json`` in ``--out``, and a table on stdout):

  bf16              a tiny model trains through the train stage: bf16 autocast, train.deterministic on
  repeat            the same run again: byte-identical weights?
  kill-resume       a run SIGKILLed after its first checkpoint and started again: the same weights?
  fp16              a model published in fp16 trains under fp16 autocast with a gradient scaler
  nondeterministic  train.deterministic off, twice: how far apart the weights and accuracies land
  process-group     the bf16 run as a data-parallel worker in a process group of one (NCCL on a GPU,
                    gloo on a CPU), started by torchrun: DistributedDataParallel and the collectives
                    run, so one GPU checks the multi-GPU code; the same weights as bf16?
  evaluate          the evaluate stage on the bf16 run's model
  throughput        1-GPU training speed of a MiniLM-sized and a DistilBERT-sized model (random
                    weights, SST-2's sentence lengths) in four settings, to tell apart what
                    train.deterministic changes at once: ordered kernels, the attention code
                    (eager or SDPA) and cuDNN's per-shape autotuning (cudnn.benchmark)

It needs the download stage's output and a tokenizer folder, nothing from the network:

    python benchmarks/gpu_smoke.py --raw data/raw --tokenizer TOKENIZER_DIR --out smoke/
    python benchmarks/gpu_smoke.py --device cpu --quick ...   # the same checks on a CPU, in seconds

On a CPU the fp16 row is skipped (fp16 autocast needs CUDA). docs/scaling.md says how to carry the
project, its data and the Python packages a bare CUDA image lacks to a GPU machine; docs/notebook.md
records what the last run there found. Exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
TRAIN_STAGE = ROOT / "stages" / "train_model.py"


def tiny_model(tokenizer, folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """A randomly initialised 2-layer BERT with the tokenizer's vocabulary, saved as a Hub model is."""
    from transformers import AutoModel, BertConfig

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    AutoModel.from_config(config).to(dtype).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Smoke:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = args.out / "work"
        self.rows: list[dict] = []

    def row(self, check: str, ok: bool | None, started: float, **details) -> None:
        row = {"check": check, "ok": ok, "seconds": round(time.perf_counter() - started, 1), **details}
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    def params(self, model: Path, **train) -> dict:
        return {
            "model": {"name": str(model)},
            "train": {
                "epochs": 1,
                "batch_size": 32 if self.args.quick else 64,
                "lr": 5e-4,
                "precision": "bf16",
                "device": self.args.device,
                "checkpoint_every_steps": self.checkpoint_every,
                "log_every_steps": 5,
                **train,
            },
        }

    def train_command(self, name: str, params: dict) -> tuple[list[str], Path]:
        run = self.work / name
        run.mkdir(parents=True, exist_ok=True)
        (run / "params.yaml").write_text(yaml.safe_dump(params))
        command = [sys.executable, str(TRAIN_STAGE), "--params", str(run / "params.yaml")]
        command += ["--tokenized", str(self.work / "tok"), "--model-out", str(run / "model")]
        command += ["--live", str(run / "live"), "--checkpoints", str(run / "ckpt")]
        return command, run

    def train(self, name: str, params: dict) -> tuple[dict, dict[str, torch.Tensor]]:
        command, run = self.train_command(name, params)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: the train stage failed:\n{done.stderr[-2000:]}")
        metrics = json.loads((run / "live" / "metrics.json").read_text())
        # the precision the run says it used (its summary line), not the one asked for
        used = re.search(r", precision (\w+),", done.stderr)
        metrics |= {"val_accuracy": metrics["val"]["accuracy"], "precision": used and used.group(1)}
        return metrics, weights(run / "model")

    def prepare(self) -> None:
        from transformers import AutoTokenizer

        from pipeline.config import ModelConfig, TokenizeConfig
        from pipeline.tokenization import tokenize

        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(self.args.tokenizer)
        self.tiny = tiny_model(tokenizer, self.work / "tiny")
        self.tiny_fp16 = tiny_model(tokenizer, self.work / "tiny-fp16", torch.float16)
        meta = tokenize(
            ModelConfig(name=str(self.tiny)), TokenizeConfig(max_length=128), self.args.raw, self.work / "tok"
        )
        examples = meta["splits"]["train"]["n_examples"]
        steps = examples // (32 if self.args.quick else 64)
        self.checkpoint_every = max(1, steps // 3)
        self.row("prepare", True, started, train_examples=examples, steps_per_epoch=steps)

    def check_bf16(self) -> None:
        started = time.perf_counter()
        metrics, self.bf16_weights = self.train("bf16", self.params(self.tiny))
        self.bf16_model = self.work / "bf16" / "model"
        from pipeline.precision import precision_on

        # bf16 where the hardware has it, else the fallback train.precision documents
        expected = precision_on("bf16", torch.device(self.args.device))
        self.row(
            "bf16",
            metrics["val_accuracy"] > 0 and metrics["precision"] == expected,
            started,
            precision=metrics["precision"],
            val_accuracy=metrics["val_accuracy"],
            samples_per_s=metrics["train_samples_per_s"],
        )

    def check_repeat_and_resume(self) -> None:
        first = self.bf16_weights
        started = time.perf_counter()
        metrics, again = self.train("repeat", self.params(self.tiny))
        self.row("repeat", same(first, again), started, max_abs_difference=max_difference(first, again))

        started = time.perf_counter()
        command, run = self.train_command("kill-resume", self.params(self.tiny))
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while process.poll() is None and not any((run / "ckpt").glob("step-*")):
            time.sleep(0.05)
        killed = process.poll() is None
        if killed:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        metrics, resumed = self.train("kill-resume", self.params(self.tiny))
        self.row(
            "kill-resume",
            killed and metrics["resumed_from_step"] > 0 and same(first, resumed),
            started,
            killed_after_checkpoint=killed,
            resumed_from_step=metrics["resumed_from_step"],
            max_abs_difference=max_difference(first, resumed),
        )

    def check_fp16(self) -> None:
        started = time.perf_counter()
        if self.args.device == "cpu":
            self.row("fp16", None, started, skipped="fp16 autocast needs a CUDA GPU")
            return
        metrics, trained = self.train("fp16", self.params(self.tiny_fp16, precision="fp16"))
        fp32 = all(t.dtype == torch.float32 for t in trained.values())
        finite = all(bool(torch.isfinite(t).all()) for t in trained.values())
        self.row(
            "fp16",
            fp32 and finite and metrics["val_accuracy"] > 0 and metrics["precision"] == "fp16",
            started,
            precision=metrics["precision"],
            val_accuracy=metrics["val_accuracy"],
            fp32_weights=fp32,
            finite=finite,
            max_abs_difference_from_bf16=max_difference(self.bf16_weights, trained),
        )

    def check_nondeterministic(self) -> None:
        started = time.perf_counter()
        first_metrics, first = self.train("nondet-1", self.params(self.tiny, deterministic=False))
        second_metrics, second = self.train("nondet-2", self.params(self.tiny, deterministic=False))
        self.row(
            "nondeterministic",
            True,  # a report, not a pass/fail: how far two runs land apart when the kernels may reorder sums
            started,
            identical=same(first, second),
            max_abs_difference=max_difference(first, second),
            val_accuracies=[first_metrics["val_accuracy"], second_metrics["val_accuracy"]],
            samples_per_s=first_metrics["train_samples_per_s"],
        )

    def check_process_group(self) -> None:
        started = time.perf_counter()
        stage_command, run = self.train_command("process-group", self.params(self.tiny))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", __file__]
        command += ["--group-of-one", *stage_command[2:]]  # the stage's arguments, after python and its script
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the train stage in a process group failed:\n{done.stderr[-2000:]}")
        backend = re.search(r"process group: (\w+)", done.stderr)
        trained = weights(run / "model")
        self.row(
            "process-group",
            backend is not None and same(self.bf16_weights, trained),
            started,
            backend=backend and backend.group(1),
            max_abs_difference=max_difference(self.bf16_weights, trained),
        )

    def check_evaluate(self) -> None:
        from pipeline.config import EvaluateConfig
        from pipeline.evaluation import EvaluationOutputs, evaluate_model

        started = time.perf_counter()
        out = self.work / "eval"
        outputs = EvaluationOutputs(
            *(out / name for name in ("eval.json", "c.csv", "p.csv", "cal.csv", "m.csv", "pc.csv", "s.csv"))
        )
        metrics = evaluate_model(
            EvaluateConfig(precision="bf16"), self.bf16_model, self.work / "tok", self.args.raw, outputs
        )
        self.row("evaluate", 0 <= metrics["accuracy"] <= 1, started, accuracy=metrics["accuracy"])

    def check_throughput(self) -> None:
        from transformers import BertConfig, DistilBertConfig

        sizes = {
            # sentence-transformers/all-MiniLM-L6-v2's shape, and distilbert-base-uncased's
            "minilm": BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
            "distilbert": DistilBertConfig(),
        }
        # (deterministic, attention, cudnn.benchmark): the first and last are what train.deterministic
        # true and false give; the middle two change one thing at a time.
        settings = [(True, "eager", False), (False, "eager", False), (False, "sdpa", False), (False, "sdpa", True)]
        for name, config in sizes.items():
            for deterministic, attention, autotune in settings:
                started = time.perf_counter()
                speed = measure_training_speed(config, self.work / "tok", self.args, deterministic, attention, autotune)
                self.row(
                    f"throughput-{name}",
                    True,
                    started,
                    deterministic=deterministic,
                    attention=attention,
                    cudnn_benchmark=autotune,
                    **speed,
                )


def measure_training_speed(
    config, tokenized: Path, args: argparse.Namespace, deterministic: bool, attention: str, cudnn_benchmark: bool
) -> dict:
    """Training speed of the project's train step on a random model of ``config``'s shape."""
    from train_throughput import loop_step  # benchmarks/, the folder of this script
    from transformers import AutoModelForSequenceClassification

    from pipeline.batching import BatchLoader, LengthGroupedBatches
    from pipeline.config import TrainConfig
    from pipeline.precision import autocast_for, configure_cuda, grad_scaler_for, precision_on
    from pipeline.tokenization import load_split, read_meta
    from pipeline.training import build_optimizer, get_scheduler

    device = torch.device(args.device)
    configure_cuda(device, deterministic, tf32=False)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.cuda.reset_peak_memory_stats(device)
    cfg = TrainConfig(batch_size=64, device=args.device)
    split = load_split(tokenized, "train")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attention).to(device)
    # An SST-2 epoch has many padded batch lengths, and some kernels (SDPA's among them) pay a
    # one-time cost for each new shape. So the same batches are timed twice: the first pass meets
    # shapes this process has not run yet, the second is the steady state a long run settles into.
    warmup, timed = (1, 2) if args.quick else (10, 100)
    batches = LengthGroupedBatches(split.lengths, cfg.batch_size, shuffle=True, seed=0, group_batches=64)
    loader = endless(BatchLoader(split, batches, read_meta(tokenized)["pad_token_id"]), batches)
    steps = [next(loader) for _ in range(warmup + timed)]
    optimizer = build_optimizer(model, cfg)
    scheduler = get_scheduler(optimizer, cfg, warmup + 2 * timed)
    precision = precision_on("bf16", device)  # as the train stage would run train.precision=bf16 here
    autocast, scaler = autocast_for(precision, device), grad_scaler_for(precision, device)
    model.train()

    def seconds_for(pass_batches: list[dict[str, torch.Tensor]]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for batch in pass_batches:
            batch = {key: value.to(device) for key, value in batch.items()}
            loop_step(model, batch, optimizer, scheduler, autocast, scaler, contextlib.nullcontext(), cfg)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    seconds_for(steps[:warmup])
    first, second = seconds_for(steps[warmup:]), seconds_for(steps[warmup:])
    samples = sum(len(batch["labels"]) for batch in steps[warmup:])
    tokens = sum(int(batch["attention_mask"].sum()) for batch in steps[warmup:])
    shapes = len({tuple(batch["input_ids"].shape) for batch in steps[warmup:]})
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "precision": precision,
        "timed_batches": len(steps) - warmup,
        "batch_shapes": shapes,
        "samples_per_s": round(samples / second, 1),
        "real_tokens_per_s": round(tokens / second),
        "first_pass_samples_per_s": round(samples / first, 1),
        "peak_gpu_memory_gib": round(memory, 2) if memory is not None else None,
    }


def endless(loader, batches) -> Iterator[dict[str, torch.Tensor]]:
    """Batch after batch, epoch after epoch: a timing needs as many steps as it asks for, whatever the data."""
    for epoch in itertools.count(1):
        batches.set_epoch(epoch)
        yield from loader


def train_stage_in_a_group_of_one(stage_args: list[str]) -> None:
    """The train stage, run by torchrun as the one worker of a process group.

    ``parallel.join`` stands alone when torchrun starts a single process (a group of one only adds
    work), so here the process joins the group with ``parallel.join_group``, as ``join`` does for
    several, and counts as distributed: DistributedDataParallel, all_reduce, all_gather and barriers
    all run.
    """
    import runpy

    import torch.distributed as dist

    from pipeline import parallel

    def join(device_preference: str) -> parallel.ProcessGroup:
        parallel.limit_cpu_threads()
        group = parallel.join_group(device_preference)
        print(f"process group: {dist.get_backend()}, {group.world_size} process", file=sys.stderr)
        return group

    parallel.join = join
    parallel.ProcessGroup.distributed = property(lambda group: dist.is_initialized())
    sys.argv = [str(TRAIN_STAGE), *stage_args]
    runpy.run_path(str(TRAIN_STAGE), run_name="__main__")


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[key].float() - b[key].float()).abs().max()) for key in a)


def main() -> int:
    if sys.argv[1:2] == ["--group-of-one"]:  # a torchrun worker of the process-group check
        train_stage_in_a_group_of_one(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="the download stage's output")
    parser.add_argument("--tokenizer", required=True, help="a folder with a fast tokenizer (save_pretrained)")
    parser.add_argument("--out", type=Path, default=Path("smoke"), help="folder for smoke.json and the runs")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="a few throughput steps only (for a CPU)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["resume", "fp16", "nondeterministic", "process-group", "evaluate", "throughput"],
        help="these checks only (bf16 runs too, unless throughput alone is asked: the others use its run)",
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU is visible; run with --device cpu to check the script on a CPU")
    smoke = Smoke(args)
    machine = {"torch": torch.__version__, "device": args.device}
    if args.device == "cuda":
        machine |= {"gpu": torch.cuda.get_device_name(), "bf16_native": torch.cuda.is_bf16_supported(False)}
    print(json.dumps(machine), flush=True)
    smoke.prepare()
    wanted = set(args.only or ["resume", "fp16", "nondeterministic", "process-group", "evaluate", "throughput"])
    if wanted != {"throughput"}:
        smoke.check_bf16()  # the other checks compare with its weights or use its model
    checks = [
        ("resume", smoke.check_repeat_and_resume),
        ("fp16", smoke.check_fp16),
        ("nondeterministic", smoke.check_nondeterministic),
        ("process-group", smoke.check_process_group),
        ("evaluate", smoke.check_evaluate),
        ("throughput", smoke.check_throughput),
    ]
    for name, check in checks:
        if name not in wanted:
            continue
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # one failed check must not hide the others' results
            smoke.row(name, False, started, error=f"{type(exc).__name__}: {exc}"[-3000:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "smoke.json").write_text(json.dumps({"machine": machine, "rows": smoke.rows}, indent=2) + "\n")
    failed = [row["check"] for row in smoke.rows if row["ok"] is False]
    print(f"{len(smoke.rows)} rows, failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
