"""The real pipeline, run by real ``dvc`` commands in a temporary copy of the project on a tiny configuration."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, kill_process_tree, live_files

# pyproject.toml too: the gate reads its settings ([tool.sst2-pipeline.gate]) from there.
PROJECT_FILES = [
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    "stages",
    "src",
]
RUN_DETAILS = ("train_runtime_s", "train_samples_per_s", "resumed_from_step", "steps_run")
ALL_STAGES = ["download", "tokenize", "teacher", "train", "evaluate", "predict", "export"]


def run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def set_params(root: Path, **changes) -> None:
    """Change params.yaml the way `dvc exp run -S section.key=value` would."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def stages_that_would_run(root: Path) -> list[str]:
    output = run(root, "dvc", "repro", "--dry").stdout
    return re.findall(r"Running stage '([^']+)'", output)


def stages_that_ran(root: Path) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", run(root, "dvc", "repro").stdout)


@pytest.fixture(scope="module")
def project(tmp_path_factory, glue_dir, tiny_bert) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        source, target = PROJECT_ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, target)
    set_params(
        root,
        data__path=str(glue_dir),
        data__config=None,
        data__max_train_samples=48,
        model__name=str(tiny_bert),
        tokenize__max_length=32,
        train__epochs=1,
        train__batch_size=8,
        train__precision="fp32",
        evaluate__batch_size=16,
    )
    run(root, "git", "init", "-q")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-q", "-m", "tiny project")
    assert stages_that_ran(root) == ALL_STAGES
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-q", "-m", "reproduced")
    return root


def test_repro_produces_model_metrics_and_plots(project):
    metrics = json.loads((project / "metrics" / "eval.json").read_text())
    assert {"accuracy", "f1", "precision", "recall", "loss", "n_examples", "accuracy_ci95_low", "ece"} <= set(metrics)
    assert metrics["n_examples"] == 24
    assert json.loads((project / "metrics" / "train" / "metrics.json").read_text())["steps"] == 6  # 48 / 8
    assert (project / "models" / "classifier" / "model.safetensors").is_file()
    shown = json.loads(run(project, "dvc", "metrics", "show", "--json").stdout)
    assert "accuracy" in json.dumps(shown)
    plots = run(project, "dvc", "plots", "show", "--json").stdout
    for title in (
        "Training loss",
        "Validation accuracy",
        "Confusion matrix",
        "Learning rate",
        "Reliability diagram",
        "Misclassified validation examples",
    ):
        assert title in plots


def test_nothing_changed_is_a_no_op(project):
    assert stages_that_would_run(project) == []
    assert "Data and pipelines are up to date" in run(project, "dvc", "status").stdout


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"train__lr": 3e-4}, ["train", "evaluate", "predict", "export"]),
        # The same weights come out (no tiny sentence reaches 24 tokens), but the model card records
        # the params, so the model folder changes and predict and export rerun.
        pytest.param(
            {"tokenize__max_length": 24},
            ["tokenize", "teacher", "train", "evaluate", "predict", "export"],
            marks=pytest.mark.slow,
        ),
        ({"evaluate__batch_size": 4}, ["evaluate"]),  # not predict: it reads the model, not evaluate.*
        ({"export__int8_min_agreement": 0.9}, ["export"]),
        ({"train__checkpoint_every_steps": 5}, []),  # how often a run is saved changes nothing it computes
        pytest.param({"data__max_train_samples": 40}, ALL_STAGES, marks=pytest.mark.slow),
        # How files are read is the download stage's; Parquet has no quotes, so its output and all after it stand.
        ({"data__quoting": False}, ["download"]),
    ],
)
def test_a_param_change_reruns_only_the_stages_that_read_it(project, change, expected):
    try:
        set_params(project, **change)
        assert stages_that_would_run(project)[:1] == expected[:1]  # the first stage whose params changed
        assert stages_that_ran(project) == expected  # and everything downstream of it
    finally:
        # Back to the committed state: params and dvc.lock from git, outputs from the DVC cache.
        run(project, "git", "checkout", "--", ".")
        run(project, "dvc", "checkout", "--quiet")
    assert stages_that_would_run(project) == []


