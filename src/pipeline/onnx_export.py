"""Stage 6, export: the fine-tuned classifier as ONNX for onnxruntime, in fp32 and int8, checked against PyTorch.

The folder it writes (``models/onnx``) holds ``model.onnx`` (fp32), ``model_int8.onnx`` (weights and
activations quantized to int8 on the fly: onnxruntime's dynamic quantization) when it passes its
checks, and the model's config and tokenizer, so ``python -m pipeline predict --backend onnx`` needs
nothing else. Before the folder is put in place, both models label the validation split in the batches
``predict`` uses and are compared with eager PyTorch:

- fp32: every logit within ``export.fp32_tolerance`` of eager's, or the stage fails: a graph that
  computes something else is not shipped;
- int8: it agrees with eager on at least ``export.int8_min_agreement`` of the labels and loses at most
  ``export.int8_max_accuracy_drop`` of accuracy (a multi-label model: agrees on that share of every
  example's yes-or-no per label at probability 0.5, and loses at most that much macro-F1; a regression
  model: loses at most that much Pearson correlation, with no labels to agree on), or it is left out
  (predict then runs fp32).

The figures go to ``metrics/export.json`` whenever the stage succeeds; a failed fp32 check ends it
with one line (exit 2) and leaves the earlier folder and metrics as they were.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.config import ExportConfig
from pipeline.data import EVAL_SPLIT, read_split
from pipeline.errors import PipelineError, first_line
from pipeline.metrics import multi_label_scores, pearson
from pipeline.outputs import atomic_directory, write_json_atomic
from pipeline.parallel import limit_cpu_threads
from pipeline.predict import (
    BATCH_SIZE,
    Classifier,
    Inputs,
    accepted_inputs,
    all_logits,
    input_limit,
    load_torch_model,
    torch_classifier,
)
from pipeline.tasks import HEADLINE, MULTI_LABEL, REGRESSION, SINGLE_LABEL, THRESHOLD, task_of_model, threshold_of

FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """The exporter's progress lines and its notes on optional operator libraries are not the stage's output."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            yield
    finally:
        registration.setLevel(level)


def export_fp32(model, tokenizer, path: Path) -> None:
    """``model`` as an ONNX graph of its logits, any batch size and length (torch.export-based exporter)."""
    import torch

    if hasattr(model, "set_attn_implementation"):  # transformers 5; older versions keep SDPA, which exports too
        # The plain attention graph ran faster in onnxruntime than the SDPA decomposition (docs/notebook.md).
        model.set_attn_implementation("eager")
    model.to("cpu").eval()
    example = tokenizer(
        ["a short example", "a longer example, so that the batch holds some padding"],
        padding=True,
        return_tensors="pt",
    )
    names = [name for name in example.keys() if name in accepted_inputs(model)]
    example = {name: example[name] for name in names}
    with _exporter_quiet(), _reported_as(f"export: torch.onnx could not export {type(model).__name__}"):
        program = torch.onnx.export(
            model,
            (),
            None,  # saved below, once its stack traces are gone
            kwargs=example,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes={name: {0: "batch", 1: "sequence"} for name in names},
            dynamo=True,
            verbose=False,
        )
    _drop_stack_traces(program.model)
    with _reported_as(f"export: could not write the ONNX model to {path}"):  # a full disk is not an export bug
        program.save(str(path), external_data=False)  # one file: models of this size are far below ONNX's 2 GB limit


def _drop_stack_traces(model) -> None:
    """The exporter notes under each node the Python stack that made it, with the absolute paths of the
    installed torch and transformers files: the same model exported from another install would get other
    bytes, and so another DVC hash. Everything else it notes (module names, the FX node) stays.
    ``model`` is the exporter's in-memory graph (an ``onnx_ir.Model``), so the file is written once."""
    from onnx_ir.traversal import RecursiveGraphIterator

    graphs = [model.graph, *model.functions.values()]
    for node in (node for graph in graphs for node in RecursiveGraphIterator(graph)):
        node.metadata_props.pop(STACK_TRACE_KEY, None)


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic quantization: int8 weights, one scale per output channel; activations quantized per batch."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer re-infers every shape; the exporter's own intermediate shape notes can contradict
    # that inference in older onnxruntime versions, and nothing needs them.
    graph = onnx.load(fp32_path)
    graph.graph.ClearField("value_info")
    with _exporter_quiet(), _quiet_root_logger():
        quantize_dynamic(graph, int8_path, weight_type=QuantType.QInt8, per_channel=True)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer advises pre-processing with a module-level ``logging.warning``; it changes
    nothing here. A handler for the moment also keeps that call from installing one of its own for good."""
    root = logging.getLogger()
    level, handler = root.level, logging.NullHandler()
    root.setLevel(logging.ERROR)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@contextlib.contextmanager
def _reported_as(what: str) -> Iterator[None]:
    """A library's exception, as one line saying what failed and why."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:  # the exporter and onnxruntime raise many types of their own
        raise PipelineError(f"{what} ({first_line(exc)})") from None


