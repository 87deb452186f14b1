"""Prediction throughput on SST-2 validation + test, side by side in one run, with the same model.

- ``transformers.pipeline("text-classification")`` at its defaults (one text at a time);
- ``pipeline()`` with ``batch_size`` (it pads each batch to its longest text, in input order);
- this project's predictor (``python -m pipeline predict``): length-grouped batches, fp32 and bf16;
- the same with ``--backend onnx``: the export stage's fp32 ONNX model in onnxruntime, and its int8
  dynamic quantization (made here from that fp32 model when the stage left it out).

Each is timed on the same texts after a warm-up, model loading excluded; the table gives sentences
per second and the speed-up over ``pipeline()`` at its defaults. It also counts, on the validation
split, the labels that differ from fp32 eager, and the validation accuracy of each. Then it times the
whole command (``python -m pipeline predict --input``, interpreter start and model load included).
Run it after ``dvc repro`` on an otherwise idle machine:

    python benchmarks/predict_throughput.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pipeline.onnx_export import FP32_FILE, INT8_FILE, onnx_classifier, quantize_int8  # noqa: E402
from pipeline.predict import Inputs, load_torch_model, probabilities, torch_classifier  # noqa: E402


def timed(function, repeats: int):
    """The result of the last call and the fastest of ``repeats`` wall times."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return result, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "classifier")
    parser.add_argument("--onnx", type=Path, default=ROOT / "models" / "onnx", help="the export stage's folder")
    parser.add_argument("--raw", type=Path, default=ROOT / "data" / "raw")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "predict_throughput.json")
    args = parser.parse_args()

    from transformers import pipeline

    validation = pd.read_parquet(args.raw / "validation.parquet")
    test = pd.read_parquet(args.raw / "test.parquet")
    texts = [*validation["text"], *test["text"]]
    n_val = len(validation)
    truth = validation["label"].to_numpy()
    model, tokenizer = load_torch_model(args.model)
    label_ids = {name: i for i, name in model.config.id2label.items()}
    inputs = Inputs(texts=texts, pairs=None, source="benchmark")
    warm = Inputs(texts=texts[:64], pairs=None, source="benchmark")

    runs: dict[str, tuple[np.ndarray, float]] = {}
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)

    def with_pipeline(batch_size: int | None):
        def run():
            kwargs = {} if batch_size is None else {"batch_size": batch_size}
            return np.array([label_ids[out["label"]] for out in classify(texts, **kwargs)])

        classify(texts[:16], **({} if batch_size is None else {"batch_size": batch_size}))
        return timed(run, args.repeats)

    print(f"{len(texts)} sentences ({n_val} validation + {len(test)} test), {torch.get_num_threads()} threads")
    runs["pipeline(), defaults"] = with_pipeline(None)
    runs[f"pipeline(), batch_size={args.batch_size}"] = with_pipeline(args.batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        int8_dir = args.onnx
        if not (args.onnx / INT8_FILE).is_file():  # left out by the export stage's checks: measure it anyway
            int8_dir = Path(scratch)
            quantize_int8(args.onnx / FP32_FILE, int8_dir / INT8_FILE)
        predictors = {
            # On the CPU, like pipeline() and onnxruntime here, even where there is a GPU.
            "predict, fp32": torch_classifier(model, tokenizer, "fp32", device="cpu"),
            "predict, bf16": torch_classifier(model, tokenizer, "bf16", device="cpu"),
            "predict --backend onnx, fp32": onnx_classifier(args.onnx, FP32_FILE, model.config, tokenizer),
            "predict --backend onnx, int8": onnx_classifier(int8_dir, INT8_FILE, model.config, tokenizer),
        }
        for name, classifier in predictors.items():
            probabilities(classifier, warm, args.batch_size, progress=False)
            probs, seconds = timed(
                lambda c=classifier: probabilities(c, inputs, args.batch_size, progress=False), args.repeats
            )
            runs[name] = (probs.argmax(axis=1), seconds)

    reference = runs["predict, fp32"][0][:n_val]
    base = len(texts) / runs["pipeline(), defaults"][1]
    eager_speed = len(texts) / runs["predict, fp32"][1]
    rows = []
    for name, (labels, seconds) in runs.items():
        speed = len(texts) / seconds
        rows.append(
            {
                "run": name,
                "seconds": round(seconds, 2),
                "sentences_per_s": round(speed, 1),
                "speedup": round(speed / base, 2),
                "vs_predict_fp32": round(speed / eager_speed, 2),
                "val_labels_differing_from_fp32": int((labels[:n_val] != reference).sum()),
                "val_accuracy": round(float((labels[:n_val] == truth).mean()), 6),
            }
        )

    whole = {}
    with tempfile.TemporaryDirectory() as scratch:  # the whole command, as a user runs it
        source = Path(scratch) / "sentences.parquet"
        pd.DataFrame({"sentence": texts}).to_parquet(source)
        for backend, model_dir in (("torch", args.model), ("onnx", args.onnx)):
            command = [sys.executable, "-m", "pipeline", "predict", "--backend", backend, "--model", str(model_dir)]
            command += ["--input", str(source), "--output", str(Path(scratch) / f"labels-{backend}.csv")]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            whole[backend] = round(time.perf_counter() - started, 1)
    print(
        f"\n{'run':<30} {'seconds':>8} {'sentences/s':>12} {'× pipeline()':>13} {'× predict fp32':>15} "
        f"{'val labels ≠ fp32':>18} {'val acc':>8}"
    )
    for row in rows:
        print(
            f"{row['run']:<30} {row['seconds']:>8.2f} {row['sentences_per_s']:>12.1f} {row['speedup']:>12.2f}× "
            f"{row['vs_predict_fp32']:>14.2f}× {row['val_labels_differing_from_fp32']:>18} {row['val_accuracy']:>8.4f}"
        )
    for backend, seconds in whole.items():
        print(
            f"the whole command, --backend {backend} (start, model load, {len(texts)} sentences, CSV written): "
            f"{seconds:.1f} s = {len(texts) / seconds:.0f} sentences/s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "sentences": len(texts),
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "rows": rows,
                "command_s": whole,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
