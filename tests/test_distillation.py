"""Distillation: the teacher stage, the augmenter, and the student's loss (docs/distillation.md)."""

import json
import math

import pytest
import torch
from conftest import live_curve
from safetensors.torch import load_file

from pipeline import tasks
from pipeline.augment import augment
from pipeline.config import (
    DataConfig,
    ModelConfig,
    Params,
    TeacherConfig,
    TokenizeConfig,
    TrainConfig,
    params_from_dict,
)
from pipeline.data import download
from pipeline.distillation import run_teacher_stage, student_split
from pipeline.errors import PipelineError
from pipeline.modeling import load_tokenizer
from pipeline.tokenization import concatenate, load_split, read_meta, tokenize
from pipeline.training import train


def test_single_label_distillation_is_t_squared_times_the_kl_of_the_softened_softmaxes():
    student, teacher = torch.tensor([[2.0, -1.0], [0.5, 0.3]]), torch.tensor([[1.0, 0.0], [-2.0, 2.0]])
    temperature = 2.0
    expected = 0.0
    for s, t in zip(student, teacher):
        p = torch.softmax(t / temperature, -1)
        q = torch.softmax(s / temperature, -1)
        expected += float((p * (p / q).log()).sum())
    got = tasks.distillation_loss(tasks.SINGLE_LABEL, student, teacher, temperature)
    assert got.item() == pytest.approx(temperature**2 * expected / 2, rel=1e-6)
    assert tasks.distillation_loss(tasks.SINGLE_LABEL, teacher, teacher, temperature).item() == pytest.approx(0)


def test_multi_label_and_regression_distil_the_sigmoids_and_the_score():
    student, teacher = torch.tensor([[1.0, -2.0, 0.0]]), torch.tensor([[3.0, -1.0, 0.5]])
    targets = torch.sigmoid(teacher / 2)
    probs = torch.sigmoid(student / 2)
    bce = -(targets * probs.log() + (1 - targets) * (1 - probs).log()).mean()
    got = tasks.distillation_loss(tasks.MULTI_LABEL, student, teacher, 2.0)
    assert got.item() == pytest.approx(4 * bce.item(), rel=1e-5)
    score, teacher_score = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [2.5]])
    got = tasks.distillation_loss(tasks.REGRESSION, score, teacher_score, 7.0)  # no temperature for a score
    assert got.item() == pytest.approx((1.0 + 0.25) / 2)


def test_spans_are_shorter_contiguous_pieces_of_their_own_text_and_repeat_with_the_seed():
    texts = ["a b c d e f", "only two", "x y z"]
    new, pairs = augment(texts, None, copies=4, seed=3)
    assert pairs is None and len(new) == 8  # "only two" is too short to cut
    for span in new[:4]:
        assert f" {span} " in " a b c d e f " and 2 <= len(span.split()) < 6
    for span in new[4:]:
        assert f" {span} " in " x y z " and len(span.split()) == 2
    assert augment(texts, None, copies=4, seed=3) == (new, None)
    assert augment(texts, None, copies=4, seed=4) != (new, None)


def test_pairs_keep_both_texts_with_some_words_dropped():
    texts, pairs = ["the cat sat on the mat today", "a"], ["a dog ran in the park", "b"]
    new, new_pairs = augment(texts, pairs, copies=3, seed=0)
    assert len(new) == len(new_pairs) == 6
    for first, second, source, source_pair in zip(
        new, new_pairs, [texts[0]] * 3 + [texts[1]] * 3, [pairs[0]] * 3 + [pairs[1]] * 3
    ):
        assert 1 <= len(first.split()) <= len(source.split()) and set(first.split()) <= set(source.split())
        assert 1 <= len(second.split()) <= len(source_pair.split()) and set(second.split()) <= set(source_pair.split())


def test_concatenated_splits_keep_every_example(tokenized):
    split = load_split(tokenized, "train")
    both = concatenate(split, split)
    assert len(both) == 2 * len(split)
    for i in (0, 5, len(split) - 1):
        assert torch.equal(both[i + len(split)][0], split[i][0]) and both[i + len(split)][1] == split[i][1]


def test_distill_alpha_needs_a_teacher():
    with pytest.raises(
        PipelineError, match=r"train.distill_alpha=0.5 distils a teacher, and teacher.model_name is null"
    ):
        params_from_dict({"train": {"distill_alpha": 0.5}})
    with pytest.raises(PipelineError, match=r"invalid parameter train.distill_alpha=1.5"):
        params_from_dict({"train": {"distill_alpha": 1.5}})


