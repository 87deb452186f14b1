"""Stage 4, evaluate: score the fine-tuned model on the validation split.

:func:`predict` is also what the training loop calls at the end of every epoch, so the accuracy
printed during training and the one in ``metrics/eval.json`` come from the same code.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import tasks
from pipeline.batching import BatchLoader, LengthGroupedBatches
from pipeline.config import EvaluateConfig
from pipeline.data import EVAL_SPLIT, read_info, read_split
from pipeline.errors import PipelineError
from pipeline.modeling import load_finetuned
from pipeline.outputs import write_csv_atomic, write_json_atomic
from pipeline.parallel import limit_cpu_threads, pick_device
from pipeline.precision import autocast_for, precision_on
from pipeline.tasks import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from pipeline.tokenization import TokenizedSplit, load_split, read_meta
from pipeline.uncertainty import bootstrap_interval, calibration


@dataclass(frozen=True)
class Predictions:
    logits: torch.Tensor  # (n_examples, n_classes), float32, in the split's order; one column for regression
    labels: torch.Tensor  # class indices, or scores
    loss: float  # the task's plain loss: cross-entropy, binary cross-entropy, or MSE
    task: str = SINGLE_LABEL
    threshold: float = tasks.THRESHOLD  # multi-label: the probability from which a label is predicted

    @property
    def predicted(self) -> torch.Tensor:
        return tasks.predicted(self.task, self.logits, self.threshold)


def eval_loader(
    split: TokenizedSplit, batch_size: int, pad_token_id: int, num_replicas: int = 1, rank: int = 0
) -> BatchLoader:
    """Batches sorted by length; with several processes, this process's share of them."""
    batches = LengthGroupedBatches(split.lengths, batch_size, shuffle=False, num_replicas=num_replicas, rank=rank)
    return BatchLoader(split, batches, pad_token_id)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader: BatchLoader,
    device: torch.device,
    gather=None,
    autocast: contextlib.AbstractContextManager | None = None,
    task: str = SINGLE_LABEL,
) -> Predictions:
    """Logits for every example of the loader's split, as fp32, put back in the split's order.

    The forward passes run under ``autocast`` (see :func:`pipeline.precision.autocast_for`).

    With data-parallel processes each predicts its own share of the examples and ``gather`` (a
    :meth:`ProcessGroup.all_gather`) brings the shares together; each example is counted exactly once.
    """
    model.eval()
    positions, outputs = [], []
    for indices, batch in loader.with_indices():
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        with autocast or contextlib.nullcontext():
            logits = model(**{name: tensor for name, tensor in batch.items() if name != "labels"}).logits
        outputs.append(logits.float().cpu())
        positions.append(torch.from_numpy(np.asarray(indices, dtype=np.int64)))
    shares = gather((positions, outputs)) if gather else [(positions, outputs)]
    positions = torch.cat([p for share_positions, _ in shares for p in share_positions])
    outputs = torch.cat([o for _, share_outputs in shares for o in share_outputs])
    n_examples = len(loader.split)
    if sorted(positions.tolist()) != list(range(n_examples)):
        raise RuntimeError("predictions do not cover every example exactly once")
    logits = torch.empty(n_examples, outputs.shape[-1])
    logits[positions] = outputs
    labels = loader.split.labels
    loss = tasks.loss(task, logits, labels).item()
    return Predictions(logits=logits, labels=labels, loss=loss, task=task)


def score(predictions: Predictions, n_classes: int, per_class: bool = False) -> dict:
    """The task's scores (:func:`pipeline.tasks.scores`: accuracy, macro_f1, mcc, for two classes f1,
    precision and recall; micro_f1, macro_f1, exact_match, mean_average_precision; or pearson,
    spearman, mse), loss and n_examples; with ``per_class``, each class's or label's scores too."""
    result = tasks.scores(predictions.task, predictions.logits, predictions.labels, n_classes, predictions.threshold)
    classes = result.pop("per_class", None)
    scores = {
        **{k: round(v, 6) for k, v in result.items()},
        "loss": round(predictions.loss, 6),
        "n_examples": len(predictions.labels),
    }
    return scores | ({"per_class": classes} if per_class else {})


