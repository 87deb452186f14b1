#!/usr/bin/env bash
# The CI steps, one function each. `.ci/run` (this project's CI) and .github/workflows/ci.yml
# (the workflow users adopt) both call these, in the same order, so the two cannot drift apart.
#   bash .ci/steps.sh STEP      STEP: install | lint | test | lowest | reproduce | gate | slow | summary
# Environment: GATE_BASELINE (git revision to compare metrics with, default HEAD),
# TORCH_INDEX_URL (optional pip index for the torch wheel, e.g. the CPU-only one).
set -euo pipefail
cd "$(dirname "$0")/.."

activate() {
  # shellcheck disable=SC1091
  . .venv/bin/activate
}

step_install() {
  python3 -m venv .venv
  activate
  # torch first and pinned: every later requirement (torch>=2.13) is then already met.
  pip install --quiet torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  pip install --quiet -e ".[test]"
}

step_lint() {
  activate
  ruff check .
  ruff format --check .
}

step_test() {
  activate
  python -m pytest   # the test command of README.md
}

step_lowest() {
  # The lowest version of every core library that pyproject.toml declares, in a venv of its own, runs
  # the fast tests: a declared floor is one the code is known to run on. uv resolves "lowest-direct"
  # (each direct requirement at its floor, what they need at its newest); torch is installed first,
  # as in step_install, and its floor is that version.
  python3 -m venv .venv-lowest
  # shellcheck disable=SC1091
  . .venv-lowest/bin/activate
  pip install --quiet torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} uv
  uv pip install --quiet --resolution lowest-direct -e ".[test]"
  uv pip list 2>/dev/null | grep -E -i '^(torch|transformers|huggingface-hub|datasets|dvc|dvclive|pandas|pyarrow|numpy|safetensors|onnx|onnxscript|onnxruntime) '
  python -m pytest
}

step_reproduce() {
  activate
  dvc repro
  dvc metrics show
}

step_gate() {
  activate
  python -m pipeline check --baseline "${GATE_BASELINE:-HEAD}"
}

step_slow() {
  activate
  python -m pytest -m slow   # long-running tests (whole dvc runs, kill-and-resume), after the pipeline has run
}

step_summary() {
  activate
  {
    echo "## Metrics against ${GATE_BASELINE:-HEAD}"
    dvc metrics diff --md --all "${GATE_BASELINE:-HEAD}"
    echo "## Params against ${GATE_BASELINE:-HEAD}"
    dvc params diff --md --all "${GATE_BASELINE:-HEAD}"
    # The same code, params and matrix kernels give the same bytes (docs/reliability.md): a cached output
    # listed here as modified was not reproduced exactly. A CPU with other kernels, or a GPU, trains
    # other weights.
    echo "## Cached outputs against ${GATE_BASELINE:-HEAD} (none listed: the same bytes)"
    dvc diff --md "${GATE_BASELINE:-HEAD}"
  } >> "${GITHUB_STEP_SUMMARY:-/dev/stdout}"
}

case "${1:-}" in
  install | lint | test | lowest | reproduce | gate | slow | summary) "step_$1" ;;
  *) echo "usage: bash .ci/steps.sh install|lint|test|lowest|reproduce|gate|slow|summary" >&2; exit 2 ;;
esac
