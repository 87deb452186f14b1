"""The fast CPU dropout: the same distribution as torch's, reproducible, and reached from any model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline import dropout as fast
from pipeline.dropout import FastCpuDropout, dropout, dropped_levels, keep_from_draws, rounded_rate


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_elements_are_kept_at_the_rounded_rate_and_scaled_to_keep_the_mean(p):
    torch.manual_seed(0)
    x = torch.rand(1_000_000) + 0.5
    out = dropout(x, p)
    kept = out != 0
    rate = rounded_rate(p)
    n = x.numel()
    # Five standard deviations of a binomial count: fails by chance about once in 3 million runs.
    assert abs((~kept).sum().item() - rate * n) < 5 * math.sqrt(n * rate * (1 - rate))
    torch.testing.assert_close(out[kept], x[kept] / (1 - rate))
    # The scale is that of the rounded rate, so the output's mean is the input's.
    assert abs(out.mean().item() - x.mean().item()) < 5 * (out.std().item() / math.sqrt(n))


def test_the_rate_is_rounded_to_a_multiple_of_one_in_65536():
    assert rounded_rate(0.1) == 6554 / 65536
    assert abs(rounded_rate(0.1) - 0.1) < 1e-5
    assert rounded_rate(0.5) == 0.5


@pytest.mark.parametrize("p", [0.1, 0.5, 1 / 65536, 0.9999])
def test_of_all_65536_draws_exactly_the_rounded_rate_drop(p):
    every_draw = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    keep = keep_from_draws(every_draw, p)
    assert keep.dtype == torch.uint8
    assert (keep == 0).sum().item() == dropped_levels(p)


def test_masks_follow_torch_seed():
    x = torch.ones(4096)
    torch.manual_seed(1)
    first = dropout(x, 0.1)
    torch.manual_seed(1)
    again = dropout(x, 0.1)
    torch.manual_seed(2)
    other = dropout(x, 0.1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(dropout(x, 0.1), dropout(x, 0.1))  # every call draws a fresh mask


def test_mask_elements_are_independent_of_their_neighbours():
    # Four mask elements come out of each 64-bit number; they must not be correlated. At p = 0.3
    # the decision depends on more than the top bit of each 16-bit draw.
    torch.manual_seed(0)
    kept = (dropout(torch.ones(400_000), 0.3) != 0).float()
    neighbours = kept.view(-1, 4)
    correlation = torch.corrcoef(neighbours.T)
    off_diagonal = correlation[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 5 / math.sqrt(len(neighbours))


def test_gradient_passes_through_kept_elements_only_with_the_same_scale():
    torch.manual_seed(0)
    x = torch.randn(64, 16, 32, requires_grad=True)
    out = dropout(x, 0.1)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    scale = 1 / (1 - rounded_rate(0.1))
    torch.testing.assert_close(x.grad, (out != 0) * weights * scale)


def test_bf16_stays_bf16_and_is_scaled_in_fp32():
    torch.manual_seed(0)
    x = torch.full((10_000,), 3.5, dtype=torch.bfloat16)
    out = dropout(x, 0.1)
    assert out.dtype == torch.bfloat16
    kept = out[out != 0]
    # 3.5 × 1.11112 rounds to 3.890625 in bf16; with the scale itself in bf16 (1.109375), as in
    # torch's dropout, it would be 3.875.
    assert torch.equal(kept, torch.full_like(kept, 3.890625))
    assert not torch.equal(kept, x[: len(kept)] * torch.tensor(1 / 0.9, dtype=torch.bfloat16))


def test_nothing_or_everything_dropped():
    x = torch.randn(100)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros(100))


def test_a_rate_that_rounds_to_zero_is_left_to_torch():
    # 1e-6 is closer to 0 than to 1/65536; torch's own dropout still applies it exactly.
    x = torch.randn(100)
    torch.manual_seed(3)
    ours = dropout(x, 1e-6)
    torch.manual_seed(3)
    assert torch.equal(ours, F.dropout(x, 1e-6, training=True))


def test_an_invalid_rate_fails_as_in_torch():
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(torch.ones(3), 1.5)


def test_it_reroutes_training_dropout_only_while_active(monkeypatch):
    calls = []
    monkeypatch.setattr(fast, "dropout", lambda x, p: calls.append(p) or x)
    x = torch.ones(8)
    with FastCpuDropout():
        F.dropout(x, 0.2)
        torch.nn.Dropout(0.3)(x)
        F.dropout(x, 0.4, training=False)  # evaluation: torch, which passes x through
        F.dropout(x.clone(), 0.5, inplace=True)  # in place: torch's
    F.dropout(x, 0.6)  # after it
    assert calls == [0.2, 0.3]


def test_torch_dropout_is_back_after_it_even_after_an_error_or_nested_use():
    torch_dropout = F.dropout
    with pytest.raises(RuntimeError, match="stop"):
        with FastCpuDropout():
            with FastCpuDropout():
                pass
            assert F.dropout is not torch_dropout  # the inner one restored the outer one's, not torch's
            raise RuntimeError("stop")
    assert F.dropout is torch_dropout is fast.TORCH_DROPOUT


def test_every_dropout_of_a_model_goes_through_it_attention_included(tiny_bert, monkeypatch):
    from pipeline.modeling import load_pretrained_classifier

    model = load_pretrained_classifier(str(tiny_bert), ["negative", "positive"], attn_implementation="eager")
    model.train()
    shapes = []
    real_keep_mask = fast.keep_mask
    monkeypatch.setattr(fast, "keep_mask", lambda shape, p: shapes.append(tuple(shape)) or real_keep_mask(shape, p))
    batch = {"input_ids": torch.randint(1000, 2000, (3, 7)), "attention_mask": torch.ones(3, 7, dtype=torch.long)}
    with FastCpuDropout():
        model(**batch).logits.sum().backward()
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    # Embeddings; per layer, the attention probabilities and two residual branches; the classifier.
    assert len(shapes) == 1 + 3 * layers + 1
    assert shapes.count((3, heads, 7, 7)) == layers
