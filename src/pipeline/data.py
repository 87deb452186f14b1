"""Stage 1, download: read a labelled text-classification data set, check it, and store its splits
as Parquet in the one layout the later stages read.

The data comes from the Hub (``data.path`` a dataset id, with ``data.config``), from a local folder
of split files (``train.*``; ``validation.*``, ``dev.*`` or ``val.*``; ``test.*``, found by the
patterns ``datasets`` uses), or from the files ``data.files`` names. ``datasets`` reads them:
delimited text (CSV, TSV, any delimiter) through pandas with the reader options of ``data.*``,
JSON Lines, JSON and Parquet as they are.

Whatever the source's columns, ``data/raw/<role>.parquet`` (role: train, validation, test) holds
``text``, ``text_pair`` for sentence pairs, ``label`` (the class index, -1 where unlabelled; for
``data.task: regression`` the score as float32, NaN where unscored) and ``idx`` where the source has
one. ``info.json`` holds the class names and what was read from where.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import MULTI_LABEL, REGRESSION, DataConfig
from pipeline.errors import PipelineError, first_line
from pipeline.hub import looks_local, not_found
from pipeline.outputs import atomic_directory, read_json_output, write_json_atomic

TRAIN_SPLIT = "train"
EVAL_SPLIT = "validation"
SELECT_SPLIT = "select"  # carved from training by data.select_fraction, for train.select_best
TEST_SPLIT = "test"
LABELED_SPLITS = (TRAIN_SPLIT, EVAL_SPLIT)
UNLABELED = -1  # the label of an example without one, such as GLUE's hidden-answer test split
INFO_FILE = "info.json"
# Files that datasets reads as text; Parquet and Arrow carry their own encoding.
TEXT_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt")
DELIMITED = {".csv": ",", ".tsv": "\t"}  # the delimiter a suffix implies; .txt and others need data.delimiter
FORMAT_OF_SUFFIX = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".jsonl": "json"}
FORMAT_OF_SUFFIX |= {".parquet": "parquet", ".arrow": "arrow"}
# How datasets says that a split has no rows (its own wording is about "instructions").
_EMPTY_SPLIT = re.compile(r'Instruction "([^"]+)" corresponds to no data')
_INTEGER = re.compile(r"[+-]?\d+")


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No progress bars or log lines from ``datasets``: reading takes seconds, and on failure the
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


def check_utf8_files(files: list[Path], key_value: str) -> None:
    """Refuse a text data file that is not UTF-8, naming the file and the line (datasets only says "0xe9")."""
    for file in files:
        if file.suffix.lower() not in TEXT_FILE_SUFFIXES:
            continue
        content = file.read_bytes()
        try:
            content.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = content.count(b"\n", 0, exc.start) + 1
            raise PipelineError(
                f"{key_value}: {file.name} is not UTF-8 text (byte 0x{content[exc.start]:02x} on line {line}); "
                f"re-save it as UTF-8"
            ) from None


@dataclass(frozen=True)
class Source:
    """Where the data comes from: a Hub data set, or local files per split read with one reader."""

    describe: str  # for messages: "dataset 'nyu-mll/glue'" or "data.path='./mine'"
    files: dict[str, list[Path]] | None  # split -> its files; None for the Hub or a folder with configs
    reader: str | None = None  # the datasets builder: csv, json, parquet or arrow
    options: dict[str, Any] | None = None  # the builder's reader options


def find_source(cfg: DataConfig) -> Source:
    """Resolve ``data.path``/``data.files`` to a Hub id or to local files per split and their reader."""
    if cfg.files:
        files = {split: [Path(name).expanduser()] for split, name in cfg.files.items()}
        for split, (file,) in files.items():
            if not file.is_file():
                raise PipelineError(f"data.files.{split}={str(file)!r}: no such file (give an existing file)")
        return _local(cfg, files, "data.files")
    local = Path(cfg.path).expanduser()
    key_value = f"data.path={cfg.path!r}"
    if looks_local(cfg.path) and not local.is_dir():
        raise PipelineError(f"{key_value}: no such directory (give an existing folder or a Hub dataset id)")
    if not local.is_dir():
        return Source(f"dataset {cfg.path!r}", None)
    if cfg.config is not None:  # a folder laid out like a Hub repository, with configurations
        check_utf8_files(sorted(local.rglob("*")), key_value)
        return Source(f"dataset {cfg.path!r}", None)
    from datasets.data_files import DEFAULT_PATTERNS_ALL, DataFilesDict, get_data_patterns

    try:
        patterns = get_data_patterns(str(local))
    except FileNotFoundError:
        patterns = {}
    if patterns == DEFAULT_PATTERNS_ALL:  # no file named after a split: datasets would make every file "train"
        patterns = {}
    found = DataFilesDict.from_patterns(patterns, base_path=str(local)) if patterns else {}
    files = {str(split): [Path(f) for f in sorted(names)] for split, names in found.items()}
    if cfg.train_split not in files:
        listing = ", ".join(sorted(p.name for p in local.iterdir())[:10]) or "nothing"
        raise PipelineError(
            f"{key_value}: no training file found (it holds {listing}); name it train.csv, train.tsv, "
            f"train.jsonl, train.parquet…, or list the files per split in data.files"
        )
    return _local(cfg, files, key_value)


def _local(cfg: DataConfig, files: dict[str, list[Path]], key_value: str) -> Source:
    every = [file for split_files in files.values() for file in split_files]
    check_utf8_files(every, key_value)
    suffix = files[cfg.train_split][0].suffix.lower() if cfg.train_split in files else every[0].suffix.lower()
    reader = cfg.format or FORMAT_OF_SUFFIX.get(suffix)
    if reader is None:
        raise PipelineError(
            f"{key_value}: cannot tell the format of {suffix or 'suffix-less'} files; set data.format "
            f"(csv, json or parquet)"
        )
    options: dict[str, Any] = {}
    if reader == "csv":
        delimiter = cfg.delimiter or DELIMITED.get(suffix)
        if delimiter is None:
            raise PipelineError(
                f"{key_value}: {suffix} files are delimited text, but with which delimiter? "
                f"Set data.delimiter (e.g. ';' or a tab)"
            )
        options = {
            "sep": delimiter,
            "quoting": csv.QUOTE_MINIMAL if cfg.quoting else csv.QUOTE_NONE,
            "encoding": "utf-8-sig",  # drops a byte-order mark, which would otherwise stick to the first column's name
            "keep_default_na": False,  # "NA", "null" or "nan" are words, not missing values
            "na_filter": False,
        }
        if cfg.column_names:
            options |= {"header": None, "names": list(cfg.column_names)}
    return Source(key_value, files, reader, options)


def _csv_columns(file: Path, options: dict[str, Any], key_value: str) -> list[str]:
    """The column names of a delimited file: given, or its header row as pandas reads it."""
    import pandas as pd

    if "names" in options:
        return options["names"]
    try:
        header = pd.read_csv(file, nrows=0, sep=options["sep"], quoting=options["quoting"], encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError) as exc:
        raise PipelineError(
            f"{key_value}: {file.name} has no readable header row ({first_line(exc, limit=200)})"
        ) from None
    return [str(name) for name in header.columns]


def _all_text(columns: list[str]):
    """Every column read as text: a text stays text ("1984" is not a number) in every chunk the reader
    takes, and labels are interpreted afterwards (numbers as text are still numbers there)."""
    import datasets

    return datasets.Features({name: datasets.Value("string") for name in columns})


def load_source(cfg: DataConfig, source: Source):
    """The data set as a ``DatasetDict`` (the splits the run uses), with a one-line error when it cannot be read."""
    import datasets  # imported here: it is slow to import and only this stage needs it

    try:
        if source.files is None:
            local = Path(cfg.path).expanduser()
            return datasets.load_dataset(str(local) if local.is_dir() else cfg.path, cfg.config)
        wanted = [cfg.train_split, cfg.eval_split, cfg.test_split]
        splits = {}
        for split, files in source.files.items():
            if split not in wanted:
                continue
            options = dict(source.options)
            if source.reader == "csv":  # each split its own columns: a test file may have no label column
                options["features"] = _all_text(_csv_columns(files[0], options, source.describe))
            explained = _parse_errors_explained(cfg, files, options["sep"]) if source.reader == "csv" else None
            with explained or contextlib.nullcontext():
                loaded = datasets.load_dataset(source.reader, data_files={split: [str(f) for f in files]}, **options)
            splits[split] = loaded[split]
        return datasets.DatasetDict(splits)
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as exc:
        # OSError, ValueError: ConnectionError, FileNotFoundError, DatasetNotFoundError, bad config, empty split.
        # DatasetGenerationError: a data file that its reader cannot parse; the reason is its cause.
        empty = _EMPTY_SPLIT.search(str(exc))
        cause = f"split {empty.group(1)!r} has no rows" if empty else first_line(_root_cause(exc), limit=200)
        if source.files is not None or Path(cfg.path).expanduser().is_dir():
            raise PipelineError(
                f"{source.describe}: could not read a dataset there: {cause} "
                f"(the folder needs non-empty train and validation files, e.g. train.parquet and validation.parquet)"
            ) from None
        if empty or isinstance(exc, datasets.exceptions.DatasetGenerationError):
            raise PipelineError(f"dataset {cfg.path!r}: could not be read: {cause}") from None
        raise not_found(
            "dataset", f"{cfg.path}" + (f" ({cfg.config})" if cfg.config else ""), "data.path", exc
        ) from None


# pandas' tokenizer on a delimited file whose quote characters opened a field it never closed, or merged lines.
# pandas' tokenizer on a delimited file whose quote characters merged lines it should have kept apart.
_QUOTE_TROUBLE = re.compile(r"EOF inside string starting at row \d+|Expected \d+ fields in line \d+, saw \d+")


@contextlib.contextmanager
def _parse_errors_explained(cfg: DataConfig, files: list[Path], delimiter: str):
    """A delimited file pandas cannot tokenize because of its quotes, named with the line that opens the
    quote and the fix, not the folder hint."""
    import datasets

    try:
        yield
    except (ValueError, datasets.exceptions.DatasetGenerationError) as exc:
        cause = _QUOTE_TROUBLE.search(first_line(_root_cause(exc), limit=200))
        if not (cause and cfg.quoting):
            raise
        opened = next(((f, line) for f in files if (line := _first_open_quote(f, delimiter))), None)
        if opened is None:
            raise
        file, line = opened
        raise PipelineError(
            f'{file}: line {line} opens a quote (") that does not close on that line, so the reader merges '
            f"lines ({cause.group(0)}); set data.quoting: false if quotes are part of the text"
        ) from None


def _first_open_quote(file: Path, delimiter: str) -> int | None:
    """The first line with a field that starts with a quote and does not close it on the line."""
    with open(file, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            for field in line.rstrip("\r\n").split(delimiter):
                stripped = field.strip()
                if stripped.startswith('"') and (len(stripped) == 1 or not stripped.endswith('"')):
                    return number
    return None


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def data_lines(file: Path, reader: str, has_header: bool) -> int | None:
    """How many examples the file holds, counted without its reader: non-blank lines (less a header)
    of delimited text and JSON Lines, the length of a JSON array, Parquet's row count."""
    if reader == "parquet":
        return pq.ParquetFile(file).metadata.num_rows
    if reader not in ("csv", "json"):
        return None
    text = file.read_text(encoding="utf-8-sig")
    if reader == "json" and text.lstrip().startswith("["):
        return len(json.loads(text))
    lines = sum(1 for line in text.splitlines() if line.strip())
    return lines - (1 if reader == "csv" and has_header and lines else 0)


