"""The metric gate: fail when a change makes a watched metric worse than on a baseline revision.

Built on ``dvc metrics diff --json --all BASELINE``, which compares the metrics committed at
BASELINE with those in the workspace. Three outcomes are told apart, each with its exit status:
a metric got worse by more than the tolerance (1), a watched metric is missing on one side (3), and
there is no baseline to compare with at all (4). Zero means every watched metric held.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.uncertainty import PairedTest, mcnemar, sign_test

EXIT_OK, EXIT_WORSE, EXIT_MISSING, EXIT_NO_BASELINE = 0, 1, 3, 4
# What is watched when pyproject.toml does not say, per data.task.
DEFAULT_WATCHED = {
    "single_label": ("metrics/eval.json:accuracy",),
    "multi_label": ("metrics/eval.json:macro_f1",),
    "regression": ("metrics/eval.json:pearson",),
}
# pyproject.toml's key per task
WATCHED_KEYS = {"single_label": "metrics", "multi_label": "multi_label_metrics", "regression": "regression_metrics"}
DEFAULT_MAX_DROP = 0.01
LOWER_IS_BETTER = {"loss", "mse"}
PREDICTIONS = "metrics/predictions.csv"  # per-example predictions, for the paired test
SIGNIFICANT = 0.05  # below this p-value, the paired test calls a change unlikely to be noise
TOOL = "sst2-pipeline"  # pyproject.toml's [tool.sst2-pipeline.gate] holds the settings


class NoBaseline(PipelineError):
    """The baseline revision does not exist."""


@dataclass(frozen=True)
class GateSettings:
    watched: tuple[str, ...] = DEFAULT_WATCHED["single_label"]  # "file:metric"
    max_drop: float = DEFAULT_MAX_DROP  # absolute, in the metric's own unit
    task: str = "single_label"  # data.task: how the paired test compares examples


def settings_from_pyproject(path: str | Path = "pyproject.toml", task: str = "single_label") -> GateSettings:
    """``[tool.sst2-pipeline.gate]`` in pyproject.toml: the metrics watched for ``task`` (``metrics = [...]``
    for single-label, ``multi_label_metrics`` and ``regression_metrics``) and ``max_drop``."""
    path = Path(path)
    if not path.is_file():
        return GateSettings(watched=DEFAULT_WATCHED[task], task=task)
    try:
        tools = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
        table = _gate_table(tools, path)
        watched = tuple(table.get(WATCHED_KEYS[task], DEFAULT_WATCHED[task]))
        max_drop = float(table.get("max_drop", DEFAULT_MAX_DROP))
    except (tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
        raise PipelineError(
            f"{path}: [tool.sst2-pipeline.gate] is not valid ({exc}); "
            'expected metrics = ["FILE:METRIC", ...] and max_drop = NUMBER'
        ) from None
    for entry in watched:
        if not isinstance(entry, str) or ":" not in entry:
            raise PipelineError(f"{path}: gate metric {entry!r} must read FILE:METRIC, e.g. metrics/eval.json:accuracy")
    return GateSettings(watched=watched, max_drop=max_drop, task=task)


def _gate_table(tools: dict, path: Path) -> dict:
    """``[tool.sst2-pipeline.gate]``; a misspelt table or key is an error, not a silent fall-back to defaults."""
    if TOOL not in tools:
        close = difflib.get_close_matches(TOOL, [str(name) for name in tools], n=1, cutoff=0.8)
        if close:
            raise PipelineError(
                f"{path}: [tool.{close[0]}] is not read; the gate's table is [tool.{TOOL}.gate] (rename it)"
            )
        return {}
    _reject_unknown_keys(tools[TOOL], ["gate"], f"tool.{TOOL}", path)
    gate = tools[TOOL].get("gate", {})
    _reject_unknown_keys(gate, [*WATCHED_KEYS.values(), "max_drop"], f"tool.{TOOL}.gate", path)
    return gate


def _reject_unknown_keys(table: dict, known: list[str], name: str, path: Path) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {name}.{close[0]}?" if close else f"known: {', '.join(known)}"
            raise PipelineError(f"{path}: unknown key {name}.{key} ({hint})")


@dataclass(frozen=True)
class Row:
    metric: str  # "file:metric"
    baseline: float | None
    current: float | None
    status: str  # "ok", "better", "worse", "missing in baseline", "missing in workspace"

    @property
    def change(self) -> float | None:
        return None if self.baseline is None or self.current is None else self.current - self.baseline


def metrics_diff(baseline: str, cwd: str | Path = ".") -> dict:
    """``dvc metrics diff --json --all BASELINE``, or :class:`PipelineError` if there is no such revision."""
    known = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{baseline}^{{commit}}"], cwd=cwd, capture_output=True, text=True
    )
    if known.returncode != 0:
        raise NoBaseline(
            f"no baseline: {baseline!r} is not a git revision here (fetch it, or name another with --baseline)"
        )
    try:
        result = subprocess.run(
            ["dvc", "metrics", "diff", "--json", "--all", baseline], cwd=cwd, capture_output=True, text=True
        )
    except FileNotFoundError:
        raise PipelineError("dvc is not installed or not on PATH (pip install -e . installs it)") from None
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit status {result.returncode}"
        raise PipelineError(f"dvc metrics diff failed: {last}")
    return json.loads(result.stdout or "{}")


def judge(diff: dict, settings: GateSettings) -> list[Row]:
    rows = []
    for entry in settings.watched:
        file, metric = entry.rsplit(":", 1)
        values = diff.get(file, {}).get(metric, {})
        old, new = values.get("old"), values.get("new")
        if old is None:
            status = "missing in baseline"
        elif new is None:
            status = "missing in workspace"
        else:
            gain = (old - new) if metric in LOWER_IS_BETTER else (new - old)
            status = "worse" if gain < -settings.max_drop - 1e-12 else ("better" if gain > 0 else "ok")
        rows.append(Row(entry, old, new, status))
    return rows


def table(rows: list[Row], baseline: str, max_drop: float, paired: PairedTest | None = None) -> str:
    """The comparison, a row per watched metric; a drop shows the paired test's p-value beside it."""

    def fmt(value):
        return "—" if value is None else f"{value:.4f}"

    lines = [f"{'metric':<32} {baseline[:12]:>12} {'workspace':>12} {'change':>9}  status (max drop {max_drop:g})"]
    for row in rows:
        change = "—" if row.change is None else f"{row.change:+.4f}"
        dropped = row.change is not None and row.change != 0 and row.status in ("ok", "worse")
        beside = f"  (paired test p = {paired.p_value:.3g})" if paired and dropped else ""
        lines.append(
            f"{row.metric:<32} {fmt(row.baseline):>12} {fmt(row.current):>12} {change:>9}  {row.status}{beside}"
        )
    return "\n".join(lines)


