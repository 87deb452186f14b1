"""Write the docs that are generated from code, or check that they are up to date.

    python docs/generate.py           # rewrite them
    python docs/generate.py --check   # exit 1 if one differs from what would be written

docs/parameters.md comes from the field descriptions in src/pipeline/config.py; the bad-input table of
docs/reliability.md (between its bad-input markers) from tests/bad_input_cases.py.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from pipeline.config import Params  # noqa: E402

PARAMETERS = ROOT / "docs" / "parameters.md"
RELIABILITY = ROOT / "docs" / "reliability.md"
START, END = "<!-- bad-input:start -->", "<!-- bad-input:end -->"

INTRO = """# Parameters

Every key of `params.yaml`, with its default. This page is generated from src/pipeline/config.py by
`python docs/generate.py`; do not edit it."""

OUTRO = """Bad values are refused before any work, in one line that names the key and what it accepts:

```
$ dvc exp run -S train.lr=0
error: invalid parameter train.lr=0.0: expected a number > 0 (edit params.yaml or pass -S train.lr=... to dvc exp run)
```

`python -m pipeline validate` checks `params.yaml` and prints the parameters in effect."""


def yaml_value(value: object) -> str:
    """A default as params.yaml writes it: `null`, `true`, `[sentence]`, `1.0e-4`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {yaml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, float) and value and abs(value) < 1e-3:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa)!r}e{int(exponent)}"  # with a dot, or YAML 1.1 reads a string
    return str(value)


def markdown(help: str) -> str:
    """A description as a table cell: `|` escaped, docs/x.md as a link to x.md."""
    return re.sub(r"\bdocs/([\w-]+\.md)", r"[\1](\1)", help.replace("|", "\\|"))


def parameters_md() -> str:
    lines = [INTRO]
    for section in dataclasses.fields(Params):
        config = section.default_factory
        lines += ["", f"## {section.name}", "", config.__doc__, "", "| key | default | description |", "|---|---|---|"]
        for key in dataclasses.fields(config):
            lines.append(
                f"| `{section.name}.{key.name}` | `{yaml_value(key.default)}` | {markdown(key.metadata['help'])} |"
            )
    return "\n".join([*lines, "", OUTRO, ""])


def reliability_md() -> str:
    """docs/reliability.md with the table of tests/bad_input_cases.py between its markers."""
    from bad_input_cases import markdown_table

    text = RELIABILITY.read_text(encoding="utf-8")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{markdown_table().strip()}\n{END}{after}"


GENERATED = {PARAMETERS: parameters_md, RELIABILITY: reliability_md}


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print("usage: python docs/generate.py [--check]", file=sys.stderr)
        return 2
    stale = 0
    for path, generate in GENERATED.items():
        text = generate()
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        if argv:
            print(f"{path.relative_to(ROOT)} is out of date: run python docs/generate.py", file=sys.stderr)
            stale += 1
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