def check_nothing_lost(cfg: DataConfig, source: Source, dataset_dict) -> dict[str, dict]:
    """Rows read against the examples each file holds, per split; refuse a read that lost or merged rows."""
    report = {}
    for split, dataset in dataset_dict.items():
        entry: dict[str, Any] = {"rows": dataset.num_rows}
        if source.files is not None:
            files = source.files[split]
            counts = [data_lines(f, source.reader, has_header=not cfg.column_names) for f in files]
            entry["files"] = [f.name for f in files]
            if None not in counts:
                entry["data_lines"] = sum(counts)
                if entry["data_lines"] != dataset.num_rows:
                    raise PipelineError(
                        f"{', '.join(str(f) for f in files)}: {entry['data_lines']:,} data lines but "
                        f"{dataset.num_rows:,} rows read, so rows were merged or split: most likely by quote "
                        f'characters (") that are part of the text (set data.quoting: false) or a wrong delimiter '
                        f"(set data.delimiter)"
                    )
        report[split] = entry
    return report


def pick_splits(cfg: DataConfig, dataset_dict, describe: str) -> dict[str, Any]:
    """The source's splits under the roles the pipeline gives them: train, validation, test."""
    found = list(dataset_dict)
    if cfg.train_split not in dataset_dict:
        raise PipelineError(f"{describe}: has no {cfg.train_split!r} split (found {found}); set data.train_split")
    roles = {TRAIN_SPLIT: dataset_dict[cfg.train_split]}
    if cfg.eval_split in dataset_dict:
        if cfg.eval_fraction is not None:
            raise PipelineError(
                f"{describe}: data.eval_fraction={cfg.eval_fraction} would carve a validation split, but the data has "
                f"one ({cfg.eval_split!r}); leave data.eval_fraction null, or point data.eval_split elsewhere"
            )
        roles[EVAL_SPLIT] = dataset_dict[cfg.eval_split]
    elif cfg.eval_fraction is None:
        raise PipelineError(
            f"{describe}: has no {cfg.eval_split!r} split (found {found}); a train and a validation split are "
            f"required (set data.eval_split, or data.eval_fraction to carve one from training)"
        )
    if cfg.test_split and cfg.test_split in dataset_dict:
        roles[TEST_SPLIT] = dataset_dict[cfg.test_split]
    return roles


