"""Stage 2, tokenize: turn the raw splits into unpadded token-id tensors on disk.

Each labelled split becomes one safetensors file holding three flat tensors: every example's token
ids laid end to end (``input_ids``), where each example starts (``offsets``), and ``labels``. Padding
is left to the batch collator, so a batch is only as long as its longest sentence. safetensors loads
by memory map, without pickle, and the same inputs always give the same bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline.config import ModelConfig, TokenizeConfig
from pipeline.data import LABELED_SPLITS, read_info, read_split
from pipeline.errors import PipelineError
from pipeline.modeling import load_config, load_tokenizer, max_sequence_length
from pipeline.outputs import atomic_directory, read_json_output, write_json_atomic

META_FILE = "meta.json"


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the vocabulary and special tokens: equal fingerprints tokenize alike."""
    content = json.dumps(
        [sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens, type(tokenizer).__name__],
        ensure_ascii=False,
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def encode(tokenizer, sentences: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of all sentences laid end to end, and the offset where each sentence starts."""
    ids = tokenizer(
        sentences, truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=False
    )["input_ids"]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def length_stats(lengths: np.ndarray, max_length: int) -> dict:
    return {
        "n_examples": int(lengths.size),
        "n_tokens": int(lengths.sum()),
        "length_mean": round(float(lengths.mean()), 3),
        "length_p50": int(np.percentile(lengths, 50, method="nearest")),
        "length_p95": int(np.percentile(lengths, 95, method="nearest")),
        "length_max": int(lengths.max()),
        "n_at_max_length": int((lengths >= max_length).sum()),  # truncated, or exactly that long
    }


def tokenize(model_cfg: ModelConfig, tok_cfg: TokenizeConfig, raw_dir: str | Path, out_dir: str | Path) -> dict:
    """Tokenize the labelled splits of ``raw_dir`` into ``out_dir`` and return the description written."""
    # The config first: a name that is no model at all is reported as such, not as a missing tokenizer.
    config = load_config(model_cfg.name, trust_remote_code=model_cfg.trust_remote_code)
    tokenizer = load_tokenizer(model_cfg.name, trust_remote_code=model_cfg.trust_remote_code)
    limit = max_sequence_length(config, tokenizer)
    if tok_cfg.max_length > limit:
        raise PipelineError(
            f"invalid parameter tokenize.max_length={tok_cfg.max_length}: "
            f"{model_cfg.name} accepts at most {limit} tokens "
            f"(set it to a value in 2..{limit})"
        )
    info = read_info(raw_dir)
    meta = {
        "tokenizer": model_cfg.name,
        "tokenizer_class": type(tokenizer).__name__,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "max_length": tok_cfg.max_length,
        "label_names": info["label_names"],
        "splits": {},
    }
    with atomic_directory(out_dir) as staging:
        for split in LABELED_SPLITS:
            raw = read_split(raw_dir, split)
            flat, offsets = encode(tokenizer, raw.sentences, tok_cfg.max_length)
            tensors = {
                "input_ids": torch.from_numpy(flat),
                "offsets": torch.from_numpy(offsets),
                "labels": torch.from_numpy(raw.labels),
            }
            save_file(tensors, staging / f"{split}.safetensors")
            meta["splits"][split] = length_stats(np.diff(offsets), tok_cfg.max_length)
        write_json_atomic(staging / META_FILE, meta)
    return meta


@dataclass(frozen=True)
class TokenizedSplit:
    """One split of the cache: example ``i`` is ``input_ids[offsets[i]:offsets[i + 1]]``."""

    input_ids: torch.Tensor
    offsets: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.numel()

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.input_ids[self.offsets[index] : self.offsets[index + 1]], int(self.labels[index])


def read_meta(tokenized_dir: str | Path) -> dict:
    return read_json_output(Path(tokenized_dir) / META_FILE, stage="tokenize")


def load_split(tokenized_dir: str | Path, split: str) -> TokenizedSplit:
    path = Path(tokenized_dir) / f"{split}.safetensors"
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the tokenize stage first (dvc repro tokenize)")
    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise PipelineError(f"{path} is damaged ({exc}); delete it and rerun: dvc repro --force tokenize") from None
    return TokenizedSplit(tensors["input_ids"], tensors["offsets"], tensors["labels"])