@pytest.mark.slow
def test_a_sentence_pair_csv_with_string_labels_runs_end_to_end(project):
    rows = [("a cat sits", "an animal sits", "same"), ("it rained", "the day was dry", "different")] * 16
    folder = project / "pairs"
    folder.mkdir()
    for name, part in (("train.csv", rows), ("dev.csv", rows[:8])):
        (folder / name).write_text("premise,hypothesis,verdict\n" + "".join(",".join(row) + "\n" for row in part))
    try:
        set_params(
            project,
            data__path="pairs",
            data__max_train_samples=None,
            data__text_columns=["premise", "hypothesis"],
            data__label_column="verdict",
        )
        assert stages_that_ran(project) == ALL_STAGES
        info = json.loads((project / "data" / "raw" / "info.json").read_text())
        assert info["label_names"] == ["different", "same"] and info["splits"] == {"train": 32, "validation": 8}
        metrics = json.loads((project / "metrics" / "eval.json").read_text())
        assert metrics["n_examples"] == 8 and {"accuracy", "macro_f1", "mcc", "f1"} <= set(metrics)
        per_class = (project / "metrics" / "per_class.csv").read_text().splitlines()
        assert [row.split(",")[0] for row in per_class[1:]] == ["different", "same"]
        assert "Scores per class" in run(project, "dvc", "plots", "show", "--json").stdout
    finally:
        run(project, "git", "checkout", "--", ".")
        run(project, "dvc", "checkout", "--quiet")
        shutil.rmtree(folder)
    assert stages_that_would_run(project) == []


@pytest.mark.slow
def test_a_regression_pair_file_runs_end_to_end_and_gates_on_its_correlations(project):
    from test_regression import write_pairs

    folder = write_pairs(project / "scores")
    try:
        set_params(
            project,
            data__task="regression",
            data__path="scores",
            data__max_train_samples=None,
            data__text_columns=["sentence1", "sentence2"],
            data__label_column="score",
        )
        assert stages_that_ran(project) == ALL_STAGES
        metrics = json.loads((project / "metrics" / "eval.json").read_text())
        assert metrics["n_examples"] == 24 and {"pearson", "spearman", "mse", "pearson_ci95_low"} <= set(metrics)
        config = json.loads((project / "models" / "classifier" / "config.json").read_text())
        assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
        assert (project / "predictions" / "test.csv").read_text().startswith("text,text_pair,score\n")
        plots = run(project, "dvc", "plots", "show", "--json").stdout
        assert "Predicted against true score (regression)" in plots and "Validation Pearson correlation" in plots
        run(project, "git", "add", "-A")
        run(project, "git", "commit", "-q", "-m", "regression")

        held = gate(project, "--baseline", "HEAD")
        assert held.returncode == 0 and "metrics/eval.json:spearman" in held.stdout, held.stdout
        # Every prediction moved 1 further from its score: the sign test sees 24 of 24 examples get worse.
        predictions = project / "metrics" / "predictions.csv"
        rows = predictions.read_text().splitlines()
        moved = [rows[0]]
        for row in rows[1:]:
            example, label, predicted = row.split(",")
            away = float(predicted) + (1 if float(predicted) >= float(label) else -1)
            moved.append(f"{example},{label},{away:.6f}")
        predictions.write_text("\n".join(moved) + "\n")
        worse = gate(project, "--baseline", "HEAD")
        assert (
            "paired test (exact sign test on the absolute error, metrics/predictions.csv): 24 examples changed, "
            "24 now further off, 0 now closer" in worse.stdout
        ), worse.stdout
    finally:
        if run(project, "git", "log", "-1", "--format=%s").stdout.strip() == "regression":
            run(project, "git", "reset", "-q", "--hard", "HEAD~1")
        run(project, "git", "checkout", "--", ".")
        run(project, "dvc", "checkout", "--quiet")
        shutil.rmtree(folder, ignore_errors=True)
    assert stages_that_would_run(project) == []