def check_columns(cfg: DataConfig, splits: dict[str, Any], describe: str) -> None:
    for role, dataset in splits.items():
        label_columns = list(cfg.label_columns or [cfg.label_column])
        needed = [*cfg.text_columns, *(label_columns if role in LABELED_SPLITS else [])]
        missing = [c for c in needed if c not in dataset.column_names]
        if missing:
            hint = " (one column only: is data.delimiter right?)" if len(dataset.column_names) == 1 else ""
            raise PipelineError(
                f"{describe}: split {role!r} lacks column(s) {missing}; it has {dataset.column_names}{hint}. "
                f"Set data.text_columns and data.label_column to columns it has"
            )
        if dataset.num_rows == 0:
            raise PipelineError(f"{describe}: split {role!r} is empty")


def check_texts(texts: list, column: str, where: str) -> list[str]:
    for row, text in enumerate(texts):
        if isinstance(text, bytes):  # a binary column: text only if it decodes
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise PipelineError(
                    f"{where} row {row} has a {column!r} that is not UTF-8 text ({text[:40]!r}); "
                    f"store the text as UTF-8 strings"
                ) from None
        if not isinstance(text, str) or not text.strip():
            raise PipelineError(f"{where} row {row} has an empty or missing {column!r}; every example needs text")
    if texts and isinstance(texts[0], bytes):  # valid UTF-8, but the tokenizer takes strings
        raise PipelineError(f"{where}: column {column!r} holds bytes, not text; store it as a string column")
    return texts


