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
    check.add_argument(
        "--max-drop", type=float, help="allowed drop, in the metric's unit (default from pyproject.toml)"
    )
    check.add_argument(
        "--metric",
        action="append",
        metavar="FILE:METRIC",
        help="metric to watch, repeatable (default from pyproject.toml: [tool.sst2-pipeline.gate])",
    )
    args = parser.parse_args(argv)
    if args.command == "validate":
        run_stage(args.params, lambda params: params.to_dict())
    elif args.command == "check":
        from pipeline.gate import GateSettings, run_gate, settings_from_pyproject

        try:
            settings = settings_from_pyproject()
            settings = GateSettings(
                watched=tuple(args.metric) if args.metric else settings.watched,
                max_drop=settings.max_drop if args.max_drop is None else args.max_drop,
            )
            return run_gate(args.baseline, settings)
        except PipelineError as exc:
            _fail(str(exc))
    return 0
