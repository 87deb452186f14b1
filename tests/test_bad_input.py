"""The "Bad input" table of docs/reliability.md, row by row.

Each row names a bad input, the stage that meets it, the start of the one-line error and the exit
status. The rows are read from docs/reliability.md itself, so the table and these cases cannot drift apart:
a row without a case, or a case without a row, fails :func:`test_every_readme_row_has_a_case`.

Every case builds its bad input in a fresh project folder that already holds earlier outputs of
the stage, runs the stage, and checks that it ends with that one line and that not a byte of the
folder changed (no output replaced, no half-written or temporary file left behind).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import re
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, write_glue_like

README = PROJECT_ROOT / "docs" / "reliability.md"  # the bad-input table
START, END = "<!-- bad-input:start -->", "<!-- bad-input:end -->"
COLUMNS = ["Case", "Bad input", "Stage", "What you get", "Exit"]

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
# Most rows run in-process (a new interpreter costs seconds of imports); these few run the stage
# script in a real process, to show that the entry points behave the same.
IN_A_REAL_PROCESS = {"params-not-yaml", "data-label-outside-classes", "model-unknown-offline"}
LIVE_LOG = "metrics/train"  # the train stage's DVCLive folder
# These fail after training has started, so progress lines come first; the error is the last line.
AFTER_TRAINING_STARTED = {"disk-full-checkpoint"}


@dataclass(frozen=True)
class Row:
    case: str
    bad_input: str
    stage: str
    message: str  # a fragment of the error line (its start or its key part), without "error: "
    exit: int


def readme_rows() -> list[Row]:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"docs/reliability.md lacks the {START} … {END} table"
    lines = [line.strip() for line in text[text.index(START) + len(START) : text.index(END)].splitlines()]
    header, rule, *body = [line for line in lines if line.startswith("|")]
    assert _cells(header) == COLUMNS
    assert set(rule) <= set("|-: ")
    rows = []
    for line in body:
        case, bad_input, stage, message, status = _cells(line)
        rows.append(Row(_code(case), bad_input, stage, _code(message), int(status)))
    return rows


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"expected one `code` span, got {cell!r}"
    return match.group(1)


ROWS = readme_rows()


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


# -- the cases, one per README row -----------------------------------------------------------------

Case = Callable[[Project], None]
CASES: dict[str, Case] = {}


def case(case_id: str) -> Callable[[Case], Case]:
    def register(build: Case) -> Case:
        assert case_id not in CASES, f"two cases named {case_id}"
        CASES[case_id] = build
        return build

    return register


@case("params-not-yaml")
def _(project):
    project.params(text="train:\n  lr: [1e-4\n  epochs: 3\n")


@case("params-missing")
def _(project):
    (project.root / "params.yaml").unlink()


@case("params-not-utf8")
def _(project):
    project.params(text="model:\n  name: caf\xe9\n".encode("latin-1"))


@case("params-not-a-mapping")
def _(project):
    project.params(text="- train\n- lr: 1e-4\n")


@case("params-section-not-a-mapping")
def _(project):
    project.params(text="train: 3\n")


@case("params-section-falsy")
def _(project):
    project.params(text="train: false\n")


@case("params-unknown-key")
def _(project):
    project.params({"train": {"epoch": 2}})


@case("params-wrong-type")
def _(project):
    project.params({"train": {"epochs": "two"}})


@case("params-bool-for-int")
def _(project):
    project.params({"train": {"batch_size": True}})


@case("params-lr-zero")
def _(project):
    project.params({"train": {"lr": 0}})


@case("params-warmup-out-of-range")
def _(project):
    project.params({"train": {"warmup_ratio": 1.5}})


@case("params-seed-negative")
def _(project):
    project.params({"train": {"seed": -1}})


@case("data-folder-missing")
def _(project):
    project.params({"data": {"path": "./no-such-folder"}})


@case("data-hub-unknown-offline")
def _(project):
    project.params({"data": {"path": "no-such-owner/no-such-dataset", "config": None}})


@case("data-missing-column")
def _(project):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    rows = {split: {"text": ["good", "bad"], "label": [1, 0]} for split in ("train", "validation", "test")}
    project.dataset(features=features, rows=rows)


@case("data-label-column-missing")
def _(project):
    project.dataset()
    project.params({"data": {"label_column": "stars"}})


@case("params-three-text-columns")
def _(project):
    project.params({"data": {"text_columns": ["a", "b", "c"]}})


@case("data-pair-text-empty")
def _(project):
    folder = project.root / "pairs"
    folder.mkdir()
    rows = "premise,hypothesis,label\na cat sits,an animal sits,1\nit rained,,0\n"
    (folder / "train.csv").write_text(rows)
    (folder / "validation.csv").write_text(rows)
    project.params({"data": {"path": "./pairs", "text_columns": ["premise", "hypothesis"]}})


@case("params-eval-fraction-out-of-range")
def _(project):
    project.params({"data": {"eval_fraction": 0.7}})


@case("data-no-training-file")
def _(project):
    folder = project.root / "mine"
    folder.mkdir()
    (folder / "reviews.csv").write_text("sentence,label\ngood,1\nbad,0\n")
    (folder / "notes.txt").write_text("the labelled reviews are in reviews.csv\n")
    project.params({"data": {"path": "./mine"}})


@case("data-txt-without-delimiter")
def _(project):
    folder = project.root / "emotion"
    folder.mkdir()
    for name in ("train.txt", "val.txt"):
        (folder / name).write_text("text;label_name\ni feel great;joy\ni am so angry;anger\n")
    project.params({"data": {"path": "./emotion", "text_columns": ["text"], "label_column": "label_name"}})


@case("data-rows-lost")
def _(project):
    folder = project.root / "sst2"
    folder.mkdir()
    # The quote opened on line 2 closes on line 4: a reader that honours quotes makes one row of three lines.
    rows = 'sentence\tlabel\n"a good\t1\nwarm film\t1\nodd" one\t0\na dull mess\t0\n'
    (folder / "train.tsv").write_text(rows)
    (folder / "validation.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\n")


@case("data-single-class")
def _(project):
    n = 8
    sentences = [f"a fine film {i}" for i in range(n)]
    project.dataset(rows={"train": {"sentence": sentences, "label": [1] * n, "idx": list(range(n))}})


@case("data-labels-mixed")
def _(project):
    folder = project.root / "sst2"
    folder.mkdir()
    rows = "sentence,label\na good film,1\na dull mess,0\nso happy,joy\n"
    (folder / "train.csv").write_text(rows)
    (folder / "validation.csv").write_text(rows)


@case("data-no-validation-split")
def _(project):
    folder = project.dataset()
    (folder / "validation.parquet").unlink()


@case("data-label-outside-classes")
def _(project):
    import datasets

    # Plain integer labels: the classes are those seen in train (0 and 1), which a ClassLabel would not let 7 into.
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.Value("int64"), "idx": datasets.Value("int32")}
    )
    project.dataset(
        rows={"validation": {"sentence": ["good", "odd"], "label": [1, 7], "idx": [0, 1]}}, features=features
    )


@case("data-empty-split")
def _(project):
    project.dataset(n_validation=0)


@case("data-not-utf8")
def _(project):
    folder = project.root / "sst2"
    folder.mkdir()
    (folder / "train.csv").write_bytes("sentence,label\na good film,1\na caf\xe9 scene,1\n".encode("latin-1"))
    (folder / "validation.csv").write_bytes(b"sentence,label\nwarm and funny,1\na dull mess,0\n")


@case("data-bytes-not-utf8")
def _(project):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = project.root / "sst2"
    folder.mkdir()
    for split in ("train", "validation"):
        sentences = pa.array([b"a good film", "a caf\xe9 scene".encode("latin-1")], pa.binary())
        pq.write_table(pa.table({"sentence": sentences, "label": [1, 1]}), folder / f"{split}.parquet")


@case("data-empty-text")
def _(project):
    project.dataset(rows={"train": {"sentence": ["a good film", "  "], "label": [1, 0], "idx": [0, 1]}})


@case("tokenize-before-download")
def _(project):
    project.model()


@case("model-unknown-offline")
def _(project):
    project.copy_prepared("data/raw")
    project.params({"model": {"name": "no-such-owner/no-such-model"}})


@case("model-folder-missing")
def _(project):
    project.copy_prepared("data/raw")
    project.params({"model": {"name": "./no-such-model"}})


@case("model-folder-not-a-model")
def _(project):
    project.copy_prepared("data/raw")
    (project.root / "my-model").mkdir()
    (project.root / "my-model" / "pytorch_model.bin").write_bytes(b"weights without their config.json")
    project.params({"model": {"name": "./my-model"}})


@case("max-length-no-room")
def _(project):
    project.copy_prepared("data/raw")
    project.model()
    project.params({"tokenize": {"max_length": 2}})  # [CLS] and [SEP] fill it


@case("max-length-over-model-limit")
def _(project):
    project.copy_prepared("data/raw")
    project.model()
    project.params({"tokenize": {"max_length": 512}})  # the tiny model has 64 positions


@case("train-processes-over-cores")
def _(project):
    project.copy_prepared("data/tokenized")
    project.params({"train": {"processes": 64, "device": "cpu"}})  # 64 workers of a whole model each


@case("cache-other-tokenizer")
def _(project):
    from transformers import AutoTokenizer

    project.copy_prepared("data/tokenized")  # made with ./tiny-bert's tokenizer
    project.model()
    other = project.root / "other-model"
    shutil.copytree(project.root / "tiny-bert", other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["moviegoer"])  # one more token: another vocabulary, another fingerprint
    tokenizer.save_pretrained(other)
    project.params({"model": {"name": "./other-model"}})


@case("evaluate-before-train")
def _(project):
    project.copy_prepared("data/tokenized")


def _save_file_that_stops_halfway(error: Callable[[str], BaseException]):
    """A stand-in for safetensors' save_file that writes part of its file, then fails with ``error(filename)``."""

    def save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 4096)
        raise error(str(filename))

    return save_file