def _is_missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, float) and np.isnan(value))
    )


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and _INTEGER.fullmatch(value.strip()) is not None


def class_names(cfg: DataConfig, train, describe: str) -> tuple[list[str], Any]:
    """The class names in their documented order, and a function from a label value to its class index
    (None for a ``ClassLabel``, whose values are the indices).

    A ``ClassLabel`` keeps its own order; integer labels (0-based, 1-based or sparse, as numbers or
    as text) sort by value; string labels sort alphabetically.
    """
    feature = train.features[cfg.label_column]
    if getattr(feature, "names", None):
        return list(feature.names), None  # the values are the class indices already
    values = train.data.column(cfg.label_column).to_pylist()
    for row, value in enumerate(values):
        if _is_missing(value):
            raise PipelineError(
                f"{describe}: split 'train' row {row} has no {cfg.label_column!r}; every training example needs a label"
            )
    integers = [_is_integer(value) for value in values]
    if all(integers):
        classes = sorted({int(float(value)) for value in values})
        index = {value: i for i, value in enumerate(classes)}
        return [str(value) for value in classes], lambda value: index.get(int(float(value)), None)
    if any(integers):
        number = next(v for v, is_int in zip(values, integers) if is_int)
        word = next(v for v, is_int in zip(values, integers) if not is_int)
        raise PipelineError(
            f"{describe}: the {cfg.label_column!r} column mixes numbers and strings (e.g. {number!r} and {word!r}); "
            f"use one kind of label"
        )
    classes = sorted({str(value).strip() for value in values})
    index = {value: i for i, value in enumerate(classes)}
    return classes, lambda value: index.get(str(value).strip(), None)


