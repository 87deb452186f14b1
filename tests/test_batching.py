import numpy as np
import torch

from pipeline.batching import LengthGroupedBatches, collate
from pipeline.tokenization import TokenizedSplit


def make_split(lengths):
    ids = [torch.arange(1, n + 1, dtype=torch.int32) + 100 * i for i, n in enumerate(lengths)]
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor(lengths), 0)
    return TokenizedSplit(torch.cat(ids), offsets, torch.arange(len(lengths)) % 2)


LENGTHS = torch.from_numpy(np.random.default_rng(0).integers(3, 60, size=1000))


def epoch_indices(sampler, epoch):
    sampler.set_epoch(epoch)
    return [batch.tolist() for batch in sampler]


def padding_fraction(sampler):
    real = padded = 0
    for batch in sampler:
        lengths = LENGTHS[batch]
        real += int(lengths.sum())
        padded += int(lengths.max()) * len(batch)
    return 1 - real / padded


def test_every_example_once_per_epoch_and_a_new_order_each_epoch():
    sampler = LengthGroupedBatches(LENGTHS, 32, shuffle=True, seed=1, group_batches=8)
    first, second = epoch_indices(sampler, 1), epoch_indices(sampler, 2)
    for batches in (first, second):
        assert sorted(i for b in batches for i in b) == list(range(1000))
    assert first != second
    assert len(sampler) == len(first) == 32  # ceil(1000 / 32)


def test_order_depends_on_the_seed_only():
    a = LengthGroupedBatches(LENGTHS, 32, shuffle=True, seed=1, group_batches=8)
    b = LengthGroupedBatches(LENGTHS, 32, shuffle=True, seed=1, group_batches=8)
    c = LengthGroupedBatches(LENGTHS, 32, shuffle=True, seed=2, group_batches=8)
    assert epoch_indices(a, 3) == epoch_indices(b, 3) != epoch_indices(c, 3)


def test_grouping_cuts_padding_and_keeps_batches_random():
    plain = LengthGroupedBatches(LENGTHS, 32, shuffle=True, seed=1, group_batches=1)
    grouped = LengthGroupedBatches(LENGTHS, 32, shuffle=True, seed=1, group_batches=8)
    assert padding_fraction(grouped) < padding_fraction(plain) / 3
    longest_per_batch = [int(LENGTHS[b].max()) for b in grouped]
    assert longest_per_batch != sorted(longest_per_batch, reverse=True)  # batch order is shuffled


def test_evaluation_order_is_fixed_and_sorted_by_length():
    sampler = LengthGroupedBatches(LENGTHS, 100, shuffle=False)
    batches = epoch_indices(sampler, 1)
    assert batches == epoch_indices(sampler, 2)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert LENGTHS[flat].tolist() == sorted(LENGTHS.tolist(), reverse=True)


def test_shards_are_disjoint_and_equally_long():
    shards = [
        LengthGroupedBatches(LENGTHS, 32, shuffle=True, seed=1, group_batches=8, num_replicas=3, rank=r)
        for r in range(3)
    ]
    seen = [set(i for b in epoch_indices(s, 1) for i in b) for s in shards]
    # 1000 examples in global batches of 3 × 32: ten full ones and a last one of 40.
    assert all(len(list(s)) == len(s) == 11 for s in shards)
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    assert len(seen[0] | seen[1] | seen[2]) == 1000


def test_each_step_of_the_shards_is_one_global_batch_of_a_single_process():
    # What makes N processes × batch B train like one process × batch N·B: the same examples per step.
    single = epoch_indices(LengthGroupedBatches(LENGTHS, 64, shuffle=True, seed=3, group_batches=4), 2)
    shards = [
        epoch_indices(
            LengthGroupedBatches(LENGTHS, 32, shuffle=True, seed=3, group_batches=4, num_replicas=2, rank=r), 2
        )
        for r in range(2)
    ]
    assert [a + b for a, b in zip(*shards)] == single
    # ... and so is a process's run of micro-batches under gradient accumulation.
    micro = epoch_indices(
        LengthGroupedBatches(
            LENGTHS, 16, shuffle=True, seed=3, group_batches=4, num_replicas=2, rank=1, micro_batches=2
        ),
        2,
    )
    assert [a + b for a, b in zip(micro[::2], micro[1::2])] == shards[1]


def test_evaluation_shards_score_every_example_exactly_once():
    lengths = torch.randint(1, 60, (103,), generator=torch.Generator().manual_seed(0))
    shards = [LengthGroupedBatches(lengths, 10, shuffle=False, num_replicas=4, rank=r) for r in range(4)]
    flat = sorted(i for s in shards for b in s for i in b.tolist())
    assert flat == list(range(103))


def test_collate_pads_per_batch_with_a_matching_mask():
    split = make_split([3, 5, 2])
    batch = collate(split, np.array([2, 0]), pad_token_id=0)
    assert batch["input_ids"].tolist() == [[201, 202, 0], [1, 2, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["labels"].tolist() == [0, 0]
    assert batch["input_ids"].dtype == torch.long
    wide = collate(split, np.array([1]), pad_token_id=9, pad_to_multiple_of=8)
    assert wide["input_ids"].tolist() == [[101, 102, 103, 104, 105, 9, 9, 9]]