@dataclass(frozen=True)
class EvaluationOutputs:
    """Where the evaluate stage writes; all but ``metrics`` are CSV files that ``dvc plots`` draws. A
    task writes the files that are not its own with their header only (dvc.yaml declares them all)."""

    metrics: Path  # JSON: accuracy, f1, ... (or pearson, spearman, mse), their 95% intervals, the calibration error
    confusion: Path  # actual,predicted per example, for the confusion matrix
    # id,label,predicted,probability per example, for comparing revisions; multi-label: id,label,predicted
    # with label sets as names joined by "|" (tasks.LABEL_JOINER); regression: id,label,predicted
    predictions: Path
    calibration: Path  # the reliability diagram's bins
    misclassified: Path  # the wrong predictions with their text, most confident first
    per_class: Path  # precision, recall, F1 and support of each class
    scatter: Path  # regression: true against predicted score per example

    HEADERS = {
        "confusion": ["actual", "predicted"],
        "calibration": ["bin_low", "bin_high", "confidence", "accuracy", "count"],
        "misclassified": ["rank", "id", "text", "label", "predicted", "probability"],
        "per_class": ["class", "precision", "recall", "f1", "support"],
        "scatter": ["id", "label", "predicted"],
    }


def evaluate_model(
    cfg: EvaluateConfig, model_dir: str | Path, tokenized_dir: str | Path, raw_dir: str | Path, out: EvaluationOutputs
) -> dict:
    """Score the validation split; write the metrics and the per-example files."""
    torch.manual_seed(0)
    model = load_finetuned(model_dir)
    meta = read_meta(tokenized_dir)
    split = load_split(tokenized_dir, EVAL_SPLIT)
    raw = read_split(raw_dir, EVAL_SPLIT)
    texts = raw.texts if raw.text_pairs is None else [f"{a} ||| {b}" for a, b in zip(raw.texts, raw.text_pairs)]
    if len(texts) != len(split):
        raise PipelineError(
            f"{raw_dir} and {tokenized_dir} hold different validation splits "
            f"({len(texts)} and {len(split)} examples); rerun: dvc repro"
        )
    task = tasks.task_of_model(model.config)
    if task != tasks.task_of(meta):
        raise PipelineError(
            f"{model_dir} was trained for {task}, but {tokenized_dir} holds {tasks.task_of(meta)} data; "
            f"rerun: dvc repro"
        )
    limit_cpu_threads()
    device = pick_device()
    model.to(device)
    precision = precision_on(cfg.precision, device, key="evaluate.precision")
    autocast = autocast_for(precision, device, key="evaluate.precision")
    loader = eval_loader(split, cfg.batch_size, meta["pad_token_id"])
    predictions = predict(model, loader, device, autocast=autocast, task=task)
    threshold, threshold_from = tasks.threshold_of(model.config, cfg.threshold)
    predictions = dataclasses.replace(predictions, threshold=threshold)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    metrics = score(predictions, n_classes=len(names), per_class=task != REGRESSION)
    carved = read_info(raw_dir).get("eval_split_carved")
    if carved:  # the evaluation split is a seeded share of the training data, not one of the source's
        metrics["eval_split_carved_fraction"] = carved["fraction"]
    if task == REGRESSION:
        written = write_regression(predictions, metrics, out)
    elif task == MULTI_LABEL:
        metrics["threshold"], metrics["threshold_from"] = threshold, threshold_from
        written = write_multi_label(predictions, metrics, names, out)
    else:
        written = write_single_label(predictions, metrics, names, texts, out)
    for name, header in EvaluationOutputs.HEADERS.items():  # the other task's files
        if name not in written:
            write_csv_atomic(getattr(out, name), header, [])
    write_json_atomic(out.metrics, metrics)
    return metrics


def with_intervals(metrics: dict, intervals: dict[str, tuple[float, float]]) -> None:
    for metric, (low, high) in intervals.items():
        metrics[f"{metric}_ci95_low"], metrics[f"{metric}_ci95_high"] = round(low, 6), round(high, 6)