def label_ids(cfg: DataConfig, role: str, dataset, names: list[str], to_index, describe: str) -> np.ndarray:
    """Each example's class index; -1 for an unlabelled test example."""
    if cfg.label_column not in dataset.column_names:
        return np.full(dataset.num_rows, UNLABELED, dtype=np.int64)
    ids = np.empty(dataset.num_rows, dtype=np.int64)
    for row, value in enumerate(dataset.data.column(cfg.label_column).to_pylist()):
        if _is_missing(value) or (_is_integer(value) and int(float(value)) == UNLABELED and "-1" not in names):
            if role in LABELED_SPLITS:
                raise PipelineError(
                    f"{describe}: split {role!r} row {row} has no {cfg.label_column!r} ({value!r}); "
                    f"every {role} example needs a label"
                )
            ids[row] = UNLABELED
            continue
        if to_index is None:  # a ClassLabel: the value is the index
            if not 0 <= value < len(names):
                raise PipelineError(
                    f"{describe}: split {role!r} row {row} has label {value}, outside the classes "
                    f"0..{len(names) - 1} ({', '.join(names)}); fix the data or its label feature"
                )
            ids[row] = value
            continue
        index = to_index(value)
        if index is None:
            raise PipelineError(
                f"{describe}: split {role!r} row {row} has label {value!r}, which never occurs in training "
                f"(classes: {', '.join(names)}); fix the data, or drop the examples of that class"
            )
        ids[row] = index
    return ids


def regression_targets(cfg: DataConfig, role: str, dataset, describe: str) -> np.ndarray:
    """Each example's score as float32; NaN for an unscored test example. A score must be a finite number."""
    if cfg.label_column not in dataset.column_names:
        return np.full(dataset.num_rows, np.nan, dtype=np.float32)
    targets = np.empty(dataset.num_rows, dtype=np.float32)
    for row, value in enumerate(dataset.data.column(cfg.label_column).to_pylist()):
        if _is_missing(value) and role not in LABELED_SPLITS:
            targets[row] = np.nan
            continue
        try:
            number = float(str(value).strip()) if not isinstance(value, bool) else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise PipelineError(
                f"{describe}: split {role!r} row {row} has {cfg.label_column!r} {value!r}, which is not a finite "
                f"number; data.task=regression needs a score on every {role} example (fix the row)"
            )
        targets[row] = number
    return targets


def single_label_ids(cfg: DataConfig, splits: dict[str, Any], tables: dict[str, dict], describe: str) -> list[str]:
    """Put each split's class indices into ``tables``; return the class names."""
    names, to_index = class_names(cfg, splits[TRAIN_SPLIT], describe)
    if len(names) < 2:
        raise PipelineError(
            f"{describe}: the {cfg.label_column!r} column has {len(names)} class(es) in training "
            f"({', '.join(names) or 'none'}); a classifier needs at least 2"
        )
    for role, dataset in splits.items():
        tables[role]["label"] = label_ids(cfg, role, dataset, names, to_index, describe)
    return names


def given_label_names(cfg: DataConfig) -> list[str] | None:
    """``data.label_names`` as a list: as given, or the lines of the file it names; None if not set."""
    if cfg.label_names is None:
        return None
    if isinstance(cfg.label_names, tuple):
        names = list(cfg.label_names)
    else:
        path = Path(cfg.label_names).expanduser()
        if not path.is_file():
            raise PipelineError(
                f"data.label_names={cfg.label_names!r}: no such file (give a file with one label name per line, "
                f"or a list of names)"
            )
        check_utf8_files([path], f"data.label_names={cfg.label_names!r}")
        names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated or len(names) < 2:
        problem = f"names {repeated[0]!r} twice" if repeated else f"{len(names)} name(s)"
        raise PipelineError(f"data.label_names={cfg.label_names!r}: {problem}; give two or more different names")
    return names


