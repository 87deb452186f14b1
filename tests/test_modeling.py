"""Every way the pipeline loads a model passes model.trust_remote_code on, and off by default."""

import pytest

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

    def classifier(name, labels, trust_remote_code, attn_implementation=None):
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
