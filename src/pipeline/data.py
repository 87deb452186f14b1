"""Stage 1, download: fetch SST-2 with ``datasets``, validate it, and store each split as Parquet."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.config import DataConfig
from pipeline.errors import PipelineError
from pipeline.hub import looks_local, not_found
from pipeline.outputs import atomic_directory, read_json_output, write_json_atomic

TEXT_COLUMN = "sentence"
LABEL_COLUMN = "label"
TRAIN_SPLIT = "train"
EVAL_SPLIT = "validation"
LABELED_SPLITS = (TRAIN_SPLIT, EVAL_SPLIT)
UNLABELED = -1  # GLUE's label for the hidden-answer test split
INFO_FILE = "info.json"
# Files that datasets reads as text; Parquet and Arrow carry their own encoding.
TEXT_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt")
# How datasets says that a split has no rows (its own wording is about "instructions").
_EMPTY_SPLIT = re.compile(r'Instruction "([^"]+)" corresponds to no data')


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No progress bars or log lines from ``datasets``: reading SST-2 takes seconds, and on failure the
    stage's one-line error says what went wrong (datasets would print its own lines first)."""
    import datasets

    bars_were_off, level = datasets.are_progress_bars_disabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
        if not bars_were_off:
            datasets.enable_progress_bars()


def check_utf8_files(folder: Path, key_value: str) -> None:
    """Refuse a text data file that is not UTF-8, naming the file and the line (datasets only says "0xe9")."""
    for file in sorted(folder.rglob("*")):
        if file.suffix.lower() not in TEXT_FILE_SUFFIXES or not file.is_file():
            continue
        content = file.read_bytes()
        try:
            content.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = content.count(b"\n", 0, exc.start) + 1
            raise PipelineError(
                f"{key_value}: {file.relative_to(folder)} is not UTF-8 text "
                f"(byte 0x{content[exc.start]:02x} on line {line}); "
                f"re-save it as UTF-8"
            ) from None


def load_source(cfg: DataConfig):
    """``datasets.load_dataset(path, config)``, with a one-line error when it cannot be found."""
    import datasets  # imported here: it is slow to import and only this stage needs it

    local = Path(cfg.path).expanduser()
    key_value = f"data.path={cfg.path!r}"
    if looks_local(cfg.path) and not local.is_dir():
        raise PipelineError(f"{key_value}: no such directory (give an existing folder or a Hub dataset id)")
    if local.is_dir():
        check_utf8_files(local, key_value)
    try:
        return datasets.load_dataset(str(local) if local.is_dir() else cfg.path, cfg.config)
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as exc:
        # OSError, ValueError: ConnectionError, FileNotFoundError, DatasetNotFoundError, bad config, empty split.
        # DatasetGenerationError: a data file that its reader cannot parse; the reason is its cause.
        empty = _EMPTY_SPLIT.search(str(exc))
        cause = f"split {empty.group(1)!r} has no rows" if empty else _first_line(_root_cause(exc))
        if local.is_dir():
            raise PipelineError(
                f"{key_value}: could not read a dataset there: {cause} "
                f"(the folder needs non-empty train and validation files, e.g. train.parquet and validation.parquet)"
            ) from None
        if empty or isinstance(exc, datasets.exceptions.DatasetGenerationError):
            raise PipelineError(f"dataset {cfg.path!r}: could not be read: {cause}") from None
        raise not_found(
            "dataset", f"{cfg.path}" + (f" ({cfg.config})" if cfg.config else ""), "data.path", exc
        ) from None


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def label_names_of(dataset_dict) -> list[str]:
    """Class names from the label feature (a ``ClassLabel``), or ``"0"``, ``"1"``… for plain integers."""
    feature = dataset_dict[TRAIN_SPLIT].features[LABEL_COLUMN]
    names = getattr(feature, "names", None)
    if names:
        return list(names)
    labels = np.asarray(dataset_dict[TRAIN_SPLIT].data.column(LABEL_COLUMN))
    return [str(i) for i in range(int(labels.max()) + 1)] if labels.size else []