def multi_label_targets(cfg: DataConfig, splits: dict[str, Any], describe: str):
    """The label names and, per split, each example's labels as a row of 0/1 (NaN where unlabelled).

    Labels come as one 0/1 column per label (``data.label_columns``), as text with a separator
    (``data.label_separator``) or as a list per row; list items and separated parts are label ids
    (integers, named by ``data.label_names`` or the data's ``ClassLabel``) or label names.
    """
    if cfg.label_columns:
        names = list(cfg.label_columns)
        return names, {role: _flag_columns(cfg, role, data, describe) for role, data in splits.items()}
    sets = {role: _label_sets(cfg, role, data, describe) for role, data in splits.items()}
    feature = splits[TRAIN_SPLIT].features[cfg.label_column]
    inner = getattr(feature, "feature", None)
    names = given_label_names(cfg) or (list(inner.names) if getattr(inner, "names", None) else None)
    items = [item for rows in sets.values() for row in rows if row for item in row]
    integers = bool(items) and all(_is_integer(item) for item in items)
    if not integers and any(_is_integer(item) for item in items) and names is None:
        number = next(item for item in items if _is_integer(item))
        word = next(item for item in items if not _is_integer(item))
        raise PipelineError(
            f"{describe}: the {cfg.label_column!r} labels mix ids and names (e.g. {number!r} and {word!r}); "
            f"use one kind of label"
        )
    if integers and names is None:
        raise PipelineError(
            f"{describe}: the {cfg.label_column!r} labels are integer ids, and nothing names them; set "
            f"data.label_names to the names in id order (a list, or a file with one name per line)"
        )
    if names is None:
        names = sorted({str(item).strip() for row in sets[TRAIN_SPLIT] for item in row or ()})
    index = {name: i for i, name in enumerate(names)}
    targets = {}
    for role, rows in sets.items():
        target = np.zeros((len(rows), len(names)), dtype=np.float32)
        for row, labels in enumerate(rows):
            if labels is None:
                target[row] = np.nan
                continue
            for item in labels:
                k = int(float(item)) if integers else index.get(str(item).strip())
                if k is None or not 0 <= k < len(names):
                    known = f"ids 0..{len(names) - 1}" if integers else f"labels: {', '.join(names)}"
                    raise PipelineError(
                        f"{describe}: split {role!r} row {row} has label {item!r}, not one of data.label_names "
                        f"({known}); fix the row or the names"
                    )
                target[row, k] = 1
        targets[role] = target
    return names, targets


def _label_sets(cfg: DataConfig, role: str, dataset, describe: str) -> list[list | None]:
    """Each example's labels as a list (empty: no label), or None for an unlabelled test example."""
    if cfg.label_column not in dataset.column_names:
        return [None] * dataset.num_rows
    rows = []
    for row, value in enumerate(dataset.data.column(cfg.label_column).to_pylist()):
        if isinstance(value, list):
            rows.append(value)
        elif value is None:
            if role in LABELED_SPLITS:
                raise PipelineError(
                    f"{describe}: split {role!r} row {row} has no {cfg.label_column!r}; a {role} example needs its "
                    f"labels (an empty list or cell for none)"
                )
            rows.append(None)
        elif cfg.label_separator is None:
            raise PipelineError(
                f"{describe}: the {cfg.label_column!r} column holds text ({value!r} in split {role!r}), not a list "
                f"of labels; set data.label_separator to the character between the labels (e.g. ',')"
            )
        else:
            rows.append([part.strip() for part in str(value).split(cfg.label_separator) if part.strip()])
    return rows


def _flag_columns(cfg: DataConfig, role: str, dataset, describe: str) -> np.ndarray:
    """One 0/1 column per label, as a row of 0/1 per example; NaN rows for a test split without them."""
    if not all(column in dataset.column_names for column in cfg.label_columns):
        return np.full((dataset.num_rows, len(cfg.label_columns)), np.nan, dtype=np.float32)
    target = np.zeros((dataset.num_rows, len(cfg.label_columns)), dtype=np.float32)
    for k, column in enumerate(cfg.label_columns):
        for row, value in enumerate(dataset.data.column(column).to_pylist()):
            flag = str(value).strip().lower() if value is not None else ""
            if flag not in ("0", "1", "0.0", "1.0", "true", "false"):
                raise PipelineError(
                    f"{describe}: split {role!r} row {row} has {value!r} in label column {column!r}; each of "
                    f"data.label_columns holds 0 or 1 (true or false)"
                )
            target[row, k] = flag in ("1", "1.0", "true")
    return target


