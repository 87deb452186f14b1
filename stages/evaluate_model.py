"""DVC stage 4: score the fine-tuned model on the validation split."""

import argparse

from pipeline.cli import run_stage
from pipeline.evaluation import evaluate_model

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--params", default="params.yaml")
parser.add_argument("--model", default="models/classifier", help="output of the train stage")
parser.add_argument("--tokenized", default="data/tokenized", help="output of the tokenize stage")
parser.add_argument("--metrics", default="metrics/eval.json")
parser.add_argument("--confusion", default="metrics/confusion.csv", help="actual,predicted rows for the confusion plot")
args = parser.parse_args()
run_stage(
    args.params,
    lambda params: evaluate_model(params.evaluate, args.model, args.tokenized, args.metrics, args.confusion),
)
