"""The bad inputs the stages refuse, one case per row: the table of docs/reliability.md, as data.

Each :class:`Case` names a bad input, the stage that meets it, a fragment of the one-line error and the
exit status, and holds the function that builds that bad input in a project folder. The table of
docs/reliability.md (between its bad-input markers) is generated from :data:`CASES` by
:func:`markdown_table` (``python docs/generate.py``), and tests/test_bad_input.py runs every case.

This module is imported by docs/generate.py as a plain script, so it imports nothing heavy at the top:
the builders import what they need when they run.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from test_bad_input import Project

COLUMNS = ["Case", "Bad input", "Stage", "What you get", "Exit"]


@dataclass(frozen=True)
class Case:
    id: str  # the test id, test_bad_input[<id>]
    bad_input: str  # markdown, as the table shows it
    stage: str  # download, tokenize, train, evaluate, predict or export
    message: str  # a fragment of the error line (its start or its key part), without "error: "
    exit: int
    build: Callable[[Project], None]  # makes the bad input in the project folder
    # Most cases run the stage in the test's own interpreter (a new one costs seconds of imports); a few run
    # the stage script in a real process, to show that the entry points behave the same.
    real_process: bool = False
    # Fails after training has started, so progress lines come first; the error is the last line.
    after_training_started: bool = False

    def cells(self) -> list[str]:
        """The row of the docs table, one markdown cell per column."""
        cells = [f"`{self.id}`", self.bad_input, self.stage, f"`{self.message}`", str(self.exit)]
        return [cell.replace("|", "\\|") for cell in cells]


# -- the builders, in the order of the table -------------------------------------------------------


def params_not_yaml(project: Project) -> None:
    project.params(text="train:\n  lr: [1e-4\n  epochs: 3\n")


def params_missing(project: Project) -> None:
    (project.root / "params.yaml").unlink()


def params_not_utf8(project: Project) -> None:
    project.params(text="model:\n  name: caf\xe9\n".encode("latin-1"))


def params_not_a_mapping(project: Project) -> None:
    project.params(text="- train\n- lr: 1e-4\n")


def params_section_not_a_mapping(project: Project) -> None:
    project.params(text="train: 3\n")


def params_section_falsy(project: Project) -> None:
    project.params(text="train: false\n")


def params_unknown_key(project: Project) -> None:
    project.params({"train": {"epoch": 2}})


def params_wrong_type(project: Project) -> None:
    project.params({"train": {"epochs": "two"}})


def params_auto_key_without_auto(project: Project) -> None:
    project.params({"train": {"epochs": 3, "auto_min_steps": 500}})


def params_distill_without_teacher(project: Project) -> None:
    project.params({"train": {"distill_alpha": 0.5}})


def params_bool_for_int(project: Project) -> None:
    project.params({"train": {"batch_size": True}})


def params_lr_zero(project: Project) -> None:
    project.params({"train": {"lr": 0}})


def params_warmup_out_of_range(project: Project) -> None:
    project.params({"train": {"warmup_ratio": 1.5}})


def params_seed_negative(project: Project) -> None:
    project.params({"train": {"seed": -1}})


def params_select_fraction_out_of_range(project: Project) -> None:
    project.params({"data": {"select_fraction": 0.8}})


def params_select_fraction_without_select_best(project: Project) -> None:
    project.params({"data": {"select_fraction": 0.1}})


def params_patience_without_select_best(project: Project) -> None:
    project.params({"train": {"patience": 2}})


def params_class_weights_negative(project: Project) -> None:
    project.params({"train": {"class_weights": [1.0, -0.5]}})


def params_task_unknown(project: Project) -> None:
    project.params({"data": {"task": "multilabel"}})


def params_class_weights_for_regression(project: Project) -> None:
    project.params({"data": {"task": "regression"}, "train": {"class_weights": "balanced"}})


def params_select_metric_of_other_task(project: Project) -> None:
    project.params({"data": {"task": "regression", "select_fraction": 0.2}, "train": {"select_best": True}})


def params_select_threshold_single_label(project: Project) -> None:
    project.params({"data": {"select_fraction": 0.1}, "train": {"select_threshold": True}})


def params_select_threshold_without_slice(project: Project) -> None:
    project.params({"data": {"task": "multi_label"}, "train": {"select_threshold": True}})


def params_select_threshold_and_evaluate_threshold(project: Project) -> None:
    project.params(
        {
            "data": {"task": "multi_label", "select_fraction": 0.1},
            "train": {"select_threshold": True},
            "evaluate": {"threshold": 0.3},
        }
    )


def params_label_separator_for_single_label(project: Project) -> None:
    project.params({"data": {"label_separator": ","}})


def params_label_columns_for_regression(project: Project) -> None:
    project.params({"data": {"task": "regression", "label_columns": ["joy", "anger"]}})


def params_threshold_outside(project: Project) -> None:
    project.params({"evaluate": {"threshold": 1.0}})


def data_folder_missing(project: Project) -> None:
    project.params({"data": {"path": "./no-such-folder"}})


def data_hub_unknown_offline(project: Project) -> None:
    project.params({"data": {"path": "no-such-owner/no-such-dataset", "config": None}})


def data_missing_column(project: Project) -> None:
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    rows = {split: {"text": ["good", "bad"], "label": [1, 0]} for split in ("train", "validation", "test")}
    project.dataset(features=features, rows=rows)


def data_label_column_missing(project: Project) -> None:
    project.dataset()
    project.params({"data": {"label_column": "stars"}})


def _csv_splits(project: Project, name: str, rows: str) -> None:
    """A folder ``name`` in the project whose train.csv and validation.csv both hold ``rows``."""
    folder = project.root / name
    folder.mkdir()
    (folder / "train.csv").write_text(rows)
    (folder / "validation.csv").write_text(rows)


def params_three_text_columns(project: Project) -> None:
    project.params({"data": {"text_columns": ["a", "b", "c"]}})


def data_pair_text_empty(project: Project) -> None:
    _csv_splits(project, "pairs", "premise,hypothesis,label\na cat sits,an animal sits,1\nit rained,,0\n")
    project.params({"data": {"path": "./pairs", "text_columns": ["premise", "hypothesis"]}})


def data_no_validation_split(project: Project) -> None:
    folder = project.dataset()
    (folder / "validation.parquet").unlink()


def params_eval_fraction_out_of_range(project: Project) -> None:
    project.params({"data": {"eval_fraction": 0.7}})


def data_no_training_file(project: Project) -> None:
    folder = project.root / "mine"
    folder.mkdir()
    (folder / "reviews.csv").write_text("sentence,label\ngood,1\nbad,0\n")
    (folder / "notes.txt").write_text("the labelled reviews are in reviews.csv\n")
    project.params({"data": {"path": "./mine"}})


def data_txt_without_delimiter(project: Project) -> None:
    folder = project.root / "emotion"
    folder.mkdir()
    for name in ("train.txt", "val.txt"):
        (folder / name).write_text("text;label_name\ni feel great;joy\ni am so angry;anger\n")
    project.params({"data": {"path": "./emotion", "text_columns": ["text"], "label_column": "label_name"}})


def data_rows_lost(project: Project) -> None:
    folder = project.root / "sst2"
    folder.mkdir()
    # The quote opened on line 2 closes on line 4: a reader that honours quotes makes one row of three lines.
    rows = 'sentence\tlabel\n"a good\t1\nwarm film\t1\nodd" one\t0\na dull mess\t0\n'
    (folder / "train.tsv").write_text(rows)
    (folder / "validation.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\n")


def _pairs(project: Project, rows: str) -> None:
    folder = project.root / "pairs"
    folder.mkdir()
    (folder / "train.tsv").write_text(rows)
    (folder / "validation.tsv").write_text("sentence1\tsentence2\tlabel\ngood\tfine\t1\nbad\tfine\t0\n")
    project.params({"data": {"path": "./pairs", "text_columns": ["sentence1", "sentence2"]}})


def data_quote_never_closed(project: Project) -> None:
    _pairs(project, 'sentence1\tsentence2\tlabel\ngood\tfine\t1\nbad\tfine\t0\n"so it goes\tfine\t1\nok\tfine\t0\n')


def data_quote_adds_fields(project: Project) -> None:
    # The quote closes on the next line, then a tab inside the "text" makes a fourth field.
    _pairs(project, 'sentence1\tsentence2\tlabel\ngood\tfine\t1\n"so\tit\t1\ngoes"\tx\ty\t0\nok\tfine\t0\n')


def data_label_outside_classes(project: Project) -> None:
    import datasets

    # Plain integer labels: the classes are those seen in train (0 and 1), which a ClassLabel would not let 7 into.
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.Value("int64"), "idx": datasets.Value("int32")}
    )
    project.dataset(
        rows={"validation": {"sentence": ["good", "odd"], "label": [1, 7], "idx": [0, 1]}}, features=features
    )


def data_single_class(project: Project) -> None:
    n = 8
    sentences = [f"a fine film {i}" for i in range(n)]
    project.dataset(rows={"train": {"sentence": sentences, "label": [1] * n, "idx": list(range(n))}})


def data_labels_mixed(project: Project) -> None:
    _csv_splits(project, "sst2", "sentence,label\na good film,1\na dull mess,0\nso happy,joy\n")


def _scores(project: Project, rows: str) -> None:
    _csv_splits(project, "scores", rows)
    project.params({"data": {"path": "./scores", "task": "regression", "label_column": "score"}})


def data_score_not_a_number(project: Project) -> None:
    _scores(project, "sentence,score\na good film,4.5\na dull mess,5.0x\nfine,2.25\n")


def data_scores_constant(project: Project) -> None:
    _scores(project, "sentence,score\na good film,3\na dull mess,3.0\nfine,3\n")


def _label_sets(project: Project, rows: str, **data) -> None:
    _csv_splits(project, "emotions", rows)
    project.params({"data": {"path": "./emotions", "task": "multi_label", "label_column": "labels", **data}})


def data_label_id_outside_names(project: Project) -> None:
    _label_sets(
        project,
        'sentence,labels\na good film,0\na dull mess,"1,2"\nfine,\n',
        label_separator=",",
        label_names=["joy", "anger"],
    )


def data_label_ids_unnamed(project: Project) -> None:
    _label_sets(project, 'sentence,labels\na good film,0\na dull mess,"0,1"\nfine,\n', label_separator=",")


def data_label_sets_without_separator(project: Project) -> None:
    _label_sets(project, "sentence,labels\na good film,joy\na dull mess,anger\n")


def data_label_column_not_a_flag(project: Project) -> None:
    _csv_splits(project, "emotions", "sentence,joy,anger\na good film,1,0\na dull mess,0,yes\nfine,0,0\n")
    project.params({"data": {"path": "./emotions", "task": "multi_label", "label_columns": ["joy", "anger"]}})


def data_empty_split(project: Project) -> None:
    project.dataset(n_validation=0)


def data_not_utf8(project: Project) -> None:
    folder = project.root / "sst2"
    folder.mkdir()
    (folder / "train.csv").write_bytes("sentence,label\na good film,1\na caf\xe9 scene,1\n".encode("latin-1"))
    (folder / "validation.csv").write_bytes(b"sentence,label\nwarm and funny,1\na dull mess,0\n")


def data_bytes_not_utf8(project: Project) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = project.root / "sst2"
    folder.mkdir()
    for split in ("train", "validation"):
        sentences = pa.array([b"a good film", "a caf\xe9 scene".encode("latin-1")], pa.binary())
        pq.write_table(pa.table({"sentence": sentences, "label": [1, 1]}), folder / f"{split}.parquet")


def data_empty_text(project: Project) -> None:
    project.dataset(rows={"train": {"sentence": ["a good film", "  "], "label": [1, 0], "idx": [0, 1]}})


def tokenize_before_download(project: Project) -> None:
    project.model()


def model_unknown_offline(project: Project) -> None:
    project.copy_prepared("data/raw")
    project.params({"model": {"name": "no-such-owner/no-such-model"}})


def model_folder_missing(project: Project) -> None:
    project.copy_prepared("data/raw")
    project.params({"model": {"name": "./no-such-model"}})


def model_folder_not_a_model(project: Project) -> None:
    project.copy_prepared("data/raw")
    (project.root / "my-model").mkdir()
    (project.root / "my-model" / "pytorch_model.bin").write_bytes(b"weights without their config.json")
    project.params({"model": {"name": "./my-model"}})


def max_length_no_room(project: Project) -> None:
    project.copy_prepared("data/raw")
    project.model()
    project.params({"tokenize": {"max_length": 2}})  # [CLS] and [SEP] fill it


def max_length_over_model_limit(project: Project) -> None:
    project.copy_prepared("data/raw")
    project.model()
    project.params({"tokenize": {"max_length": 512}})  # the tiny model has 64 positions


def train_processes_over_cores(project: Project) -> None:
    project.copy_prepared("data/tokenized")
    project.params({"train": {"processes": 64, "device": "cpu"}})  # 64 workers of a whole model each


def train_class_weights_wrong_length(project: Project) -> None:
    project.copy_prepared("data/tokenized")
    project.model()
    project.params({"train": {"class_weights": [1.0, 2.0, 3.0]}})


def train_select_best_without_slice(project: Project) -> None:
    project.copy_prepared("data/tokenized")  # tokenized without data.select_fraction
    project.model()
    project.params({"train": {"select_best": True}})


def cache_other_tokenizer(project: Project) -> None:
    from transformers import AutoTokenizer

    project.copy_prepared("data/tokenized")  # made with ./tiny-bert's tokenizer
    project.model()
    other = project.root / "other-model"
    shutil.copytree(project.root / "tiny-bert", other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["moviegoer"])  # one more token: another vocabulary, another fingerprint
    tokenizer.save_pretrained(other)
    project.params({"model": {"name": "./other-model"}})


def evaluate_before_train(project: Project) -> None:
    project.copy_prepared("data/tokenized")


def _save_file_that_stops_halfway(error: Callable[[str], BaseException]):
    """A stand-in for safetensors' save_file that writes part of its file, then fails with ``error(filename)``."""

    def save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 4096)
        raise error(str(filename))

    return save_file


