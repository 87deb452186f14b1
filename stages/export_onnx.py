"""DVC stage 6: export the fine-tuned model to ONNX (fp32, and int8 where it passes its checks) for onnxruntime."""

import argparse
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.onnx_export import export_onnx

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--params", default="params.yaml")
parser.add_argument("--model", default="models/classifier", help="output of the train stage")
parser.add_argument("--raw", default="data/raw", help="output of the download stage (the validation split)")
parser.add_argument("--out", default="models/onnx", help="folder for the ONNX models, config and tokenizer")
parser.add_argument("--metrics", default="metrics/export.json", help="the parity checks' figures")
args = parser.parse_args()
run_stage(args.params, lambda params: export_onnx(params.export, args.model, args.raw, args.out, Path(args.metrics)))