def onnx_classifier(folder: Path, file: str, config, tokenizer) -> Classifier:
    """An onnxruntime session on ``folder/file`` behind the same interface as the PyTorch model."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = limit_cpu_threads()  # PIPELINE_CPU_THREADS, or torch's count: the cores
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    with _reported_as(f"--model {folder}: {file} cannot be loaded; rerun: dvc repro --force export"):
        session = onnxruntime.InferenceSession(str(folder / file), options, providers=["CPUExecutionProvider"])
    wanted = [node.name for node in session.get_inputs()]
    example = tokenizer("an example", return_tensors="np")
    missing = [name for name in wanted if name not in example]
    if missing:
        raise PipelineError(
            f"--model {folder}: {file} takes {', '.join(missing)}, which its tokenizer does not produce "
            f"(rerun: dvc repro --force export)"
        )

    def logits(batch: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["logits"], {name: batch[name].astype(np.int64) for name in wanted})[0]

    return Classifier(config, tokenizer, logits, input_limit(config, tokenizer))


def load_onnx_classifier(folder: Path, precision: str = "auto") -> Classifier:
    """The export stage's folder, run by onnxruntime: ``auto`` is int8 where the stage shipped it, else fp32."""
    from transformers import AutoConfig, AutoTokenizer

    if not (folder / FP32_FILE).is_file():
        raise PipelineError(f"--model {folder}: no ONNX model here (export one: dvc repro export)")
    if precision not in ("auto", "fp32", "int8"):
        raise PipelineError(f"--precision {precision}: --backend onnx runs fp32 or int8 (or auto)")
    has_int8 = (folder / INT8_FILE).is_file()
    if precision == "int8" and not has_int8:
        raise PipelineError(
            f"--model {folder}: no int8 model; the export stage left it out (it failed the checks, or "
            f"export.quantize is false: metrics/export.json); use --precision fp32"
        )
    file = INT8_FILE if precision == "int8" or (precision == "auto" and has_int8) else FP32_FILE
    with _reported_as(f"--model {folder}: its config or tokenizer cannot be loaded; rerun: dvc repro --force export"):
        config, tokenizer = AutoConfig.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    return onnx_classifier(folder, file, config, tokenizer)


def export_onnx(cfg: ExportConfig, model_dir: str | Path, raw_dir: str | Path, out_dir: str | Path, metrics: Path):
    """The export stage: write ``out_dir`` and the parity figures to ``metrics``; fail on an fp32 mismatch."""
    model, tokenizer = load_torch_model(Path(model_dir))
    validation = read_split(raw_dir, EVAL_SPLIT)
    inputs = Inputs(validation.texts, validation.text_pairs, "validation example")
    reference = torch_classifier(model, tokenizer, "fp32", device="cpu")  # onnxruntime runs on the CPU too
    eager = all_logits(reference, inputs, BATCH_SIZE, progress=False)
    task = task_of_model(model.config)
    headline = HEADLINE[task]
    threshold = threshold_of(model.config, THRESHOLD)[0]  # a multi-label model's, as predict applies it
    report = {"examples": len(inputs.texts), f"eager_{headline}": _figure(eager, validation.labels, task, threshold)}
    with atomic_directory(out_dir) as staging:
        export_fp32(model, tokenizer, staging / FP32_FILE)
        model.config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        fp32 = _logits_of(staging, FP32_FILE, model.config, tokenizer, inputs)
        difference = float(np.abs(fp32 - eager).max())
        report |= {
            "fp32_max_abs_logit_diff": difference,
            "fp32_tolerance": cfg.fp32_tolerance,
            f"fp32_{headline}": _figure(fp32, validation.labels, task, threshold),
        }
        if not difference <= cfg.fp32_tolerance:  # NaN fails too
            raise PipelineError(
                f"export: the ONNX model's logits differ from PyTorch's by up to {difference:.3g}, more than "
                f"export.fp32_tolerance={cfg.fp32_tolerance:g}; nothing was written (report this model and versions)"
            )
        report["int8_shipped"] = False
        if cfg.quantize:
            report |= _quantize_and_check(
                cfg, staging, model.config, tokenizer, inputs, eager, validation.labels, task, threshold
            )
    write_json_atomic(metrics, report)
    return report


