"""DVC stage: fine-tune the teacher with the same loop and label the training data with it (distillation)."""

import argparse

from pipeline.cli import run_stage
from pipeline.distillation import run_teacher_stage

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--params", default="params.yaml")
parser.add_argument("--raw", default="data/raw", help="output of the download stage")
parser.add_argument("--out", default="data/teacher", help="folder for the teacher's outputs the student trains on")
parser.add_argument("--model-out", default="models/teacher", help="folder for the save_pretrained teacher")
parser.add_argument("--metrics", default="metrics/teacher.json", help="the teacher's validation scores")
parser.add_argument(
    "--checkpoints", default="checkpoints/teacher", help="folder the teacher's run checkpoints into and resumes from"
)
args = parser.parse_args()
run_stage(
    args.params,
    lambda params: run_teacher_stage(params, args.raw, args.out, args.model_out, args.metrics, args.checkpoints),
)