def subsample_indices(n_rows: int, n_keep: int, seed: int) -> np.ndarray:
    """A seeded random subset of row numbers, kept in the original order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_rows)[:n_keep])


def download(cfg: DataConfig, out_dir: str | Path) -> dict:
    """Write ``<role>.parquet`` for every split plus ``info.json`` into ``out_dir``."""
    with quiet_datasets():
        return _download(cfg, out_dir)


def _download(cfg: DataConfig, out_dir: str | Path) -> dict:
    source = find_source(cfg)
    dataset_dict = load_source(cfg, source)
    describe = source.describe
    read = check_nothing_lost(cfg, source, dataset_dict)
    splits = pick_splits(cfg, dataset_dict, describe)
    check_columns(cfg, splits, describe)
    tables: dict[str, dict[str, Any]] = {}
    for role, dataset in splits.items():
        where = f"{describe}: split {role!r}"
        tables[role] = {
            name: check_texts(dataset.data.column(column).to_pylist(), column, where)
            for name, column in zip(("text", "text_pair"), cfg.text_columns)
        }
    if cfg.task == REGRESSION:
        names = [cfg.label_column]  # the one output's name
        for role, dataset in splits.items():
            tables[role]["label"] = regression_targets(cfg, role, dataset, describe)
    elif cfg.task == MULTI_LABEL:
        names, targets = multi_label_targets(cfg, splits, describe)
        for role, target in targets.items():
            tables[role]["label"] = target
    else:
        names = single_label_ids(cfg, splits, tables, describe)
    for role, dataset in splits.items():
        if "idx" in dataset.column_names:
            tables[role]["idx"] = dataset.data.column("idx").to_pylist()

    carved = None
    if EVAL_SPLIT not in tables:
        tables[TRAIN_SPLIT], tables[EVAL_SPLIT] = carve(tables[TRAIN_SPLIT], cfg.eval_fraction, cfg.subsample_seed)
        carved = {"from": cfg.train_split, "fraction": cfg.eval_fraction, "seed": cfg.subsample_seed}
    n_source_train = len(tables[TRAIN_SPLIT]["label"])
    subsample = None
    if cfg.max_train_samples is not None and cfg.max_train_samples < n_source_train:
        keep = subsample_indices(n_source_train, cfg.max_train_samples, cfg.subsample_seed)
        tables[TRAIN_SPLIT] = take(tables[TRAIN_SPLIT], keep)
        subsample = {"of": n_source_train, "kept": len(keep), "seed": cfg.subsample_seed}
    # From the examples training would use (after data.max_train_samples), so it trains on the rest.
    select = None
    if cfg.select_fraction is not None:
        present = set(np.unique(tables[TRAIN_SPLIT]["label"]).tolist())
        tables[TRAIN_SPLIT], tables[SELECT_SPLIT] = carve(
            tables[TRAIN_SPLIT],
            cfg.select_fraction,
            cfg.subsample_seed + 1,  # not the eval carve's draw
        )
        select = {"from": cfg.train_split, "fraction": cfg.select_fraction, "seed": cfg.subsample_seed + 1}
        absent = sorted(present - set(np.unique(tables[SELECT_SPLIT]["label"]).tolist()))
        if absent and cfg.task == "single_label":
            raise PipelineError(
                f"{describe}: data.select_fraction={cfg.select_fraction} carves {len(tables[SELECT_SPLIT]['label'])} "
                f"example(s), with no example of class {names[absent[0]]!r}; the best epoch must be chosen on every "
                f"class: raise data.select_fraction"
            )
    if cfg.task == REGRESSION:
        check_scores_vary(tables, cfg.label_column, describe)
    elif cfg.task != MULTI_LABEL:
        check_classes_trained(tables, names, subsample is not None, describe)

    info = {
        "source": {"path": cfg.path, "config": cfg.config, "files": dict(cfg.files) if cfg.files else None},
        "label_names": names,
        "text_columns": list(cfg.text_columns),
        "label_column": cfg.label_column,
        "splits": {role: len(columns["label"]) for role, columns in tables.items()},
        "read": {role: {"from": split, **read[split]} for role, split in _role_sources(cfg, splits).items()},
        "eval_split_carved": carved,
        **({"select_split_carved": select} if select else {}),  # absent: the default's info.json as before
        **({"task": cfg.task} if cfg.task != "single_label" else {}),
        "train_subsample": subsample,
    }
    with atomic_directory(out_dir) as staging:
        for role, columns in tables.items():
            pq.write_table(
                pa.table({name: _arrow(values) for name, values in columns.items()}), staging / f"{role}.parquet"
            )
        write_json_atomic(staging / INFO_FILE, info)
    for role, entry in info["read"].items():  # after the write: a failed run prints its error line alone
        lines = f" ({entry['data_lines']:,} data lines in {', '.join(entry['files'])})" if "data_lines" in entry else ""
        print(f"download: {role}: {entry['rows']:,} rows read from split {entry['from']!r}{lines}", file=sys.stderr)
    if select:
        print(
            f"download: select: {info['splits'][SELECT_SPLIT]:,} rows carved from training "
            f"(data.select_fraction={cfg.select_fraction}), for train.select_best",
            file=sys.stderr,
        )
    return info


def check_classes_trained(tables: dict[str, dict], names: list[str], subsampled: bool, describe: str) -> None:
    """At least two classes to train on, and none in validation that training lacks."""
    trained = set(np.unique(tables[TRAIN_SPLIT]["label"]).tolist())
    if len(trained) < 2:
        raise PipelineError(
            f"{describe}: the training examples all have one class ({names[min(trained)]!r}); a classifier needs "
            f"examples of at least 2"
        )
    unseen = sorted(set(np.unique(tables[EVAL_SPLIT]["label"]).tolist()) - trained)
    if unseen:
        raise PipelineError(
            f"{describe}: the validation split has class {names[unseen[0]]!r}, which never occurs in the training "
            f"examples{' kept by data.max_train_samples' if subsampled else ''}; give training examples of it, "
            f"or drop it from validation"
        )


def check_scores_vary(tables: dict[str, dict], column: str, describe: str) -> None:
    """Scores that never vary leave nothing to learn and no correlation to compute."""
    for role in (TRAIN_SPLIT, EVAL_SPLIT):
        scores = tables[role]["label"]
        if len(scores) > 1 and np.all(scores == scores[0]):
            raise PipelineError(
                f"{describe}: every {role} example has the same {column!r} ({scores[0]:g}); regression needs scores "
                f"that vary (is data.label_column the score column?)"
            )


def _role_sources(cfg: DataConfig, splits: dict[str, Any]) -> dict[str, str]:  # the splits read, not carved
    named = {TRAIN_SPLIT: cfg.train_split, EVAL_SPLIT: cfg.eval_split, TEST_SPLIT: cfg.test_split}
    return {role: named[role] for role in splits}


def take(columns: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    return {
        name: [values[i] for i in rows] if isinstance(values, list) else values[rows]
        for name, values in columns.items()
    }


def carve(columns: dict[str, Any], fraction: float, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split off a seeded random ``fraction`` of the training examples as the validation split."""
    n = len(columns["label"])
    held_out = subsample_indices(n, max(1, round(n * fraction)), seed)
    kept = np.setdiff1d(np.arange(n), held_out)
    return take(columns, kept), take(columns, held_out)


