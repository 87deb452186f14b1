"""DVC stage 1: download SST-2 with `datasets` and store every split as Parquet."""

import argparse

from pipeline.cli import run_stage
from pipeline.data import download

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--params", default="params.yaml")
parser.add_argument("--out", default="data/raw", help="folder for <split>.parquet and info.json")
args = parser.parse_args()
run_stage(args.params, lambda params: download(params.data, args.out))