def test_without_a_teacher_the_stage_writes_empty_outputs_at_once(glue_dir, tmp_path):
    download(DataConfig(path=str(glue_dir), config=None), tmp_path / "raw")
    metrics = run_teacher_stage(Params(), tmp_path / "raw", tmp_path / "out", tmp_path / "model", tmp_path / "t.json")
    assert metrics == {"teacher": None} == json.loads((tmp_path / "t.json").read_text())
    assert json.loads((tmp_path / "out" / "meta.json").read_text()) == {"teacher": None}
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["README.md"]


@pytest.fixture(scope="module")
def taught(glue_dir, tiny_mpnet, tiny_bert, tmp_path_factory):
    """A tiny MPNet teacher's outputs for glue_dir, and the data tokenized for a tiny BERT student."""
    root = tmp_path_factory.mktemp("taught")
    download(DataConfig(path=str(glue_dir), config=None), root / "raw")
    tokenize(ModelConfig(name=str(tiny_bert)), TokenizeConfig(max_length=32), root / "raw", root / "tok")
    teacher = TeacherConfig(model_name=str(tiny_mpnet), epochs=2, batch_size=8, lr=2e-3, augment_copies=2)
    params = Params(teacher=teacher, tokenize=TokenizeConfig(max_length=32))
    metrics = run_teacher_stage(
        params, root / "raw", root / "teacher", root / "teacher-model", root / "teacher.json", root / "ckpt"
    )
    return root, metrics


def test_the_teacher_stage_trains_labels_every_example_and_saves_a_usable_model(taught):
    root, metrics = taught
    assert metrics["teacher"].endswith("tiny-mpnet0") and 0 <= metrics["accuracy"] <= 1
    assert json.loads((root / "teacher.json").read_text()) == metrics
    meta = json.loads((root / "teacher" / "meta.json").read_text())
    logits = load_file(root / "teacher" / "logits.safetensors")
    assert meta["n_train"] == 64 and logits["train"].shape == (64, 2)
    assert meta["n_augmented"] == len(logits["augmented"]) > 64  # two spans of most texts
    assert meta["recipe"]["teacher.augment_copies"] == 2
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(root / "teacher-model")
    assert teacher.config.id2label == {0: "negative", 1: "positive"}


def test_the_student_trains_on_the_teachers_outputs_and_its_card_says_so(taught, tiny_bert, tmp_path):
    root, _ = taught
    n_augmented = json.loads((root / "teacher" / "meta.json").read_text())["n_augmented"]
    cfg = TrainConfig(epochs=1, batch_size=8, lr=5e-4, precision="fp32", distill_alpha=0.5, log_every_steps=1)
    params = Params(model=ModelConfig(name=str(tiny_bert)), train=cfg, teacher=TeacherConfig(model_name="t"))
    metrics = train(params, root / "tok", tmp_path / "m", tmp_path / "live", teacher_dir=root / "teacher")
    assert metrics["steps"] == math.ceil((64 + n_augmented) / 8)  # the augmented inputs train too
    assert all(math.isfinite(loss) for _, loss in live_curve(tmp_path / "live", "train/loss"))
    card = (tmp_path / "m" / "README.md").read_text()
    assert "Distilled from `" in card and "tiny-mpnet0" in card and "`train.distill_alpha` 0.5" in card


def test_augmented_examples_carry_the_teachers_prediction_as_their_label(taught, tiny_bert):
    root, _ = taught
    split = load_split(root / "tok", "train")
    student, teacher = student_split(
        split, root / "teacher", read_meta(root / "tok"), load_tokenizer(str(tiny_bert)), False
    )
    assert torch.equal(student.labels[:64], split.labels)  # the training split keeps its own labels
    assert torch.equal(student.labels[64:], student.teacher_logits[64:].argmax(-1))
    assert teacher["teacher"].endswith("tiny-mpnet0")


def test_outputs_of_a_teacher_for_other_data_are_refused(taught, tiny_bert, glue_dir, tmp_path):
    root, _ = taught
    split = load_split(root / "tok", "train")
    fewer = concatenate(split, split)  # the cache now holds other training data than the teacher labelled
    with pytest.raises(PipelineError, match=r"are for other data \(64 .*128 .*rerun: dvc repro teacher"):
        student_split(fewer, root / "teacher", read_meta(root / "tok"), load_tokenizer(str(tiny_bert)), False)


def test_without_distillation_the_loss_is_the_tasks_own():
    from pipeline.training import Run

    logits, labels = torch.tensor([[1.0, -1.0], [0.2, 0.4]]), torch.tensor([0, 1])
    run = Run.__new__(Run)
    object.__setattr__(run, "task", tasks.SINGLE_LABEL)
    object.__setattr__(run, "class_weights", None)
    object.__setattr__(run, "params", Params())
    assert torch.equal(run.loss(logits, {"labels": labels}), tasks.loss(tasks.SINGLE_LABEL, logits, labels))
