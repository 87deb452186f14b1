import json

import numpy as np
import pytest
import torch
from conftest import live_curve, live_files
from transformers import AutoModelForSequenceClassification

from pipeline.batching import collate
from pipeline.config import DataConfig, ModelConfig, Params, TokenizeConfig, TrainConfig
from pipeline.data import download
from pipeline.errors import PipelineError
from pipeline.modeling import load_pretrained_classifier
from pipeline.tokenization import load_split, tokenize
from pipeline.training import build_optimizer, layer_depths, set_seed, train


def tiny_params(model_dir, **train):
    defaults = dict(epochs=2, batch_size=8, lr=5e-4, precision="fp32", log_every_steps=2, group_by_length_batches=4)
    return Params(model=ModelConfig(name=str(model_dir)), train=TrainConfig(**{**defaults, **train}))


def test_one_step_lowers_the_loss(tiny_bert, tokenized):
    set_seed(0)
    model = load_pretrained_classifier(str(tiny_bert), ["negative", "positive"])
    batch = collate(load_split(tokenized, "train"), np.arange(16), pad_token_id=0)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3))
    model.train()
    with torch.no_grad():
        model.eval()
        before = model(**batch).loss.item()
    model.train()
    optimizer.zero_grad()
    model(**batch).loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        assert model(**batch).loss.item() < before


@pytest.mark.parametrize("layer_lr_decay", [1.0, 0.8])
def test_no_weight_decay_on_biases_and_layer_norms(tiny_bert, layer_lr_decay):
    model = load_pretrained_classifier(str(tiny_bert), ["negative", "positive"])
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.1, layer_lr_decay=layer_lr_decay))
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        exempt = [names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in group["params"]]
        assert group["weight_decay"] == (0.0 if all(exempt) else 0.1) and len(set(exempt)) == 1
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))


def test_every_step_clips_the_gradient_norm_before_the_optimizer_steps(tiny_bert, tokenized, tmp_path, monkeypatch):
    import pipeline.training as training

    real_clip, norms = training.clip_grad_norm_, []

    def clip_and_measure(parameters, max_norm):
        parameters = list(parameters)
        raw = real_clip(parameters, max_norm)
        norms.append((raw.item(), torch.nn.utils.get_total_norm([p.grad for p in parameters]).item()))
        return raw

    monkeypatch.setattr(training, "clip_grad_norm_", clip_and_measure)
    train(tiny_params(tiny_bert, epochs=1, lr=2e-3, max_grad_norm=0.05), tokenized, tmp_path / "m", tmp_path / "live")
    assert len(norms) == 8  # one clipping per optimizer step
    assert any(raw > 0.05 for raw, _ in norms)
    for raw, clipped in norms:  # what the optimizer then used
        assert clipped == pytest.approx(min(raw, 0.05), rel=1e-4)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_the_loss_is_cross_entropy_with_the_label_smoothing_asked_for(smoothing):
    from pipeline.tasks import loss as task_loss

    torch.manual_seed(0)
    logits, labels = torch.randn(16, 3), torch.randint(0, 3, (16,))
    expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=smoothing)
    loss = task_loss("single_label", logits, labels, label_smoothing=smoothing)
    assert torch.equal(loss, expected)
    assert torch.equal(loss, torch.nn.functional.cross_entropy(logits, labels)) == (smoothing == 0)


def test_class_weights_make_the_loss_the_weighted_mean_of_the_formula():
    from pipeline.tasks import loss as task_loss
    from pipeline.training import loss_weights

    labels = torch.tensor([0, 0, 0, 1, 2, 2])  # 3, 1 and 2 examples of 3 classes
    balanced = loss_weights("balanced", labels, ["a", "b", "c"])
    assert balanced.tolist() == pytest.approx([6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2)])  # n / (k × n_c)
    logits = torch.tensor(
        [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.0]]
    )
    # By hand: each example's -log softmax at its label, weighted by its class, over the sum of those weights.
    nll = -torch.log_softmax(logits, dim=-1)[torch.arange(6), labels]
    weights = balanced[labels]
    expected = (weights * nll).sum() / weights.sum()
    assert task_loss("single_label", logits, labels, balanced).item() == pytest.approx(expected.item(), rel=1e-6)
    # Each class's examples carry the same total weight, whatever its frequency.
    assert [weights[labels == c].sum().item() for c in range(3)] == pytest.approx([2.0, 2.0, 2.0])
    # A list is taken as given; none leaves the plain loss, bit for bit.
    assert loss_weights((1.0, 0.5, 2.5), labels, ["a", "b", "c"]).tolist() == [1.0, 0.5, 2.5]
    assert loss_weights(None, labels, ["a", "b", "c"]) is None
    assert torch.equal(
        task_loss("single_label", logits, labels, None), torch.nn.functional.cross_entropy(logits, labels)
    )


