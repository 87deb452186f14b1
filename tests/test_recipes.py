"""``python -m pipeline compare``: recipes grouped from dvc exp show, their statistics and the pairing."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.recipes import report, student_t_two_sided_p

BASE = {"train": {"lr": 1e-4, "seed": 42, "epochs": 2}, "data": {"path": "nyu-mll/glue"}}


def revision(name: str, params: dict, accuracy: float | None) -> dict:
    metrics = {"metrics/eval.json": {"data": {"accuracy": accuracy, "loss": 0.3}}} if accuracy is not None else {}
    return {
        "rev": f"{abs(hash(name)):040x}"[:40],
        "name": name,
        "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics},
    }


def with_train(**train) -> dict:
    return {**BASE, "train": {**BASE["train"], **train}}


def exp_show(*experiments: tuple[str, dict, float | None, str]) -> list[dict]:
    """What ``dvc exp show --json`` prints: the workspace, then the baseline commit with its experiments."""
    ranges = [
        {
            "revs": [revision(name, params, accuracy)],
            "name": name,
            "executor": None if state == "success" else {"state": state},
        }
        for name, params, accuracy, state in experiments
    ]
    commit = revision("main", BASE, 0.9) | {"experiments": ranges}
    return [revision("workspace", BASE, 0.9) | {"rev": "workspace"}, commit]


SWEEP = exp_show(
    ("base-42", with_train(seed=42), 0.90, "success"),
    ("base-43", with_train(seed=43), 0.89, "success"),
    ("base-44", with_train(seed=44), 0.88, "success"),
    ("fast-42", with_train(seed=42, lr=3e-4), 0.91, "success"),
    ("fast-43", with_train(seed=43, lr=3e-4), 0.91, "success"),
    ("fast-45", with_train(seed=45, lr=3e-4), 0.70, "success"),  # no baseline run at seed 45: unpaired
    ("broken", with_train(seed=44, lr=3e-4), None, "success"),  # no metrics: left out, and said so
    ("later", with_train(seed=44, lr=3e-4), None, "queued"),
)


def rows(text: str, first_word: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.startswith(first_word)]


def test_runs_that_differ_only_in_the_seed_are_one_recipe():
    text = report(SWEEP)
    base, fast = rows(text, "train.lr=0.0001")[0], rows(text, "train.lr=0.0003")[0]
    assert base[1:4] == [
        "3",
        f"{statistics.mean([0.90, 0.89, 0.88]):.4f}",
        f"{statistics.stdev([0.90, 0.89, 0.88]):.4f}",
    ]
    assert fast[1:3] == ["3", f"{statistics.mean([0.91, 0.91, 0.70]):.4f}"]
    assert "42: 0.9000, 43: 0.8900, 44: 0.8800" in text
    assert "left out: broken (no metrics/eval.json:accuracy), later (queued)" in text


def test_each_recipe_is_paired_seed_by_seed_with_the_baseline_commits_recipe():
    text = report(SWEEP)
    assert "paired with train.lr=0.0001" in text
    (fast,) = rows(text.split("paired with")[1], "train.lr=0.0003")
    # Differences +0.01 and +0.02 at seeds 42 and 43: mean 0.015, standard error 0.005, t = 3 with 1 df.
    assert fast[1:5] == ["2", "+0.0150", "0.0050", f"{1 - 2 / math.pi * math.atan(3):.3f}"]
    assert "42: +0.0100, 43: +0.0200" in text and "45:" not in text.split("paired with")[1]


def test_against_names_the_baseline_by_its_params_and_a_one_pair_recipe_gets_no_test():
    one_pair = exp_show(
        ("a", with_train(seed=42), 0.90, "success"),
        ("b", with_train(seed=43), 0.80, "success"),
        ("c", with_train(seed=42, lr=3e-4), 0.95, "success"),
    )
    text = report(one_pair, against={"train.lr": 3e-4})
    (base,) = rows(text.split("paired with")[1], "train.lr=0.0001")
    assert "paired with train.lr=0.0003" in text and base[1:5] == ["1", "-0.0500", "-", "-"]
    with pytest.raises(PipelineError, match=r"--against train.lr=0.5: no recipe match; name one of: train.lr=0.0001"):
        report(one_pair, against={"train.lr": 0.5})


def test_the_same_recipe_twice_at_one_seed_is_refused():
    twice = exp_show(("a", with_train(seed=42), 0.9, "success"), ("b", with_train(seed=42), 0.8, "success"))
    with pytest.raises(PipelineError, match="experiments a and b are the same recipe at seed 42; remove one"):
        report(twice)


def test_no_finished_experiment_says_how_to_run_some():
    with pytest.raises(
        PipelineError, match=r"no finished experiment has metrics/eval.json:accuracy \(left out: q \(running\)\)"
    ):
        report(exp_show(("q", with_train(seed=42), None, "running")))


def test_the_command_reads_a_saved_exp_show_and_fails_in_one_line(tmp_path, capsys):
    saved = tmp_path / "shown.json"
    saved.write_text(json.dumps(SWEEP))
    assert main(["compare", "--exp-show", str(saved), "--metric", "metrics/eval.json:loss"]) == 0
    assert "metrics/eval.json:loss over seeds" in capsys.readouterr().out
    # 3e-4 as dvc exp run -S takes it: YAML reads it as a string, compare as the number it is.
    assert main(["compare", "--exp-show", str(saved), "--against", "train.lr=3e-4"]) == 0
    assert "paired with train.lr=0.0003" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--exp-show", str(saved), "--against", "train.lr"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: --against 'train.lr': expected KEY=VALUE, e.g. train.lr=1e-4\n"


@pytest.mark.parametrize("t", [0.0, 0.5, 1.7, 4.0, -2.5])
def test_t_test_p_values_match_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    assert student_t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(abs(t)), abs=1e-9)  # Cauchy
    assert student_t_two_sided_p(t, 2) == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), abs=1e-9)


def test_t_test_p_value_matches_the_printed_table():
    assert student_t_two_sided_p(2.776, 4) == pytest.approx(0.05, abs=1e-4)  # the two-sided 5% critical value
    assert student_t_two_sided_p(12.706, 1) == pytest.approx(0.05, abs=1e-4)
