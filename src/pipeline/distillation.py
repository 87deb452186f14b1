"""Stage teacher, and what the student's train stage reads from it (``train.distill_alpha`` < 1).

The teacher stage fine-tunes ``teacher.model_name`` on ``data/raw`` with the student's own loop
(:func:`pipeline.training.train`), tokenized with the teacher's tokenizer, then labels every
training example, in split order, and the augmented inputs of :mod:`pipeline.augment`. It writes

- ``data/teacher/``: ``logits.safetensors`` (``train`` and ``augmented``: one row of outputs per example),
  ``augmented.parquet`` (the augmented texts) and ``meta.json`` (the teacher, the task, the counts);
- ``models/teacher/``: the teacher (``save_pretrained``; ``predict`` and ``pipeline()`` load it as any model);
- ``metrics/teacher.json``: its validation scores.

With ``teacher.model_name: null`` it writes an empty ``data/teacher/`` and ``models/teacher/`` at once,
so the default pipeline never trains a teacher. docs/distillation.md says how to run it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from pipeline import tasks
from pipeline.augment import augment
from pipeline.config import ModelConfig, Params
from pipeline.data import EVAL_SPLIT, TRAIN_SPLIT, read_split
from pipeline.errors import PipelineError
from pipeline.evaluation import eval_loader, predict, score
from pipeline.modeling import load_finetuned, load_tokenizer
from pipeline.outputs import atomic_directory, read_json_output, write_json_atomic
from pipeline.parallel import limit_cpu_threads, pick_device
from pipeline.precision import autocast_for, precision_on
from pipeline.tokenization import TokenizedSplit, concatenate, encode, load_split, read_meta, tokenize

META_FILE, LOGITS_FILE, AUGMENTED_FILE = "meta.json", "logits.safetensors", "augmented.parquet"


def run_teacher_stage(
    params: Params, raw_dir, out_dir, model_dir, metrics_path, checkpoint_dir=None, live_dir=None
) -> dict:
    """Train the teacher, save it, and write its outputs for the student; returns ``metrics/teacher.json``."""
    from pipeline.training import train  # the train stage imports this module

    cfg = params.teacher
    if cfg.model_name is None:
        with atomic_directory(out_dir) as staging:
            write_json_atomic(staging / META_FILE, {"teacher": None})
        with atomic_directory(model_dir) as staging:  # DVC tracks a folder with a file in it
            (staging / "README.md").write_text("No teacher: teacher.model_name is null.\n", encoding="utf-8")
        write_json_atomic(metrics_path, {"teacher": None})
        return {"teacher": None}
    teacher_params = dataclasses.replace(params, model=ModelConfig(name=cfg.model_name), train=cfg.training())
    with tempfile.TemporaryDirectory() as work:
        tokenized = Path(work) / "tokenized"
        tokenize(teacher_params.model, params.tokenize, raw_dir, tokenized)
        train(teacher_params, tokenized, model_dir, live_dir or Path(work) / "live", checkpoint_dir)
        meta = read_meta(tokenized)
        labeller = Labeller(model_dir, meta, teacher_params.train.precision, cfg.batch_size)
        validation = labeller.predict(load_split(tokenized, EVAL_SPLIT))
        train_logits = labeller.predict(load_split(tokenized, TRAIN_SPLIT)).logits
    raw = read_split(raw_dir, TRAIN_SPLIT)
    texts, pairs = augment(raw.texts, raw.text_pairs, cfg.augment_copies, cfg.seed)
    augmented = labeller.label(texts, pairs, params.tokenize.max_length)
    metrics = {"teacher": cfg.model_name, **rounded(score(validation, n_classes=len(meta["label_names"])))}
    with atomic_directory(out_dir) as staging:
        save_file({"train": train_logits, "augmented": augmented}, staging / LOGITS_FILE)
        columns = {"text": pa.array(texts, pa.string())}
        if pairs is not None:
            columns["text_pair"] = pa.array(pairs, pa.string())
        pq.write_table(pa.table(columns), staging / AUGMENTED_FILE)
        write_json_atomic(
            staging / META_FILE,
            {
                "teacher": cfg.model_name,
                "task": labeller.task,
                "label_names": meta["label_names"],
                "n_train": len(train_logits),
                "n_augmented": len(augmented),
                "recipe": {f"teacher.{key}": value for key, value in dataclasses.asdict(cfg).items()},
            },
        )
    write_json_atomic(metrics_path, metrics)
    return metrics


class Labeller:
    """The trained teacher, predicting on one device (the teacher stage runs as one process)."""

    def __init__(self, model_dir, meta: dict, precision: str, batch_size: int) -> None:
        limit_cpu_threads()
        self.device = pick_device()
        self.model = load_finetuned(model_dir).to(self.device)
        self.tokenizer = load_tokenizer(str(model_dir))
        self.task = tasks.task_of_model(self.model.config)
        self.autocast = autocast_for(precision_on(precision, self.device), self.device)
        self.meta, self.batch_size = meta, batch_size

    def predict(self, split: TokenizedSplit):
        loader = eval_loader(split, self.batch_size, self.meta["pad_token_id"])
        return predict(self.model, loader, self.device, autocast=self.autocast, task=self.task)

    def label(self, texts: list[str], pairs: list[str] | None, max_length: int) -> torch.Tensor:
        """The teacher's outputs for new inputs, in their order."""
        n_outputs = self.model.config.num_labels
        if not texts:
            return torch.zeros((0, n_outputs))
        token_types = pairs is not None and "token_type_ids" in self.tokenizer.model_input_names
        split = encoded_split(encode(self.tokenizer, texts, max_length, pairs, token_types), self.task, n_outputs)
        return self.predict(split).logits