def test_class_weights_that_do_not_fit_the_classes_are_refused():
    from pipeline.training import loss_weights

    labels = torch.tensor([0, 0, 2])
    with pytest.raises(PipelineError, match=r"train.class_weights=balanced: class 'b' has no training examples"):
        loss_weights("balanced", labels, ["a", "b", "c"])
    with pytest.raises(PipelineError, match=r"has 2 weights but the data has 3 classes \(a, b, c\); give one weight"):
        loss_weights((1.0, 2.0), labels, ["a", "b", "c"])


def test_a_run_with_balanced_weights_trains_and_says_so(tiny_bert, tokenized, tmp_path, capsys):
    metrics = train(
        tiny_params(tiny_bert, class_weights="balanced", epochs=1), tokenized, tmp_path / "m", tmp_path / "l"
    )
    assert metrics["steps"] == 8
    assert "class weights of the loss (train.class_weights=balanced): negative " in capsys.readouterr().err


def test_layer_depths_count_from_the_embeddings_up_to_the_head(tiny_bert, tiny_distilbert):
    for folder in (tiny_bert, tiny_distilbert):  # encoder.layer.N (BERT), transformer.layer.N (DistilBERT)
        model = load_pretrained_classifier(str(folder), ["negative", "positive"])
        depths = layer_depths(model)
        assert {depth for name, depth in depths.items() if "embeddings" in name} == {0}
        assert {depth for name, depth in depths.items() if ".layer.0." in name} == {1}
        assert {depth for name, depth in depths.items() if ".layer.1." in name} == {2}
        assert {depth for name, depth in depths.items() if "classifier" in name} == {3}


def test_layer_lr_decay_gives_each_layer_a_smaller_rate_than_the_one_above(tiny_bert):
    model = load_pretrained_classifier(str(tiny_bert), ["negative", "positive"])
    depths = layer_depths(model)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3, layer_lr_decay=0.5))
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            assert group["lr"] == pytest.approx(1e-3 * 0.5 ** (3 - depths[names[id(parameter)]]))
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))
    # 1.0 keeps the two groups of a plain AdamW: with and without weight decay.
    assert len(build_optimizer(model, TrainConfig(lr=1e-3, layer_lr_decay=1.0)).param_groups) == 2


def test_auto_epochs_train_the_passes_they_resolve_to_and_schedule_over_them(tiny_bert, tokenized, tmp_path):
    live = tmp_path / "live"
    params = tiny_params(tiny_bert, epochs="auto", auto_min_steps=20, auto_max_epochs=5, log_every_steps=1)
    metrics = train(params, tokenized, tmp_path / "model", live)
    assert (metrics["epochs"], metrics["steps"]) == (3, 24)  # 8 steps a pass: 3 passes reach 20 steps
    assert [step for step, _ in live_curve(live, "val/accuracy")] == [8, 16, 24]
    lr = [value for _, value in live_curve(live, "train/lr")]
    assert max(lr) == pytest.approx(5e-4) and lr[-1] == pytest.approx(0, abs=1e-12)  # decays to 0 at step 24


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_writes_a_loadable_model_metrics_and_plots(tiny_bert, tokenized, tmp_path, precision):
    live = tmp_path / "live"
    metrics = train(tiny_params(tiny_bert, precision=precision), tokenized, tmp_path / "model", live)
    assert metrics["epochs"] == 2 and metrics["steps"] == 16  # 64 examples / batch 8, two epochs
    assert json.loads((live / "metrics.json").read_text()) == metrics
    assert 0 <= metrics["val"]["accuracy"] <= 1 and metrics["val"]["loss"] > 0
    assert metrics["step"] == 16 and metrics["epoch"] == 2
    # A row every 2 steps (log_every_steps) and at each epoch's end; validation at each epoch's end.
    assert [step for step, _ in live_curve(live, "train/loss")] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [step for step, _ in live_curve(live, "train/lr")] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [step for step, _ in live_curve(live, "val/accuracy")] == [8, 16]
    assert live_curve(live, "val/accuracy")[-1][1] == metrics["val"]["accuracy"]
    assert [step for step, _ in live_curve(live, "train/epoch_loss")] == [8, 16]
    assert sorted(live_files(live)) == [
        "metrics.json",
        "plots/metrics/train/epoch_loss.tsv",
        "plots/metrics/train/loss.tsv",
        "plots/metrics/train/lr.tsv",
        "plots/metrics/val/accuracy.tsv",
        "plots/metrics/val/loss.tsv",
        "plots/metrics/val/macro_f1.tsv",  # the other tasks' curves, header only: dvc.yaml declares them
        "plots/metrics/val/pearson.tsv",
    ]
    assert (live / "plots/metrics/val/pearson.tsv").read_text() == "step\tpearson\n"
    assert (live / "plots/metrics/val/macro_f1.tsv").read_text() == "step\tmacro_f1\n"
    assert (tmp_path / "model" / "model.safetensors").is_file()

    from transformers import pipeline

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert model.config.id2label == {0: "negative", 1: "positive"}
    classify = pipeline("text-classification", model=str(tmp_path / "model"))
    assert classify("a gorgeous , witty film")[0]["label"] in {"negative", "positive"}


