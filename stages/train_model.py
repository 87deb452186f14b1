"""DVC stage 3: fine-tune the pretrained model with the manual training loop."""

import argparse

from pipeline.cli import run_stage
from pipeline.training import run_train_stage

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--params", default="params.yaml")
parser.add_argument("--tokenized", default="data/tokenized", help="output of the tokenize stage")
parser.add_argument("--model-out", default="models/classifier", help="folder for the save_pretrained model")
parser.add_argument(
    "--live", default="metrics/train", help="DVCLive folder: metrics.json and the training curves under plots/"
)
parser.add_argument(
    "--checkpoints", default="checkpoints/train", help="folder the run checkpoints into and resumes from"
)
parser.add_argument("--teacher", default="data/teacher", help="output of the teacher stage")
args = parser.parse_args()
run_stage(
    args.params,
    lambda params: run_train_stage(params, args.tokenized, args.model_out, args.live, args.checkpoints, args.teacher),
)