@pytest.mark.slow
def test_a_multi_label_file_runs_end_to_end_with_its_chosen_threshold_and_gates_on_its_f1(project):
    from test_multi_label import NAMES, write_id_lists

    folder = write_id_lists(project / "emotions")
    try:
        set_params(
            project,
            data__task="multi_label",
            data__path="emotions",
            data__max_train_samples=None,
            data__column_names=["text", "labels", "comment_id"],
            data__text_columns=["text"],
            data__label_column="labels",
            data__label_separator=",",
            data__label_names="emotions/labels.txt",
            data__quoting=False,
            data__select_fraction=0.25,
            train__select_threshold=True,
        )
        assert stages_that_ran(project) == ALL_STAGES
        metrics = json.loads((project / "metrics" / "eval.json").read_text())
        assert metrics["n_examples"] == 20
        assert {"micro_f1", "macro_f1_ci95_low", "mean_average_precision"} <= set(metrics)
        config = json.loads((project / "models" / "classifier" / "config.json").read_text())
        assert config["problem_type"] == "multi_label_classification" and list(config["id2label"].values()) == NAMES
        chosen = json.loads((project / "metrics" / "train" / "metrics.json").read_text())["threshold"]["value"]
        assert config["multi_label_threshold"] == metrics["threshold"] == chosen
        assert metrics["threshold_from"] == "train.select_threshold"
        header = (project / "predictions" / "test.csv").read_text().splitlines()[0]
        assert header == "text,labels,p_praise,p_scorn,p_music"
        plots = run(project, "dvc", "plots", "show", "--json").stdout
        assert "Validation macro-F1 (multi-label)" in plots
        run(project, "git", "add", "-A")
        run(project, "git", "commit", "-q", "-m", "multi-label")

        held = gate(project, "--baseline", "HEAD")
        assert held.returncode == 0 and "metrics/eval.json:micro_f1" in held.stdout, held.stdout
        # Every example's predicted set made wrong: McNemar sees each example that was right turn wrong.
        predictions = project / "metrics" / "predictions.csv"
        rows = list(csv.reader(io.StringIO(predictions.read_text())))
        right = sum(label == predicted for _, label, predicted in rows[1:])
        wrong = [rows[0], *([example, label, f"{label}|x"] for example, label, _ in rows[1:])]
        predictions.write_text("".join(",".join(row) + "\n" for row in wrong))
        worse = gate(project, "--baseline", "HEAD")
        assert f"{right} now wrong, 0 now right" in worse.stdout, worse.stdout
    finally:
        if run(project, "git", "log", "-1", "--format=%s").stdout.strip() == "multi-label":
            run(project, "git", "reset", "-q", "--hard", "HEAD~1")
        run(project, "git", "checkout", "--", ".")
        run(project, "dvc", "checkout", "--quiet")
        shutil.rmtree(folder, ignore_errors=True)
    assert stages_that_would_run(project) == []


def gate(project, *args):
    return run(project, sys.executable, "-m", "pipeline", "check", *args, check=False)


@pytest.mark.slow
def test_a_distilled_student_reruns_per_key_and_its_teacher_stands(project, tiny_mpnet):
    try:
        set_params(
            project,
            teacher__model_name=str(tiny_mpnet),
            teacher__batch_size=8,
            teacher__augment_copies=1,
            train__distill_alpha=0.5,
        )
        assert stages_that_ran(project) == ["teacher", "train", "evaluate", "predict", "export"]
        teacher = json.loads((project / "metrics" / "teacher.json").read_text())
        assert teacher["teacher"] == str(tiny_mpnet) and 0 <= teacher["accuracy"] <= 1
        meta = json.loads((project / "data" / "teacher" / "meta.json").read_text())
        assert meta["n_train"] == 48 and meta["n_augmented"] > 0
        assert (project / "models" / "teacher" / "model.safetensors").is_file()
        assert "Distilled from" in (project / "models" / "classifier" / "README.md").read_text()
        set_params(project, train__distill_temperature=4.0)  # the student's: the teacher stands
        assert stages_that_ran(project) == ["train", "evaluate", "predict", "export"]
        set_params(project, teacher__lr=1e-4)
        assert stages_that_ran(project) == ["teacher", "train", "evaluate", "predict", "export"]
    finally:
        run(project, "git", "checkout", "--", ".")
        run(project, "dvc", "checkout", "--quiet")
    assert stages_that_would_run(project) == []


