"""Batches from the tokenized cache: length-grouped shuffling and per-batch padding.

SST-2 sentences are 13 tokens long on average but up to 66. Padding every batch to the longest
sentence of the dataset, as the reference tutorial does, spends most of the arithmetic on padding.
Here a batch is padded only to its own longest sentence, and sentences of similar length are put in
the same batch, while the order of batches stays random from epoch to epoch.
"""

from __future__ import annotations

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

    With ``num_replicas > 1`` each process (``rank``) takes every ``num_replicas``-th batch, so the
    processes see disjoint data; the last batches are dropped when they do not divide evenly, so
    every process takes the same number of steps.
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
    ) -> None:
        self.lengths = lengths.numpy()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.group_batches = group_batches
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Each epoch gets its own order, reproducible from ``(seed, epoch)``."""
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n)
        window = self.batch_size * self.group_batches
        if self.group_batches > 1:
            for start in range(0, n, window):
                chunk = order[start : start + window]
                order[start : start + window] = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[np.ndarray]:
        batches = self._all_batches()
        usable = len(batches) - len(batches) % self.num_replicas if self.num_replicas > 1 else len(batches)
        return iter(batches[self.rank : usable : self.num_replicas])

    def __len__(self) -> int:
        n_batches = -(-len(self.lengths) // self.batch_size)
        return n_batches // self.num_replicas


def collate(split: TokenizedSplit, indices: np.ndarray, pad_token_id: int, pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Pad the examples at ``indices`` to the batch's longest (rounded up to a multiple) in one gather."""
    index = torch.from_numpy(np.asarray(indices, dtype=np.int64))
    starts = split.offsets[index]
    lengths = split.offsets[index + 1] - starts
    width = int(lengths.max())
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    positions = torch.arange(width)
    attention_mask = positions < lengths[:, None]
    input_ids = torch.full((len(index), width), pad_token_id, dtype=torch.long)
    input_ids[attention_mask] = split.input_ids[(starts[:, None] + positions)[attention_mask]].long()
    return {"input_ids": input_ids, "attention_mask": attention_mask.long(), "labels": split.labels[index]}


class BatchLoader:
    """Iterates padded batches of a split in the order a :class:`LengthGroupedBatches` gives."""

    def __init__(self, split: TokenizedSplit, batches: LengthGroupedBatches, pad_token_id: int, pad_to_multiple_of: int = 1):
        self.split = split
        self.batches = batches
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for _, batch in self.with_indices():
            yield batch

    def with_indices(self) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """Each batch together with the split positions of its examples."""
        for indices in self.batches:
            yield indices, collate(self.split, indices, self.pad_token_id, self.pad_to_multiple_of)

    def __len__(self) -> int:
        return len(self.batches)
