"""DVC stage 5: label the data set's test split with the fine-tuned model (GLUE's submission file for a GLUE task)."""

import argparse

from pipeline.cli import run_stage
from pipeline.predict import predict_test_split

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--params", default="params.yaml")
parser.add_argument("--model", default="models/classifier", help="output of the train stage")
parser.add_argument("--raw", default="data/raw", help="output of the download stage (the test split)")
parser.add_argument("--out", default="predictions", help="folder for the predictions file")
args = parser.parse_args()
run_stage(
    args.params, lambda params: predict_test_split(args.model, args.raw, args.out, threshold=params.evaluate.threshold)
)