def disk_full_tokenize(project: Project) -> None:
    import pipeline.tokenization

    project.copy_prepared("data/raw")
    project.model()
    full = _save_file_that_stops_halfway(lambda filename: OSError(errno.ENOSPC, "No space left on device", filename))
    project.monkeypatch.setattr(pipeline.tokenization, "save_file", full)


def disk_full_safetensors(project: Project) -> None:
    from safetensors import SafetensorError

    import pipeline.tokenization

    project.copy_prepared("data/raw")
    project.model()
    # What safetensors really raises on a full disk: its own error type, the errno only in the text.
    full = _save_file_that_stops_halfway(
        lambda filename: SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    )
    project.monkeypatch.setattr(pipeline.tokenization, "save_file", full)


def disk_full_download(project: Project) -> None:
    import pipeline.data

    project.dataset()

    def write_table(table, where, *args, **kwargs):
        Path(where).write_bytes(b"PAR1" + b"\0" * 4096)
        # pyarrow's own wording, with the errno but no file name
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    project.monkeypatch.setattr(pipeline.data.pq, "write_table", write_table)


def interrupted(project: Project) -> None:
    import pipeline.tokenization

    project.copy_prepared("data/raw")
    project.model()
    ctrl_c = _save_file_that_stops_halfway(lambda filename: KeyboardInterrupt())
    project.monkeypatch.setattr(pipeline.tokenization, "save_file", ctrl_c)