@case("disk-full-tokenize")
def _(project):
    import pipeline.tokenization

    project.copy_prepared("data/raw")
    project.model()
    full = _save_file_that_stops_halfway(lambda filename: OSError(errno.ENOSPC, "No space left on device", filename))
    project.monkeypatch.setattr(pipeline.tokenization, "save_file", full)


@case("disk-full-safetensors")
def _(project):
    from safetensors import SafetensorError

    import pipeline.tokenization

    project.copy_prepared("data/raw")
    project.model()
    # What safetensors really raises on a full disk: its own error type, the errno only in the text.
    full = _save_file_that_stops_halfway(
        lambda filename: SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    )
    project.monkeypatch.setattr(pipeline.tokenization, "save_file", full)


@case("disk-full-download")
def _(project):
    import pipeline.data

    project.dataset()

    def write_table(table, where, *args, **kwargs):
        Path(where).write_bytes(b"PAR1" + b"\0" * 4096)
        # pyarrow's own wording, with the errno but no file name
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    project.monkeypatch.setattr(pipeline.data.pq, "write_table", write_table)


@case("interrupted")
def _(project):
    import pipeline.tokenization

    project.copy_prepared("data/raw")
    project.model()
    interrupted = _save_file_that_stops_halfway(lambda filename: KeyboardInterrupt())
    project.monkeypatch.setattr(pipeline.tokenization, "save_file", interrupted)


