"""Every case of tests/bad_input_cases.py, the "Bad input" table of docs/reliability.md, run.

Each case names a bad input, the stage that meets it, the start of the one-line error and the exit
status. The table in the docs is generated from those cases (``python docs/generate.py``), so the table
and the cases cannot drift apart: :func:`test_the_docs_table_is_the_table_of_the_cases` fails when they do.

Every case builds its bad input in a fresh project folder that already holds earlier outputs of
the stage, runs the stage, and checks that it ends with that one line and that not a byte of the
folder changed (no output replaced, no half-written or temporary file left behind).
"""

from __future__ import annotations

import contextlib
import hashlib
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bad_input_cases import CASES, Case, markdown_table
from conftest import PROJECT_ROOT, write_glue_like

DOCS = PROJECT_ROOT / "docs" / "reliability.md"  # the bad-input table, generated from bad_input_cases.py
START, END = "<!-- bad-input:start -->", "<!-- bad-input:end -->"

SCRIPTS = {
    "download": "download_data.py",
    "tokenize": "tokenize_data.py",
    "train": "train_model.py",
    "evaluate": "evaluate_model.py",
    "predict": None,  # python -m pipeline predict, with the case's arguments (Project.argv)
    "export": "export_onnx.py",
}
# What each stage writes with its default arguments (dvc.yaml's outs): a failed run must leave these alone.
OUTPUTS = {
    "download": [
        "data/raw/train.parquet",
        "data/raw/validation.parquet",
        "data/raw/test.parquet",
        "data/raw/info.json",
    ],
    "tokenize": [
        "data/tokenized/train.safetensors",
        "data/tokenized/validation.safetensors",
        "data/tokenized/meta.json",
    ],
    "train": [
        "models/classifier/config.json",
        "models/classifier/model.safetensors",
        "metrics/train/metrics.json",
        "metrics/train/plots/metrics/train/loss.tsv",
    ],
    "evaluate": [
        "metrics/eval.json",
        "metrics/confusion.csv",
        "metrics/predictions.csv",
        "metrics/calibration.csv",
        "metrics/misclassified.csv",
        "metrics/per_class.csv",
    ],
    "predict": [],
    "export": ["models/onnx/model.onnx", "metrics/export.json"],
}
LIVE_LOG = "metrics/train"  # the train stage's DVCLive folder


# -- the project folder each case runs in ----------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, glue_dir, tiny_bert) -> Path:
    """Real download and tokenize outputs of the tiny data with the tiny model, named as in a project."""
    from pipeline.config import DataConfig, ModelConfig, TokenizeConfig
    from pipeline.data import download
    from pipeline.tokenization import tokenize

    root = tmp_path_factory.mktemp("prepared")
    shutil.copytree(tiny_bert, root / "tiny-bert")
    with contextlib.chdir(root):  # the cache records the model name as the stage was given it
        download(DataConfig(path=str(glue_dir), config=None), "data/raw")
        tokenize(ModelConfig(name="./tiny-bert"), TokenizeConfig(max_length=32), "data/raw", "data/tokenized")
    return root


