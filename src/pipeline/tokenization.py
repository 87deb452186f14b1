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
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline.config import ModelConfig, TokenizeConfig
from pipeline.data import LABELED_SPLITS, SELECT_SPLIT, read_info, read_split
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


@dataclass(frozen=True)
class Encoded:
    """A split's token ids laid end to end; example ``i`` is ``input_ids[offsets[i]:offsets[i + 1]]``."""

    input_ids: np.ndarray
    offsets: np.ndarray
    token_type_ids: np.ndarray | None  # which text of a pair each token belongs to, where the model uses it
    n_truncated: int  # examples longer than max_length, cut to it


def encode(
    tokenizer, texts: list[str], max_length: int, pairs: list[str] | None = None, token_types: bool = False
) -> Encoded:
    """Token ids of every example (a text, or a pair as the model's sentence pair), cut to ``max_length``.

    A pair is cut ``longest_first``: a token at a time from whichever text is longer. Only the examples
    over the limit are tokenized a second time, with truncation, so the count of cut examples is exact
    and costs little.
    """
    from transformers.utils import logging as transformers_logging

    def run(rows, truncation):
        return tokenizer(
            [texts[i] for i in rows],
            [pairs[i] for i in rows] if pairs is not None else None,
            truncation="longest_first" if truncation else False,
            max_length=max_length if truncation else None,
            return_attention_mask=False,
            return_token_type_ids=token_types,
        )

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # "sequence longer than the model's maximum": cut just below
    try:
        encoded = run(range(len(texts)), truncation=False)
    finally:
        transformers_logging.set_verbosity(verbosity)
    ids = encoded["input_ids"]
    types = encoded["token_type_ids"] if token_types else None
    too_long = [i for i, example in enumerate(ids) if len(example) > max_length]
    if too_long:
        cut = run(too_long, truncation=True)
        for j, i in enumerate(too_long):
            ids[i] = cut["input_ids"][j]
            if types is not None:
                types[i] = cut["token_type_ids"][j]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1]))
    flat_types = (
        np.fromiter(itertools.chain.from_iterable(types), dtype=np.int8, count=int(offsets[-1]))
        if types is not None
        else None
    )
    return Encoded(flat, offsets, flat_types, len(too_long))


def length_stats(lengths: np.ndarray, max_length: int, n_truncated: int) -> dict:
    return {
        "n_examples": int(lengths.size),
        "n_tokens": int(lengths.sum()),
        "length_mean": round(float(lengths.mean()), 3),
        "length_p50": int(np.percentile(lengths, 50, method="nearest")),
        "length_p95": int(np.percentile(lengths, 95, method="nearest")),
        "length_max": int(lengths.max()),
        "n_at_max_length": int((lengths >= max_length).sum()),  # truncated, or exactly that long
        "n_truncated": n_truncated,
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
    is_pair = len(info.get("text_columns", ["sentence"])) == 2
    special = tokenizer.num_special_tokens_to_add(pair=is_pair)
    if tok_cfg.max_length - special < (2 if is_pair else 1):
        raise PipelineError(
            f"invalid parameter tokenize.max_length={tok_cfg.max_length}: {model_cfg.name} adds {special} special "
            f"tokens to each {'pair' if is_pair else 'text'}, which leaves no room for the text "
            f"(set it to at least {special + (2 if is_pair else 1)}; 128 keeps most sentences whole)"
        )
    # Token types tell BERT-like models which text of a pair a token is from; single texts need none.
    token_types = is_pair and "token_type_ids" in tokenizer.model_input_names
    meta = {
        "tokenizer": model_cfg.name,
        "tokenizer_class": type(tokenizer).__name__,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "max_length": tok_cfg.max_length,
        "label_names": info["label_names"],
        **({"task": info["task"]} if "task" in info else {}),  # absent: single_label (pipeline.tasks.task_of)
        "splits": {},
    }
    with atomic_directory(out_dir) as staging:
        carved = [SELECT_SPLIT] if info.get("select_split_carved") else []
        for split in [*LABELED_SPLITS, *carved]:
            raw = read_split(raw_dir, split)
            encoded = encode(tokenizer, raw.texts, tok_cfg.max_length, raw.text_pairs, token_types)
            tensors = {
                "input_ids": torch.from_numpy(encoded.input_ids),
                "offsets": torch.from_numpy(encoded.offsets),
                "labels": torch.from_numpy(raw.labels),
            }
            if encoded.token_type_ids is not None:
                tensors["token_type_ids"] = torch.from_numpy(encoded.token_type_ids)
            save_file(tensors, staging / f"{split}.safetensors")
            meta["splits"][split] = length_stats(np.diff(encoded.offsets), tok_cfg.max_length, encoded.n_truncated)
            if encoded.n_truncated > 0.01 * len(raw.labels):
                print(
                    f"warning: tokenize.max_length={tok_cfg.max_length} cuts {encoded.n_truncated:,} of the "
                    f"{len(raw.labels):,} {split} examples ({encoded.n_truncated / len(raw.labels):.1%}); "
                    f"meta.json has their lengths",
                    file=sys.stderr,
                )
        write_json_atomic(staging / META_FILE, meta)
    return meta


@dataclass(frozen=True)
class TokenizedSplit:
    """One split of the cache: example ``i`` is ``input_ids[offsets[i]:offsets[i + 1]]``."""

    input_ids: torch.Tensor
    offsets: torch.Tensor
    labels: torch.Tensor
    token_type_ids: torch.Tensor | None = None  # sentence pairs, for models that take token types
    teacher_logits: torch.Tensor | None = None  # the teacher's outputs per example, when distilling

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | float | list[float]]:
        return self.input_ids[self.offsets[index] : self.offsets[index + 1]], self.labels[index].tolist()


def concatenate(first: TokenizedSplit, second: TokenizedSplit) -> TokenizedSplit:
    """The examples of ``first``, then those of ``second``; both have the same optional tensors."""

    def both(name):
        a, b = getattr(first, name), getattr(second, name)
        return None if a is None else torch.cat([a, b.to(a.dtype)])

    offsets = torch.cat([first.offsets, second.offsets[1:] + first.offsets[-1]])
    return TokenizedSplit(both("input_ids"), offsets, both("labels"), both("token_type_ids"), both("teacher_logits"))


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
    return TokenizedSplit(tensors["input_ids"], tensors["offsets"], tensors["labels"], tensors.get("token_type_ids"))