def test_gate_on_real_dvc_metrics_diff(project):
    eval_json, predictions_csv = project / "metrics" / "eval.json", project / "metrics" / "predictions.csv"
    committed, committed_predictions = eval_json.read_text(), predictions_csv.read_text()
    metrics = json.loads(committed)
    try:
        equal = gate(project, "--baseline", "HEAD", "--max-drop", "0.01")
        assert equal.returncode == 0 and "gate passed" in equal.stdout

        eval_json.write_text(json.dumps({**metrics, "accuracy": metrics["accuracy"] - 0.05}))
        worse = gate(project, "--baseline", "HEAD", "--max-drop", "0.01")
        assert worse.returncode == 1 and "worse" in worse.stdout and "got worse" in worse.stderr

        eval_json.write_text(json.dumps({**metrics, "accuracy": metrics["accuracy"] + 0.05}))
        assert gate(project, "--baseline", "HEAD", "--max-drop", "0.01").returncode == 0

        eval_json.write_text(json.dumps({k: v for k, v in metrics.items() if k != "f1"}))
        missing = gate(project, "--baseline", "HEAD", "--metric", "metrics/eval.json:f1")
        assert missing.returncode == 3 and "missing in workspace" in missing.stdout

        # With no --metric, the watched metrics are pyproject.toml's: accuracy and F1.
        default = gate(project, "--baseline", "HEAD")
        assert (
            default.returncode == 3
            and "metrics/eval.json:f1" in default.stdout
            and "missing in workspace" in default.stdout
        )

        # The paired test reads the baseline's per-example predictions from git: six examples made wrong.
        eval_json.write_text(committed)
        rows = predictions_csv.read_text().splitlines()
        names = sorted({row.split(",")[1] for row in rows[1:]})
        flipped = 0
        for k, row in enumerate(rows[1:], start=1):
            example, label, predicted, probability = row.split(",")
            if label == predicted and flipped < 6:
                other = next(name for name in names if name != label)
                rows[k], flipped = ",".join([example, label, other, probability]), flipped + 1
        predictions_csv.write_text("\n".join(rows) + "\n")
        paired = gate(project, "--baseline", "HEAD")
        assert (
            "paired test (exact McNemar, metrics/predictions.csv): 6 examples changed, 6 now wrong, 0 now right; "
            "p = 0.0312 (unlikely to be noise at the 0.05 level)" in paired.stdout
        ), paired.stdout

        no_baseline = gate(project, "--baseline", "no-such-branch")
        assert no_baseline.returncode == 4 and "no baseline" in no_baseline.stderr
    finally:
        eval_json.write_text(committed)
        predictions_csv.write_text(committed_predictions)


@pytest.mark.slow
def test_two_experiments_compare_and_one_is_promoted(project):
    run(project, "dvc", "exp", "run", "-n", "slow-lr", "-S", "train.lr=1e-5")
    run(project, "dvc", "exp", "run", "-n", "fast-lr", "-S", "train.lr=2e-3", "-S", "train.epochs=2")
    try:
        shown = json.loads(run(project, "dvc", "exp", "show", "--json").stdout)
        experiments = {}
        for commit in shown:
            for exp in commit.get("experiments") or []:
                for revision in exp["revs"]:
                    data = revision["data"]
                    experiments[revision["name"]] = (
                        data["params"]["params.yaml"]["data"]["train"],
                        data["metrics"]["metrics/eval.json"]["data"],
                    )
        assert {"slow-lr", "fast-lr"} <= set(experiments)
        slow_params, slow_metrics = experiments["slow-lr"]
        fast_params, fast_metrics = experiments["fast-lr"]
        assert (slow_params["lr"], fast_params["lr"], fast_params["epochs"]) == (1e-5, 2e-3, 2)
        assert slow_metrics["loss"] != fast_metrics["loss"]

        diff = json.loads(run(project, "dvc", "metrics", "diff", "slow-lr", "fast-lr", "--all", "--json").stdout)
        assert "accuracy" in diff["metrics/eval.json"]

        run(project, "dvc", "exp", "branch", "fast-lr", "promoted")
        run(project, "dvc", "exp", "apply", "fast-lr")
        assert yaml.safe_load((project / "params.yaml").read_text())["train"]["lr"] == 2e-3
        assert json.loads((project / "metrics" / "eval.json").read_text())["loss"] == fast_metrics["loss"]
        assert "promoted" in run(project, "git", "branch").stdout
    finally:
        run(project, "git", "checkout", "--", ".")
        run(project, "dvc", "checkout", "--quiet")
        run(project, "dvc", "exp", "remove", "--all-commits", "--quiet", check=False)


