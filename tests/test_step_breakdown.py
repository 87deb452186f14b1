"""The step-breakdown benchmark's accounting: it must see every matrix product, backward included."""

from __future__ import annotations

import sys

import torch
from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
from step_breakdown import MatmulRecorder, encoder_layers, matmul_flops, replayers, without_dropout  # noqa: E402


def test_recorder_counts_forward_and_backward_products_of_a_linear_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 5, 8, requires_grad=True)
    recorder = MatmulRecorder()
    with recorder:
        layer(x).sum().backward()
    # Forward, gradient of the input, gradient of the weight: 2·M·N·K each, M = 10 tokens.
    assert len(recorder.calls) == 3
    assert sum(matmul_flops(func, args) for func, args, _ in recorder.calls) == 3 * 2 * 10 * 8 * 4


def test_recorder_counts_batched_products():
    recorder = MatmulRecorder()
    with recorder:
        torch.randn(3, 5, 7) @ torch.randn(3, 7, 2)
    ((func, args, _),) = recorder.calls
    assert func == torch.ops.aten.bmm.default
    assert matmul_flops(func, args) == 2 * 3 * 5 * 7 * 2


def test_replay_runs_the_recorded_products_with_their_layouts():
    recorder = MatmulRecorder()
    weight = torch.randn(6, 4)
    with recorder:
        torch.nn.functional.linear(torch.randn(3, 4), weight)  # a transposed weight: a strided operand
        torch.randn(2, 3) @ torch.randn(3, 5)
    with MatmulRecorder() as again:
        (replay,) = replayers([recorder.calls])
        replay()
    assert [(func, args) for func, args, _ in again.calls] == [(func, args) for func, args, _ in recorder.calls]


def test_without_dropout_zeroes_the_rates_and_puts_them_back():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1), torch.nn.Dropout(0.3))
    with without_dropout(model):
        assert [m.p for m in model if isinstance(m, torch.nn.Dropout)] == [0.0, 0.0]
    assert [m.p for m in model if isinstance(m, torch.nn.Dropout)] == [0.1, 0.3]


def test_encoder_layers_finds_the_transformer_stack_of_bert_and_distilbert():
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    bert = BertForSequenceClassification(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    )
    distilbert = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=50, dim=16, n_layers=2, n_heads=2, hidden_dim=32)
    )
    assert encoder_layers(bert) is bert.bert.encoder.layer
    assert encoder_layers(distilbert) is distilbert.distilbert.transformer.layer
