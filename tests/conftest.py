"""Shared fixtures: the real uncased tokenizer from the Hugging Face cache, tiny random models, tiny data.

Tests never reach the Hub. ``PIPELINE_SHARED`` may name a folder of offline material: ``hf-home/``, a
Hugging Face cache, and ``data/``, real data sets (``data/glue``, ``data/mrpc``, ...). When ``HF_HOME`` is
not set and ``$PIPELINE_SHARED/hf-home`` exists, a scratch copy of it is used (the libraries write lock
files into their cache). Tests that read ``$PIPELINE_SHARED/data`` are skipped without it (:func:`needs_shared`).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The folder of offline material, or None: the one place that reads PIPELINE_SHARED.
SHARED = Path(os.environ["PIPELINE_SHARED"]).expanduser().resolve() if os.environ.get("PIPELINE_SHARED") else None
if "HF_HOME" not in os.environ and SHARED is not None and (SHARED / "hf-home").is_dir():
    _scratch = Path(tempfile.mkdtemp(prefix="hf-home-"))
    shutil.copytree(SHARED / "hf-home", _scratch, dirs_exist_ok=True)
    os.environ["HF_HOME"] = str(_scratch)
# Must be set before transformers, datasets or huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# pytest-xdist runs the tests in several worker processes at once. Each (and every process it starts,
# stages included) computes on its share of the cores, as `dvc queue start -j N` workers do with
# PIPELINE_CPU_THREADS: threads beyond the cores would fight over them (docs/scaling.md). Set before
# torch is imported, which reads it once.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    # Counted here, not by pipeline.parallel.usable_cpu_cores(): importing that module loads torch.
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores // _WORKERS)))

import pytest  # noqa: E402


def needs_shared(relative: str) -> pytest.MarkDecorator:
    """Skip a test unless ``$PIPELINE_SHARED/<relative>`` (e.g. ``data/glue``) exists."""
    if SHARED is None:
        return pytest.mark.skip(reason=f"PIPELINE_SHARED is not set (the folder that holds {relative})")
    return pytest.mark.skipif(
        not (SHARED / relative).exists(), reason=f"{SHARED / relative} does not exist (PIPELINE_SHARED={SHARED})"
    )


PRETRAINED = "sentence-transformers/all-MiniLM-L6-v2"  # in the offline cache; its vocabulary is BERT's uncased one

POSITIVE = [
    "a gorgeous , witty film",
    "the best movie of the year",
    "warm and funny",
    "a triumph",
    "beautifully acted and moving",
    "i loved every minute of it",
    "smart , fresh and delightful",
    "an exhilarating ride",
]
NEGATIVE = [
    "a dull , lifeless mess",
    "the worst film in years",
    "boring and predictable",
    "a disaster",
    "badly written and badly acted",
    "i hated every minute of it",
    "tedious , stale and witless",
    "a painful slog",
]


def sentiment_rows(n: int, offset: int = 0) -> tuple[list[str], list[int]]:
    """``n`` labelled sentences, alternating positive and negative, with some variety in length."""
    sentences, labels = [], []
    for i in range(offset, offset + n):
        pool, label = (POSITIVE, 1) if i % 2 == 0 else (NEGATIVE, 0)
        base = pool[(i // 2) % len(pool)]
        sentences.append(base + " ." * (i % 5))
        labels.append(label)
    return sentences, labels


def write_glue_like(
    folder: Path, n_train: int = 64, n_validation: int = 24, n_test: int = 8, features=None, rows=None
) -> Path:
    """A local dataset folder laid out like SST-2: ``{train,validation,test}.parquet`` with ClassLabel names."""
    import datasets

    features = features or datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "positive"]),
            "idx": datasets.Value("int32"),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    offset = 0
    for split, n in sizes.items():
        if rows and split in rows:
            columns = rows[split]
        else:
            sentences, labels = sentiment_rows(n, offset)
            columns = {"sentence": sentences, "label": labels if split != "test" else [-1] * n, "idx": list(range(n))}
        offset += n
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(folder / f"{split}.parquet"))
    return folder


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(PRETRAINED)


def save_tiny_model(folder: Path, tokenizer, architecture: str = "bert", dropout: float = 0.1) -> Path:
    """A randomly initialised 2-layer encoder with the real vocabulary, saved like a Hub checkpoint.

    ``dropout=0`` makes training a function of the batches alone, for comparing runs that draw
    different random numbers (one process against several).
    """
    import torch
    from transformers import AutoModel, BertConfig, DistilBertConfig, MPNetConfig

    torch.manual_seed(0)
    if architecture == "bert":
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
    elif architecture == "mpnet":  # all-mpnet-base-v2's architecture: relative position buckets, no token types
        config = MPNetConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=66,
            pad_token_id=tokenizer.pad_token_id,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
    else:
        config = DistilBertConfig(
            vocab_size=tokenizer.vocab_size,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
            dropout=dropout,
            attention_dropout=dropout,
        )
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, tokenizer) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), tokenizer, "bert")


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory, tokenizer) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-distilbert"), tokenizer, "distilbert")


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory, tokenizer) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-mpnet"), tokenizer, "mpnet")


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    return write_glue_like(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def tokenized(glue_dir, tiny_bert, tmp_path_factory) -> Path:
    """The tokenize stage's output for ``glue_dir`` with ``tiny_bert``'s tokenizer."""
    from pipeline.config import DataConfig, ModelConfig, TokenizeConfig
    from pipeline.data import download
    from pipeline.tokenization import tokenize

    root = tmp_path_factory.mktemp("tokenized")
    download(DataConfig(path=str(glue_dir), config=None), root / "raw")
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), root / "raw", root / "tok")
    return root / "tok"


def kill_process_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once, as a power cut or a preemption would."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    family, todo = [], [pid]
    while todo:
        family.append(todo.pop())
        todo.extend(children.get(family[-1], []))
    for member in family:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def live_curve(log_dir: Path, name: str) -> list[tuple[int, float]]:
    """A DVCLive curve (``plots/metrics/<name>.tsv``) as (step, value) rows."""
    lines = (log_dir / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()
    assert lines[0] == f"step\t{name.rsplit('/', 1)[-1]}"
    return [(int(step), float(value)) for step, value in (line.split("\t") for line in lines[1:])]


def live_files(log_dir: Path) -> dict[str, str]:
    """Every file of a DVCLive folder, by its path inside the folder."""
    return {
        path.relative_to(log_dir).as_posix(): path.read_text() for path in sorted(log_dir.rglob("*")) if path.is_file()
    }
