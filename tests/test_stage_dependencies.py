"""dvc.yaml's dependency lists match what each stage really runs.

A stage reruns only when one of its listed deps changes, so a library module that a stage imports
but does not list is a change that silently keeps a stale output. These tests follow every import of
a ``pipeline`` module, transitively and wherever it stands in a file (function-level imports too),
from each stage script, and compare the modules found with the stage's deps.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "pipeline"

# Files a stage imports that change none of its outputs, so editing one must not rerun the pipeline.
# dvc.yaml's header comment names the same files.
EXEMPT = {
    "src/pipeline/__init__.py": "the package's docstring and version",
    "src/pipeline/cli.py": "checks input and reports errors",
    "src/pipeline/config.py": "checks input; the values themselves are tracked as params",
    "src/pipeline/errors.py": "reports errors",
    "src/pipeline/gate.py": "imported by cli.py for `python -m pipeline check` only; no stage runs it",
    "src/pipeline/recipes.py": "imported by cli.py for `python -m pipeline compare` only; no stage runs it",
}


def module_file(name: str) -> Path | None:
    """The file of ``pipeline.x.y`` (a module or a package's __init__), or None for anything else."""
    parts = name.split(".")
    if parts[0] != "pipeline":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(path: Path) -> set[Path]:
    """The ``pipeline`` files that ``path`` imports directly, including the packages on the way."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from pipeline import parallel" imports a module; "from pipeline.x import f" the module x.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
                file = module_file(".".join(parts[:depth]))
                if file is not None:
                    found.add(file)
    return found


def files_run_by(script: Path) -> set[str]:
    """Every ``pipeline`` file that running ``script`` imports, as project-relative paths.

    An exempt file's own imports are not followed: what only it imports serves it alone (the gate's
    statistics, say, reached through cli.py), so it changes no output either.
    """
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for file in imported_files(todo.pop()):
            if file not in seen:
                seen.add(file)
                if file.relative_to(ROOT).as_posix() not in EXEMPT:
                    todo.append(file)
    return {file.relative_to(ROOT).as_posix() for file in seen}


def dependency_problems(stage: dict) -> list[str]:
    """What is wrong with a stage's deps: library files it runs but does not list, or lists but does not run."""
    script = next(word for word in stage["cmd"].split() if word.startswith("stages/") and word.endswith(".py"))
    deps = {dep for dep in stage.get("deps", []) if isinstance(dep, str)}
    if script not in deps:
        return [f"does not list its own script {script}"]
    needed = files_run_by(ROOT / script) - EXEMPT.keys()
    listed = {dep for dep in deps if dep.startswith("src/")}
    return [f"runs {file} but does not list it" for file in sorted(needed - listed)] + [
        f"lists {file} but does not run it" for file in sorted(listed - needed)
    ]


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_dvc_yaml_lists_exactly_the_library_files_a_stage_runs(name):
    assert dependency_problems(STAGES[name]) == [], f"stage {name!r} in dvc.yaml"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_missing_or_extra_dependency_is_found(name):
    stage = STAGES[name]
    listed = [dep for dep in stage["deps"] if dep.startswith("src/")]
    without_one = {**stage, "deps": [dep for dep in stage["deps"] if dep != listed[0]]}
    assert dependency_problems(without_one) == [f"runs {listed[0]} but does not list it"]
    with_extra = {**stage, "deps": [*stage["deps"], "src/pipeline/gate.py"]}
    assert dependency_problems(with_extra) == ["lists src/pipeline/gate.py but does not run it"]


def test_imports_inside_functions_and_from_package_imports_are_followed(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("from pipeline import parallel\n\ndef run():\n    import pipeline.gate\n", encoding="utf-8")
    found = files_run_by(script)
    assert {"src/pipeline/parallel.py", "src/pipeline/gate.py", "src/pipeline/errors.py"} <= found
    assert "src/pipeline/uncertainty.py" not in found  # imported by gate.py alone, which is exempt