def _quantize_and_check(
    cfg: ExportConfig,
    staging: Path,
    config,
    tokenizer,
    inputs,
    eager,
    labels,
    task: str = SINGLE_LABEL,
    threshold: float = THRESHOLD,
) -> dict:
    """int8 next to the fp32 model in ``staging``, kept only if it labels (or scores) the validation split
    like eager."""
    try:
        quantize_int8(staging / FP32_FILE, staging / INT8_FILE)
    except Exception as exc:  # onnxruntime's quantizer: a model it cannot handle ships as fp32, with the reason
        (staging / INT8_FILE).unlink(missing_ok=True)
        print(f"export: int8 left out, quantization failed ({first_line(exc)}); predict runs fp32", file=sys.stderr)
        return {"int8_shipped": False, "int8_error": first_line(exc)}
    int8 = _logits_of(staging, INT8_FILE, config, tokenizer, inputs)
    if task == REGRESSION:
        return _check_int8_scores(cfg, staging, int8, eager, labels)
    if task == MULTI_LABEL:
        return _check_int8_label_sets(cfg, staging, int8, eager, labels, threshold)
    n = len(labels)
    agreeing = int((int8.argmax(axis=1) == eager.argmax(axis=1)).sum())
    lost = int((eager.argmax(axis=1) == labels).sum()) - int((int8.argmax(axis=1) == labels).sum())
    # Counts, not rounded shares: a drop of exactly the allowed share passes.
    passed = agreeing >= cfg.int8_min_agreement * n - 1e-9 and lost <= cfg.int8_max_accuracy_drop * n + 1e-9
    report = {
        "int8_label_agreement": round(agreeing / n, 6),
        "int8_min_agreement": cfg.int8_min_agreement,
        "int8_accuracy": _figure(int8, labels, task),
        "int8_max_accuracy_drop": cfg.int8_max_accuracy_drop,
        "int8_shipped": passed,
    }
    if not passed:
        (staging / INT8_FILE).unlink()
        print(
            f"export: int8 left out (label agreement {agreeing / n:.4f}, accuracy {report['int8_accuracy']:.4f} "
            f"against eager {_figure(eager, labels, task):.4f}); predict --backend onnx runs fp32",
            file=sys.stderr,
        )
    return report


def _logits_of(folder: Path, file: str, config, tokenizer, inputs: Inputs) -> np.ndarray:
    return all_logits(onnx_classifier(folder, file, config, tokenizer), inputs, BATCH_SIZE, progress=False)


def _check_int8_scores(cfg: ExportConfig, staging: Path, int8, eager, labels) -> dict:
    """A regression model's int8: kept if its Pearson correlation is at most the allowed drop below eager's."""
    int8_pearson, eager_pearson = _figure(int8, labels, REGRESSION), _figure(eager, labels, REGRESSION)
    passed = eager_pearson - int8_pearson <= cfg.int8_max_accuracy_drop + 1e-9
    report = {
        "int8_max_abs_score_diff": float(np.abs(int8 - eager).max()),
        "int8_pearson": int8_pearson,
        "int8_max_accuracy_drop": cfg.int8_max_accuracy_drop,  # here: of Pearson correlation
        "int8_shipped": passed,
    }
    if not passed:
        (staging / INT8_FILE).unlink()
        print(
            f"export: int8 left out (Pearson {int8_pearson:.4f} against eager {eager_pearson:.4f}); "
            f"predict --backend onnx runs fp32",
            file=sys.stderr,
        )
    return report


def _check_int8_label_sets(cfg: ExportConfig, staging: Path, int8, eager, labels, threshold: float) -> dict:
    """A multi-label model's int8: kept if it agrees with eager on enough of the per-label decisions at
    ``threshold`` and loses at most the allowed macro-F1."""
    cut = np.log(threshold / (1 - threshold))  # the logit whose sigmoid is the threshold
    agreement = float(((int8 >= cut) == (eager >= cut)).mean())
    int8_f1 = _figure(int8, labels, MULTI_LABEL, threshold)
    eager_f1 = _figure(eager, labels, MULTI_LABEL, threshold)
    passed = agreement >= cfg.int8_min_agreement - 1e-9 and eager_f1 - int8_f1 <= cfg.int8_max_accuracy_drop + 1e-9
    report = {
        "int8_label_agreement": round(agreement, 6),  # here: of the (example, label) decisions
        "int8_min_agreement": cfg.int8_min_agreement,
        "int8_macro_f1": int8_f1,
        "int8_max_accuracy_drop": cfg.int8_max_accuracy_drop,  # here: of macro-F1
        "int8_shipped": passed,
    }
    if not passed:
        (staging / INT8_FILE).unlink()
        print(
            f"export: int8 left out (decision agreement {agreement:.4f}, macro-F1 {int8_f1:.4f} against eager "
            f"{eager_f1:.4f}); predict --backend onnx runs fp32",
            file=sys.stderr,
        )
    return report


def _figure(logits: np.ndarray, labels: np.ndarray, task: str, threshold: float = THRESHOLD) -> float:
    """The task's headline on the validation split: accuracy, macro-F1 at probability ``threshold``, or
    Pearson correlation."""
    if task == REGRESSION:
        return round(float(pearson(logits[:, 0], labels)), 6)
    if task == MULTI_LABEL:
        probabilities = 1 / (1 + np.exp(-logits.astype(np.float64)))
        return round(multi_label_scores(probabilities, labels, threshold)["macro_f1"], 6)
    return round(float((logits.argmax(axis=1) == labels).mean()), 6)
