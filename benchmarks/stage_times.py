"""Wall time of the quick stages, side by side: tokenize SST-2 and MRPC, and a no-op ``dvc repro``.

Each is the command a user runs (a new process, imports included), repeated; the table gives the
median and the range. Targets: tokenize ≤ 10 s for SST-2's 67k sentences and ≤ 5 s for MRPC's 3.7k
pairs, no-op ``dvc repro`` ≤ 3 s. Run it after ``dvc repro``, on an otherwise idle machine, from the
project root (MRPC is read from ``../shared/data/mrpc`` or ``--mrpc``):

    python benchmarks/stage_times.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mrpc", type=Path, default=ROOT.parent / "shared" / "data" / "mrpc")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stage_times.json")
    args = parser.parse_args()
    tokenize = [sys.executable, str(ROOT / "stages" / "tokenize_data.py")]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        rows.append(
            ("tokenize SST-2 (67,349 + 872)", 10.0, timed([*tokenize, "--out", str(scratch / "sst2")], args.repeats))
        )
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["data"] |= {
            "path": str(args.mrpc),
            "config": None,
            "text_columns": ["#1 String", "#2 String"],
            "label_column": "Quality",
            "quoting": False,
        }
        (scratch / "mrpc.yaml").write_text(yaml.safe_dump(params))
        download = [sys.executable, str(ROOT / "stages" / "download_data.py"), "--params", str(scratch / "mrpc.yaml")]
        subprocess.run([*download, "--out", str(scratch / "mrpc-raw")], check=True, capture_output=True, cwd=ROOT)
        mrpc = [*tokenize, "--params", str(scratch / "mrpc.yaml"), "--raw", str(scratch / "mrpc-raw")]
        rows.append(
            ("tokenize MRPC pairs (3,667 + 408)", 5.0, timed([*mrpc, "--out", str(scratch / "mrpc")], args.repeats))
        )
    rows.append(("no-op dvc repro", 3.0, timed(["dvc", "repro"], args.repeats)))

    print(f"{'what':<36} {'target':>7} {'median':>7} {'range':>13}")
    for name, target, seconds in rows:
        low, high = min(seconds), max(seconds)
        print(f"{name:<36} {target:>6.1f}s {statistics.median(seconds):>6.2f}s {low:>5.2f}–{high:.2f}s")
    args.out.write_text(
        json.dumps([{"what": n, "target_s": t, "seconds": [round(s, 2) for s in sec]} for n, t, sec in rows], indent=2)
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
