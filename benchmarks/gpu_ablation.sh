#!/usr/bin/env bash
# The MC-Learn ablation of issue 24 on the GPU machine, one dataset per call: notebook 04 (through
# gpu_budget_study.sh) runs the baseline (its lr sweep), the short schedule and every variant of
# mclearn_core.MCLEARN_VARIANTS (mclearn-v1, the previous mclearn, and each combination of free, once,
# anneal) at budgets 1/3 and 1/2, one seed, each variant at its own lr at each budget (lr_factors, grown
# past its edges, as every budgeted method), in the study <DATASET>-<model>-<gpu>-ablation; then
# benchmarks/ablation.py writes
# the ablation table (the rule above it) over every *-ablation study in results/ to results/ablation/.
# Usage: bash benchmarks/gpu_ablation.sh DATASET MODEL_DIR OUT_DIR     (arguments as gpu_budget_study.sh's)
#        bash benchmarks/gpu_ablation.sh --env   prints the environment it sets, to export before a detached
#                                                gpu_budget_queue.sh of the four datasets
# Environment: as gpu_budget_study.sh (LRS, SST2_DIR, FRESH=1), and LR_FACTORS (default [0.5,1,2]; [1]: every
#   variant at the baseline's lr, a third of the runs), SEEDS (default 42).
# CPU smoke of its Python part (about 2 minutes; tests/test_variants.py runs a smaller one):
#   python3 run_notebooks.py --preset cpu-smoke --only 04_ --no-progress --results /tmp/abl --out /tmp/abl/nb \
#     --seeds 42 --param study=smoke-ablation $(bash benchmarks/gpu_ablation.sh --params)
#   python3 benchmarks/ablation.py --results /tmp/abl
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
methods=$(cd "$root" && python3 -c 'import json, mclearn_core as mc
print(json.dumps(["baseline", "short-schedule", *mc.MCLEARN_VARIANTS], separators=(",", ":")))')
suffix=$(cd "$root" && python3 -c 'import mclearn_core as mc; print(mc.ABLATION_SUFFIX)')  # -ablation
params="methods=$methods time_budgets=[0.3333333333333333,0.5] method_budgets={} method_seeds={} lr_factors=${LR_FACTORS:-[0.5,1,2]}"
case "${1:-}" in
  --params) echo "$params"; exit 0 ;;
  --env) echo "export STUDY_SUFFIX=$suffix SEEDS=${SEEDS:-42} EXTRA_PARAMS='$params'"; exit 0 ;;
esac
if [ $# -lt 3 ]; then sed -n 2,16p "$0"; exit 2; fi
STUDY_SUFFIX=$suffix SEEDS=${SEEDS:-42} EXTRA_PARAMS=$params bash "$root/benchmarks/gpu_budget_study.sh" "$@"
python3 "$root/benchmarks/ablation.py" --results "$root/results"