def read_predictions(text: str) -> dict[str, tuple[str, str]]:
    """``id -> (label, predicted)`` from a per-example predictions CSV (the evaluate stage's)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return {row["id"]: (row["label"], row["predicted"]) for row in rows}


def paired_test(baseline: str, cwd: str | Path = ".", task: str = "single_label") -> PairedTest | str:
    """The exact paired test between the baseline's and the workspace's per-example predictions: McNemar's
    on being right (a classifier; multi-label: on the whole label set being right), the sign test on the
    absolute error (a regression).

    Returns why not, as text, when either side has no predictions or they are of other examples.
    """
    shown = subprocess.run(["git", "show", f"{baseline}:{PREDICTIONS}"], cwd=cwd, capture_output=True, text=True)
    if shown.returncode != 0:
        return f"no {PREDICTIONS} at {baseline}"
    current_file = Path(cwd) / PREDICTIONS
    if not current_file.is_file():
        return f"no {PREDICTIONS} in the workspace"
    before, now = read_predictions(shown.stdout), read_predictions(current_file.read_text(encoding="utf-8"))
    if before.keys() != now.keys() or any(before[i][0] != now[i][0] for i in before):
        return "the two revisions' predictions are of different examples or labels"
    ids = sorted(before)
    if task == "regression":
        errors = [[float(side[i][1]) - float(side[i][0]) for i in ids] for side in (before, now)]
        return sign_test(*errors)
    return mcnemar([before[i][0] == before[i][1] for i in ids], [now[i][0] == now[i][1] for i in ids])


def exit_status(rows: list[Row]) -> int:
    statuses = {row.status for row in rows}
    if statuses == {"missing in baseline"}:
        return EXIT_NO_BASELINE
    if statuses & {"missing in baseline", "missing in workspace"}:
        return EXIT_MISSING
    return EXIT_WORSE if "worse" in statuses else EXIT_OK


VERDICTS = {
    EXIT_OK: "gate passed",
    EXIT_WORSE: "gate failed: a metric got worse by more than the allowed drop",
    EXIT_MISSING: "gate failed: a watched metric is missing on one side (see status)",
    EXIT_NO_BASELINE: (
        "gate failed: no baseline: the baseline revision has none of the watched metrics (commit metrics/ there)"
    ),
}


def run_gate(baseline: str, settings: GateSettings, cwd: str | Path = ".") -> int:
    """Print the comparison table and a verdict; return the exit status."""
    try:
        rows = judge(metrics_diff(baseline, cwd), settings)
    except NoBaseline as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_BASELINE
    paired = paired_test(baseline, cwd, settings.task)
    print(table(rows, baseline, settings.max_drop, paired if isinstance(paired, PairedTest) else None))
    if isinstance(paired, PairedTest):
        reading = "unlikely to be noise" if paired.p_value < SIGNIFICANT else "consistent with noise"
        test, worse, better = (
            ("exact sign test on the absolute error", "now further off", "now closer")
            if settings.task == "regression"
            else ("exact McNemar", "now wrong", "now right")
        )
        print(
            f"paired test ({test}, {PREDICTIONS}): {paired.worse + paired.better} examples changed, "
            f"{paired.worse} {worse}, {paired.better} {better}; p = {paired.p_value:.3g} "
            f"({reading} at the {SIGNIFICANT} level)"
        )
    else:
        print(f"paired test: skipped ({paired})")
    status = exit_status(rows)
    print(VERDICTS[status], file=sys.stderr if status else sys.stdout)
    return status