@pytest.mark.slow
def test_a_queued_sweep_runs_in_temporary_copies_and_compare_pairs_it_by_seed(project):
    """Queued experiments run in temporary copies holding only what git and DVC track; a 2-recipe ×
    2-seed sweep comes back from dvc exp show as two recipes of two runs, paired seed by seed."""
    run(project, "dvc", "exp", "run", "--queue", "-S", "train.lr=1e-4,3e-4", "-S", "train.seed=1,2")
    run(project, "dvc", "queue", "start")
    for _ in range(300):
        status = run(project, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status and "Success" in status:
            break
        time.sleep(2)
    try:
        assert status.count("Success") == 4, status
        shown = json.loads(run(project, "dvc", "exp", "show", "--json").stdout)
        accuracy = {}
        for commit in shown:
            for exp in commit.get("experiments") or []:
                data = exp["revs"][0]["data"]
                train = data["params"]["params.yaml"]["data"]["train"]
                accuracy[train["lr"], train["seed"]] = data["metrics"]["metrics/eval.json"]["data"]["accuracy"]
        assert sorted(accuracy) == [(1e-4, 1), (1e-4, 2), (3e-4, 1), (3e-4, 2)]
        compared = run(project, sys.executable, "-m", "pipeline", "compare", "--against", "train.lr=1e-4").stdout
        (fast,) = [line.split() for line in compared.splitlines()[1:] if line.startswith("train.lr=0.0003")][:1]
        assert fast[1] == "2" and float(fast[2]) == pytest.approx((accuracy[3e-4, 1] + accuracy[3e-4, 2]) / 2, abs=1e-4)
        paired = compared.split("paired with train.lr=0.0001")[1]
        differences = [accuracy[3e-4, seed] - accuracy[1e-4, seed] for seed in (1, 2)]
        (pair,) = [line.split() for line in paired.splitlines() if line.startswith("train.lr=0.0003")]
        assert pair[1] == "2" and float(pair[2]) == pytest.approx(sum(differences) / 2, abs=1e-4)
    finally:
        run(project, "dvc", "exp", "remove", "--all-commits", "--quiet", check=False)


def test_a_library_change_reruns_the_stages_that_run_that_code(project):
    module = project / "src" / "pipeline" / "batching.py"
    original = module.read_text()
    try:
        module.write_text(original + "\n# changed\n")
        # the teacher stage runs the training loop too (on a teacher, when one is named)
        assert stages_that_would_run(project) == ["teacher", "train", "evaluate"]
    finally:
        module.write_text(original)
    assert stages_that_would_run(project) == []


@pytest.mark.slow
def test_dvc_repro_after_a_kill_ends_as_if_never_interrupted(project):
    def outcome() -> dict:
        metrics = json.loads((project / "metrics" / "train" / "metrics.json").read_text())
        return {
            "weights": (project / "models" / "classifier" / "model.safetensors").read_bytes(),
            "train": {k: v for k, v in metrics.items() if k not in RUN_DETAILS},
            "eval": (project / "metrics" / "eval.json").read_text(),
            "curves": live_files(project / "metrics" / "train" / "plots"),
        }

    try:
        set_params(project, train__epochs=3, train__checkpoint_every_steps=2)  # 18 steps
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        repro = subprocess.Popen(
            ["dvc", "repro"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in repro.stdout:
            if "checkpoint: step 8 saved" in line:  # in epoch 2
                kill_process_tree(repro.pid)
                break
        repro.wait(timeout=60)
        assert repro.returncode == -9
        # Killed before the stage finished: DVCLive's metrics.json has the latest step, not the final figures.
        assert "steps_run" not in json.loads((project / "metrics" / "train" / "metrics.json").read_text())

        resumed = run(project, "dvc", "repro")
        assert re.search(r"resuming from checkpoints/train/step-00000(08|10)", resumed.stdout + resumed.stderr)
        after_kill = outcome()
        history = json.loads((project / "metrics" / "train" / "metrics.json").read_text())
        assert history["resumed_from_step"] in (8, 10) and history["resumed_from_step"] + history["steps_run"] == 18
        assert sorted(p.name for p in (project / "checkpoints" / "train").iterdir()) == ["finished.json"]
        run(project, "dvc", "repro", "--force", "train", "evaluate")  # the same run, never interrupted
        assert outcome() == after_kill
    finally:
        run(project, "git", "checkout", "--", ".")
        run(project, "dvc", "checkout", "--quiet")
    assert stages_that_would_run(project) == []


@pytest.mark.slow
def test_two_clean_runs_give_identical_bytes(project):
    """Rerun every stage from scratch: data, tokenized cache, weights and metrics come out the same."""

    def fingerprint() -> dict:
        files = [
            p
            for folder in ("data/raw", "data/tokenized", "models/classifier", "models/onnx")
            for p in sorted((project / folder).rglob("*"))
        ]
        found = {str(p.relative_to(project)): p.read_bytes() for p in files if p.is_file()}
        for name in (
            "eval.json",
            "confusion.csv",
            "predictions.csv",
            "calibration.csv",
            "misclassified.csv",
            "export.json",
        ):
            found[name] = (project / "metrics" / name).read_bytes()
        found.update(live_files(project / "metrics" / "train" / "plots"))
        train = json.loads((project / "metrics" / "train" / "metrics.json").read_text())
        found["train.json"] = {k: v for k, v in train.items() if k not in ("train_runtime_s", "train_samples_per_s")}
        return found

    first = fingerprint()
    try:
        # --no-run-cache: really run every command, rather than restore outputs DVC has seen before.
        ran = re.findall(r"Running stage '([^']+)'", run(project, "dvc", "repro", "--force", "--no-run-cache").stdout)
        assert ran == ALL_STAGES
        assert fingerprint() == first
    finally:
        run(project, "git", "checkout", "--", ".")
        run(project, "dvc", "checkout", "--quiet", "--force")


@pytest.mark.slow
def test_a_fresh_clone_pulls_from_the_remote_instead_of_retraining(project, tmp_path):
    """docs/remote.md: push with the run cache; a clone pulls, and an unchanged stage is restored, not rerun."""
    remote = tmp_path / "remote"
    run(project, "dvc", "remote", "add", "--local", "-f", "-d", "team", str(remote))
    run(project, "dvc", "push", "--run-cache")
    # The team's repository: the project with its remote committed, as a team would share it.
    upstream = tmp_path / "upstream"
    run(tmp_path, "git", "clone", "-q", str(project), str(upstream))
    run(upstream, "dvc", "remote", "add", "-d", "team", str(remote))
    run(upstream, "git", "commit", "-q", "-am", "the team's remote")

    fresh = tmp_path / "fresh"
    run(tmp_path, "git", "clone", "-q", str(upstream), str(fresh))
    run(fresh, "dvc", "pull")
    assert run(fresh, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    assert stages_that_ran(fresh) == []
    weights = "models/classifier/model.safetensors"
    assert (fresh / weights).read_bytes() == (project / weights).read_bytes()

    # A CI job on a commit that changed evaluate.* only: it pulls, and training is restored, not rerun.
    ci = tmp_path / "ci"
    run(tmp_path, "git", "clone", "-q", str(upstream), str(ci))
    set_params(ci, evaluate__batch_size=4)
    run(ci, "dvc", "pull", "--run-cache")
    assert stages_that_ran(ci) == ["evaluate"]
    assert (ci / weights).read_bytes() == (project / weights).read_bytes()

    # The model registry: dvc.yaml's artifact, a version registered with a GTO-style tag, and
    # `dvc artifacts get`, which finds the latest version and downloads the model from the remote.
    run(upstream, "git", "tag", "-a", "classifier@v0.1.0", "-m", "Registering artifact classifier version v0.1.0")
    run(tmp_path, "dvc", "artifacts", "get", str(upstream), "classifier", "-o", str(tmp_path / "got"))
    assert (tmp_path / "got" / "model.safetensors").read_bytes() == (project / weights).read_bytes()


@pytest.mark.slow
def test_dvc_exp_show_shows_a_running_experiment_at_its_latest_step(project):
    """DVCLive rewrites metrics/train/metrics.json at every logged step, and `dvc exp show` reads it."""

    def workspace_step() -> int | None:
        rows = json.loads(run(project, "dvc", "exp", "show", "--json").stdout)
        (workspace,) = [row for row in rows if row["rev"] == "workspace"]
        metrics = (workspace.get("data") or {}).get("metrics") or {}
        return metrics.get("metrics/train/metrics.json", {}).get("data", {}).get("step")

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    total_steps = 60 * 6  # 60 epochs of 6 steps: long enough to look at it while it trains
    experiment = subprocess.Popen(
        ["dvc", "exp", "run", "-S", "train.epochs=60", "-S", "train.log_every_steps=1"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = []
        while experiment.poll() is None:
            step = workspace_step()
            if experiment.poll() is None and step is not None and step != 6:  # 6: the committed run's
                seen.append(step)
            time.sleep(0.5)
        output = experiment.stdout.read()
        assert experiment.returncode == 0, output
        assert any(0 < step < total_steps for step in seen), (seen, output)
        assert workspace_step() == total_steps
    finally:
        run(project, "git", "checkout", "--", ".")
        run(project, "dvc", "checkout", "--quiet")
    assert stages_that_would_run(project) == []
