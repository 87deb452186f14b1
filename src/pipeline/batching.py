"""Batches from the tokenized cache: length-grouped shuffling and per-batch padding.

Most SST-2 sentences are far shorter than the longest (``data/tokenized/meta.json`` has the length
statistics). Padding every batch to the longest sentence of the dataset, as the reference tutorial
does, spends most of the arithmetic on padding. Here a batch is padded only to its own longest
sentence, and sentences of similar length are put in the same batch, while the order of batches
stays random from epoch to epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

from pipeline.tokenization import TokenizedSplit


class LengthGroupedBatches:
    """Batches of example indices for one epoch, optionally sharded across data-parallel processes.

    With ``shuffle``: the examples are shuffled, cut into windows of ``group_batches`` batches,
    sorted by length inside each window, cut into batches, and the batches shuffled again. With
    ``group_batches=1`` this is plain random batching. Without ``shuffle`` (evaluation): examples
    sorted by length, for the least padding, in a fixed order.

    Data parallelism and gradient accumulation: the batches above are global batches of
    ``batch_size × num_replicas × micro_batches`` examples, one per optimizer step. Each process
    (``rank``) takes its own slice of every one and cuts it into ``micro_batches`` micro-batches of
    ``batch_size``. So the processes see disjoint data, all take the same number of steps, and a step
    covers the same examples whatever the split into processes and micro-batches: 2 processes × 32 ×
    2 micro-batches trains on what 1 process × 128 does. In training, a last global batch too small
    to give every micro-batch an example is dropped; in evaluation nothing is dropped, so every
    example is scored exactly once across the processes.
    """

    def __init__(
        self,
        lengths: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        group_batches: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
        micro_batches: int = 1,
    ) -> None:
        self.lengths = lengths.numpy()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.group_batches = group_batches
        self.num_replicas = num_replicas
        self.rank = rank
        self.micro_batches = micro_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Each epoch gets its own order, reproducible from ``(seed, epoch)``."""
        self.epoch = epoch

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_replicas * self.micro_batches

    def _global_batches(self) -> list[np.ndarray]:
        n, size = len(self.lengths), self.global_batch_size
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            return [order[i : i + size] for i in range(0, n, size)]  # nothing dropped
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n)
        window = size * self.group_batches
        if self.group_batches > 1:
            for start in range(0, n, window):
                chunk = order[start : start + window]
                order[start : start + window] = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
        batches = [order[i : i + size] for i in range(0, n, size)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        return [batch for batch in batches if len(batch) >= self.num_replicas * self.micro_batches]

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self._global_batches():
            share = np.array_split(batch, self.num_replicas)[self.rank]
            for micro_batch in np.array_split(share, self.micro_batches):
                if len(micro_batch):  # only evaluation keeps a last batch too small to share out
                    yield micro_batch

    def __len__(self) -> int:
        """Micro-batches per epoch for this process."""
        if not self.shuffle:
            return sum(1 for _ in self)
        n, size = len(self.lengths), self.global_batch_size
        return (n // size + (n % size >= self.num_replicas * self.micro_batches)) * self.micro_batches


def collate(
    split: TokenizedSplit, indices: np.ndarray, pad_token_id: int, pad_to_multiple_of: int = 1
) -> dict[str, torch.Tensor]:
    """Pad the examples at ``indices`` to the batch's longest (rounded up to a multiple) in one gather."""
    index = torch.from_numpy(np.asarray(indices, dtype=np.int64))
    starts = split.offsets[index]
    lengths = split.offsets[index + 1] - starts
    width = int(lengths.max())
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    positions = torch.arange(width)
    attention_mask = positions < lengths[:, None]
    input_ids = torch.full((len(index), width), pad_token_id, dtype=torch.long)
    tokens = (starts[:, None] + positions)[attention_mask]
    input_ids[attention_mask] = split.input_ids[tokens].long()
    batch = {"input_ids": input_ids, "attention_mask": attention_mask.long(), "labels": split.labels[index]}
    if split.token_type_ids is not None:
        token_type_ids = torch.zeros((len(index), width), dtype=torch.long)
        token_type_ids[attention_mask] = split.token_type_ids[tokens].long()
        batch["token_type_ids"] = token_type_ids
    if split.teacher_logits is not None:
        batch["teacher_logits"] = split.teacher_logits[index]
    return batch


class BatchLoader:
    """Iterates padded batches of a split in the order a :class:`LengthGroupedBatches` gives."""

    def __init__(
        self, split: TokenizedSplit, batches: LengthGroupedBatches, pad_token_id: int, pad_to_multiple_of: int = 1
    ):
        self.split = split
        self.batches = batches
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for _, batch in self.with_indices():
            yield batch

    def with_indices(self, start: int = 0) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """Each batch from the ``start``-th on, with the split positions of its examples.

        Skipped batches are not collated: resuming mid-epoch costs nothing.
        """
        for indices in itertools.islice(self.batches, start, None):
            yield indices, collate(self.split, indices, self.pad_token_id, self.pad_to_multiple_of)

    def __len__(self) -> int:
        return len(self.batches)
