"""Stage scripts end input errors with one line on stderr and exit status 2, and write nothing."""

import subprocess
import sys

from conftest import PROJECT_ROOT


def run_stage(script, *args, cwd):
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "stages" / script), *args], cwd=cwd, capture_output=True, text=True
    )


def test_stage_without_its_input_says_which_stage_to_run(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 1\n")
    result = run_stage("tokenize_data.py", "--raw", "data/raw", "--out", "data/tokenized", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: data/raw/info.json not found: run the download stage first (dvc repro download)"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "tokenized").exists()


def test_invalid_params_stop_a_stage_before_any_work(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  lr: -1\n")
    result = run_stage("train_model.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "error: invalid parameter train.lr=-1.0: expected a number > 0 "
        "(edit params.yaml or pass -S train.lr=... to dvc exp run)\n"
    )
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()
