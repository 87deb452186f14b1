"""Typed, validated parameters.

``params.yaml`` is read once, by :func:`load_params`, into frozen dataclasses. Every key is checked
for spelling, type and range before any stage does work, and a bad value is reported in one line
that names the key, what it got and what it accepts.

Each key is described here, once, in its field's ``help``; ``python docs/generate.py`` writes
docs/parameters.md from these descriptions.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
AUTO = "auto"  # train.epochs chosen from the data size (TrainConfig.epochs_for)
SINGLE_LABEL, MULTI_LABEL, REGRESSION = "single_label", "multi_label", "regression"
TASKS = (
    SINGLE_LABEL,
    MULTI_LABEL,
    REGRESSION,
)  # data.task; what each means for the loss and the metrics: pipeline.tasks
# What train.select_metric may name, per data.task; "loss" and "mse" are minimised, the rest maximised.
SELECT_METRICS = {
    "single_label": ("accuracy", "macro_f1", "mcc", "f1", "loss"),
    "multi_label": ("micro_f1", "macro_f1", "exact_match", "mean_average_precision", "loss"),
    "regression": ("pearson", "spearman", "mse", "loss"),
}


def param(default: Any, help: str, **kwargs: Any) -> Any:
    """A parameter with its default and its description (``help``, in the field's metadata)."""
    return field(default=default, metadata={"help": help}, **kwargs)


def _invalid(key: str, value: Any, expected: str) -> PipelineError:
    return PipelineError(
        f"invalid parameter {key}={value!r}: expected {expected} (edit params.yaml or pass -S {key}=... to dvc exp run)"
    )


DATA_FORMATS = ("csv", "json", "parquet")


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they are read (stage download)."""

    task: str = param(
        "single_label",
        "`single_label`: each example has one class of two or more (`data.label_column` as below). `multi_label`: "
        "each has zero, one or several labels (`data.label_separator`, `data.label_columns` or a list per row; "
        "docs/data.md); the model scores each label with a sigmoid and trains on binary cross-entropy. `regression`: "
        "each has a score, a finite number such as STS-B's 0 to 5; the model gets one output and an MSE loss, and "
        "is judged by Pearson and Spearman correlation and MSE. Saved as the model's `problem_type`, so "
        "`transformers.pipeline` treats the saved model right.",
    )
    path: str = param(
        "nyu-mll/glue",
        "A Hub dataset id, or a local folder of split files: `train.*`; `validation.*`, `dev.*` or `val.*`; "
        "`test.*` (the patterns `datasets` uses).",
    )
    config: str | None = param("sst2", "The Hub dataset's configuration; `null` for a folder of plain split files.")
    files: dict[str, str] | None = param(
        None,
        "Files per split instead of a folder, e.g. `{train: exports/reviews.csv, validation: exports/held_out.csv}`; "
        "it must name `data.train_split`. `null`: the splits come from `data.path`.",
    )
    text_columns: tuple[str, ...] = param(
        ("sentence",),
        "The text column, or two different columns for sentence pairs (encoded as the model's pair: its separator, "
        "and `token_type_ids` where the architecture has them).",
    )
    label_column: str = param(
        "label",
        "The label column, not one of `data.text_columns`: integers in any range (0-based, 1-based, sparse), "
        "strings, or a `ClassLabel`; any number of classes from 2. For `data.task: regression`, the score column.",
    )
    label_separator: str | None = param(
        None,
        "`data.task: multi_label` with one label column holding several labels as text, e.g. `,` for `4,27` or "
        "`joy,anger`; an empty cell is an example with no label. `null`: labels come as a list per row, or from "
        "`data.label_columns`.",
    )
    label_columns: tuple[str, ...] | None = param(
        None,
        "`data.task: multi_label` with one 0/1 column per label, e.g. `[toxic, obscene, insult]`: the column names "
        "are the label names, in this order; `data.label_column` is then not read. `null`: one label column.",
    )
    label_names: tuple[str, ...] | str | None = param(
        None,
        "`data.task: multi_label` with integer label ids: the name of each id, as a list or as the path of a file "
        "with one name per line (GoEmotions' `labels.txt`); it also fixes the label order. `null`: label names as "
        "the data has them, sorted.",
    )
    train_split: str = param("train", "The split to train on.")
    eval_split: str = param(
        "validation",
        "The split to evaluate on, not `data.train_split` (a local `dev.*` or `val.*` file is the `validation` split).",
    )
    eval_fraction: float | None = param(
        None,
        "For data without an evaluation split: carve this seeded fraction, in (0, 0.5], of the training split, and "
        "`eval.json` says so (`eval_split_carved_fraction`). `null`: the data must have `data.eval_split`; a "
        "fraction is refused when it does.",
    )
    select_fraction: float | None = param(
        None,
        "Carve this seeded fraction, in (0, 0.5], of the training split as the `select` slice on which "
        "`train.select_best` chooses the epoch to keep and `train.select_threshold` the multi-label threshold; it "
        "trains on the rest. Every training class must occur in it. Requires one of the two (nothing else uses the "
        "slice). `null`: no slice.",
    )
    test_split: str | None = param(
        "test",
        "Examples to predict, labelled or not; `null` for none (also when the test file's columns differ from "
        "training's, as CoLA's do).",
    )
    format: str | None = param(
        None,
        "`csv` (any delimiter), `json` (JSON Lines or a JSON array) or `parquet`; `null`: from the file suffix "
        "(`.csv`, `.tsv`, `.txt`, `.jsonl`, `.json`, `.parquet`).",
    )
    delimiter: str | None = param(
        None,
        "The one character between the columns of delimited text; `null` means `,` for `.csv` and a tab for `.tsv`, "
        'while other files (`.txt`) need it set, e.g. `";"`.',
    )
    column_names: tuple[str, ...] | None = param(
        None, "A delimited file without a header row: its columns' names, in order; `null`: the first row names them."
    )
    quoting: bool = param(
        True,
        "`false`: quote characters are plain text, for files with unbalanced quotes (MRPC's) that a quote-honouring "
        "reader would merge into fewer rows.",
    )
    max_train_samples: int | None = param(
        None, "`null` for the whole training split, or a seeded subsample of this many examples for quick runs."
    )
    subsample_seed: int = param(0, "Seed, in [0, 2**32), of the training subsample and of a carved evaluation split.")

    def check(self) -> None:
        if self.task not in TASKS:
            raise _invalid("data.task", self.task, f"one of {', '.join(TASKS)}")
        multi_label_only = {"data.label_separator": self.label_separator, "data.label_columns": self.label_columns}
        multi_label_only["data.label_names"] = self.label_names
        for key, value in multi_label_only.items():
            if value is not None and self.task != MULTI_LABEL:
                shown = list(value) if isinstance(value, tuple) else value
                raise _invalid(key, shown, f"null unless data.task is multi_label (data.task={self.task})")
        if self.label_separator is not None and (not self.label_separator or self.label_separator.isspace()):
            raise _invalid("data.label_separator", self.label_separator, 'null or a separator such as ","')
        if self.label_separator is not None and self.label_columns is not None:
            raise _invalid(
                "data.label_separator", self.label_separator, "null with data.label_columns (each column is one label)"
            )
        if self.label_columns is not None:
            if len(set(self.label_columns)) < len(self.label_columns) or len(self.label_columns) < 2:
                raise _invalid("data.label_columns", list(self.label_columns), "two or more different column names")
            if set(self.label_columns) & set(self.text_columns):
                raise _invalid("data.label_columns", list(self.label_columns), "columns other than data.text_columns")
        if not self.path.strip() and not self.files:
            raise _invalid("data.path", self.path, "a Hub dataset id or a local directory")
        if not 1 <= len(self.text_columns) <= 2 or len(set(self.text_columns)) < len(self.text_columns):
            raise _invalid(
                "data.text_columns",
                list(self.text_columns),
                "one column (single texts) or two different ones (sentence pairs)",
            )
        if self.label_column in self.text_columns:
            raise _invalid("data.label_column", self.label_column, "a column that is not one of data.text_columns")
        if self.train_split == self.eval_split:
            raise _invalid("data.eval_split", self.eval_split, "a split other than data.train_split")
        if self.eval_fraction is not None and not 0 < self.eval_fraction <= 0.5:
            raise _invalid("data.eval_fraction", self.eval_fraction, "null or a number in (0, 0.5]")
        if self.select_fraction is not None and not 0 < self.select_fraction <= 0.5:
            raise _invalid("data.select_fraction", self.select_fraction, "null or a number in (0, 0.5]")
        if self.format is not None and self.format not in DATA_FORMATS:
            raise _invalid("data.format", self.format, f"null or one of {', '.join(DATA_FORMATS)}")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise _invalid("data.delimiter", self.delimiter, 'null or one character (e.g. ";" or "\\t")')
        if self.files is not None and (not self.files or self.train_split not in self.files):
            raise _invalid(
                "data.files", dict(self.files), f"a mapping of split names to files, with {self.train_split!r}"
            )
        if not 0 <= self.subsample_seed < 2**32:
            raise _invalid("data.subsample_seed", self.subsample_seed, "an integer in [0, 2**32)")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise _invalid("data.max_train_samples", self.max_train_samples, "null or an integer >= 1")


@dataclass(frozen=True)
class ModelConfig:
    """The pretrained model to fine-tune (stages tokenize and train)."""

    name: str = param(
        "sentence-transformers/all-MiniLM-L6-v2",
        "A Hub model id or a local folder saved with `save_pretrained`; any architecture "
        "`AutoModelForSequenceClassification` knows.",
    )
    trust_remote_code: bool = param(
        False,
        "`true` lets the model run the Python code it ships with (`trust_remote_code` of `from_pretrained`), which "
        "is running someone else's program: only for models you trust.",
    )

    def check(self) -> None:
        if not self.name.strip():
            raise _invalid("model.name", self.name, "a Hub model id or a local model folder")


@dataclass(frozen=True)
class TokenizeConfig:
    """How the text becomes token ids (stage tokenize)."""

    max_length: int = param(
        128,
        "Longer examples are cut to this many tokens (pairs `longest_first`); at most the model's position limit "
        "and at least its special tokens plus one per text, both checked at tokenize time. `meta.json` counts the "
        "cut examples per split (`n_truncated`), and more than 1% of a split gets a warning.",
    )

    def check(self) -> None:
        if self.max_length < 2:
            raise _invalid("tokenize.max_length", self.max_length, "an integer >= 2")


@dataclass(frozen=True)
class TrainConfig:
    """The fine-tuning run (stage train)."""

    seed: int = param(42, "Seeds Python, NumPy, torch and the batch order; an integer in [0, 2**32).")
    epochs: int | str = param(
        AUTO,
        "Passes over the training split; validation after each. `auto`: the fewest passes that make "
        "`train.auto_min_steps` optimizer steps, at most `train.auto_max_epochs`, so a small data set gets enough "
        "steps and a large one no more passes than it needs; the run prints and records the number it chose.",
    )
    auto_min_steps: int = param(
        2000, "With `train.epochs: auto`: the optimizer steps it aims for (the last pass may run past them)."
    )
    auto_max_epochs: int = param(10, "With `train.epochs: auto`: the most passes it may choose.")
    batch_size: int = param(
        64,
        "Examples per process per micro-batch; one optimizer step sees `batch_size × processes × grad_accum_steps`.",
    )
    lr: float = param(
        1e-4,
        "Peak learning rate of AdamW: the classification head's (and the pooler's), and every layer's when "
        "`train.layer_lr_decay` is 1.",
    )
    weight_decay: float = param(
        0.01,
        "AdamW's decoupled weight decay, on weight matrices only: biases and LayerNorm (and other norms) get none.",
    )
    warmup_ratio: float = param(
        0.1, "The fraction of optimizer steps, in [0, 1), of linear warmup to `train.lr`; then linear decay to 0."
    )
    max_grad_norm: float = param(1.0, "Gradients are clipped to this norm before each optimizer step.")
    layer_lr_decay: float = param(
        0.85,
        "Layer-wise learning-rate decay, in (0, 1]: the head learns at `train.lr`, each transformer layer below it "
        "at this fraction of the rate of the one above, the embeddings last (with L layers and decay d: the top "
        "layer at d × lr, the embeddings at d^(L+1) × lr). `1.0`: one rate for all.",
    )
    label_smoothing: float = param(
        0.0,
        "In [0, 1): the training loss's target keeps 1 − x on the label and spreads x over all classes "
        "(cross-entropy's `label_smoothing`); validation loss is always plain cross-entropy. `0.0`: none.",
    )
    class_weights: str | tuple[float, ...] | None = param(
        None,
        "Per-class weights of the training loss, for unbalanced data: `balanced` (class c weighs n / (k × n_c) for "
        "n training examples, k classes and n_c examples of c, scikit-learn's rule), or one number > 0 per class "
        "in the order of `label_names` (docs/data.md). The loss is then each micro-batch's weighted mean. "
        "Validation loss stays unweighted. `null`: every class weighs 1.",
    )
    distill_alpha: float = param(
        1.0,
        "In [0, 1]: the weight of the task's own loss against the teacher's (stage teacher, docs/distillation.md). "
        "The loss is α × task loss + (1 − α) × distillation loss: for single-label, T² × KL(teacher ‖ student) of "
        "the softmaxes at temperature T (`train.distill_temperature`); for multi-label, T² × binary cross-entropy "
        "against the teacher's sigmoids at T; for regression, the squared error against the teacher's score. "
        "Needs `teacher.model_name`. `1.0`: no teacher, the task loss alone.",
    )
    distill_temperature: float = param(
        2.0,
        "With `train.distill_alpha` < 1: the temperature T > 0 that softens both models' outputs in the "
        "distillation loss (not used for regression).",
    )
    select_best: bool = param(
        False,
        "Keep the epoch whose `train.select_metric` on the `select` slice (carved from training by "
        "`data.select_fraction`) is best, not the last: the saved model is that epoch's, and `metrics/train/"
        "metrics.json` says which (`selected`). The validation split is never used to choose, so `metrics/eval.json` "
        "stays an unbiased estimate.",
    )
    select_metric: str = param(
        "accuracy",
        "What `train.select_best` maximises on the slice: `accuracy`, `macro_f1`, `mcc`, `f1` (two classes) or "
        "`loss` (minimised); for `data.task: regression`, `pearson`, `spearman`, `mse` or `loss` (both minimised).",
    )
    select_threshold: bool = param(
        False,
        "`data.task: multi_label`: after training, choose the probability from which a label is predicted as the "
        "hundredth in (0, 1) with the best macro-F1 on the `select` slice (`data.select_fraction`; ties go to the "
        "one nearest 0.5). It is saved with the model (`multi_label_threshold` in `config.json`), the evaluate and "
        "predict stages and `predict` apply it (`--threshold` overrides it), and `metrics/train/metrics.json` says "
        "what it scored (`threshold`). `false`: `evaluate.threshold`.",
    )
    patience: int = param(
        0,
        "With `train.select_best`: stop once this many epochs in a row brought no better select score (the "
        "learning-rate schedule still spans `train.epochs`). `0`: train every epoch.",
    )
    precision: str = param(
        "bf16",
        "`fp32`; `bf16` autocast where the hardware has bf16 matrix units (CPUs with AVX-512 BF16 or AMX, Ampere or "
        "later GPUs; elsewhere it is emulated and slow, so a CPU without them runs `fp32` and a GPU without them "
        "`fp16`, and says so); or `fp16` autocast with a gradient scaler (CUDA GPUs only). "
        "The weights are fp32 in every case, whatever dtype the model was published in.",
    )
    group_by_length_batches: int = param(
        64,
        "Sentences are shuffled, then sorted by length within windows of this many batches, so a batch holds "
        "sentences of similar length and carries little padding while the batch order stays random. `1`: plain "
        "random batches.",
    )
    pad_to_multiple_of: int = param(
        1,
        "Pad each batch's length up to a multiple of this (8 can help GPU tensor cores; on CPUs see docs/speed.md). "
        "`1`: to the batch's longest example.",
    )
    fast_dropout: bool = param(
        True,
        "On CPUs, draw dropout masks from 16-bit PCG64 numbers, cheaper than torch's sampler; the rate is rounded to "
        "a multiple of 1/65,536 (0.1 becomes 0.100006). `false`: torch's own; GPUs always use torch's. See "
        "src/pipeline/dropout.py and docs/speed.md.",
    )
    log_every_steps: int = param(
        10, "One DVCLive step (mean loss and learning rate, in `metrics/train/`) per this many optimizer steps."
    )
    grad_accum_steps: int = param(1, "Micro-batches whose gradients add up before each optimizer step.")
    processes: int = param(
        1,
        "Data-parallel processes on this machine, started by `torchrun` (see docs/scaling.md); at most one per CPU "
        "core, or one per GPU on CUDA (more is refused before any starts).",
    )
    device: str = param("auto", "`auto` (a GPU if one is visible, else the CPU), `cpu` or `cuda`.")
    checkpoint_every_steps: int = param(
        200,
        "A checkpoint every this many optimizer steps and at every epoch end (`0`: epoch ends only); a killed run "
        "resumes from the latest. Not a DVC param of the train stage, as it changes no result.",
    )
    deterministic: bool = param(
        True,
        "On CUDA, the same seed gives bit-identical weights (deterministic algorithms, a fixed cuBLAS workspace, the "
        "plain attention instead of SDPA); `false` trades that for speed (docs/scaling.md says how much). CPU runs "
        "are always repeatable.",
    )
    tf32: bool = param(
        False,
        "On CUDA (Ampere or later): fp32 matrix products in TF32, faster and with a 10-bit mantissa; matters for "
        "`precision: fp32` and the fp32 parts of autocast.",
    )

    def epochs_for(self, steps_per_epoch: int) -> int:
        """The passes to train: `train.epochs`, or what `auto` makes of it for this many steps per pass."""
        if self.epochs != AUTO:
            return self.epochs
        return min(self.auto_max_epochs, max(1, math.ceil(self.auto_min_steps / steps_per_epoch)))

    def check(self) -> None:
        if not 0 <= self.seed < 2**32:  # what NumPy's seeding accepts
            raise _invalid("train.seed", self.seed, "an integer in [0, 2**32)")
        if isinstance(self.epochs, str) and self.epochs != AUTO:
            raise _invalid("train.epochs", self.epochs, "an integer >= 1 or auto")
        if isinstance(self.epochs, int) and self.epochs < 1:
            raise _invalid("train.epochs", self.epochs, "an integer >= 1 or auto")
        if self.auto_min_steps < 1:
            raise _invalid("train.auto_min_steps", self.auto_min_steps, "an integer >= 1")
        if self.auto_max_epochs < 1:
            raise _invalid("train.auto_max_epochs", self.auto_max_epochs, "an integer >= 1")
        defaults = TrainConfig.__dataclass_fields__
        for key in ("auto_min_steps", "auto_max_epochs"):
            value = getattr(self, key)
            if self.epochs != AUTO and value != defaults[key].default:
                raise PipelineError(
                    f"train.{key}={value} shapes train.epochs: auto only, and train.epochs is {self.epochs}: "
                    f"set train.epochs: auto, or leave train.{key} at its default ({defaults[key].default})"
                )
        if self.batch_size < 1:
            raise _invalid("train.batch_size", self.batch_size, "an integer >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise _invalid("train.lr", self.lr, "a number > 0")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise _invalid("train.weight_decay", self.weight_decay, "a number >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise _invalid("train.warmup_ratio", self.warmup_ratio, "a number in [0, 1)")
        if not (self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)):
            raise _invalid("train.max_grad_norm", self.max_grad_norm, "a number > 0")
        if not 0 < self.layer_lr_decay <= 1:
            raise _invalid("train.layer_lr_decay", self.layer_lr_decay, "a number in (0, 1] (1: no decay)")
        if not 0 <= self.label_smoothing < 1:
            raise _invalid("train.label_smoothing", self.label_smoothing, "a number in [0, 1) (0: none)")
        if not 0 <= self.distill_alpha <= 1:
            raise _invalid("train.distill_alpha", self.distill_alpha, "a number in [0, 1] (1: no distillation)")
        if not (self.distill_temperature > 0 and math.isfinite(self.distill_temperature)):
            raise _invalid("train.distill_temperature", self.distill_temperature, "a number > 0")
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            raise _invalid("train.class_weights", self.class_weights, "null, balanced, or a list of numbers >= 0")
        if isinstance(self.class_weights, tuple) and (not all(math.isfinite(w) and w > 0 for w in self.class_weights)):
            # 0 would make a micro-batch of only that class a 0/0 loss: NaN weights after one step.
            raise _invalid("train.class_weights", list(self.class_weights), "one number > 0 per class (or balanced)")
        every_metric = sorted({metric for metrics in SELECT_METRICS.values() for metric in metrics})
        if self.select_metric not in every_metric:
            raise _invalid("train.select_metric", self.select_metric, f"one of {', '.join(every_metric)}")
        if self.patience < 0:
            raise _invalid("train.patience", self.patience, "an integer >= 0 (0: train every epoch)")
        if self.patience and not self.select_best:
            raise _invalid(
                "train.patience", self.patience, "0 unless train.select_best is true (patience counts select scores)"
            )
        if self.precision not in PRECISIONS:
            raise _invalid("train.precision", self.precision, f"one of {', '.join(PRECISIONS)}")
        if self.group_by_length_batches < 1:
            raise _invalid("train.group_by_length_batches", self.group_by_length_batches, "an integer >= 1")
        if self.pad_to_multiple_of < 1:
            raise _invalid("train.pad_to_multiple_of", self.pad_to_multiple_of, "an integer >= 1")
        if self.log_every_steps < 1:
            raise _invalid("train.log_every_steps", self.log_every_steps, "an integer >= 1")
        if self.grad_accum_steps < 1:
            raise _invalid("train.grad_accum_steps", self.grad_accum_steps, "an integer >= 1")
        if self.processes < 1:
            raise _invalid("train.processes", self.processes, "an integer >= 1")
        if self.device not in DEVICES:
            raise _invalid("train.device", self.device, f"one of {', '.join(DEVICES)}")
        if self.precision == "fp16" and self.device == "cpu":
            raise _invalid(
                "train.precision", self.precision, "fp32 or bf16 with train.device=cpu (fp16 needs a CUDA GPU)"
            )
        if self.checkpoint_every_steps < 0:
            raise _invalid(
                "train.checkpoint_every_steps", self.checkpoint_every_steps, "an integer >= 0 (0: at epoch ends only)"
            )


@dataclass(frozen=True)
class TeacherConfig:
    """The larger model the student learns from with `train.distill_alpha` < 1 (stage teacher).

    The teacher fine-tunes with the same loop as the student, on the same data, tokenized with its own
    tokenizer at `tokenize.max_length`. Its recipe is these keys; every other training setting is its
    default in `train.*` (this page), so a change to the student's recipe never retrains the teacher.
    """

    model_name: str | None = param(
        None,
        "A Hub model id or a local `save_pretrained` folder, e.g. `sentence-transformers/all-mpnet-base-v2`. `null`: "
        "no teacher; the stage writes an empty `data/teacher/` at once and `train.distill_alpha` must be 1.",
    )
    seed: int = param(42, "The teacher's `train.seed`, and the augmenter's.")
    epochs: int = param(1, "The teacher's passes over the training split.")
    batch_size: int = param(64, "The teacher's `train.batch_size`.")
    lr: float = param(5e-5, "The teacher's `train.lr`.")
    layer_lr_decay: float = param(0.9, "The teacher's `train.layer_lr_decay`.")
    augment_copies: int = param(
        0,
        "New inputs per training example for the teacher to label, made from the training texts alone "
        "(`src/pipeline/augment.py`): for single texts, contiguous word spans other than the text itself; for "
        "pairs, both texts with words dropped. The student trains on them with the teacher's outputs as its "
        "targets (and its prediction as the label). `0`: the training split only.",
    )

    def check(self) -> None:
        if self.model_name is not None and not self.model_name.strip():
            raise _invalid("teacher.model_name", self.model_name, "null, a Hub model id or a local model folder")
        if not 0 <= self.seed < 2**32:
            raise _invalid("teacher.seed", self.seed, "an integer in [0, 2**32)")
        if self.epochs < 1:
            raise _invalid("teacher.epochs", self.epochs, "an integer >= 1")
        if self.batch_size < 1:
            raise _invalid("teacher.batch_size", self.batch_size, "an integer >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise _invalid("teacher.lr", self.lr, "a number > 0")
        if not 0 < self.layer_lr_decay <= 1:
            raise _invalid("teacher.layer_lr_decay", self.layer_lr_decay, "a number in (0, 1] (1: no decay)")
        if self.augment_copies < 0:
            raise _invalid("teacher.augment_copies", self.augment_copies, "an integer >= 0 (0: no augmentation)")

    def training(self) -> TrainConfig:
        """The teacher's recipe as the train loop takes it."""
        return TrainConfig(
            seed=self.seed,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            layer_lr_decay=self.layer_lr_decay,
        )


@dataclass(frozen=True)
class EvaluateConfig:
    """Scoring the trained model on the evaluation split (stage evaluate)."""

    batch_size: int = param(128, "Evaluation batch size; it changes speed only.")
    threshold: float = param(
        0.5,
        "`data.task: multi_label`: a label is predicted when its probability reaches this, in (0, 1); it sets "
        "`micro_f1`, `macro_f1` and `exact_match` (not `mean_average_precision`, which takes every threshold), and "
        "the labels `predict` prints, unless the model carries the threshold `train.select_threshold` chose.",
    )
    precision: str = param(
        "bf16",
        "`fp32`, `bf16` or `fp16` (CUDA only) autocast for the evaluate stage (docs/speed.md compares bf16 with "
        "fp32), with `train.precision`'s fallback where bf16 is not native; the validation after each epoch uses "
        "`train.precision`.",
    )

    def check(self) -> None:
        if self.batch_size < 1:
            raise _invalid("evaluate.batch_size", self.batch_size, "an integer >= 1")
        if not 0 < self.threshold < 1:
            raise _invalid("evaluate.threshold", self.threshold, "a number in (0, 1), e.g. 0.5")
        if self.precision not in PRECISIONS:
            raise _invalid("evaluate.precision", self.precision, f"one of {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class ExportConfig:
    """The ONNX model and its int8 variant, checked against eager PyTorch (stage export)."""

    fp32_tolerance: float = param(
        1e-4,
        "In (0, 1): the export stage fails, writing nothing, when the fp32 ONNX model's logits differ from eager "
        "PyTorch's by more than this on any validation example and class (docs/speed.md has what MiniLM reaches).",
    )
    quantize: bool = param(
        True,
        "Also quantize to int8 (onnxruntime dynamic quantization); it is shipped only if it passes both "
        "`export.int8_*` checks, else predict runs the fp32 model. `false`: fp32 only.",
    )
    int8_min_agreement: float = param(
        0.995, "In [0, 1]: the share of validation labels int8 must give as eager PyTorch does."
    )
    int8_max_accuracy_drop: float = param(
        0.003, "In [0, 1]: the validation accuracy int8 may lose against eager PyTorch (0.003: 0.3 points)."
    )

    def check(self) -> None:
        if not 0 < self.fp32_tolerance < 1:
            raise _invalid("export.fp32_tolerance", self.fp32_tolerance, "a number in (0, 1), e.g. 1e-4")
        if not 0 <= self.int8_min_agreement <= 1:
            raise _invalid("export.int8_min_agreement", self.int8_min_agreement, "a number in [0, 1]")
        if not 0 <= self.int8_max_accuracy_drop <= 1:
            raise _invalid("export.int8_max_accuracy_drop", self.int8_max_accuracy_drop, "a number in [0, 1]")


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The params as params.yaml writes them: lists, not tuples."""
        return dataclasses.asdict(self, dict_factory=lambda items: {k: _yaml_value(v) for k, v in items})


def _yaml_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; raise :class:`PipelineError` on the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found (run from the project root, or pass --params PATH)") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not UTF-8 text (save it as UTF-8)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise PipelineError(f"{path}: not valid YAML{where}: {problem} (fix the syntax)") from None
    return params_from_dict(raw if raw is not None else {}, source=str(path))


def params_from_dict(raw: Any, source: str = "params") -> Params:
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: expected a mapping of sections (data, model, ...), got {type(raw).__name__}")
    hints = typing.get_type_hints(Params)
    _reject_unknown(raw, hints, prefix="")
    values = {}
    for name in hints:
        section = raw.get(name)
        if section is None:  # absent, or a heading with nothing under it: every key at its default
            section = {}
        if not isinstance(section, dict):  # 0, false, [] or "" is a mistake, not "all defaults"
            raise _invalid(name, section, f"a mapping of {name}.* keys (or leave the section out for all defaults)")
        values[name] = _build_section(hints[name], section, prefix=name)
    params = Params(**values)
    train = params.train
    if params.data.select_fraction is not None and not (train.select_best or train.select_threshold):
        raise PipelineError(
            f"data.select_fraction={params.data.select_fraction} carves a slice out of training that only "
            "train.select_best and train.select_threshold use, so the model would train on less data for nothing; "
            "set train.select_best: true, or data.select_fraction: null"
        )
    _check_task(params)
    if params.train.distill_alpha < 1 and params.teacher.model_name is None:
        raise PipelineError(
            f"train.distill_alpha={params.train.distill_alpha} distils a teacher, and teacher.model_name is null: "
            "name the teacher (e.g. teacher.model_name: sentence-transformers/all-mpnet-base-v2), or set "
            "train.distill_alpha: 1.0"
        )
    return params


def _check_task(params: Params) -> None:
    """The train.* keys that only one task has a use for."""
    task, train = params.data.task, params.train
    if task != SINGLE_LABEL:  # both act on a softmax over classes
        if train.class_weights is not None:
            raise _invalid("train.class_weights", train.class_weights, f"null with data.task={task}")
        if train.label_smoothing:
            raise _invalid("train.label_smoothing", train.label_smoothing, f"0.0 with data.task={task}")
    if train.select_threshold:
        if task != MULTI_LABEL:
            raise _invalid(
                "train.select_threshold", True, f"false with data.task={task} (a threshold is multi-label's)"
            )
        if params.data.select_fraction is None:
            raise PipelineError(
                "train.select_threshold chooses the threshold on the select slice carved from training, and "
                "data.select_fraction is null: set data.select_fraction (e.g. 0.1)"
            )
        default = EvaluateConfig.__dataclass_fields__["threshold"].default
        if params.evaluate.threshold != default:
            raise PipelineError(
                f"evaluate.threshold={params.evaluate.threshold} and train.select_threshold: true both set the "
                f"multi-label threshold: leave evaluate.threshold at {default}, or set train.select_threshold: false"
            )
    if train.select_best and train.select_metric not in SELECT_METRICS[task]:
        raise _invalid(
            "train.select_metric",
            train.select_metric,
            f"one of {', '.join(SELECT_METRICS[task])} with data.task={task}",
        )


def _build_section(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    _reject_unknown(raw, hints, prefix=f"{prefix}.")
    kwargs = {key: _coerce(f"{prefix}.{key}", value, hints[key]) for key, value in raw.items()}
    section = cls(**kwargs)
    section.check()
    return section


def _reject_unknown(raw: dict[str, Any], known: typing.Iterable[str], prefix: str) -> None:
    known = list(known)
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = (
                f"did you mean {prefix}{close[0]}?" if close else f"known keys: {', '.join(prefix + k for k in known)}"
            )
            raise PipelineError(f"unknown parameter {prefix}{key} in params.yaml ({hint})")


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field annotation (``int``, ``float``, ``str``, ``bool``, ``tuple[str, ...]``,
    ``dict[str, str]``, ``X | None``)."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None:
        if type(None) in allowed:
            return None
        raise _invalid(key, value, _describe(allowed))
    for kind in allowed:
        if typing.get_origin(kind) is tuple and isinstance(value, list) and value:
            item_kind = typing.get_args(kind)[0]
            if item_kind is str and all(isinstance(item, str) and item for item in value):
                return tuple(value)
            if item_kind is float and all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in value):
                return tuple(float(item) for item in value)
        if typing.get_origin(kind) is dict and isinstance(value, dict):
            if all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
                return dict(value)
        # bool is a subclass of int in Python; "epochs: true" is a mistake, not 1.
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is float and isinstance(value, str):
            # YAML 1.1 reads "1e-5" (no dot) as a string; accept what is plainly a number.
            try:
                return float(value)
            except ValueError:
                pass
        if kind in (str, bool) and type(value) is kind:
            return value
    raise _invalid(key, value, _describe(allowed))


def _describe(allowed: tuple[Any, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    names |= {tuple[str, ...]: "a list of column names", dict[str, str]: "a mapping of split names to files"}
    names |= {tuple[float, ...]: "a list of numbers"}
    if allowed == (int, str):  # train.epochs: its one string is auto
        return "an integer or auto"
    return " or ".join(names.get(kind, str(kind)) for kind in allowed)
