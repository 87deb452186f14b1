"""Every way the pipeline loads a model passes model.trust_remote_code on, and off by default; every
model trains with fp32 master weights, whatever dtype it was published in."""

import contextlib

import numpy as np
import pytest
import torch

from pipeline import modeling
from pipeline.config import ModelConfig, Params, TrainConfig


@pytest.fixture
def loads(monkeypatch):
    """Record the keyword arguments of every from_pretrained call, and stop there."""
    import transformers

    seen = []

    def record(name, *args, **kwargs):
        seen.append((name, kwargs.get("trust_remote_code", "not passed")))
        raise OSError("stopped by the test")

    for cls in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(
            cls, "from_pretrained", staticmethod(lambda *a, _cls=cls, **k: record(_cls.__name__, *a, **k))
        )
    return seen


@pytest.mark.parametrize("trusted", [False, True])
def test_trust_remote_code_reaches_every_from_pretrained(loads, trusted):
    for load in (modeling.load_config, modeling.load_tokenizer):
        with pytest.raises(Exception, match="stopped by the test"):
            load("owner/model", trust_remote_code=trusted)
    with pytest.raises(Exception, match="stopped by the test"):
        modeling.load_pretrained_classifier("owner/model", ["a", "b"], trust_remote_code=trusted)
    assert loads == [
        ("AutoConfig", trusted),
        ("AutoTokenizer", trusted),
        ("AutoModelForSequenceClassification", trusted),
    ]


@pytest.mark.parametrize("trusted", [False, True])
def test_the_tokenize_stage_passes_model_trust_remote_code_on(loads, trusted, tmp_path):
    from pipeline.config import TokenizeConfig
    from pipeline.tokenization import tokenize

    with pytest.raises(Exception, match="stopped by the test"):
        tokenize(ModelConfig(name="owner/model", trust_remote_code=trusted), TokenizeConfig(), tmp_path, tmp_path / "t")
    assert loads == [("AutoConfig", trusted)]


class Stop(Exception):
    pass


@pytest.mark.parametrize("trusted", [False, True])
def test_the_train_stage_passes_model_trust_remote_code_on(trusted, tiny_bert, tokenized, monkeypatch, tmp_path):
    from transformers import AutoTokenizer

    from pipeline import training

    seen = []

    def tokenizer(name, trust_remote_code):
        seen.append(("tokenizer", trust_remote_code))
        return AutoTokenizer.from_pretrained(tiny_bert)

    def classifier(name, labels, trust_remote_code, attn_implementation=None, problem_type=None):
        seen.append(("classifier", trust_remote_code))
        raise Stop

    monkeypatch.setattr(training, "load_tokenizer", tokenizer)
    monkeypatch.setattr(training, "load_pretrained_classifier", classifier)
    params = Params(
        model=ModelConfig(name=str(tiny_bert), trust_remote_code=trusted), train=TrainConfig(precision="fp32")
    )
    with pytest.raises(Stop):
        training.train(params, tokenized, tmp_path / "m", tmp_path / "m.json", tmp_path)
    assert seen == [("tokenizer", trusted), ("classifier", trusted)]


def test_the_default_params_do_not_trust_remote_code():
    assert Params().model.trust_remote_code is False


@pytest.fixture(params=[torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def half_precision_model(request, tiny_bert, tmp_path):
    """tiny_bert published in half precision, as many Hub models are."""
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path / "published"
    AutoModel.from_pretrained(tiny_bert).to(request.param).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("precision", ["fp16-scaler", "bf16"])
def test_a_model_published_in_half_precision_trains_with_fp32_master_weights(
    half_precision_model, tokenized, precision
):
    from pipeline.batching import collate
    from pipeline.precision import autocast_for
    from pipeline.tokenization import load_split
    from pipeline.training import build_optimizer

    cpu = torch.device("cpu")
    model = modeling.load_pretrained_classifier(str(half_precision_model), ["negative", "positive"])
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3))
    # fp16 needs a GPU for autocast, but its loss scaler runs on a CPU too: that is where fp16 weights fail
    # ("Attempting to unscale FP16 gradients"), and what fp32 master weights fix.
    scaler = torch.amp.GradScaler("cpu", enabled=precision == "fp16-scaler")
    autocast = autocast_for("bf16", cpu) if precision == "bf16" else None
    batch = collate(load_split(tokenized, "train"), np.arange(16), pad_token_id=0)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    with autocast or contextlib.nullcontext():
        loss = model(**batch).loss
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    assert torch.isfinite(loss)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.grad.dtype for p in model.parameters()} == {torch.float32}
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_a_finetuned_model_saved_in_half_precision_loads_in_fp32(half_precision_model):
    assert {p.dtype for p in modeling.load_finetuned(half_precision_model).parameters()} == {torch.float32}
