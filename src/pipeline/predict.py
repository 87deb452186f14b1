"""Label new texts with a fine-tuned classifier: ``python -m pipeline predict``.

Texts come as arguments, as lines on stdin, or as a column (two for a sentence-pair model) of a CSV,
TSV, JSON Lines or Parquet file. Each gets its ``label``, the ``score`` (that label's probability) and
one probability per class (a multi-label model: its ``labels``, those whose probability reaches the
threshold, and each label's probability; a regression model: the ``score`` it predicts), in input order: JSON Lines
on stdout, or a file in the format its suffix names, written all at once. Batches are grouped by
length (little padding); on a GPU with native bf16 they run under bf16 autocast, on a CPU in fp32
(``--precision`` chooses). ``--backend onnx``
runs the export stage's ONNX model with onnxruntime instead (``pipeline.onnx_export``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data import check_utf8_files
from pipeline.errors import PipelineError
from pipeline.modeling import load_finetuned
from pipeline.parallel import limit_cpu_threads, pick_device
from pipeline.precision import autocast_for, bf16_is_native
from pipeline.tasks import LABEL_JOINER, MULTI_LABEL, REGRESSION, THRESHOLD, task_of_model, threshold_of

BATCH_SIZE = 64  # predict's default; the export stage checks int8 in batches of this size too
INPUT_FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
OUTPUT_FORMATS = (".jsonl", ".csv", ".tsv", ".parquet")


@dataclass(frozen=True)
class Inputs:
    texts: list[str]
    pairs: list[str] | None  # the second text of each pair, for a sentence-pair model
    source: str  # for messages: "argument", "stdin line", or "<file> row"


def read_input_file(path: Path, text_columns: list[str]) -> Inputs:
    """The text column(s) of a CSV, TSV, JSON Lines or Parquet file, every row, as text."""
    import pandas as pd

    suffix = path.suffix.lower()
    if not path.is_file():
        raise PipelineError(f"--input {path}: no such file")
    if suffix not in INPUT_FORMATS:
        raise PipelineError(
            f"--input {path}: unknown format {suffix or '(no suffix)'}; use .csv, .tsv, .jsonl or .parquet"
        )
    if path.stat().st_size == 0:
        raise PipelineError(f"--input {path}: the file is empty")
    check_utf8_files([path], f"--input {path}")
    kind = INPUT_FORMATS[suffix]
    if kind == "parquet":
        frame = pd.read_parquet(path)
    elif kind == "jsonl":
        frame = pd.read_json(path, lines=True, dtype=False)
    else:
        frame = pd.read_csv(path, sep=kind, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if frame.empty:
        raise PipelineError(f"--input {path}: no rows to label")
    missing = [c for c in text_columns if c not in frame.columns]
    if missing:
        raise PipelineError(
            f"--input {path}: no column {missing[0]!r}; it has {[str(c) for c in frame.columns]} "
            f"(name the text column with --text-column)"
        )
    columns = [frame[c].tolist() for c in text_columns]
    return Inputs(columns[0], columns[1] if len(columns) == 2 else None, f"{path.name} row")


def inputs_from_lines(lines: list[str], is_pair: bool, source: str) -> Inputs:
    """Texts from arguments or stdin; for a pair model each holds the two texts separated by a tab."""
    if not is_pair:
        return Inputs(lines, None, source)
    pairs = [line.split("\t", 1) for line in lines]
    for row, parts in enumerate(pairs):
        if len(parts) != 2:
            raise PipelineError(f"{source} {row}: a sentence-pair model needs two texts separated by a tab")
    return Inputs([a for a, _ in pairs], [b for _, b in pairs], source)


def check_texts(inputs: Inputs) -> None:
    for texts in (inputs.texts, inputs.pairs or []):
        for row, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise PipelineError(f"{inputs.source} {row} is empty: every input needs text (remove it or fill it)")


@dataclass(frozen=True)
class Classifier:
    """What labelling needs from a fine-tuned model, whichever runtime runs it."""

    config: Any  # the model's transformers config: num_labels, id2label
    tokenizer: Any
    logits: Callable[[dict[str, np.ndarray]], np.ndarray]  # a padded batch -> (batch, classes) fp32 logits
    max_length: int


def load_classifier(folder: Path, precision: str = "auto") -> Classifier:
    """The fine-tuned model in ``folder``, run by PyTorch; ``precision`` as :func:`torch_classifier` takes it.

    The export stage's ONNX folder is loaded by :func:`pipeline.onnx_export.load_onnx_classifier` instead.
    """
    if precision == "int8":
        raise PipelineError("--precision int8 runs the exported model: add --backend onnx (dvc repro export)")
    model, tokenizer = load_torch_model(folder)
    return torch_classifier(model, tokenizer, precision)


def load_torch_model(folder: Path):
    """The fine-tuned model and its tokenizer; a folder that holds no sequence classifier is refused."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    if not (folder / "config.json").is_file():
        raise PipelineError(f"--model {folder}: no fine-tuned model here (train one: dvc repro train)")
    if (folder / "model.onnx").is_file():
        raise PipelineError(f"--model {folder}: this is the export stage's ONNX model; add --backend onnx")
    transformers_logging.disable_progress_bar()  # "Loading weights": this command's output is its labels
    architectures = AutoConfig.from_pretrained(folder).architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise PipelineError(
            f"--model {folder}: {', '.join(architectures) or 'this model'} is not a sequence classifier "
            f"(give the folder the train stage writes, models/classifier)"
        )
    return load_finetuned(folder), AutoTokenizer.from_pretrained(folder)