class Project:
    """A project folder: params.yaml, inputs, and earlier outputs of the stage under test."""

    BASE_PARAMS = {
        "data": {"path": "./sst2", "config": None},
        "model": {"name": "./tiny-bert"},
        "tokenize": {"max_length": 32},
        "train": {"epochs": 1, "batch_size": 16, "precision": "fp32"},
    }

    def __init__(self, root: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.request = request
        self.monkeypatch = monkeypatch  # undone after the case: patches for simulated failures
        self.argv: list[str] = []  # the arguments of python -m pipeline predict
        root.mkdir()
        self.params()

    def params(self, changes: dict | None = None, text: str | bytes | None = None) -> None:
        """Write params.yaml: the base parameters with ``changes`` merged in, or ``text`` as it is."""
        if text is None:
            merged = {section: dict(values) for section, values in self.BASE_PARAMS.items()}
            for section, values in (changes or {}).items():
                merged.setdefault(section, {}).update(values)
            text = yaml.safe_dump(merged, sort_keys=False)
        (self.root / "params.yaml").write_bytes(text.encode("utf-8") if isinstance(text, str) else text)

    def dataset(self, **kwargs) -> Path:
        """The tiny SST-2-like folder at ./sst2 (see conftest.write_glue_like for the options)."""
        return write_glue_like(self.root / "sst2", **kwargs)

    def model(self) -> None:
        shutil.copytree(self.request.getfixturevalue("tiny_bert"), self.root / "tiny-bert")

    def classifier(self) -> None:
        """A fine-tuned-shaped model at ./classifier: tiny_bert with a (random) classification head."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tiny = self.request.getfixturevalue("tiny_bert")
        model = AutoModelForSequenceClassification.from_pretrained(
            tiny, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
        )
        model.save_pretrained(self.root / "classifier")
        AutoTokenizer.from_pretrained(tiny).save_pretrained(self.root / "classifier")

    def onnx_folder(self, model_onnx: bytes) -> Path:
        """An export-shaped ``models/onnx``: the classifier's config and tokenizer, no PyTorch weights,
        and ``model_onnx`` as ``model.onnx`` (the cases need no real graph: they fail before running it)."""
        self.classifier()
        folder = self.root / "models" / "onnx"
        shutil.copytree(self.root / "classifier", folder)
        (folder / "model.safetensors").unlink()
        (folder / "model.onnx").write_bytes(model_onnx)
        return folder

    def copy_prepared(self, *names: str) -> None:
        """Copy the real outputs of earlier stages (``data/raw``, ``data/tokenized``) into the project."""
        prepared = self.request.getfixturevalue("prepared")
        for name in names:
            shutil.copytree(prepared / name, self.root / name)

    def earlier_outputs(self, stage: str) -> None:
        for name in OUTPUTS[stage]:
            if not (self.root / name).exists():  # a case may have put a real one there
                (self.root / name).parent.mkdir(parents=True, exist_ok=True)
                (self.root / name).write_bytes(f"earlier output of the {stage} stage: {name}\n".encode())


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``, hidden ones included, with a hash of each file's bytes."""
    return {
        str(path.relative_to(root)): "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
    }


# -- the tests ---------------------------------------------------------------------------------------


def test_the_cases_are_well_formed():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "a case id appears twice in tests/bad_input_cases.py"
    assert all(case.stage in SCRIPTS for case in CASES), "Stage must be one of " + ", ".join(SCRIPTS)
    assert all("`" not in case.message for case in CASES), "a message is shown as one `code` span"


def test_the_docs_table_is_the_table_of_the_cases():
    text = DOCS.read_text(encoding="utf-8")
    assert START in text and END in text, f"docs/reliability.md lacks the {START} … {END} table"
    table = text[text.index(START) + len(START) : text.index(END)]
    assert table.strip() == markdown_table().strip(), (
        "the bad-input table of docs/reliability.md differs from tests/bad_input_cases.py: run python docs/generate.py"
    )


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_bad_input(case: Case, tmp_path, request, monkeypatch, capfd):
    project = Project(tmp_path / "project", request, monkeypatch)
    case.build(project)
    project.earlier_outputs(case.stage)
    before = snapshot(project.root)

    if case.stage == "predict":
        status, stdout, stderr = _run_predict(project, monkeypatch, capfd)
    elif case.real_process:
        script = PROJECT_ROOT / "stages" / SCRIPTS[case.stage]
        result = subprocess.run([sys.executable, str(script)], cwd=project.root, capture_output=True, text=True)
        status, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        script = PROJECT_ROOT / "stages" / SCRIPTS[case.stage]
        status, stdout, stderr = _run_in_process(script, project.root, monkeypatch, capfd)

    assert (status, stdout) == (case.exit, ""), f"stderr: {stderr}"
    lines = stderr.splitlines()
    if case.after_training_started:
        assert "Traceback" not in stderr and sum(line.startswith("error: ") for line in lines) == 1, stderr
        lines = lines[-1:]
    assert len(lines) == 1 and stderr.endswith("\n"), f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("error: ") and case.message in lines[0], lines[0]
    after = snapshot(project.root)
    if case.after_training_started:
        # A run that has started training logs as it goes (DVCLive, for `dvc exp show`); all else stays.
        before, after = ({k: v for k, v in files.items() if not k.startswith(LIVE_LOG)} for files in (before, after))
    assert after == before


def _run_predict(project: Project, monkeypatch, capfd) -> tuple[int, str, str]:
    """``python -m pipeline predict ARGS`` in this interpreter, in the project folder."""
    from pipeline.cli import main

    monkeypatch.chdir(project.root)
    capfd.readouterr()
    try:
        status = main(["predict", *project.argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capfd.readouterr()
    return status, out, err


def _run_in_process(script: Path, cwd: Path, monkeypatch, capfd) -> tuple[int, str, str]:
    """The stage script as ``python stages/<script>`` would run it, in this interpreter."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(script)])
    capfd.readouterr()
    try:
        runpy.run_path(str(script), run_name="__main__")
        status = 0
    except SystemExit as exc:
        status = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    out, err = capfd.readouterr()
    return status, out, err