@dataclass(frozen=True)
class RawSplit:
    texts: list[str]
    text_pairs: list[str] | None  # the second text of each pair; None for single texts
    labels: np.ndarray

    @property
    def sentences(self) -> list[str]:
        return self.texts


def read_info(raw_dir: str | Path) -> dict:
    return read_json_output(Path(raw_dir) / INFO_FILE, stage="download")


def read_split(raw_dir: str | Path, split: str) -> RawSplit:
    path = Path(raw_dir) / f"{split}.parquet"
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run the download stage first (dvc repro download)") from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise PipelineError(
            f"{path} is damaged ({str(exc).splitlines()[0]}); rerun: dvc repro --force download"
        ) from None
    if "text" not in table.column_names or "label" not in table.column_names:
        raise PipelineError(f"{path} was written by an older version of the pipeline; rerun: dvc repro download")
    return RawSplit(
        texts=table.column("text").to_pylist(),
        text_pairs=table.column("text_pair").to_pylist() if "text_pair" in table.column_names else None,
        labels=_labels(table.column("label")),
    )


def _arrow(values):
    """A column for Parquet: a multi-label task's (examples, labels) array becomes one fixed-size list per row."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    return values


def _labels(column) -> np.ndarray:
    """Class indices as int64, scores (regression) as float32, label sets (multi-label) as (examples,
    labels) float32 of 0 and 1 (NaN for an unlabelled example)."""
    if pa.types.is_fixed_size_list(column.type):
        flat = column.combine_chunks()
        return flat.flatten().to_numpy().astype(np.float32).reshape(len(flat), column.type.list_size)
    values = column.to_numpy()
    return values.astype(np.float32) if np.issubdtype(values.dtype, np.floating) else values.astype(np.int64)
