"""Compare training recipes over several seeds: mean ± std of the validation accuracy per recipe.

Each recipe is a set of params overrides (``benchmarks/recipes.yaml``); each (recipe, seed) pair is
one run of the train stage on the tokenized cache, with ``params.yaml`` plus the overrides. Runs go
seed by seed (every recipe at the first seed, then at the second, ...), so a sweep stopped early by
``--budget-s`` still compares every recipe on the same seeds. ``--jobs`` runs that many at once
(useful on a GPU, which one small model leaves mostly idle).

    python benchmarks/recipe_sweep.py --seeds 42 43 44 --jobs 4 --out sweep/
    python benchmarks/recipe_sweep.py --only 2ep-8e-5 --seeds 43 44   # one recipe
    python benchmarks/recipe_sweep.py --table sweep/runs.jsonl   # the table of finished runs
    python benchmarks/recipe_sweep.py --table benchmarks/results/recipe_sweep_seeds.jsonl --against 2ep-8e-5

Inside the DVC project, the same sweep is ``dvc exp run --queue -S train.seed=43 -S train.epochs=3 ...``
per run, then ``dvc queue start`` and ``dvc exp show`` (docs/experiments.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` (dotted keys, as ``dvc exp run -S`` takes them) applied."""
    params = json.loads(json.dumps(base))
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        params.setdefault(section, {})[key] = value
    return params


def start(run_dir: Path, params: dict, tokenized: Path, threads: int) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    command = [sys.executable, str(ROOT / "stages" / "train_model.py"), "--params", str(run_dir / "params.yaml")]
    command += ["--tokenized", str(tokenized), "--model-out", str(run_dir / "model")]
    command += ["--live", str(run_dir / "live")]
    command += ["--checkpoints", str(run_dir / "checkpoints")]
    log = (run_dir / "log.txt").open("w")
    return subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, "PIPELINE_CPU_THREADS": str(threads)})


def table(rows: list[dict]) -> str:
    """One line per recipe: runs, mean ± std of the final validation accuracy, and each run's."""
    by_recipe: dict[str, list[dict]] = {}
    for row in rows:
        by_recipe.setdefault(row["recipe"], []).append(row)
    lines = [f"{'recipe':<28} {'runs':>4} {'mean':>7} {'std':>6}  per seed"]
    for recipe, runs in by_recipe.items():
        accuracies = [run["val_accuracy"] for run in sorted(runs, key=lambda run: run["seed"])]
        std = f"{statistics.stdev(accuracies):.4f}" if len(accuracies) > 1 else "-"  # one run: no spread
        seeds = ", ".join(f"{run['seed']}: {run['val_accuracy']:.4f}" for run in sorted(runs, key=lambda r: r["seed"]))
        lines.append(f"{recipe:<28} {len(runs):>4} {statistics.mean(accuracies):>7.4f} {std:>6}  {seeds}")
    return "\n".join(lines)


def student_t_two_sided_p(t: float, df: int, steps: int = 20_000) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: 1 − twice the density's integral
    over [0, |t|] (Simpson's rule; the density is smooth, so this is exact to many digits)."""
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def density(x: float) -> float:
        return scale * (1 + x * x / df) ** (-(df + 1) / 2)

    h = abs(t) / steps
    inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    area = h / 3 * (density(0.0) + inner + density(abs(t)))
    return max(0.0, 1 - 2 * area)


def paired_comparison(rows: list[dict], baseline: str) -> str:
    """Each recipe against ``baseline`` at the seeds both ran (same seed: same initialisation and batch
    order): the per-seed differences in points, their mean and standard error, and a paired t-test."""
    accuracy = {(row["recipe"], row["seed"]): row["val_accuracy"] for row in rows}
    baseline_seeds = {seed for recipe, seed in accuracy if recipe == baseline}
    header = f"{'recipe':<28} {'pairs':>5} {'mean':>6} {'s.e.':>5} {'p':>6}  per seed"
    lines = [f"paired with {baseline} (points)", header]
    for recipe in dict.fromkeys(recipe for recipe, _ in accuracy):
        seeds = sorted(seed for r, seed in accuracy if r == recipe and seed in baseline_seeds)
        if recipe == baseline or not seeds:
            continue
        differences = [100 * (accuracy[recipe, seed] - accuracy[baseline, seed]) for seed in seeds]
        mean, error, p = statistics.mean(differences), "-", "-"  # one pair: no spread, so no test
        if len(seeds) > 1:
            spread = statistics.stdev(differences) / math.sqrt(len(seeds))
            error = f"{spread:.2f}"
            p = f"{student_t_two_sided_p(mean / spread, len(seeds) - 1):.3f}" if spread > 0 else "-"
        each = ", ".join(f"{seed}: {difference:+.2f}" for seed, difference in zip(seeds, differences))
        lines.append(f"{recipe:<28} {len(seeds):>5} {mean:>+6.2f} {error:>5} {p:>6}  {each}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", type=Path, default=ROOT / "benchmarks" / "recipes.yaml")
    parser.add_argument("--only", nargs="+", metavar="RECIPE", help="run these recipes of the file, not all")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the base params")
    parser.add_argument("--tokenized", type=Path, default=Path("data/tokenized"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--budget-s", type=float, default=None, help="start no run after this many seconds")
    parser.add_argument("--out", type=Path, default=Path("sweep"))
    parser.add_argument("--table", type=Path, help="print the table of a runs.jsonl and stop")
    parser.add_argument("--against", metavar="RECIPE", help="with --table: each recipe paired with this one by seed")
    args = parser.parse_args()
    if args.table:
        rows = [json.loads(line) for line in args.table.read_text().splitlines()]
        print(table(rows))
        if args.against:
            print("\n" + paired_comparison(rows, args.against))
        return 0

    base = yaml.safe_load(args.params.read_text())
    common = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    recipes = yaml.safe_load(args.recipes.read_text())
    unknown = sorted(set(args.only or []) - set(recipes))
    if unknown:
        parser.error(f"--only: no recipe {', '.join(unknown)} in {args.recipes}")
    recipes = {name: overrides for name, overrides in recipes.items() if not args.only or name in args.only}
    queue = [(name, seed) for seed in args.seeds for name in recipes]
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "runs.jsonl"
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    started, running, rows, failed = time.perf_counter(), {}, [], 0
    while queue or running:
        budget_left = args.budget_s is None or time.perf_counter() - started < args.budget_s
        while queue and budget_left and len(running) < args.jobs:
            name, seed = queue.pop(0)
            params = merged(base, {**common, **(recipes[name] or {}), "train.seed": seed})
            run_dir = args.out / f"{name}-seed{seed}"
            running[(name, seed)] = (start(run_dir, params, args.tokenized, threads), run_dir, time.perf_counter())
        if not budget_left:
            queue.clear()
        time.sleep(0.5)
        for key, (process, run_dir, run_started) in list(running.items()):
            if process.poll() is None:
                continue
            del running[key]
            if process.returncode != 0:
                failed += 1
                print(f"{key[0]} seed {key[1]} failed: see {run_dir / 'log.txt'}", file=sys.stderr, flush=True)
                continue
            metrics = json.loads((run_dir / "live" / "metrics.json").read_text())
            epochs = (run_dir / "live" / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()[1:]
            row = {
                "recipe": key[0],
                "seed": key[1],
                "val_accuracy": metrics["val"]["accuracy"],
                "val_accuracy_per_epoch": [float(line.split("\t")[1]) for line in epochs],
                "train_runtime_s": metrics["train_runtime_s"],
                "wall_s": round(time.perf_counter() - run_started, 1),
            }
            rows.append(row)
            with results.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
