#!/usr/bin/env bash
# The test command (README): unit and statistical tests, and the smoke run of every notebook, which is
# the README's smoke lines run from a clean clone (tests/test_notebooks.py, run_notebooks.py).
set -euo pipefail
cd "$(dirname "$0")"
# One OpenMP thread per process (tests and the notebook kernels they start): two threads on a 2-core host
# with a core already busy spin-wait for each other, and a notebook smoke run then takes 15x longer.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python3 -m pytest -q tests
