"""Prediction throughput on SST-2 validation + test, side by side in one run, with the same model.

- ``transformers.pipeline("text-classification")`` at its defaults (one text at a time);
- ``pipeline()`` with ``batch_size`` (it pads each batch to its longest text, in input order);
- this project's predictor (``python -m pipeline predict``): length-grouped batches, fp32 and bf16.

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
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pipeline.predict import Inputs, load_classifier, probabilities  # noqa: E402


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
    model, tokenizer = load_classifier(args.model)
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
    for precision in ("fp32", "bf16"):
        probabilities(model, tokenizer, warm, args.batch_size, precision, progress=False)
        probs, seconds = timed(
            lambda p=precision: probabilities(model, tokenizer, inputs, args.batch_size, p, progress=False),
            args.repeats,
        )
        runs[f"predict, {precision}"] = (probs.argmax(axis=1), seconds)

    reference = runs["predict, fp32"][0][:n_val]
    base = len(texts) / runs["pipeline(), defaults"][1]
    rows = []
    for name, (labels, seconds) in runs.items():
        speed = len(texts) / seconds
        rows.append(
            {
                "run": name,
                "seconds": round(seconds, 2),
                "sentences_per_s": round(speed, 1),
                "speedup": round(speed / base, 2),
                "val_labels_differing_from_fp32": int((labels[:n_val] != reference).sum()),
                "val_accuracy": round(float((labels[:n_val] == truth).mean()), 6),
            }
        )

    with tempfile.TemporaryDirectory() as scratch:  # the whole command, as a user runs it
        source = Path(scratch) / "sentences.parquet"
        pd.DataFrame({"sentence": texts}).to_parquet(source)
        command = [sys.executable, "-m", "pipeline", "predict", "--model", str(args.model), "--input", str(source)]
        command += ["--output", str(Path(scratch) / "labels.csv")]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        whole = time.perf_counter() - started
    print(f"\n{'run':<30} {'seconds':>8} {'sentences/s':>12} {'speed-up':>9} {'val labels ≠ fp32':>18} {'val acc':>8}")
    for row in rows:
        print(
            f"{row['run']:<30} {row['seconds']:>8.2f} {row['sentences_per_s']:>12.1f} {row['speedup']:>8.2f}× "
            f"{row['val_labels_differing_from_fp32']:>18} {row['val_accuracy']:>8.4f}"
        )
    print(
        f"\nthe whole command (start, model load, {len(texts)} sentences, CSV written): {whole:.1f} s "
        f"= {len(texts) / whole:.0f} sentences/s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"sentences": len(texts), "threads": torch.get_num_threads(), "rows": rows, "command_s": round(whole, 1)},
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
