import pytest

from pipeline.errors import PipelineError
from pipeline.gate import (
    EXIT_MISSING,
    EXIT_NO_BASELINE,
    EXIT_OK,
    EXIT_WORSE,
    GateSettings,
    exit_status,
    judge,
    settings_from_pyproject,
    table,
)

SETTINGS = GateSettings(watched=("metrics/eval.json:accuracy", "metrics/eval.json:loss"), max_drop=0.005)


def diff(accuracy, loss):
    return {
        "metrics/eval.json": {
            "accuracy": {"old": accuracy[0], "new": accuracy[1]},
            "loss": {"old": loss[0], "new": loss[1]},
        }
    }


@pytest.mark.parametrize(
    ("accuracy", "loss", "expected"),
    [
        ((0.90, 0.90), (0.30, 0.30), EXIT_OK),  # equal
        ((0.90, 0.896), (0.30, 0.304), EXIT_OK),  # within the tolerance
        ((0.90, 0.92), (0.30, 0.25), EXIT_OK),  # better
        ((0.90, 0.894), (0.30, 0.30), EXIT_WORSE),  # accuracy fell by more than 0.005
        ((0.90, 0.90), (0.30, 0.306), EXIT_WORSE),  # loss rose by more than 0.005
        ((0.90, None), (0.30, 0.30), EXIT_MISSING),  # gone from the workspace
        ((None, 0.90), (0.30, 0.30), EXIT_MISSING),  # new metric, nothing to compare with
        ((None, 0.90), (None, 0.30), EXIT_NO_BASELINE),  # the baseline has no metrics at all
    ],
)
def test_verdicts(accuracy, loss, expected):
    assert exit_status(judge(diff(accuracy, loss), SETTINGS)) == expected


def test_a_metric_absent_from_the_diff_is_missing():
    rows = judge({"metrics/eval.json": {"accuracy": {"old": 0.9, "new": 0.9}}}, SETTINGS)
    assert [row.status for row in rows] == ["ok", "missing in baseline"]


def test_table_shows_values_changes_and_status():
    text = table(judge(diff((0.9, 0.88), (0.3, 0.3)), SETTINGS), "main", 0.005)
    assert "metrics/eval.json:accuracy" in text and "0.9000" in text and "-0.0200" in text and "worse" in text


def test_settings_from_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.sst2-pipeline.gate]\nmetrics = ["m.json:f1"]\nmax_drop = 0.002\n')
    assert settings_from_pyproject(tmp_path / "pyproject.toml") == GateSettings(("m.json:f1",), 0.002)
    (tmp_path / "pyproject.toml").write_text('[tool.sst2-pipeline.gate]\nmetrics = ["f1"]\n')
    with pytest.raises(PipelineError, match="must read FILE:METRIC"):
        settings_from_pyproject(tmp_path / "pyproject.toml")
    assert settings_from_pyproject(tmp_path / "missing.toml") == GateSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[tool.sst2-pipeline.gates]\nmetrics = ["m.json:f1"]\n',
            r"unknown key tool\.sst2-pipeline\.gates \(did you mean tool\.sst2-pipeline\.gate\?\)",
        ),
        (
            '[tool.sst2-pipeline.gate]\nmetric = ["m.json:f1"]\n',
            r"unknown key tool\.sst2-pipeline\.gate\.metric \(did you mean tool\.sst2-pipeline\.gate\.metrics\?\)",
        ),
        (
            '[tool.sst2_pipeline.gate]\nmetrics = ["m.json:f1"]\n',
            r"\[tool\.sst2_pipeline\] is not read; the gate's table is \[tool\.sst2-pipeline\.gate\]",
        ),
    ],
)
def test_a_misspelt_gate_table_or_key_is_refused_not_replaced_by_defaults(tmp_path, text, message):
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(PipelineError, match=message):
        settings_from_pyproject(tmp_path / "pyproject.toml")


def test_the_projects_own_pyproject_watches_accuracy_and_f1():
    from conftest import PROJECT_ROOT

    settings = settings_from_pyproject(PROJECT_ROOT / "pyproject.toml")
    assert set(settings.watched) == {"metrics/eval.json:accuracy", "metrics/eval.json:f1"}