def torch_classifier(model, tokenizer, precision: str = "auto", device: str = "auto") -> Classifier:
    """``model`` run by PyTorch on ``device`` (auto: a GPU if there is one), in eval mode, under autocast
    for ``precision``: ``auto`` (bf16 on a GPU with native bf16, else fp32), ``fp32``, ``bf16`` or ``fp16``."""
    limit_cpu_threads()
    device = pick_device(device)
    model.to(device).eval()
    if precision == "auto":
        # On a CPU without bf16 matrix units (AMX), bf16 autocast labels more slowly than fp32
        # (benchmarks/predict_throughput.py measures it; docs/notebook.md has the figures).
        precision = "bf16" if device.type == "cuda" and bf16_is_native(device) else "fp32"
    autocast = autocast_for(precision, device, key="--precision")
    accepted = accepted_inputs(model)

    @torch.no_grad()
    def logits(batch: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {key: torch.from_numpy(value).to(device) for key, value in batch.items() if key in accepted}
        with autocast:
            out = model(**tensors).logits
        return out.float().cpu().numpy()

    return Classifier(model.config, tokenizer, logits, input_limit(model.config, tokenizer))


def input_limit(config, tokenizer) -> int:
    """The most tokens a text may have: the tokenizer's limit or the model's positions, whichever is less."""
    return min(tokenizer.model_max_length, getattr(config, "max_position_embeddings", 512))


def accepted_inputs(model) -> set[str]:
    """The tokenizer outputs that ``model`` takes: a BERT tokenizer's token_type_ids are no DistilBERT input."""
    return set(inspect.signature(model.forward).parameters)


def all_logits(classifier: Classifier, inputs: Inputs, batch_size: int, progress: bool) -> np.ndarray:
    """Logits of every input, in input order; batches of similar length."""
    from tqdm import tqdm

    tokenizer = classifier.tokenizer
    encoded = tokenizer(inputs.texts, inputs.pairs, truncation=True, max_length=classifier.max_length)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    result = np.empty((len(order), classifier.config.num_labels), dtype=np.float32)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    bar = tqdm(
        batches,
        desc="predicting",
        unit="batch",
        disable=not progress,
        file=sys.stderr,
        mininterval=0.5 if sys.stderr.isatty() else 60,  # a log file gets a line a minute, not a line a batch
    )
    for batch in bar:
        features = [{key: encoded[key][i] for key in encoded} for i in batch]
        result[batch] = classifier.logits(dict(tokenizer.pad(features, return_tensors="np")))
    return result


def probabilities(classifier: Classifier, inputs: Inputs, batch_size: int, progress: bool) -> np.ndarray:
    """Class probabilities of every input, in input order (a multi-label model: each label's own, from a
    sigmoid); a regression model's one output as it is."""
    logits = all_logits(classifier, inputs, batch_size, progress)
    task = task_of_model(classifier.config)
    if task == REGRESSION:
        return logits
    if task == MULTI_LABEL:
        return torch.sigmoid(torch.from_numpy(logits)).numpy()
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


def rows(config, probs: np.ndarray, inputs: Inputs, threshold: float = THRESHOLD) -> list[dict]:
    """Per input: its text(s), then the label, its probability as ``score`` and every class's; a
    multi-label model's ``labels`` (probability at least ``threshold``, in label order) and every
    label's probability; or the score."""
    names = [config.id2label[i] for i in range(config.num_labels)]
    task = task_of_model(config)
    best = probs.argmax(axis=1)
    out = []
    for i, (p, k) in enumerate(zip(probs, best)):
        row = {"text": inputs.texts[i]}
        if inputs.pairs is not None:
            row["text_pair"] = inputs.pairs[i]
        if task == REGRESSION:
            out.append(row | {"score": round(float(p[0]), 6)})
            continue
        if task == MULTI_LABEL:
            row["labels"] = [name for name, value in zip(names, p) if value >= threshold]
        else:
            row |= {"label": names[k], "score": round(float(p[k]), 6)}
        row |= {f"p_{name}": round(float(value), 6) for name, value in zip(names, p)}
        out.append(row)
    return out


def write_rows(records: list[dict], output: Path | None) -> None:
    """JSON Lines on stdout, or ``output`` in the format of its suffix, all at once or not at all."""
    import pandas as pd

    from pipeline.outputs import write_text_atomic

    if output is None:
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        return
    frame = pd.DataFrame.from_records(records)
    suffix = output.suffix.lower()
    if suffix == ".jsonl":
        write_text_atomic(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    elif suffix in (".csv", ".tsv"):
        if "labels" in frame:  # a multi-label set, as the evaluate stage's predictions.csv writes it
            frame["labels"] = frame["labels"].map(LABEL_JOINER.join)
        write_text_atomic(output, frame.to_csv(index=False, sep="," if suffix == ".csv" else "\t", lineterminator="\n"))
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        staging = output.with_name(f".{output.name}.tmp")
        staging.write_bytes(buffer.getvalue())
        staging.replace(output)


def predict_command(
    args, default_text_columns: list[str], load: Callable[[Path, str], Classifier], default_threshold: float = THRESHOLD
) -> None:
    """``python -m pipeline predict``: check everything, label with the model that ``load(folder, precision)``
    returns (PyTorch's or onnxruntime's, as ``--backend`` says), write. A multi-label model's labels are
    those at ``--threshold``, else at the threshold saved with it, else at ``default_threshold``."""
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise PipelineError(f"--threshold {args.threshold}: give a probability in (0, 1), e.g. 0.5")
    output = Path(args.output) if args.output else None
    if output is not None:
        if output.suffix.lower() not in OUTPUT_FORMATS:
            raise PipelineError(f"--output {output}: unknown format; use one of {', '.join(OUTPUT_FORMATS)}")
        if output.exists() and not args.overwrite:
            raise PipelineError(f"--output {output}: the file exists; pass --overwrite to replace it")
    text_columns = args.text_column or default_text_columns
    if args.input:
        inputs = read_input_file(Path(args.input), text_columns)
    elif args.texts:
        inputs = inputs_from_lines(args.texts, len(text_columns) == 2, "argument")
    else:
        if sys.stdin.isatty():
            raise PipelineError("nothing to label: give texts as arguments, one per line on stdin, or --input FILE")
        try:
            lines = [line.rstrip("\n") for line in sys.stdin if line.strip()]
        except UnicodeDecodeError:
            raise PipelineError("stdin is not UTF-8 text (re-encode it as UTF-8)") from None
        if not lines:
            raise PipelineError("stdin holds no text to label")
        inputs = inputs_from_lines(lines, len(text_columns) == 2, "stdin line")
    check_texts(inputs)
    model_dir = Path(args.model or ("models/onnx" if args.backend == "onnx" else "models/classifier"))
    classifier = load(model_dir, args.precision)
    with contextlib.redirect_stdout(sys.stderr) if output is None else contextlib.nullcontext():
        probs = probabilities(classifier, inputs, args.batch_size or BATCH_SIZE, progress=bool(args.input))
    threshold = args.threshold if args.threshold is not None else threshold_of(classifier.config, default_threshold)[0]
    write_rows(rows(classifier.config, probs, inputs, threshold), output)


# The file name the GLUE server takes for each task this pipeline can train (its Hub configuration).
GLUE_SUBMISSION_FILES = {"sst2": "SST-2.tsv", "mrpc": "MRPC.tsv", "cola": "CoLA.tsv", "stsb": "STS-B.tsv"}


def predict_test_split(
    model_dir: str | Path,
    raw_dir: str | Path,
    out_dir: str | Path,
    batch_size: int = BATCH_SIZE,
    threshold: float = THRESHOLD,
) -> dict:
    """The predict stage: label the data set's test split into ``out_dir``.

    For a GLUE task, the file its server takes (``SST-2.tsv``: ``index<TAB>prediction``, one row per
    test example in index order, the prediction a class index, or the score for STS-B); for other data,
    ``test.csv`` with each text, its label and score (multi-label: its labels at the threshold saved
    with the model, else at ``threshold``, and each label's probability; regression: the score).
    """
    import pyarrow.parquet as pq

    from pipeline.data import TEST_SPLIT, read_info
    from pipeline.outputs import atomic_directory, write_csv_atomic

    info = read_info(raw_dir)
    source = info["source"]
    glue_file = GLUE_SUBMISSION_FILES.get(source.get("config")) if "glue" in str(source.get("path")) else None
    test_file = Path(raw_dir) / f"{TEST_SPLIT}.parquet"
    classifier = load_classifier(Path(model_dir))
    task = task_of_model(classifier.config)
    with atomic_directory(out_dir) as staging:
        if not test_file.is_file():
            write_csv_atomic(staging / "test.csv", ["text", "label", "score"], [])
            print("predict: the data set has no test split (data.test_split); nothing to label", file=sys.stderr)
            return {"examples": 0}
        table = pq.read_table(test_file)
        texts = table.column("text").to_pylist()
        pairs = table.column("text_pair").to_pylist() if "text_pair" in table.column_names else None
        inputs = Inputs(texts, pairs, "test example")
        probs = probabilities(classifier, inputs, batch_size, progress=True)
        if glue_file:
            index = table.column("idx").to_pylist() if "idx" in table.column_names else list(range(len(texts)))
            order = np.argsort(index, kind="stable")
            predictions = [
                (index[i], f"{probs[i][0]:.6f}" if task == REGRESSION else int(probs[i].argmax())) for i in order
            ]
            write_csv_atomic(staging / glue_file, ["index", "prediction"], predictions, delimiter="\t")
            written = glue_file
        else:
            records = rows(classifier.config, probs, inputs, threshold_of(classifier.config, threshold)[0])
            if task == MULTI_LABEL:
                names = [classifier.config.id2label[i] for i in range(classifier.config.num_labels)]
                labelled = ["labels", *(f"p_{name}" for name in names)]
                for record in records:
                    record["labels"] = LABEL_JOINER.join(record["labels"])
            else:
                labelled = ["score"] if task == REGRESSION else ["label", "score"]
            header = ["text", *(["text_pair"] if pairs is not None else []), *labelled]
            write_csv_atomic(staging / "test.csv", header, [[r[h] for h in header] for r in records])
            written = "test.csv"
    return {"examples": len(texts), "file": str(Path(out_dir) / written)}
