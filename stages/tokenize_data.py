"""DVC stage 2: tokenize the labelled splits into unpadded token-id tensors (safetensors)."""

import argparse

from pipeline.cli import run_stage
from pipeline.tokenization import tokenize

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--params", default="params.yaml")
parser.add_argument("--raw", default="data/raw", help="output of the download stage")
parser.add_argument("--out", default="data/tokenized", help="folder for <split>.safetensors and meta.json")
args = parser.parse_args()
run_stage(args.params, lambda params: tokenize(params.model, params.tokenize, args.raw, args.out))
