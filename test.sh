#!/usr/bin/env bash
# The test command (README): unit and statistical tests, then smoke runs of every notebook (run_notebooks.py).
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
python3 -m pytest -q tests
python3 run_notebooks.py --preset cpu-smoke --out "$out/notebooks" --results "$out/results"
