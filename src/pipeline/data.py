"""Stage 1, download: fetch SST-2 with ``datasets``, validate it, and store each split as Parquet."""

from __future__ import annotations

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


def load_source(cfg: DataConfig):
    """``datasets.load_dataset(path, config)``, with a one-line error when it cannot be found."""
    import datasets  # imported here: it is slow to import and only this stage needs it

    local = Path(cfg.path).expanduser()
    if looks_local(cfg.path) and not local.is_dir():
        raise PipelineError(f"data.path={cfg.path!r}: no such directory (give an existing folder or a Hub dataset id)")
    try:
        return datasets.load_dataset(str(local) if local.is_dir() else cfg.path, cfg.config)
    except (OSError, ValueError) as exc:  # ConnectionError, FileNotFoundError, DatasetNotFoundError, bad config
        if local.is_dir():
            raise PipelineError(
                f"data.path={cfg.path!r}: could not read a dataset there: {str(exc).strip().splitlines()[0][:200]} "
                f"(the folder needs non-empty train and validation files, e.g. train.parquet and validation.parquet)"
            ) from None
        raise not_found("dataset", f"{cfg.path}" + (f" ({cfg.config})" if cfg.config else ""), "data.path", exc) from None


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
            raise PipelineError(f"{source}: has no {split!r} split (found {splits}); a train and a validation split are required")
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
        if not isinstance(text, str) or not text.strip():
            raise PipelineError(f"{where} row {row} has an empty or missing {TEXT_COLUMN!r}; every example needs text")


def subsample_indices(n_rows: int, n_keep: int, seed: int) -> np.ndarray:
    """A seeded random subset of row numbers, kept in the original order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_rows)[:n_keep])


def download(cfg: DataConfig, out_dir: str | Path) -> dict:
    """Write ``<split>.parquet`` for every split plus ``info.json`` into ``out_dir``."""
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
        raise PipelineError(f"{path} is damaged ({str(exc).splitlines()[0]}); rerun: dvc repro --force download") from None
    return RawSplit(
        sentences=table.column(TEXT_COLUMN).to_pylist(),
        labels=table.column(LABEL_COLUMN).to_numpy().astype(np.int64),
    )