class _Stop(Exception):
    pass


def _interrupted_training(project) -> Path:
    """A train run stopped after its checkpoint at step 2 of 4; returns that checkpoint's folder."""
    import pipeline.training
    from pipeline.config import load_params

    project.copy_prepared("data/tokenized")
    project.model()
    project.params({"train": {"checkpoint_every_steps": 2}})
    real_step, steps = pipeline.training.train_step, []

    def stop_before_step_3(*args):
        if len(steps) == 2:
            raise _Stop
        steps.append(real_step(*args))
        return steps[-1]

    with project.monkeypatch.context() as patch, contextlib.chdir(project.root), contextlib.suppress(_Stop):
        patch.setattr(pipeline.training, "train_step", stop_before_step_3)
        pipeline.training.run_train_stage(
            load_params(), "data/tokenized", "models/classifier", "metrics/train", "checkpoints/train"
        )
    folder = project.root / "checkpoints" / "train" / "step-0000002"
    assert (folder / "state.json").is_file()
    return folder


@case("checkpoint-corrupt")
def _(project):
    weights = _interrupted_training(project) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    weights.write_bytes(bytes(data))


@case("checkpoint-truncated")
def _(project):
    optimizer = _interrupted_training(project) / "optimizer.safetensors"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])


@case("checkpoint-state-damaged")
def _(project):
    state = _interrupted_training(project) / "state.json"
    state.write_text(state.read_text()[:100])


@case("disk-full-checkpoint")
def _(project):
    from safetensors import SafetensorError

    import pipeline.checkpoint

    _interrupted_training(project)
    full = _save_file_that_stops_halfway(
        lambda filename: SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    )
    project.monkeypatch.setattr(pipeline.checkpoint, "save_file", full)


