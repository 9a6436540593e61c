#!/usr/bin/env bash
# The MC-Learn ablation on the GPU machine, one dataset per call, under the fair protocol: notebook 04
# (through gpu_budget_study.sh) runs the baseline (its lr sweep, whose median seconds are the reference),
# the short schedule and the ablation's MC-Learn variants at budgets 1/3 and 1/2, one seed, each at its own
# lr at each budget (lr_factors, grown past its edges) and on a clock of budget x the reference seconds, as
# every budgeted run of the fair studies; then benchmarks/ablation.py writes the ablation table (its rule
# above it) over the latest ablation's studies in results/ (mcstudy.ablation.latest_ablation) to results/ablation/fair/.
# ABLATION_SET=switch (the default) is the switch's ablation: mcstudy.config.SWITCH_ABLATION
# (the `mclearn` preset, its scores for free, each with the switch on and off) in the study
# <DATASET>-<model>-<gpu>-fair-ablation (mcstudy.runs.FAIR_ABLATION_SUFFIX); ABLATION_SET=variants is the variants' ablation:
# every variant of MCLEARN_VARIANTS without the switch in <DATASET>-<model>-<gpu>-ablation (its committed
# runs were made under the previous protocol).
# Usage: bash benchmarks/gpu_ablation.sh DATASET MODEL_DIR OUT_DIR     (arguments as gpu_budget_study.sh's)
#        bash benchmarks/gpu_ablation.sh --env   prints the environment it sets, to export before a detached
#                                                gpu_budget_queue.sh of the four datasets
# Environment: as gpu_budget_study.sh (LRS, SST2_DIR, FRESH=1), and ABLATION_SET, LR_FACTORS (default
#   [0.5,1,2]; [1]: every variant at the baseline's lr, a third of the runs), SEEDS (default 42).
# CPU smoke of its Python part (about 2 minutes; tests/test_variants.py runs a smaller one):
#   python3 run_notebooks.py --preset cpu-smoke --only 04_ --no-progress --results /tmp/abl --out /tmp/abl/nb \
#     --seeds 42 --param study=smoke-fair-ablation $(bash benchmarks/gpu_ablation.sh --params)
#   python3 benchmarks/ablation.py --results /tmp/abl
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${ABLATION_SET:-switch}" in
  switch) variants="ms.SWITCH_ABLATION" suffix=FAIR_ABLATION_SUFFIX ;;
  variants) variants="(v for v, parts in ms.MCLEARN_VARIANTS.items() if 'switch' not in parts)" suffix=ABLATION_SUFFIX ;;
  *) echo "ABLATION_SET=${ABLATION_SET} is not an ablation: switch (the default) or variants" >&2; exit 2 ;;
esac
methods=$(cd "$root" && python3 -c "import json, mcstudy as ms
print(json.dumps(['baseline', 'short-schedule', *$variants], separators=(',', ':')))")
suffix=$(cd "$root" && python3 -c "import mcstudy as ms; print(ms.$suffix)")  # -fair-ablation or -ablation
params="methods=$methods time_budgets=[0.3333333333333333,0.5] method_budgets={} method_seeds={} lr_factors=${LR_FACTORS:-[0.5,1,2]}"
case "${1:-}" in
  --params) echo "$params"; exit 0 ;;
  --env) echo "export STUDY_SUFFIX=$suffix SEEDS=${SEEDS:-42} EXTRA_PARAMS='$params'"; exit 0 ;;
esac
if [ $# -lt 3 ]; then sed -n 2,20p "$0"; exit 2; fi
STUDY_SUFFIX=$suffix SEEDS=${SEEDS:-42} EXTRA_PARAMS=$params bash "$root/benchmarks/gpu_budget_study.sh" "$@"
python3 "$root/benchmarks/ablation.py" --results "$root/results"
