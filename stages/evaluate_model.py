"""DVC stage 4: score the fine-tuned model on the validation split."""

import argparse
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.evaluation import EvaluationOutputs, evaluate_model

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--params", default="params.yaml")
parser.add_argument("--model", default="models/classifier", help="output of the train stage")
parser.add_argument("--tokenized", default="data/tokenized", help="output of the tokenize stage")
parser.add_argument("--raw", default="data/raw", help="output of the download stage (the validation texts)")
parser.add_argument("--metrics", default="metrics/eval.json")
parser.add_argument("--confusion", default="metrics/confusion.csv", help="actual,predicted rows for the confusion plot")
parser.add_argument("--predictions", default="metrics/predictions.csv", help="id,label,predicted,probability rows")
parser.add_argument("--calibration", default="metrics/calibration.csv", help="the reliability diagram's bins")
parser.add_argument("--misclassified", default="metrics/misclassified.csv", help="wrong predictions with their text")
parser.add_argument("--per-class", default="metrics/per_class.csv", help="precision, recall, F1, support per class")
parser.add_argument("--scatter", default="metrics/scatter.csv", help="regression: true and predicted score per example")
args = parser.parse_args()
paths = (args.metrics, args.confusion, args.predictions, args.calibration, args.misclassified, args.per_class)
paths += (args.scatter,)
out = EvaluationOutputs(*(Path(p) for p in paths))
run_stage(args.params, lambda params: evaluate_model(params.evaluate, args.model, args.tokenized, args.raw, out))
