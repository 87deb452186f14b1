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
        _fail(f"no space left on the device while writing {exc.filename or 'an output'} "
              f"(free some space and rerun; earlier outputs were left as they were)")
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
    args = parser.parse_args(argv)
    if args.command == "validate":
        run_stage(args.params, lambda params: params.to_dict())
    return 0
