#!/usr/bin/env bash
# The test command (README): unit and statistical tests, and the smoke run of every notebook, which is
# the README's smoke lines run from a clean clone (tests/test_notebooks.py, run_notebooks.py).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pytest -q tests