@case("predict-model-missing")
def _(project):
    project.argv = ["--model", "./no-such-model", "a gorgeous film"]


@case("predict-not-a-classifier")
def _(project):
    project.model()  # a pretrained encoder without a classification head
    project.argv = ["--model", "./tiny-bert", "a gorgeous film"]


@case("predict-input-missing")
def _(project):
    project.classifier()
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


@case("predict-input-empty")
def _(project):
    project.classifier()
    (project.root / "reviews.csv").write_bytes(b"")
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


@case("predict-input-not-utf8")
def _(project):
    project.classifier()
    (project.root / "reviews.csv").write_bytes("sentence\na caf\xe9 scene\n".encode("latin-1"))
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


@case("predict-text-column-missing")
def _(project):
    project.classifier()
    (project.root / "reviews.csv").write_text("review,stars\na gorgeous film,5\n")
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


@case("predict-empty-text")
def _(project):
    project.classifier()
    (project.root / "reviews.csv").write_text('sentence\na gorgeous film\n" "\n')
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


@case("predict-output-exists")
def _(project):
    project.classifier()
    (project.root / "labels.csv").write_text("text,label\nlabels a user made earlier,positive\n")
    project.argv = ["--model", "./classifier", "--output", "labels.csv", "a gorgeous film"]


@case("predict-onnx-not-exported")
def _(project):
    project.argv = ["--backend", "onnx", "a gorgeous film"]


@case("predict-int8-without-onnx")
def _(project):
    project.classifier()
    project.argv = ["--model", "./classifier", "--precision", "int8", "a gorgeous film"]


@case("predict-int8-not-shipped")
def _(project):
    project.onnx_folder(b"the fp32 model alone: int8 failed its checks")
    project.argv = ["--backend", "onnx", "--precision", "int8", "a gorgeous film"]


@case("predict-onnx-damaged")
def _(project):
    project.onnx_folder(b"a file cut short while copying")
    project.argv = ["--backend", "onnx", "--precision", "fp32", "a gorgeous film"]


@case("predict-onnx-without-backend")
def _(project):
    project.onnx_folder(b"an ONNX model")
    project.argv = ["--model", "models/onnx", "a gorgeous film"]


@case("export-before-train")
def _(project):
    project.copy_prepared("data/raw")


@case("params-export-tolerance")
def _(project):
    project.params({"export": {"fp32_tolerance": 0}})


# -- the tests ---------------------------------------------------------------------------------------


def test_every_readme_row_has_a_case():
    ids = [row.case for row in ROWS]
    assert len(ids) == len(set(ids)), "a case id appears twice in the README table"
    assert set(ids) == set(CASES), (
        f"README rows without a case: {sorted(set(ids) - set(CASES))}; "
        f"cases without a README row: {sorted(set(CASES) - set(ids))}"
    )
    assert IN_A_REAL_PROCESS <= set(ids)
    assert all(row.stage in SCRIPTS for row in ROWS), "Stage must be one of " + ", ".join(SCRIPTS)


@pytest.mark.parametrize("row", ROWS, ids=[row.case for row in ROWS])
def test_bad_input(row: Row, tmp_path, request, monkeypatch, capfd):
    assert row.case in CASES, f"README row {row.case} has no case in this file"
    project = Project(tmp_path / "project", request, monkeypatch)
    CASES[row.case](project)
    project.earlier_outputs(row.stage)
    before = snapshot(project.root)

    if row.stage == "predict":
        status, stdout, stderr = _run_predict(project, monkeypatch, capfd)
    elif row.case in IN_A_REAL_PROCESS:
        script = PROJECT_ROOT / "stages" / SCRIPTS[row.stage]
        result = subprocess.run([sys.executable, str(script)], cwd=project.root, capture_output=True, text=True)
        status, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        script = PROJECT_ROOT / "stages" / SCRIPTS[row.stage]
        status, stdout, stderr = _run_in_process(script, project.root, monkeypatch, capfd)

    assert (status, stdout) == (row.exit, ""), f"stderr: {stderr}"
    lines = stderr.splitlines()
    if row.case in AFTER_TRAINING_STARTED:
        assert "Traceback" not in stderr and sum(line.startswith("error: ") for line in lines) == 1, stderr
        lines = lines[-1:]
    assert len(lines) == 1 and stderr.endswith("\n"), f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("error: ") and row.message in lines[0], lines[0]
    after = snapshot(project.root)
    if row.case in AFTER_TRAINING_STARTED:
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
