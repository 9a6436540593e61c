#!/usr/bin/env bash
# The full-scale study on the GPU machine (issues 5 and 6): SST-2 (GLUE, 67,349 train; the 872
# validation rows are the eval set, GLUE's test split has no labels) with all-MiniLM-L6-v2 (weights
# stored as float16, loaded as float32), one epoch, preset h100, seeds 42/43/44. It executes the
# study notebooks with papermill, so the runs, figures and executed notebooks come from one command:
#   01_three_seeds: baseline, mclearn, mclearn-paper;  04_compare_methods: every method (reuses 01's runs).
# Usage: bash benchmarks/gpu_study.sh [NOTEBOOK_KEYS...]      (default: 01_three 04_compare)
# Expects .gpu/data/sst2 and .gpu/models/all-MiniLM-L6-v2 (see ../shared/GPU.md) and papermill.
# Writes results/runs/sst2-minilm-h100/, results/figures/sst2-minilm-h100/, results/summary.csv and
# the executed notebooks in results/notebooks/h100/. Runs already written are kept (resumable).
# A copy without .git must be given the code's provenance (issue 12), from the checkout it was copied from:
#   env $(python3 mclearn_core.py --provenance) bash benchmarks/gpu_study.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! git -C "$root" rev-parse HEAD >/dev/null 2>&1 && [ -z "${MCLEARN_COMMIT:-}" ]; then
  echo "error: no .git in $root: pass MCLEARN_COMMIT etc., see 'python3 mclearn_core.py --provenance'" >&2
  exit 2
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
keys=${*:-"01_three 04_compare"}
python3 "$root/run_notebooks.py" --preset h100 --only $keys --no-progress \
  --results "$root/results" --out "$root/results/notebooks/h100" \
  --param dataset="$root/.gpu/data/sst2" model_name="$root/.gpu/models/all-MiniLM-L6-v2" study=sst2-minilm-h100