def validate(dataset_dict, source: str) -> list[str]:
    """Check splits, columns, texts and labels; return the class names."""
    splits = list(dataset_dict)
    for split in LABELED_SPLITS:
        if split not in dataset_dict:
            raise PipelineError(
                f"{source}: has no {split!r} split (found {splits}); a train and a validation split are required"
            )
    for split, dataset in dataset_dict.items():
        missing = [c for c in (TEXT_COLUMN, LABEL_COLUMN) if c not in dataset.column_names]
        if missing:
            raise PipelineError(
                f"{source}: split {split!r} lacks column(s) {missing} (has {dataset.column_names}); "
                f"SST-2 needs a text column {TEXT_COLUMN!r} and an integer column {LABEL_COLUMN!r}"
            )
        if dataset.num_rows == 0:
            raise PipelineError(f"{source}: split {split!r} is empty")
    names = label_names_of(dataset_dict)
    if len(names) < 2:
        raise PipelineError(f"{source}: the label column has {len(names)} class(es); a classifier needs at least 2")
    for split, dataset in dataset_dict.items():
        _check_texts(dataset.data.column(TEXT_COLUMN).to_pylist(), f"{source}: split {split!r}")
        labels = np.asarray(dataset.data.column(LABEL_COLUMN).to_numpy(zero_copy_only=False))
        allowed_unlabeled = split not in LABELED_SPLITS
        bad = ~((labels >= 0) & (labels < len(names)) | (allowed_unlabeled & (labels == UNLABELED)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PipelineError(
                f"{source}: split {split!r} row {row} has label {labels[row]}, outside the classes "
                f"0..{len(names) - 1} ({', '.join(names)}); fix the data or its label feature"
            )
    return names


def _check_texts(texts: list, where: str) -> None:
    for row, text in enumerate(texts):
        if isinstance(text, bytes):  # a binary column: text only if it decodes
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise PipelineError(
                    f"{where} row {row} has a {TEXT_COLUMN!r} that is not UTF-8 text ({text[:40]!r}); "
                    f"store the text as UTF-8 strings"
                ) from None
        if not isinstance(text, str) or not text.strip():
            raise PipelineError(f"{where} row {row} has an empty or missing {TEXT_COLUMN!r}; every example needs text")
    if texts and isinstance(texts[0], bytes):  # valid UTF-8, but the tokenizer takes strings
        raise PipelineError(f"{where}: column {TEXT_COLUMN!r} holds bytes, not text; store it as a string column")


def subsample_indices(n_rows: int, n_keep: int, seed: int) -> np.ndarray:
    """A seeded random subset of row numbers, kept in the original order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_rows)[:n_keep])


def download(cfg: DataConfig, out_dir: str | Path) -> dict:
    """Write ``<split>.parquet`` for every split plus ``info.json`` into ``out_dir``."""
    with quiet_datasets():
        return _download(cfg, out_dir)


def _download(cfg: DataConfig, out_dir: str | Path) -> dict:
    dataset_dict = load_source(cfg)
    names = validate(dataset_dict, source=f"dataset {cfg.path!r}")
    n_source_train = dataset_dict[TRAIN_SPLIT].num_rows
    if cfg.max_train_samples is not None and cfg.max_train_samples < n_source_train:
        keep = subsample_indices(n_source_train, cfg.max_train_samples, cfg.subsample_seed)
        dataset_dict[TRAIN_SPLIT] = dataset_dict[TRAIN_SPLIT].select(keep)
    info = {
        "source": {"path": cfg.path, "config": cfg.config},
        "label_names": names,
        "text_column": TEXT_COLUMN,
        "label_column": LABEL_COLUMN,
        "splits": {split: dataset.num_rows for split, dataset in dataset_dict.items()},
        "train_subsample": None
        if cfg.max_train_samples is None
        else {"of": n_source_train, "kept": dataset_dict[TRAIN_SPLIT].num_rows, "seed": cfg.subsample_seed},
    }
    with atomic_directory(out_dir) as staging:
        for split, dataset in dataset_dict.items():
            # to_parquet stores the features (ClassLabel names included) in the file's schema metadata.
            dataset.to_parquet(str(staging / f"{split}.parquet"))
        write_json_atomic(staging / INFO_FILE, info)
    return info


@dataclass(frozen=True)
class RawSplit:
    sentences: list[str]
    labels: np.ndarray


def read_info(raw_dir: str | Path) -> dict:
    return read_json_output(Path(raw_dir) / INFO_FILE, stage="download")


def read_split(raw_dir: str | Path, split: str) -> RawSplit:
    path = Path(raw_dir) / f"{split}.parquet"
    try:
        table = pq.read_table(path, columns=[TEXT_COLUMN, LABEL_COLUMN])
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run the download stage first (dvc repro download)") from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise PipelineError(
            f"{path} is damaged ({str(exc).splitlines()[0]}); rerun: dvc repro --force download"
        ) from None
    return RawSplit(
        sentences=table.column(TEXT_COLUMN).to_pylist(),
        labels=table.column(LABEL_COLUMN).to_numpy().astype(np.int64),
    )