def write_regression(predictions: Predictions, metrics: dict, out: EvaluationOutputs) -> set[str]:
    """Intervals of pearson, spearman and mse; the per-example scores, for the scatter plot and the gate."""
    targets, predicted = predictions.labels.numpy(), predictions.predicted.numpy()
    with_intervals(metrics, {m: bootstrap_interval(targets, predicted, m) for m in ("pearson", "spearman", "mse")})
    rows = [(i, f"{t:.6g}", f"{p:.6f}") for i, (t, p) in enumerate(zip(targets, predicted))]
    write_csv_atomic(out.predictions, ["id", "label", "predicted"], rows)
    write_csv_atomic(out.scatter, EvaluationOutputs.HEADERS["scatter"], rows)
    return {"scatter"}


def write_multi_label(predictions: Predictions, metrics: dict, names: list[str], out: EvaluationOutputs) -> set[str]:
    """Intervals of micro_f1, macro_f1 and exact_match; each example's true and predicted label sets
    (the gate pairs revisions on exact matches); each label's scores."""
    classes = metrics.pop("per_class")
    truth, chosen = predictions.labels.numpy(), predictions.predicted.numpy()
    with_intervals(metrics, {m: bootstrap_interval(truth, chosen, m) for m in ("micro_f1", "macro_f1", "exact_match")})

    def label_set(row: np.ndarray) -> str:
        return tasks.LABEL_JOINER.join(name for name, flag in zip(names, row) if flag)

    rows = [(i, label_set(t), label_set(c)) for i, (t, c) in enumerate(zip(truth, chosen))]
    write_csv_atomic(out.predictions, ["id", "label", "predicted"], rows)
    write_per_class(out, names, classes)
    return {"per_class"}


def write_per_class(out: EvaluationOutputs, names: list[str], classes: dict) -> None:
    write_csv_atomic(
        out.per_class,
        EvaluationOutputs.HEADERS["per_class"],
        [
            (name, f"{p:.6f}", f"{r:.6f}", f"{f:.6f}", n)
            for name, p, r, f, n in zip(
                names, classes["precision"], classes["recall"], classes["f1"], classes["support"]
            )
        ],
    )


def write_single_label(
    predictions: Predictions, metrics: dict, names: list[str], texts: list[str], out: EvaluationOutputs
) -> set[str]:
    """Intervals and the calibration error; per-example predictions, the confusion matrix, reliability
    diagram, mistakes and per-class scores."""
    classes = metrics.pop("per_class")
    labels, predicted = predictions.labels.numpy(), predictions.predicted.numpy()
    probabilities = torch.softmax(predictions.logits, dim=-1).numpy()
    bootstrapped = ("accuracy", "f1", "macro_f1", "mcc") if len(names) == 2 else ("accuracy", "macro_f1", "mcc")
    with_intervals(metrics, {m: bootstrap_interval(labels, predicted, m, n_classes=len(names)) for m in bootstrapped})
    bins, ece = calibration(probabilities, labels)
    metrics["ece"] = round(ece, 6)

    confidence = probabilities[np.arange(len(labels)), predicted]
    rows = [(i, names[a], names[p], f"{c:.6f}") for i, (a, p, c) in enumerate(zip(labels, predicted, confidence))]
    wrong = sorted((row for row in rows if row[1] != row[2]), key=lambda row: (-float(row[3]), row[0]))
    write_csv_atomic(out.confusion, ["actual", "predicted"], [(a, p) for _, a, p, _ in rows])
    write_csv_atomic(out.predictions, ["id", "label", "predicted", "probability"], rows)
    write_csv_atomic(
        out.calibration,
        EvaluationOutputs.HEADERS["calibration"],
        [(f"{b.low:.1f}", f"{b.high:.1f}", f"{b.confidence:.6f}", f"{b.accuracy:.6f}", b.count) for b in bins],
    )
    write_csv_atomic(
        out.misclassified,
        EvaluationOutputs.HEADERS["misclassified"],
        [(rank, i, texts[i], a, p, c) for rank, (i, a, p, c) in enumerate(wrong, start=1)],
    )
    write_per_class(out, names, classes)
    return {"confusion", "calibration", "misclassified", "per_class"}