def test_training_is_reproducible(tiny_bert, tokenized, tmp_path):
    first = train(tiny_params(tiny_bert), tokenized, tmp_path / "a", tmp_path / "a-live")
    second = train(tiny_params(tiny_bert), tokenized, tmp_path / "b", tmp_path / "b-live")
    timing = {"train_runtime_s", "train_samples_per_s"}
    assert {k: v for k, v in first.items() if k not in timing} == {k: v for k, v in second.items() if k not in timing}
    curves = {name: text for name, text in live_files(tmp_path / "a-live").items() if name != "metrics.json"}
    assert curves == {name: text for name, text in live_files(tmp_path / "b-live").items() if name != "metrics.json"}
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert (tmp_path / "a" / "README.md").read_text() == (tmp_path / "b" / "README.md").read_text()  # the card


def test_tiny_model_learns_the_toy_task(tiny_bert, tokenized, tmp_path):
    metrics = train(tiny_params(tiny_bert, epochs=6, lr=2e-3), tokenized, tmp_path / "m", tmp_path / "live")
    assert metrics["val"]["accuracy"] >= 0.9


def test_distilbert_architecture_trains_too(tiny_distilbert, glue_dir, tmp_path):
    download(DataConfig(path=str(glue_dir), config=None), tmp_path / "raw")
    tokenize(ModelConfig(name=str(tiny_distilbert)), TokenizeConfig(max_length=32), tmp_path / "raw", tmp_path / "tok")
    metrics = train(tiny_params(tiny_distilbert, epochs=1), tmp_path / "tok", tmp_path / "m", tmp_path / "live")
    assert metrics["steps"] == 8


def test_cache_from_another_tokenizer_is_refused(tokenized, tmp_path, tokenizer):
    from conftest import save_tiny_model
    from transformers import BertTokenizerFast

    # Same architecture, a different vocabulary: the last word replaced.
    other = save_tiny_model(tmp_path / "other", tokenizer)
    words = sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    words[-1] = "[SOMETHING_ELSE]"
    (other / "tokenizer.json").unlink()
    (other / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(other / "vocab.txt")).save_pretrained(other)
    with pytest.raises(
        PipelineError, match=r"tokenized cache was made with the tokenizer of .*\(rerun the tokenize stage"
    ):
        train(tiny_params(other), tokenized, tmp_path / "m", tmp_path / "live")
    assert not (tmp_path / "m").exists()


def test_logged_loss_is_the_mean_of_the_steps_since_the_last_row(tiny_bert, tokenized, tmp_path, monkeypatch):
    # 8 steps per epoch, a row every 3 steps: rows at steps 3, 6, 8 | 9, 12, 15, 16.
    losses = []
    import pipeline.training as training

    real_loss = training.Run.loss  # one micro-batch per step here: a step's loss is its one batch's
    monkeypatch.setattr(training.Run, "loss", lambda *a: losses.append(real_loss(*a)) or losses[-1])
    train(tiny_params(tiny_bert, log_every_steps=3), tokenized, tmp_path / "m", tmp_path / "live")
    rows = live_curve(tmp_path / "live", "train/loss")
    assert [step for step, _ in rows] == [3, 6, 8, 9, 12, 15, 16]
    bounds = [0, 3, 6, 8, 9, 12, 15, 16]
    losses = [loss.item() for loss in losses]
    for (_, loss), start, end in zip(rows, bounds, bounds[1:]):
        assert loss == pytest.approx(sum(losses[start:end]) / (end - start), abs=1e-5)


def test_mpnet_architecture_trains_with_layer_decay_and_exports(tiny_mpnet, glue_dir, tmp_path):
    """model.name: sentence-transformers/all-mpnet-base-v2, in small: tokenize, train, export."""
    from pipeline import onnx_export
    from pipeline.config import ExportConfig

    model = load_pretrained_classifier(str(tiny_mpnet), ["negative", "positive"])
    depths = layer_depths(model)
    assert depths["mpnet.embeddings.word_embeddings.weight"] == 0
    assert depths["mpnet.encoder.layer.1.output.dense.weight"] == 2 < depths["classifier.out_proj.weight"] == 3
    download(DataConfig(path=str(glue_dir), config=None), tmp_path / "raw")
    tokenize(ModelConfig(name=str(tiny_mpnet)), TokenizeConfig(max_length=32), tmp_path / "raw", tmp_path / "tok")
    params = tiny_params(tiny_mpnet, epochs=1, layer_lr_decay=0.9)
    metrics = train(params, tmp_path / "tok", tmp_path / "m", tmp_path / "live")
    assert metrics["steps"] == 8 and metrics["val"]["loss"] > 0
    report = onnx_export.export_onnx(
        ExportConfig(quantize=False), tmp_path / "m", tmp_path / "raw", tmp_path / "onnx", tmp_path / "x.json"
    )
    assert report["fp32_max_abs_logit_diff"] <= 1e-4