def encoded_split(encoded, task: str, n_outputs: int, labels: torch.Tensor | None = None) -> TokenizedSplit:
    """Token ids of new inputs as a split; ``labels``: None gives placeholders of the task's shape."""
    n = len(encoded.offsets) - 1
    if labels is None:
        shape = (n, n_outputs) if task == tasks.MULTI_LABEL else (n,)
        labels = torch.zeros(shape, dtype=torch.long if task == tasks.SINGLE_LABEL else torch.float32)
    types = torch.from_numpy(encoded.token_type_ids) if encoded.token_type_ids is not None else None
    return TokenizedSplit(torch.from_numpy(encoded.input_ids), torch.from_numpy(encoded.offsets), labels, types)


def rounded(metrics: dict) -> dict:
    return {name: round(value, 6) if isinstance(value, float) else value for name, value in metrics.items()}


def read_teacher(teacher_dir) -> tuple[dict, dict[str, torch.Tensor]]:
    teacher_dir = Path(teacher_dir)
    meta = read_json_output(teacher_dir / META_FILE, stage="teacher")
    if meta.get("teacher") is None:
        raise PipelineError(
            f"{teacher_dir} holds no teacher's outputs (teacher.model_name was null when it was made); "
            "set teacher.model_name and rerun: dvc repro"
        )
    try:
        return meta, load_file(teacher_dir / LOGITS_FILE)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise PipelineError(
            f"{teacher_dir / LOGITS_FILE} is damaged ({exc}); rerun: dvc repro --force teacher"
        ) from None


def student_split(
    train_split: TokenizedSplit, teacher_dir, student_meta: dict, tokenizer, token_types: bool
) -> tuple[TokenizedSplit, dict]:
    """The student's training split with the teacher's outputs as ``teacher_logits``, followed by the
    augmented inputs, tokenized with the student's tokenizer and labelled with the teacher's prediction;
    and the teacher's ``meta.json``."""
    meta, logits = read_teacher(teacher_dir)
    task = tasks.task_of(student_meta)
    if (
        meta["task"] != task
        or meta["label_names"] != student_meta["label_names"]
        or meta["n_train"] != len(train_split)
    ):
        raise PipelineError(
            f"the teacher's outputs in {teacher_dir} are for other data ({meta['n_train']:,} {meta['task']} training "
            f"examples, labels {meta['label_names']}) than the tokenized cache's ({len(train_split):,} {task}, "
            f"{student_meta['label_names']}); rerun: dvc repro teacher"
        )
    train_split = dataclasses.replace(train_split, teacher_logits=logits["train"])
    if not meta["n_augmented"]:
        return train_split, meta
    table = pq.read_table(Path(teacher_dir) / AUGMENTED_FILE)
    pairs = table.column("text_pair").to_pylist() if "text_pair" in table.column_names else None
    encoded = encode(tokenizer, table.column("text").to_pylist(), student_meta["max_length"], pairs, token_types)
    labels = tasks.predicted(task, logits["augmented"]).to(train_split.labels.dtype)
    augmented = encoded_split(encoded, task, logits["augmented"].shape[1], labels)
    return concatenate(train_split, dataclasses.replace(augmented, teacher_logits=logits["augmented"])), meta


def logits_sha256(teacher_dir) -> str:
    return hashlib.sha256((Path(teacher_dir) / LOGITS_FILE).read_bytes()).hexdigest()
