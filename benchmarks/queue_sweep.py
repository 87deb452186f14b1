"""A sweep through DVC's queue: the same 4 small experiments with `dvc queue start -j 1` and `-j 2`.

It clones this repository's HEAD into a scratch folder, makes a small baseline there (a training
subsample, one epoch; `dvc repro` once, so that download and tokenize are cached), queues one
experiment per seed and times the queue until every experiment has finished. Each configuration
starts from an empty run cache, so every experiment really trains. The configurations:

- `-j 1`: one experiment at a time, with every core (PIPELINE_CPU_THREADS unset);
- `-j 2`, PIPELINE_CPU_THREADS = cores / 2: two at a time, each with its share of the cores;
- `-j 2`, no limit: two at a time, each with every core (what happens without the variable).

It prints the wall times side by side and each experiment's accuracy, which shows whether the thread
count changes results. Run it on an otherwise idle machine:

    python benchmarks/queue_sweep.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pipeline.parallel import THREADS_VARIABLE, usable_cpu_cores  # noqa: E402


def sh(folder: Path, *command: str, env: dict | None = None) -> str:
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def make_baseline(folder: Path, train_samples: int, epochs: int) -> None:
    sh(ROOT, "git", "clone", "-q", str(ROOT), str(folder))
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["data"]["max_train_samples"] = train_samples
    params["train"]["epochs"] = epochs
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(folder, "dvc", "repro", "--quiet")
    sh(folder, "git", "add", "-A")
    sh(folder, "git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-m", "baseline")


def queue_is_busy(folder: Path) -> bool:
    status = sh(folder, "dvc", "queue", "status")
    return any(word in status for word in ("Queued", "Running"))


def running_steps(shown) -> list[int]:
    """The DVCLive step that `dvc exp show --json` reports for each experiment it lists as running."""
    steps = []
    if isinstance(shown, list):
        for item in shown:
            steps += running_steps(item)
    elif isinstance(shown, dict):
        data = shown.get("data") if isinstance(shown.get("data"), dict) else {}
        train = ((data.get("metrics") or {}).get("metrics/train/metrics.json") or {}).get("data") or {}
        if str(data.get("status", "")).lower() == "running" and "step" in train:
            steps.append(train["step"])
        for value in shown.values():
            if isinstance(value, (list, dict)):
                steps += running_steps(value)
    return steps


def run_sweep(
    folder: Path, seeds: list[int], jobs: int, threads: int | None, watch: bool = False
) -> tuple[float, dict[int, float], list[int]]:
    """Queue one experiment per seed, start `jobs` workers, wait for all: the wall time, each accuracy and,
    with ``watch``, the steps that `dvc exp show` reported for running experiments while they trained."""
    sh(folder, "dvc", "exp", "remove", "--all-commits", "--queue")
    shutil.rmtree(folder / ".dvc" / "cache" / "runs", ignore_errors=True)  # make every experiment train
    for seed in seeds:
        sh(
            folder,
            "dvc",
            "exp",
            "run",
            "--queue",
            "--name",
            f"seed-{seed}-j{jobs}-t{threads or 0}",
            "-S",
            f"train.seed={seed}",
        )
    env = {key: value for key, value in os.environ.items() if key != THREADS_VARIABLE}
    if threads:
        env[THREADS_VARIABLE] = str(threads)
    started = time.perf_counter()
    sh(folder, "dvc", "queue", "start", "--jobs", str(jobs), env=env)
    seen_steps: list[int] = []
    while queue_is_busy(folder):
        if watch:
            seen_steps += running_steps(json.loads(sh(folder, "dvc", "exp", "show", "--json")))
        time.sleep(2 if not watch else 5)
    seconds = time.perf_counter() - started
    failed = sh(folder, "dvc", "queue", "status")
    if "Failed" in failed:
        raise SystemExit(f"an experiment failed:\n{failed}")
    shown = json.loads(sh(folder, "dvc", "exp", "show", "--json"))
    accuracy = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs", []):
                data = revision.get("data") or {}
                name = revision.get("name") or ""
                if name.endswith(f"-j{jobs}-t{threads or 0}"):
                    seed = int(name.split("-")[1])
                    accuracy[seed] = data["metrics"]["metrics/eval.json"]["data"]["accuracy"]
    return seconds, accuracy, seen_steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument(
        "--watch", action="store_true", help="then run one more experiment and poll `dvc exp show` while it trains"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "queue_sweep.json")
    args = parser.parse_args()
    cores = usable_cpu_cores()
    configurations = [(1, None), (2, max(1, cores // 2)), (2, None)]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "project"
        print(f"baseline: {args.train_samples} training sentences, {args.epochs} epoch(s), dvc repro", flush=True)
        make_baseline(folder, args.train_samples, args.epochs)
        for jobs, threads in configurations:
            label = f"-j {jobs}, {THREADS_VARIABLE}={threads if threads else 'unset'}"
            print(f"{label}: {len(args.seeds)} experiments", flush=True)
            seconds, accuracy, _ = run_sweep(folder, args.seeds, jobs, threads)
            rows.append({"jobs": jobs, "threads": threads, "wall_s": round(seconds, 1), "accuracy": accuracy})
            print(f"  {seconds:.0f} s", flush=True)
        seen: list[int] = []
        if args.watch:  # one more experiment, untimed, with `dvc exp show` polled while it trains
            _, _, seen = run_sweep(folder, [max(args.seeds) + 1], 1, None, watch=True)
        sh(folder, "dvc", "queue", "stop")
    print(f"\n{len(args.seeds)} experiments ({args.train_samples} sentences, {args.epochs} epoch(s)) on {cores} cores")
    print(f"{'configuration':<40} {'wall time':>10}  accuracy per seed")
    for row in rows:
        label = f"-j {row['jobs']}, {THREADS_VARIABLE}={row['threads'] or 'unset'}"
        accuracies = ", ".join(f"{seed}: {row['accuracy'].get(seed, float('nan')):.4f}" for seed in args.seeds)
        print(f"{label:<40} {row['wall_s']:>8.0f} s  {accuracies}")
    if args.watch:
        print(f"dvc exp show listed the running experiment at DVCLive steps {sorted(set(seen))}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"cores": cores, "experiments": len(args.seeds), "rows": rows, "running_steps_seen": sorted(set(seen))},
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
