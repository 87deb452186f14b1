"""The generated docs match what docs/generate.py makes of the code, and every parameter is described."""

import dataclasses
import importlib.util

import yaml
from conftest import PROJECT_ROOT

from pipeline.config import Params

FIX = "run python docs/generate.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_docs", PROJECT_ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_generator()
KEYS = [
    (section.name, key) for section in dataclasses.fields(Params) for key in dataclasses.fields(section.default_factory)
]


def test_parameters_page_is_up_to_date():
    page = (PROJECT_ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    assert page == generate.parameters_md(), f"docs/parameters.md differs from src/pipeline/config.py: {FIX}"


def test_bad_input_table_is_up_to_date():
    page = (PROJECT_ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert page == generate.reliability_md(), (
        f"the bad-input table of docs/reliability.md differs from tests/bad_input_cases.py: {FIX}"
    )


def test_every_parameter_has_a_description():
    undescribed = [f"{section}.{key.name}" for section, key in KEYS if not key.metadata.get("help", "").strip()]
    assert not undescribed, (
        f"give these a description, param(default, help=...) in src/pipeline/config.py: {undescribed}"
    )


def test_defaults_are_shown_as_params_yaml_has_them():
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for section, key in KEYS:
        shown = generate.yaml_value(key.default)
        assert yaml.safe_load(shown) == raw[section][key.name], f"{section}.{key.name}: the page shows {shown}"


def test_check_names_the_stale_file_and_the_fix(tmp_path, monkeypatch, capsys):
    page = tmp_path / "page.md"
    page.write_text("old\n")
    monkeypatch.setattr(generate, "ROOT", tmp_path)
    monkeypatch.setattr(generate, "GENERATED", {page: lambda: "new\n"})
    assert generate.main(["--check"]) == 1
    assert capsys.readouterr().err == f"page.md is out of date: {FIX}\n"
    assert page.read_text() == "old\n"
    assert generate.main([]) == 0
    assert page.read_text() == "new\n"
    assert generate.main(["--check"]) == 0
