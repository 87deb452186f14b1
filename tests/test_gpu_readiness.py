"""The GPU smoke script runs end to end on a CPU, as CI's test session checks; on a GPU it runs the
CUDA paths (docs/scaling.md)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import PROJECT_ROOT

from pipeline.config import DataConfig
from pipeline.data import download
from pipeline.precision import precision_on

ENV = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")}


@pytest.fixture(scope="module")
def raw(glue_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw")
    download(DataConfig(path=str(glue_dir), config=None), folder)
    return folder


@pytest.mark.slow
def test_the_gpu_smoke_script_runs_every_check_on_a_cpu(raw, tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "gpu_smoke.py"), "--device", "cpu", "--quick"]
    command += ["--raw", str(raw), "--tokenizer", str(tmp_path / "tokenizer"), "--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = {row["check"]: row for row in json.loads((tmp_path / "out" / "smoke.json").read_text())["rows"]}
    # as the run itself reports it: bf16, or fp32 on a CPU without native bf16
    assert rows["bf16"]["ok"] and rows["bf16"]["precision"] == precision_on("bf16", torch.device("cpu"))
    assert rows["repeat"]["ok"] and rows["repeat"]["max_abs_difference"] == 0.0
    assert rows["kill-resume"]["killed_after_checkpoint"] and rows["kill-resume"]["resumed_from_step"] > 0
    assert rows["kill-resume"]["max_abs_difference"] == 0.0
    assert rows["fp16"]["ok"] is None  # fp16 autocast needs CUDA: skipped, and said so
    assert rows["nondeterministic"]["identical"]  # CPU kernels are repeatable with or without the setting
    # torchrun, a gloo process group of one, DistributedDataParallel: the same weights as the lone process
    assert rows["process-group"]["ok"] and rows["process-group"]["backend"] == "gloo"
    assert 0 <= rows["evaluate"]["accuracy"] <= 1
    assert rows["throughput-minilm"]["samples_per_s"] > 0 and rows["throughput-distilbert"]["samples_per_s"] > 0
