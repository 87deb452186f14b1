"""Recipes compared over seeds, from the experiments DVC recorded (``python -m pipeline compare``).

A sweep is a set of queued experiments, e.g. two learning rates at three seeds each::

    dvc exp run --queue -S train.lr=1e-4,3e-4 -S train.seed=42,43,44 && dvc queue start

``dvc exp show --json`` then holds one entry per run. A *recipe* is what the runs' ``params.yaml``
values say once the seed is set aside: runs with the same values are one recipe at several seeds.
For each recipe this reports its runs, the mean and sample standard deviation of a metric, and,
against a baseline recipe, the differences seed by seed (same seed: same initialisation, same batch
order, so the pair differs only in the recipe), their mean, its standard error and a paired t-test.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from dataclasses import dataclass
from typing import Any

import yaml

from pipeline.errors import PipelineError

PARAMS_FILE = "params.yaml"
DEFAULT_METRIC = "metrics/eval.json:accuracy"
SEED_KEY = "train.seed"


@dataclass(frozen=True)
class ExperimentRun:
    name: str
    params: dict[str, Any]  # params.yaml, flattened to dotted keys
    value: float  # the compared metric


@dataclass(frozen=True)
class Recipe:
    label: str  # the params that set it apart from the other recipes, e.g. "train.lr=0.0003"
    params: dict[str, Any]  # every param but the seed
    values: dict[int, float]  # seed -> metric

    @property
    def mean(self) -> float:
        return statistics.mean(self.values.values())

    @property
    def std(self) -> float | None:  # one run: no spread
        return statistics.stdev(self.values.values()) if len(self.values) > 1 else None


@dataclass(frozen=True)
class Paired:
    recipe: Recipe
    differences: dict[int, float]  # seed -> recipe minus baseline, at the seeds both ran
    mean: float
    standard_error: float | None  # one pair, or pairs that all differ alike: None
    p_value: float | None


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def metric_of(data: dict[str, Any], metric: str) -> float | None:
    """``metric`` ("FILE:dotted.key") from one revision's ``data``; None where it is missing."""
    file, _, key = metric.partition(":")
    value = ((data.get("metrics") or {}).get(file) or {}).get("data")
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def finished_runs(shown: list[dict[str, Any]], metric: str) -> tuple[list[ExperimentRun], list[str], dict[str, Any]]:
    """The finished experiments of ``dvc exp show --json`` that have ``metric``; the names of those left
    out and why; and the baseline commit's params (flattened) for the default baseline recipe."""
    runs, left_out, baseline_params = [], [], {}
    for commit in shown:
        if commit.get("rev") != "workspace" and not baseline_params and commit.get("data"):
            baseline_params = flatten(((commit["data"].get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {})
        for experiment in commit.get("experiments") or []:
            latest = experiment["revs"][0]
            name = experiment.get("name") or latest.get("name") or latest["rev"][:7]
            state = (experiment.get("executor") or {}).get("state", "success")
            if state != "success":
                left_out.append(f"{name} ({state})")
                continue
            data = latest.get("data") or {}
            value = metric_of(data, metric)
            if value is None:
                left_out.append(f"{name} (no {metric})")
                continue
            params = flatten(((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {})
            runs.append(ExperimentRun(name, params, value))
    return runs, left_out, baseline_params


def group_into_recipes(runs: list[ExperimentRun], seed_key: str = SEED_KEY) -> list[Recipe]:
    """Runs with the same params but the seed, as one recipe each, in the order they first appear."""
    by_params: dict[str, tuple[dict[str, Any], dict[int, ExperimentRun]]] = {}
    for run in runs:
        if seed_key not in run.params:
            raise PipelineError(
                f"experiment {run.name} has no {seed_key} in {PARAMS_FILE}; it cannot be paired by seed"
            )
        params = {key: value for key, value in run.params.items() if key != seed_key}
        key = json.dumps(params, sort_keys=True, default=str)
        seeds = by_params.setdefault(key, (params, {}))[1]
        seed = run.params[seed_key]
        if seed in seeds:
            raise PipelineError(
                f"experiments {seeds[seed].name} and {run.name} are the same recipe at seed {seed}; "
                f"remove one (dvc exp remove {run.name}) so that each seed counts once"
            )
        seeds[seed] = run
    all_params = [params for params, _ in by_params.values()]
    differing = sorted(
        {key for params in all_params for key in params if len({_text(p.get(key)) for p in all_params}) > 1}
    )
    recipes = []
    for params, seeds in by_params.values():
        label = ", ".join(f"{key}={_text(params.get(key))}" for key in differing) or "(one recipe)"
        recipes.append(Recipe(label, params, {seed: seeds[seed].value for seed in sorted(seeds)}))
    return recipes


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``--against`` values, ``KEY=VALUE`` as ``dvc exp run -S`` takes them (VALUE read as YAML)."""
    parsed = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise PipelineError(f"--against {assignment!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
        parsed[key] = yaml.safe_load(value)
        if isinstance(parsed[key], str):  # YAML 1.1 reads 1e-4 (no dot) as a string, as params.yaml's loader knows
            try:
                parsed[key] = float(parsed[key])
            except ValueError:
                pass
    return parsed


def baseline_recipe(recipes: list[Recipe], wanted: dict[str, Any]) -> Recipe:
    """The one recipe whose params have the ``wanted`` values."""
    matches = [recipe for recipe in recipes if all(_same(recipe.params.get(k), v) for k, v in wanted.items())]
    if len(matches) != 1:
        found = "no recipe" if not matches else f"{len(matches)} recipes ({'; '.join(r.label for r in matches)})"
        raise PipelineError(
            f"--against {', '.join(f'{k}={v}' for k, v in wanted.items())}: {found} match; name one of: "
            + "; ".join(recipe.label for recipe in recipes)
        )
    return matches[0]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


def paired_with(recipe: Recipe, baseline: Recipe) -> Paired | None:
    """``recipe`` against ``baseline`` at the seeds both ran; None where they share no seed."""
    seeds = sorted(set(recipe.values) & set(baseline.values))
    if not seeds:
        return None
    differences = {seed: recipe.values[seed] - baseline.values[seed] for seed in seeds}
    mean = statistics.mean(differences.values())
    error = p = None
    if len(seeds) > 1:
        spread = statistics.stdev(differences.values()) / math.sqrt(len(seeds))
        if spread > 0:
            error, p = spread, student_t_two_sided_p(mean / spread, len(seeds) - 1)
    return Paired(recipe, differences, mean, error, p)


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


def report(shown: list[dict[str, Any]], metric: str = DEFAULT_METRIC, against: dict[str, Any] | None = None) -> str:
    """The recipes table, and each recipe paired with the baseline: ``against``'s recipe, else the one
    with the baseline commit's params."""
    runs, left_out, committed = finished_runs(shown, metric)
    if not runs:
        raise PipelineError(
            f"no finished experiment has {metric}"
            + (f" (left out: {', '.join(left_out)})" if left_out else "")
            + "; run some first, e.g. dvc exp run --queue -S train.seed=42,43,44 && dvc queue start"
        )
    recipes = group_into_recipes(runs)
    width = max(len("recipe"), *(len(recipe.label) for recipe in recipes))
    lines = [f"{metric} over seeds", f"{'recipe':<{width}} {'runs':>4} {'mean':>8} {'std':>8}  per seed"]
    for recipe in recipes:
        std = f"{recipe.std:.4f}" if recipe.std is not None else "-"
        seeds = ", ".join(f"{seed}: {value:.4f}" for seed, value in recipe.values.items())
        lines.append(f"{recipe.label:<{width}} {len(recipe.values):>4} {recipe.mean:>8.4f} {std:>8}  {seeds}")
    if left_out:
        lines.append(f"left out: {', '.join(left_out)}")
    if against:
        baseline = baseline_recipe(recipes, against)
    else:
        committed = {key: value for key, value in committed.items() if key != SEED_KEY}
        matching = [recipe for recipe in recipes if recipe.params == committed]
        if not matching:
            lines.append("no recipe has the baseline commit's params: name one with --against KEY=VALUE to pair")
            return "\n".join(lines)
        baseline = matching[0]
    lines += ["", f"paired with {baseline.label}, seed by seed (recipe minus baseline)"]
    lines.append(f"{'recipe':<{width}} {'pairs':>5} {'mean':>8} {'s.e.':>8} {'p':>6}  per seed")
    for recipe in recipes:
        pair = paired_with(recipe, baseline) if recipe is not baseline else None
        if pair is None:
            continue
        error = f"{pair.standard_error:.4f}" if pair.standard_error is not None else "-"
        p = f"{pair.p_value:.3f}" if pair.p_value is not None else "-"
        each = ", ".join(f"{seed}: {difference:+.4f}" for seed, difference in pair.differences.items())
        lines.append(f"{recipe.label:<{width}} {len(pair.differences):>5} {pair.mean:>+8.4f} {error:>8} {p:>6}  {each}")
    return "\n".join(lines)


def exp_show(all_commits: bool = False) -> list[dict[str, Any]]:
    """``dvc exp show --json``, run in the current directory."""
    command = ["dvc", "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise PipelineError("dvc is not installed in this environment (pip install -e .)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"dvc exp show failed: {last}")
    return json.loads(done.stdout)
