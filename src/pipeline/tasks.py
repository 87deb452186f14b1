"""What differs between the tasks ``data.task`` names, in one place: the loss, what a prediction is,
and the scores a model is judged by.

- ``single_label``: one class per example; softmax over the classes, cross-entropy, accuracy first.
- ``multi_label``: any set of labels per example; a sigmoid per label, binary cross-entropy, macro-F1 first.
- ``regression``: one score per example; the model's one output is the prediction, MSE, Pearson first.

The task travels with the data (``info.json`` and ``meta.json`` say ``"task"`` for regression) and is
saved into the model's config as Hugging Face's ``problem_type``, which is how a saved model says it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from pipeline.metrics import classification_scores, multi_label_scores, regression_scores

PROBLEM_TYPES = {
    SINGLE_LABEL: "single_label_classification",
    MULTI_LABEL: "multi_label_classification",
    REGRESSION: "regression",
}
# Printed per epoch, logged as val/<metric>; GoEmotions' paper reports macro-F1.
HEADLINE = {SINGLE_LABEL: "accuracy", MULTI_LABEL: "macro_f1", REGRESSION: "pearson"}
THRESHOLD = 0.5  # a label's probability from which multi-label training's validation predicts it
# The config.json key of the threshold train.select_threshold chose, which evaluate and predict then apply.
SAVED_THRESHOLD = "multi_label_threshold"
LOWER_IS_BETTER = ("loss", "mse")
LABEL_JOINER = "|"  # between the names of a multi-label set in a CSV cell (predictions, predict's output)

if TYPE_CHECKING:  # the download stage reads the task names without importing torch
    import torch


def task_of(meta: dict) -> str:
    """The task of a download or tokenize stage's description (``info.json``, ``meta.json``)."""
    return meta.get("task", SINGLE_LABEL)


def task_of_model(config) -> str:
    """The task a saved model was trained for, from its config's ``problem_type``."""
    problem_type = getattr(config, "problem_type", None)
    return next((task for task, name in PROBLEM_TYPES.items() if name == problem_type), SINGLE_LABEL)


def threshold_of(config, fallback: float) -> tuple[float, str]:
    """The multi-label threshold to predict with, and where it comes from: the one saved with the model
    (``train.select_threshold``), else ``fallback`` (``evaluate.threshold``)."""
    saved = getattr(config, SAVED_THRESHOLD, None)
    if saved is None:
        return fallback, "evaluate.threshold"
    return float(saved), "train.select_threshold"


def loss(
    task: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The mean loss of a batch: cross-entropy (optionally weighted per class and smoothed), or the
    squared error of the one output against the score."""
    import torch

    if task == REGRESSION:
        return torch.nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
    if task == MULTI_LABEL:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
    return torch.nn.functional.cross_entropy(logits, labels, weight=class_weights, label_smoothing=label_smoothing)


def distillation_loss(
    task: str, logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """The mean distance of a batch's outputs from the teacher's (``train.distill_alpha``): T² × KL of the
    softmaxes at temperature T, T² × binary cross-entropy against the teacher's sigmoids at T, or the
    squared error against the teacher's score. T² keeps the gradients' scale as T changes (Hinton et al.)."""
    import torch

    logits, teacher_logits = logits.float(), teacher_logits.float()
    if task == REGRESSION:
        return torch.nn.functional.mse_loss(logits.squeeze(-1), teacher_logits.squeeze(-1))
    scale = temperature**2
    if task == MULTI_LABEL:
        targets = (teacher_logits / temperature).sigmoid()
        return scale * torch.nn.functional.binary_cross_entropy_with_logits(logits / temperature, targets)
    student = (logits / temperature).log_softmax(dim=-1)
    teacher = (teacher_logits / temperature).log_softmax(dim=-1)
    return scale * torch.nn.functional.kl_div(student, teacher, reduction="batchmean", log_target=True)


def predicted(task: str, logits: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """The prediction for each example: its class index, its labels as a row of 0/1, or its score."""
    if task == MULTI_LABEL:
        return (logits.sigmoid() >= threshold).float()
    return logits[:, 0] if task == REGRESSION else logits.argmax(dim=-1)


def scores(task: str, logits: torch.Tensor, labels: torch.Tensor, n_classes: int, threshold: float = THRESHOLD) -> dict:
    """What the task is judged by (:mod:`pipeline.metrics`), unrounded; classification adds ``per_class``."""
    if task == MULTI_LABEL:
        return multi_label_scores(logits.sigmoid().numpy(), labels.numpy(), threshold)
    guesses, truth = predicted(task, logits).numpy(), labels.numpy()
    if task == REGRESSION:
        return regression_scores(guesses.astype(np.float64), truth.astype(np.float64))
    return classification_scores(guesses, truth, n_classes)
