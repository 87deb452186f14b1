"""Atomic writes: a stage that fails or is killed leaves no half-written output behind.

Everything is first written next to its destination under a hidden temporary name, then moved into
place with a rename, which the operating system performs all at once.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        try:
            yield staging
        except Exception as exc:
            full = disk_full_error(exc, written=path, staging=staging)
            if full is None:
                raise
            raise full from exc
        # mkdtemp (and some writers) make things private; the result is an ordinary, readable output.
        staging.chmod(0o755)
        for item in staging.rglob("*"):
            item.chmod(0o755 if item.is_dir() else 0o644)
        if path.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, retired / path.name)
            try:
                os.replace(staging, path)
            except BaseException:
                os.replace(retired / path.name, path)  # put the earlier output back
                raise
            finally:
                shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it visible
        os.chmod(staging, 0o644)
        os.replace(staging, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        full = disk_full_error(exc, written=path, staging=Path(staging)) if isinstance(exc, Exception) else None
        if full is None:
            raise
        raise full from exc


def disk_full_error(exc: Exception, written: Path, staging: Path | None = None) -> OSError | None:
    """For an error that means the disk is full, an ``OSError(ENOSPC)`` that names the output as the user knows it.

    Writers report a full disk each in their own way: Python and pyarrow with the errno but often no
    file name, safetensors in its own exception type whose text ends in "(os error 28)". A file name,
    when there is one, is that of the hidden staging copy, so it is mapped back onto ``written``.
    """
    full = (errno.ENOSPC, errno.EDQUOT)
    code = exc.errno if isinstance(exc, OSError) and exc.errno in full else None
    if code is None:
        text = str(exc)
        code = next((c for c in full if os.strerror(c) in text or f"(os error {c})" in text), None)
    if code is None:
        return None
    name = Path(exc.filename) if isinstance(exc, OSError) and exc.filename else None
    if name is None:
        name = written
    elif staging is not None and name.is_relative_to(staging):
        name = written / name.relative_to(staging)
    return OSError(code, os.strerror(code), str(name))


def to_json(data: Any) -> str:
    """The one JSON layout the project writes: sorted keys, so equal data gives equal bytes."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, to_json(data))


def write_csv_atomic(
    path: str | Path, header: list[str], rows: list[list[Any]] | list[tuple[Any, ...]], delimiter: str = ","
) -> None:
    """A CSV file (or TSV with ``delimiter="\\t"``), all at once: a text holding the delimiter or a quote
    is quoted, so every row keeps its columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def read_json_output(path: str | Path, stage: str) -> Any:
    """Read a JSON file that an earlier stage wrote; if it is missing, say which stage to run."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run the {stage} stage first (dvc repro {stage})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PipelineError(f"{path} is damaged ({exc}); rerun the {stage} stage: dvc repro --force {stage}") from None