def predict_model_missing(project: Project) -> None:
    project.argv = ["--model", "./no-such-model", "a gorgeous film"]


def predict_not_a_classifier(project: Project) -> None:
    project.model()  # a pretrained encoder without a classification head
    project.argv = ["--model", "./tiny-bert", "a gorgeous film"]


def predict_input_missing(project: Project) -> None:
    project.classifier()
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


def predict_input_empty(project: Project) -> None:
    project.classifier()
    (project.root / "reviews.csv").write_bytes(b"")
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


def predict_input_not_utf8(project: Project) -> None:
    project.classifier()
    (project.root / "reviews.csv").write_bytes("sentence\na caf\xe9 scene\n".encode("latin-1"))
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


def predict_text_column_missing(project: Project) -> None:
    project.classifier()
    (project.root / "reviews.csv").write_text("review,stars\na gorgeous film,5\n")
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


def predict_empty_text(project: Project) -> None:
    project.classifier()
    (project.root / "reviews.csv").write_text('sentence\na gorgeous film\n" "\n')
    project.argv = ["--model", "./classifier", "--input", "reviews.csv"]


def predict_output_exists(project: Project) -> None:
    project.classifier()
    (project.root / "labels.csv").write_text("text,label\nlabels a user made earlier,positive\n")
    project.argv = ["--model", "./classifier", "--output", "labels.csv", "a gorgeous film"]


