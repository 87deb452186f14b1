"""Command line: how stage scripts run library code, and ``python -m pipeline`` for the rest.

Parameters are loaded and validated here, once, before a stage does any work; library functions
receive typed config objects and never read ``params.yaml`` themselves. Input errors end the
process with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable
from typing import Any

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError
from pipeline.outputs import to_json

EXIT_INPUT_ERROR = 2


def run_stage(params_path: str, work: Callable[[Params], Any]) -> None:
    """Validate the params file, run ``work(params)``, print its result as JSON; exit on input errors."""
    try:
        result = work(load_params(params_path))
    except PipelineError as exc:
        _fail(str(exc))
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        _fail(
            f"no space left on the device while writing {exc.filename or 'an output'} "
            f"(free some space and rerun; earlier outputs were left as they were)"
        )
    except KeyboardInterrupt:
        _fail("interrupted; no partial output was kept", status=130)
    if result is not None:
        print(to_json(result), end="")


def _fail(message: str, status: int = EXIT_INPUT_ERROR) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check params.yaml and print the parameters in effect")
    validate.add_argument("--params", default="params.yaml")
    check = commands.add_parser(
        "check",
        help="metric gate: compare metrics with a baseline revision (dvc metrics diff) and fail on a regression",
        description="Exit 0: every watched metric held; 1: one got worse by more than the allowed drop; "
        "3: a watched metric is missing on one side; 4: no baseline to compare with.",
    )
    check.add_argument("--baseline", default="HEAD", help="git revision whose committed metrics are the reference")
    check.add_argument("--params", default="params.yaml", help="its data.task picks the metrics watched")
    check.add_argument(
        "--max-drop", type=float, help="allowed drop, in the metric's unit (default from pyproject.toml)"
    )
    check.add_argument(
        "--metric",
        action="append",
        metavar="FILE:METRIC",
        help="metric to watch, repeatable (default from pyproject.toml: [tool.sst2-pipeline.gate])",
    )
    compare = commands.add_parser(
        "compare",
        help="recipes over seeds: each recipe's mean and std from dvc exp show, paired seed by seed with a baseline",
        description="Reads the finished experiments of `dvc exp show --json` (or --exp-show FILE). Runs whose "
        "params.yaml differs only in train.seed are one recipe. Baseline: the recipe with the baseline commit's "
        "params, or --against.",
    )
    compare.add_argument("--metric", metavar="FILE:METRIC", help="default: metrics/eval.json:accuracy")
    compare.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the baseline recipe by its params, repeatable, e.g. --against train.lr=1e-4",
    )
    compare.add_argument("--all-commits", action="store_true", help="experiments of every commit, not only HEAD's")
    compare.add_argument(
        "--exp-show", metavar="FILE", help="a saved `dvc exp show --json` output instead of running it"
    )
    predict = commands.add_parser(
        "predict",
        help="label texts with the fine-tuned model: arguments, stdin lines, or --input FILE",
        description="Each input gets its label, the label's probability (score) and one probability per class, "
        "as JSON Lines on stdout or in --output FILE (.jsonl, .csv, .tsv, .parquet). Exit 2 on bad input.",
    )
    predict.add_argument("texts", nargs="*", help="texts to label (a pair model: the two texts separated by a tab)")
    predict.add_argument("--input", help="a CSV, TSV, JSON Lines or Parquet file of texts")
    predict.add_argument(
        "--text-column",
        action="append",
        help="the input file's text column, twice for a pair (default: data.text_columns of params.yaml)",
    )
    predict.add_argument(
        "--model", help="a fine-tuned model folder (default: models/classifier, or models/onnx with --backend onnx)"
    )
    predict.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx"],
        help="onnx: the export stage's model in onnxruntime (int8 where it passed its checks; docs/speed.md)",
    )
    predict.add_argument("--output", help="write here instead of stdout; the suffix names the format")
    predict.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    predict.add_argument("--batch-size", type=int, help="texts per batch (default 64)")
    predict.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16", "int8"],
        help="auto: bf16 on a GPU with native bf16, else fp32 (faster on CPUs without AMX); "
        "with --backend onnx: int8 where the export stage shipped it, else fp32",
    )
    predict.add_argument(
        "--threshold",
        type=float,
        help="a multi-label model: the probability from which a label is given (default: the one saved with "
        "the model by train.select_threshold, else evaluate.threshold)",
    )
    predict.add_argument("--params", default="params.yaml", help="for the default text column(s) and threshold")
    args = parser.parse_args(argv)
    if args.command == "predict":
        from pipeline.predict import load_classifier, predict_command

        if args.backend == "onnx":
            from pipeline.onnx_export import load_onnx_classifier as load_classifier
        run_stage(
            args.params,
            lambda params: predict_command(
                args, list(params.data.text_columns), load_classifier, params.evaluate.threshold
            ),
        )
    if args.command == "compare":
        import json
        from pathlib import Path

        from pipeline.recipes import DEFAULT_METRIC, exp_show, parse_assignments, report

        try:
            shown = json.loads(Path(args.exp_show).read_text()) if args.exp_show else exp_show(args.all_commits)
            metric = args.metric or DEFAULT_METRIC
            print(report(shown, metric, parse_assignments(args.against)))
        except (OSError, json.JSONDecodeError) as exc:
            _fail(f"--exp-show {args.exp_show}: {exc}")
        except PipelineError as exc:
            _fail(str(exc))
    if args.command == "validate":
        run_stage(args.params, lambda params: params.to_dict())
    elif args.command == "check":
        from pipeline.gate import GateSettings, run_gate, settings_from_pyproject

        try:
            settings = settings_from_pyproject(task=load_params(args.params).data.task)
            settings = GateSettings(
                watched=tuple(args.metric) if args.metric else settings.watched,
                max_drop=settings.max_drop if args.max_drop is None else args.max_drop,
                task=settings.task,
            )
            return run_gate(args.baseline, settings)
        except PipelineError as exc:
            _fail(str(exc))
    return 0
