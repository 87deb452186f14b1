"""Typed, validated parameters.

``params.yaml`` is read once, by :func:`load_params`, into frozen dataclasses. Every key is checked
for spelling, type and range before any stage does work, and a bad value is reported in one line
that names the key, what it got and what it accepts.
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


def _invalid(key: str, value: Any, expected: str) -> PipelineError:
    return PipelineError(
        f"invalid parameter {key}={value!r}: expected {expected} (edit params.yaml or pass -S {key}=... to dvc exp run)"
    )


DATA_FORMATS = ("csv", "json", "parquet")


@dataclass(frozen=True)
class DataConfig:
    path: str = "nyu-mll/glue"  # a Hub dataset id or a local directory
    config: str | None = "sst2"  # the Hub configuration; null for a folder of plain split files
    files: dict[str, str] | None = None  # split name -> file, instead of a folder
    text_columns: tuple[str, ...] = ("sentence",)  # one column, or two for sentence pairs
    label_column: str = "label"
    train_split: str = "train"
    eval_split: str = "validation"
    eval_fraction: float | None = None  # no evaluation split in the data: carve this fraction of training
    test_split: str | None = "test"  # unlabelled (or labelled) examples to predict; null: none
    # How delimited text is read; datasets hands these to pandas.read_csv.
    format: str | None = None  # csv (any delimiter), json (JSON or JSON Lines), parquet; null: from the suffix
    delimiter: str | None = None  # null: "," for .csv, a tab for .tsv
    column_names: tuple[str, ...] | None = None  # a file without a header row: its columns' names
    quoting: bool = True  # false: quote characters are part of the text (files with unbalanced quotes)
    max_train_samples: int | None = None  # None: the whole training split
    subsample_seed: int = 0  # of the training subsample and of a carved evaluation split

    def check(self) -> None:
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
    name: str = "sentence-transformers/all-MiniLM-L6-v2"  # a Hub model id or a local folder
    # Some Hub models ship their own Python code; running it is running someone else's program.
    trust_remote_code: bool = False

    def check(self) -> None:
        if not self.name.strip():
            raise _invalid("model.name", self.name, "a Hub model id or a local model folder")


@dataclass(frozen=True)
class TokenizeConfig:
    max_length: int = 128  # longer sentences are truncated; the model's own limit is checked at tokenize time

    def check(self) -> None:
        if self.max_length < 2:
            raise _invalid("tokenize.max_length", self.max_length, "an integer >= 2")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 42
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    # Each layer below the top learns at this fraction of the one above it (1.0: one learning rate for all).
    layer_lr_decay: float = 0.85
    label_smoothing: float = 0.0  # the training loss's target: 1 - x on the label, x spread over all classes
    # > 0: validate and save a moving average of the weights over the steps, with this decay per step.
    ema_decay: float = 0.0
    precision: str = "bf16"
    # Sentences are shuffled, then sorted by length inside windows of this many batches, so a batch
    # holds sentences of similar length and carries little padding. 1 turns grouping off.
    group_by_length_batches: int = 64
    pad_to_multiple_of: int = 1
    # On CPUs, dropout masks from 16-bit PCG64 numbers (the rate rounded to a multiple of 1/65,536),
    # cheaper than torch's; false: torch's own. See pipeline/dropout.py and docs/speed.md.
    fast_dropout: bool = True
    log_every_steps: int = 10
    # batch_size is per process; one optimizer step sees batch_size × processes × grad_accum_steps examples.
    grad_accum_steps: int = 1
    processes: int = 1  # data-parallel worker processes on this machine (torchrun)
    device: str = "auto"
    checkpoint_every_steps: int = 200  # 0: only at the end of each epoch
    # CUDA only (CPU runs are always repeatable): the same weights from the same seed, at some speed.
    deterministic: bool = True
    tf32: bool = False  # CUDA only: fp32 matrix products in TF32 on Ampere and later

    def check(self) -> None:
        if not 0 <= self.seed < 2**32:  # what NumPy's seeding accepts
            raise _invalid("train.seed", self.seed, "an integer in [0, 2**32)")
        if self.epochs < 1:
            raise _invalid("train.epochs", self.epochs, "an integer >= 1")
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
        if not 0 <= self.ema_decay < 1:
            raise _invalid("train.ema_decay", self.ema_decay, "a number in [0, 1), such as 0.999 (0: no averaging)")
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
class EvaluateConfig:
    batch_size: int = 128
    precision: str = "bf16"

    def check(self) -> None:
        if self.batch_size < 1:
            raise _invalid("evaluate.batch_size", self.batch_size, "an integer >= 1")
        if self.precision not in PRECISIONS:
            raise _invalid("evaluate.precision", self.precision, f"one of {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class ExportConfig:
    # The fp32 ONNX model's logits may differ from eager PyTorch's by this much at most, on any
    # validation example and class; measured: 6.5e-6 on MiniLM (docs/speed.md).
    fp32_tolerance: float = 1e-4
    quantize: bool = True  # try int8 dynamic quantization; it is shipped only if it passes both checks below
    int8_min_agreement: float = 0.995  # the share of validation labels int8 must give as eager PyTorch does
    int8_max_accuracy_drop: float = 0.003  # the validation accuracy int8 may lose against eager (0.003: 0.3 points)

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
    return Params(**values)


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
        if typing.get_origin(kind) is tuple and isinstance(value, list):
            if value and all(isinstance(item, str) and item for item in value):
                return tuple(value)
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
    return " or ".join(names.get(kind, str(kind)) for kind in allowed)