def predict_onnx_not_exported(project: Project) -> None:
    project.argv = ["--backend", "onnx", "a gorgeous film"]


def predict_int8_without_onnx(project: Project) -> None:
    project.classifier()
    project.argv = ["--model", "./classifier", "--precision", "int8", "a gorgeous film"]


def predict_int8_not_shipped(project: Project) -> None:
    project.onnx_folder(b"the fp32 model alone: int8 failed its checks")
    project.argv = ["--backend", "onnx", "--precision", "int8", "a gorgeous film"]


def predict_onnx_damaged(project: Project) -> None:
    project.onnx_folder(b"a file cut short while copying")
    project.argv = ["--backend", "onnx", "--precision", "fp32", "a gorgeous film"]


def predict_onnx_without_backend(project: Project) -> None:
    project.onnx_folder(b"an ONNX model")
    project.argv = ["--model", "models/onnx", "a gorgeous film"]


def export_before_train(project: Project) -> None:
    project.copy_prepared("data/raw")


def params_export_tolerance(project: Project) -> None:
    project.params({"export": {"fp32_tolerance": 0}})


class _Stop(Exception):
    pass


def _interrupted_training(project: Project) -> Path:
    """A train run stopped after its checkpoint at step 2 of 4; returns that checkpoint's folder."""
    import pipeline.training
    from pipeline.checkpoint import CheckpointFolder
    from pipeline.config import load_params

    project.copy_prepared("data/tokenized")
    project.model()
    project.params({"train": {"checkpoint_every_steps": 2}})
    real_save = CheckpointFolder.save

    def stop_after_step_2(self, step, *args, **kwargs):
        saved = real_save(self, step, *args, **kwargs)
        if step == 2:
            raise _Stop
        return saved

    with project.monkeypatch.context() as patch, contextlib.chdir(project.root), contextlib.suppress(_Stop):
        patch.setattr(CheckpointFolder, "save", stop_after_step_2)
        pipeline.training.run_train_stage(
            load_params(), "data/tokenized", "models/classifier", "metrics/train", "checkpoints/train"
        )
    folder = project.root / "checkpoints" / "train" / "step-0000002"
    assert (folder / "state.json").is_file()
    return folder


def checkpoint_corrupt(project: Project) -> None:
    weights = _interrupted_training(project) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    weights.write_bytes(bytes(data))


def checkpoint_truncated(project: Project) -> None:
    optimizer = _interrupted_training(project) / "optimizer.safetensors"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])


def checkpoint_state_damaged(project: Project) -> None:
    state = _interrupted_training(project) / "state.json"
    state.write_text(state.read_text()[:100])


def disk_full_checkpoint(project: Project) -> None:
    from safetensors import SafetensorError

    import pipeline.checkpoint

    _interrupted_training(project)
    full = _save_file_that_stops_halfway(
        lambda filename: SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    )
    project.monkeypatch.setattr(pipeline.checkpoint, "save_file", full)


# -- the table ----------------------------------------------------------------------------------------

# One row of docs/reliability.md each, in its order.
CASES: list[Case] = [
    Case(
        id="params-not-yaml",
        bad_input="`params.yaml` is not YAML (an unclosed `[`)",
        stage="download",
        message="params.yaml: not valid YAML at line 3, column 9",
        exit=2,
        build=params_not_yaml,
        real_process=True,
    ),
    Case(
        id="params-missing",
        bad_input="no `params.yaml` in the working directory",
        stage="download",
        message="params.yaml: file not found (run from the project root, or pass --params PATH)",
        exit=2,
        build=params_missing,
    ),
    Case(
        id="params-not-utf8",
        bad_input="`params.yaml` saved as Latin-1",
        stage="download",
        message="params.yaml: not UTF-8 text (save it as UTF-8)",
        exit=2,
        build=params_not_utf8,
    ),
    Case(
        id="params-not-a-mapping",
        bad_input="`params.yaml` is a list, not sections",
        stage="download",
        message="params.yaml: expected a mapping of sections (data, model, ...), got list",
        exit=2,
        build=params_not_a_mapping,
    ),
    Case(
        id="params-section-not-a-mapping",
        bad_input="`train: 3`",
        stage="train",
        message="invalid parameter train=3: expected a mapping of train.* keys",
        exit=2,
        build=params_section_not_a_mapping,
    ),
    Case(
        id="params-section-falsy",
        bad_input='`train: false` (or `0`, `[]`, `""`), which once meant all defaults',
        stage="train",
        message=(
            "invalid parameter train=False: expected a mapping of train.* keys "
            "(or leave the section out for all defaults)"
        ),
        exit=2,
        build=params_section_falsy,
    ),
    Case(
        id="params-unknown-key",
        bad_input="misspelled key `train.epoch`",
        stage="train",
        message="unknown parameter train.epoch in params.yaml (did you mean train.epochs?)",
        exit=2,
        build=params_unknown_key,
    ),
    Case(
        id="params-wrong-type",
        bad_input="`train.epochs: two`",
        stage="train",
        message="invalid parameter train.epochs='two': expected an integer >= 1 or auto",
        exit=2,
        build=params_wrong_type,
    ),
    Case(
        id="params-auto-key-without-auto",
        bad_input="`train.auto_min_steps: 500` with `train.epochs: 3`",
        stage="train",
        message="train.auto_min_steps=500 shapes train.epochs: auto only, and train.epochs is 3: "
        "set train.epochs: auto, or leave train.auto_min_steps at its default (2000)",
        exit=2,
        build=params_auto_key_without_auto,
    ),
    Case(
        id="params-distill-without-teacher",
        bad_input="`train.distill_alpha: 0.5` with `teacher.model_name: null`",
        stage="train",
        message="train.distill_alpha=0.5 distils a teacher, and teacher.model_name is null: name the teacher",
        exit=2,
        build=params_distill_without_teacher,
    ),
    Case(
        id="params-bool-for-int",
        bad_input="`train.batch_size: true`",
        stage="train",
        message="invalid parameter train.batch_size=True: expected an integer",
        exit=2,
        build=params_bool_for_int,
    ),
    Case(
        id="params-lr-zero",
        bad_input="`train.lr: 0`",
        stage="train",
        message="invalid parameter train.lr=0.0: expected a number > 0",
        exit=2,
        build=params_lr_zero,
    ),
    Case(
        id="params-warmup-out-of-range",
        bad_input="`train.warmup_ratio: 1.5`",
        stage="train",
        message="invalid parameter train.warmup_ratio=1.5: expected a number in [0, 1)",
        exit=2,
        build=params_warmup_out_of_range,
    ),
    Case(
        id="params-seed-negative",
        bad_input="`train.seed: -1`",
        stage="train",
        message="invalid parameter train.seed=-1: expected an integer in [0, 2**32)",
        exit=2,
        build=params_seed_negative,
    ),
    Case(
        id="params-select-fraction-out-of-range",
        bad_input="`data.select_fraction: 0.8`",
        stage="download",
        message="invalid parameter data.select_fraction=0.8: expected null or a number in (0, 0.5]",
        exit=2,
        build=params_select_fraction_out_of_range,
    ),
    Case(
        id="params-select-fraction-without-select-best",
        bad_input="`data.select_fraction: 0.1` with `train.select_best: false`",
        stage="download",
        message="data.select_fraction=0.1 carves a slice out of training that only train.select_best and "
        "train.select_threshold use",
        exit=2,
        build=params_select_fraction_without_select_best,
    ),
    Case(
        id="params-patience-without-select-best",
        bad_input="`train.patience: 2` with `train.select_best: false`",
        stage="train",
        message="invalid parameter train.patience=2: expected 0 unless train.select_best is true",
        exit=2,
        build=params_patience_without_select_best,
    ),
    Case(
        id="params-class-weights-negative",
        bad_input="`train.class_weights: [1.0, -0.5]`",
        stage="train",
        message="invalid parameter train.class_weights=[1.0, -0.5]: expected one number > 0 per class (or balanced)",
        exit=2,
        build=params_class_weights_negative,
    ),
    Case(
        id="params-task-unknown",
        bad_input="`data.task: multilabel`",
        stage="train",
        message="invalid parameter data.task='multilabel': expected one of single_label, multi_label, regression",
        exit=2,
        build=params_task_unknown,
    ),
    Case(
        id="params-class-weights-for-regression",
        bad_input="`train.class_weights: balanced` with `data.task: regression`",
        stage="train",
        message="invalid parameter train.class_weights='balanced': expected null with data.task=regression",
        exit=2,
        build=params_class_weights_for_regression,
    ),
    Case(
        id="params-select-metric-of-other-task",
        bad_input="`train.select_metric: accuracy` (the default) with `data.task: regression` and `train.select_best`",
        stage="train",
        message="invalid parameter train.select_metric='accuracy': expected one of pearson, spearman, mse, loss "
        "with data.task=regression",
        exit=2,
        build=params_select_metric_of_other_task,
    ),
    Case(
        id="params-select-threshold-single-label",
        bad_input="`train.select_threshold: true` with `data.task: single_label`",
        stage="train",
        message="invalid parameter train.select_threshold=True: expected false with data.task=single_label "
        "(a threshold is multi-label's)",
        exit=2,
        build=params_select_threshold_single_label,
    ),
    Case(
        id="params-select-threshold-without-slice",
        bad_input="`train.select_threshold: true` with `data.select_fraction: null`",
        stage="train",
        message="train.select_threshold chooses the threshold on the select slice carved from training, and "
        "data.select_fraction is null: set data.select_fraction (e.g. 0.1)",
        exit=2,
        build=params_select_threshold_without_slice,
    ),
    Case(
        id="params-select-threshold-and-evaluate-threshold",
        bad_input="`train.select_threshold: true` with `evaluate.threshold: 0.3`",
        stage="evaluate",
        message="evaluate.threshold=0.3 and train.select_threshold: true both set the multi-label threshold: "
        "leave evaluate.threshold at 0.5, or set train.select_threshold: false",
        exit=2,
        build=params_select_threshold_and_evaluate_threshold,
    ),
    Case(
        id="params-label-separator-for-single-label",
        bad_input="`data.label_separator: ','` with `data.task: single_label`",
        stage="train",
        message="invalid parameter data.label_separator=',': expected null unless data.task is multi_label",
        exit=2,
        build=params_label_separator_for_single_label,
    ),
    Case(
        id="params-label-columns-for-regression",
        bad_input="`data.label_columns: [joy, anger]` with `data.task: regression`",
        stage="train",
        message="invalid parameter data.label_columns=['joy', 'anger']: expected null unless data.task is multi_label",
        exit=2,
        build=params_label_columns_for_regression,
    ),
    Case(
        id="params-threshold-outside",
        bad_input="`evaluate.threshold: 1.0`",
        stage="evaluate",
        message="invalid parameter evaluate.threshold=1.0: expected a number in (0, 1), e.g. 0.5",
        exit=2,
        build=params_threshold_outside,
    ),
    Case(
        id="data-folder-missing",
        bad_input="`data.path` names a folder that does not exist",
        stage="download",
        message="data.path='./no-such-folder': no such directory",
        exit=2,
        build=data_folder_missing,
    ),
    Case(
        id="data-hub-unknown-offline",
        bad_input="`data.path` is a Hub id that is not in the offline cache",
        stage="download",
        message="dataset 'no-such-owner/no-such-dataset' (data.path) could not be loaded",
        exit=2,
        build=data_hub_unknown_offline,
    ),
    Case(
        id="data-missing-column",
        bad_input="the data has a `text` column instead of `sentence`",
        stage="download",
        message="data.path='./sst2': split 'train' lacks column(s) ['sentence']; it has ['text', 'label']",
        exit=2,
        build=data_missing_column,
    ),
    Case(
        id="data-label-column-missing",
        bad_input="`data.label_column: stars`, a column the data lacks",
        stage="download",
        message="data.path='./sst2': split 'train' lacks column(s) ['stars']; it has ['sentence', 'label', 'idx']",
        exit=2,
        build=data_label_column_missing,
    ),
    Case(
        id="params-three-text-columns",
        bad_input="`data.text_columns: [a, b, c]`",
        stage="download",
        message=(
            "invalid parameter data.text_columns=['a', 'b', 'c']: "
            "expected one column (single texts) or two different ones (sentence pairs)"
        ),
        exit=2,
        build=params_three_text_columns,
    ),
    Case(
        id="data-pair-text-empty",
        bad_input="a sentence pair whose second text is blank",
        stage="download",
        message="data.path='./pairs': split 'train' row 1 has an empty or missing 'hypothesis'",
        exit=2,
        build=data_pair_text_empty,
    ),
    Case(
        id="data-no-validation-split",
        bad_input="the data folder has no validation file",
        stage="download",
        message="data.path='./sst2': has no 'validation' split",
        exit=2,
        build=data_no_validation_split,
    ),
    Case(
        id="params-eval-fraction-out-of-range",
        bad_input="`data.eval_fraction: 0.7`",
        stage="download",
        message="invalid parameter data.eval_fraction=0.7: expected null or a number in (0, 0.5]",
        exit=2,
        build=params_eval_fraction_out_of_range,
    ),
    Case(
        id="data-no-training-file",
        bad_input="a folder with no file named like a training split",
        stage="download",
        message="data.path='./mine': no training file found (it holds notes.txt, reviews.csv)",
        exit=2,
        build=data_no_training_file,
    ),
    Case(
        id="data-txt-without-delimiter",
        bad_input="`.txt` files of `;`-separated fields, `data.delimiter` not set",
        stage="download",
        message="data.path='./emotion': .txt files are delimited text, but with which delimiter? Set data.delimiter",
        exit=2,
        build=data_txt_without_delimiter,
    ),
    Case(
        id="data-rows-lost",
        bad_input="a quote opened in one field closes lines later, read with quotes honoured",
        stage="download",
        message=(
            "sst2/train.tsv: 4 data lines but 2 rows read, so rows were merged or split: "
            'most likely by quote characters (") that are part of the text (set data.quoting: false)'
        ),
        exit=2,
        build=data_rows_lost,
    ),
    Case(
        id="data-quote-never-closed",
        bad_input="a sentence of a pair file opens a quote that never closes, read with quotes honoured",
        stage="download",
        message='pairs/train.tsv: line 4 opens a quote (") that does not close on that line, so the reader merges '
        "lines (EOF inside string starting at row 3); set data.quoting: false",
        exit=2,
        build=data_quote_never_closed,
    ),
    Case(
        id="data-quote-adds-fields",
        bad_input="a quoted field that swallows a line's end, so a later line has a field too many",
        stage="download",
        message='pairs/train.tsv: line 3 opens a quote (") that does not close on that line, so the reader merges '
        "lines (Expected 3 fields in line 3, saw 4); set data.quoting: false",
        exit=2,
        build=data_quote_adds_fields,
    ),
    Case(
        id="data-label-outside-classes",
        bad_input="a validation label 7 where training has only 0 and 1",
        stage="download",
        message=(
            "data.path='./sst2': split 'validation' row 1 has label 7, which never occurs in training (classes: 0, 1)"
        ),
        exit=2,
        build=data_label_outside_classes,
        real_process=True,
    ),
    Case(
        id="data-single-class",
        bad_input="every training example has the same label",
        stage="download",
        message="data.path='./sst2': the training examples all have one class ('positive')",
        exit=2,
        build=data_single_class,
    ),
    Case(
        id="data-labels-mixed",
        bad_input="labels `1`, `0` and `joy` in one column",
        stage="download",
        message="data.path='./sst2': the 'label' column mixes numbers and strings (e.g. '1' and 'joy')",
        exit=2,
        build=data_labels_mixed,
    ),
    Case(
        id="data-score-not-a-number",
        bad_input="`data.task: regression` and a score `5.0x`",
        stage="download",
        message="data.path='./scores': split 'train' row 1 has 'score' '5.0x', which is not a finite number",
        exit=2,
        build=data_score_not_a_number,
    ),
    Case(
        id="data-scores-constant",
        bad_input="`data.task: regression` and every training score the same",
        stage="download",
        message="data.path='./scores': every train example has the same 'score' (3)",
        exit=2,
        build=data_scores_constant,
    ),
    Case(
        id="data-label-id-outside-names",
        bad_input="`data.task: multi_label`, `data.label_names: [joy, anger]` and a row labelled `1,2`",
        stage="download",
        message="data.path='./emotions': split 'train' row 1 has label '2', not one of data.label_names (ids 0..1)",
        exit=2,
        build=data_label_id_outside_names,
    ),
    Case(
        id="data-label-ids-unnamed",
        bad_input="`data.task: multi_label`, label ids `0,1` and no `data.label_names`",
        stage="download",
        message="data.path='./emotions': the 'labels' labels are integer ids, and nothing names them; set "
        "data.label_names",
        exit=2,
        build=data_label_ids_unnamed,
    ),
    Case(
        id="data-label-sets-without-separator",
        bad_input="`data.task: multi_label` with a text label column and no `data.label_separator`",
        stage="download",
        message="data.path='./emotions': the 'labels' column holds text ('joy' in split 'train'), not a list of "
        "labels; set data.label_separator",
        exit=2,
        build=data_label_sets_without_separator,
    ),
    Case(
        id="data-label-column-not-a-flag",
        bad_input="`data.label_columns: [joy, anger]` and `yes` in `anger`",
        stage="download",
        message="data.path='./emotions': split 'train' row 1 has 'yes' in label column 'anger'; each of "
        "data.label_columns holds 0 or 1",
        exit=2,
        build=data_label_column_not_a_flag,
    ),
    Case(
        id="data-empty-split",
        bad_input="`validation.parquet` has no rows",
        stage="download",
        message="data.path='./sst2': could not read a dataset there: split 'validation' has no rows",
        exit=2,
        build=data_empty_split,
    ),
    Case(
        id="data-not-utf8",
        bad_input="`train.csv` saved as Latin-1 (`café` on line 3)",
        stage="download",
        message="data.path='./sst2': train.csv is not UTF-8 text (byte 0xe9 on line 3)",
        exit=2,
        build=data_not_utf8,
    ),
    Case(
        id="data-bytes-not-utf8",
        bad_input="a binary `sentence` column holding Latin-1 bytes",
        stage="download",
        message="data.path='./sst2': split 'train' row 1 has a 'sentence' that is not UTF-8 text",
        exit=2,
        build=data_bytes_not_utf8,
    ),
    Case(
        id="data-empty-text",
        bad_input="a blank sentence",
        stage="download",
        message="data.path='./sst2': split 'train' row 1 has an empty or missing 'sentence'",
        exit=2,
        build=data_empty_text,
    ),
    Case(
        id="tokenize-before-download",
        bad_input="no `data/raw` (the download stage never ran)",
        stage="tokenize",
        message="data/raw/info.json not found: run the download stage first (dvc repro download)",
        exit=2,
        build=tokenize_before_download,
    ),
    Case(
        id="model-unknown-offline",
        bad_input="`model.name` is a Hub id that is not in the offline cache",
        stage="tokenize",
        message="model 'no-such-owner/no-such-model' (model.name) could not be loaded",
        exit=2,
        build=model_unknown_offline,
        real_process=True,
    ),
    Case(
        id="model-folder-missing",
        bad_input="`model.name` names a folder that does not exist",
        stage="tokenize",
        message="model.name='./no-such-model': no such model folder",
        exit=2,
        build=model_folder_missing,
    ),
    Case(
        id="model-folder-not-a-model",
        bad_input="`model.name` names a folder without `config.json`",
        stage="tokenize",
        message="model.name='./my-model': folder has no config.json",
        exit=2,
        build=model_folder_not_a_model,
    ),
    Case(
        id="max-length-no-room",
        bad_input="`tokenize.max_length: 2`, which a model's `[CLS]` and `[SEP]` fill",
        stage="tokenize",
        message=(
            "invalid parameter tokenize.max_length=2: ./tiny-bert adds 2 special tokens to each text, "
            "which leaves no room for the text"
        ),
        exit=2,
        build=max_length_no_room,
    ),
    Case(
        id="max-length-over-model-limit",
        bad_input="`tokenize.max_length: 512` for a model with 64 positions",
        stage="tokenize",
        message="invalid parameter tokenize.max_length=512: ./tiny-bert accepts at most 64 tokens",
        exit=2,
        build=max_length_over_model_limit,
    ),
    Case(
        id="train-processes-over-cores",
        bad_input="`train.processes: 64` (with `train.device: cpu`) on a machine with fewer cores",
        stage="train",
        message="train.processes=64 but this machine has",
        exit=2,
        build=train_processes_over_cores,
    ),
    Case(
        id="train-select-best-without-slice",
        bad_input="`train.select_best: true` on a cache tokenized without `data.select_fraction`",
        stage="train",
        message="train.select_best needs the select slice carved from training, and the tokenized cache has none",
        exit=2,
        build=train_select_best_without_slice,
    ),
    Case(
        id="train-class-weights-wrong-length",
        bad_input="`train.class_weights` with 3 weights for data with 2 classes",
        stage="train",
        message="train.class_weights has 3 weights but the data has 2 classes (negative, positive)",
        exit=2,
        build=train_class_weights_wrong_length,
    ),
    Case(
        id="cache-other-tokenizer",
        bad_input="`data/tokenized` made with another model's tokenizer than `model.name`",
        stage="train",
        message=(
            "the tokenized cache was made with the tokenizer of './tiny-bert', not that of model.name='./other-model'"
        ),
        exit=2,
        build=cache_other_tokenizer,
    ),
    Case(
        id="evaluate-before-train",
        bad_input="no `models/classifier` (the train stage never ran)",
        stage="evaluate",
        message="models/classifier: no fine-tuned model here (run the train stage first: dvc repro train)",
        exit=2,
        build=evaluate_before_train,
    ),
    Case(
        id="disk-full-tokenize",
        bad_input="the disk fills up while a tokenized split is written (`OSError` ENOSPC)",
        stage="tokenize",
        message="no space left on the device while writing data/tokenized/train.safetensors",
        exit=2,
        build=disk_full_tokenize,
    ),
    Case(
        id="disk-full-safetensors",
        bad_input='the same, as safetensors reports it (`SafetensorError`, "os error 28")',
        stage="tokenize",
        message="no space left on the device while writing data/tokenized",
        exit=2,
        build=disk_full_safetensors,
    ),
    Case(
        id="disk-full-download",
        bad_input="the disk fills up while a split is written to Parquet (no file name in the error)",
        stage="download",
        message="no space left on the device while writing data/raw",
        exit=2,
        build=disk_full_download,
    ),
    Case(
        id="interrupted",
        bad_input="Ctrl-C while a tokenized split is written",
        stage="tokenize",
        message="interrupted; no partial output was kept",
        exit=130,
        build=interrupted,
    ),
    Case(
        id="predict-model-missing",
        bad_input="`python -m pipeline predict --model ./no-such-model …`",
        stage="predict",
        message="--model no-such-model: no fine-tuned model here (train one: dvc repro train)",
        exit=2,
        build=predict_model_missing,
    ),
    Case(
        id="predict-not-a-classifier",
        bad_input="`--model` names a pretrained encoder without a classification head",
        stage="predict",
        message="--model tiny-bert: BertModel is not a sequence classifier",
        exit=2,
        build=predict_not_a_classifier,
    ),
    Case(
        id="predict-input-missing",
        bad_input="`--input reviews.csv`, which does not exist",
        stage="predict",
        message="--input reviews.csv: no such file",
        exit=2,
        build=predict_input_missing,
    ),
    Case(
        id="predict-input-empty",
        bad_input="`--input` names an empty file",
        stage="predict",
        message="--input reviews.csv: the file is empty",
        exit=2,
        build=predict_input_empty,
    ),
    Case(
        id="predict-input-not-utf8",
        bad_input="`--input` saved as Latin-1",
        stage="predict",
        message="--input reviews.csv: reviews.csv is not UTF-8 text (byte 0xe9 on line 2)",
        exit=2,
        build=predict_input_not_utf8,
    ),
    Case(
        id="predict-text-column-missing",
        bad_input="the input file has `review`, not the training text column `sentence`",
        stage="predict",
        message=(
            "--input reviews.csv: no column 'sentence'; it has ['review', 'stars'] "
            "(name the text column with --text-column)"
        ),
        exit=2,
        build=predict_text_column_missing,
    ),
    Case(
        id="predict-empty-text",
        bad_input="a blank text in the input file",
        stage="predict",
        message="reviews.csv row 1 is empty: every input needs text",
        exit=2,
        build=predict_empty_text,
    ),
    Case(
        id="predict-output-exists",
        bad_input="`--output labels.csv`, a file that exists",
        stage="predict",
        message="--output labels.csv: the file exists; pass --overwrite to replace it",
        exit=2,
        build=predict_output_exists,
    ),
    Case(
        id="predict-onnx-not-exported",
        bad_input="`--backend onnx` before the export stage ran (no `models/onnx`)",
        stage="predict",
        message="--model models/onnx: no ONNX model here (export one: dvc repro export)",
        exit=2,
        build=predict_onnx_not_exported,
    ),
    Case(
        id="predict-int8-without-onnx",
        bad_input="`--precision int8` with the PyTorch model",
        stage="predict",
        message="--precision int8 runs the exported model: add --backend onnx",
        exit=2,
        build=predict_int8_without_onnx,
    ),
    Case(
        id="predict-int8-not-shipped",
        bad_input="`--backend onnx --precision int8` where int8 failed the export stage's checks",
        stage="predict",
        message="--model models/onnx: no int8 model; the export stage left it out",
        exit=2,
        build=predict_int8_not_shipped,
    ),
    Case(
        id="predict-onnx-damaged",
        bad_input="`--backend onnx` with a `model.onnx` that is not an ONNX model",
        stage="predict",
        message="--model models/onnx: model.onnx cannot be loaded; rerun: dvc repro --force export",
        exit=2,
        build=predict_onnx_damaged,
    ),
    Case(
        id="predict-onnx-without-backend",
        bad_input="`--model models/onnx` without `--backend onnx`",
        stage="predict",
        message="--model models/onnx: this is the export stage's ONNX model; add --backend onnx",
        exit=2,
        build=predict_onnx_without_backend,
    ),
    Case(
        id="export-before-train",
        bad_input="no `models/classifier` (the train stage never ran)",
        stage="export",
        message="--model models/classifier: no fine-tuned model here (train one: dvc repro train)",
        exit=2,
        build=export_before_train,
    ),
    Case(
        id="params-export-tolerance",
        bad_input="`export.fp32_tolerance: 0`",
        stage="export",
        message="invalid parameter export.fp32_tolerance=0.0: expected a number in (0, 1), e.g. 1e-4",
        exit=2,
        build=params_export_tolerance,
    ),
    Case(
        id="checkpoint-corrupt",
        bad_input="a byte of a checkpoint's weights changed on disk",
        stage="train",
        message="checkpoint checkpoints/train/step-0000002 is unusable: model.safetensors is damaged or truncated",
        exit=2,
        build=checkpoint_corrupt,
    ),
    Case(
        id="checkpoint-truncated",
        bad_input="a checkpoint's optimizer file cut in half",
        stage="train",
        message="checkpoint checkpoints/train/step-0000002 is unusable: optimizer.safetensors is damaged or truncated",
        exit=2,
        build=checkpoint_truncated,
    ),
    Case(
        id="checkpoint-state-damaged",
        bad_input="a checkpoint's `state.json` cut short",
        stage="train",
        message="checkpoint checkpoints/train/step-0000002 is unusable: state.json is damaged",
        exit=2,
        build=checkpoint_state_damaged,
    ),
    Case(
        id="disk-full-checkpoint",
        bad_input="the disk fills up while a checkpoint is written (the run had resumed from an earlier one)",
        stage="train",
        message="no space left on the device while writing checkpoints/train/step-0000004",
        exit=2,
        build=disk_full_checkpoint,
        after_training_started=True,
    ),
]


def markdown_table() -> str:
    """The bad-input table of docs/reliability.md, as docs/generate.py writes it between the markers."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(case.cells()) + " |" for case in CASES]
    return "\n".join(lines) + "\n"
