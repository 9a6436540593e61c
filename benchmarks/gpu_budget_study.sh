#!/usr/bin/env bash
# Run one dataset's budget study on the GPU machine by executing notebooks/04_compare_methods.ipynb
# (run_notebooks.py: parameters written into its parameters cell, a clean executed copy) under the fair
# protocol: the baseline's learning-rate sweep (grown past its edges; its median seconds are the reference),
# every budgeted method's own lr at each budget (a grid grown past its edges), the tuned baseline, and every
# method of the notebook's defaults (short-schedule, uniform, infobatch, mclearn) at its budgets (1/3, 1/2),
# each on a clock of budget x the reference seconds, its seeds (42-46), in one process. Finished runs are read
# back, so a second call resumes an interrupted study.
# Usage: bash benchmarks/gpu_budget_study.sh DATASET MODEL_DIR OUT_DIR
#   DATASET    sst2 | sst2-noisy20 | clinc150 | banking77 | sst2-long (SST-2 at batch 64 for 3 epochs)
#   MODEL_DIR  a sentence-transformers encoder folder named as on the hub (/tmp/all-mpnet-base-v2)
#   OUT_DIR    folder for the executed notebook (results/notebooks/<gpu>/<DATASET>/ once committed)
# Environment: SST2_DIR (default .gpu/data/sst2: train/validation parquet of GLUE SST-2, given to the notebook
#   as the hub name glue/sst2 through MCLEARN_LOCAL_COPIES so the committed copy runs on Colab), LRS (default
#   [4e-5,8e-5,1.6e-4,3.2e-4], Banking77 [8e-5,...,1.28e-3]), SEEDS (default the notebook's 42-46), STUDY_SUFFIX (default
#   -fair; the previous protocol's studies are -equal-time), FRESH=1
#   (remove the study's earlier run files and figures first, so all of it comes from this process), EXTRA_PARAMS
#   (more NAME=VALUE notebook parameters, Python literals without spaces, after the script's own: gpu_ablation.sh).
#   CLINC150 and Banking77 are in data/.
# Needs nbclient/nbformat/ipykernel (wheels in .whl: bash benchmarks/notebook_wheels.sh, carry .whl).
# Writes results/runs/<study>[-lr]/, results/figures/<study>/, results/summary.csv and OUT_DIR/04_compare_methods.ipynb,
# where <study> is <DATASET>-<model short name>-<gpu short name><STUDY_SUFFIX>, e.g. clinc150-mpnet-h200-fair.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 3 ]; then sed -n 2,19p "$0"; exit 2; fi
key=$1; model=$(cd "$2" && pwd); out=$3
source "$root/benchmarks/notebook_env.sh"
hub_model=sentence-transformers/$(basename "$model")
copies="$root/.gpu/copies"  # <hub id> -> the local folder (mcstudy.config.local_copy)
mkdir -p "$copies/glue" "$copies/sentence-transformers"
sst2_dir=${SST2_DIR:-$root/.gpu/data/sst2}
[ -d "$sst2_dir" ] && ln -sfn "$(cd "$sst2_dir" && pwd)" "$copies/glue/sst2"
ln -sfn "$model" "$copies/$hub_model"
export MCLEARN_LOCAL_COPIES="$copies"
short=$(model_short_name "$hub_model")
gpu=$(python3 -c "import torch; n = torch.cuda.get_device_name(0).lower(); print(next((g for g in ('h200', 'h100', 'a100', 'l4', 't4') if g in n), n.split()[-1]))")
# SST-2 has no labelled test split: 2,000 stratified rows of train are carved out as its test split (test_holdout).
# Banking77's grid reaches above 3.2e-4: its earlier sweep chose the top of the grid.
lrs=${LRS:-[4e-5,8e-5,1.6e-4,3.2e-4]}
case "$key" in
  sst2) params=(dataset=glue/sst2 epochs=1 eval_split=validation test_holdout=2000) ;;
  sst2-noisy20) params=(dataset=glue/sst2 epochs=1 eval_split=validation test_holdout=2000 label_noise=0.2) ;;
  # minute-long runs: the published notebook's batch, 3 epochs (the full baseline trains for over 30 s on an H200)
  sst2-long) params=(dataset=glue/sst2 epochs=3 batch_size=64 eval_split=validation test_holdout=2000) ;;
  clinc150) params=(dataset=data/clinc150 epochs=5 eval_split=validation test_split=test) ;;
  banking77) params=(dataset=data/banking77 epochs=5 eval_split=validation test_split=test)
             lrs=${LRS:-[8e-5,1.6e-4,3.2e-4,6.4e-4,1.28e-3]} ;;
  *) echo "unknown DATASET $key: sst2, sst2-noisy20, clinc150, banking77 or sst2-long" >&2; exit 2 ;;
esac
# The fair-protocol studies (short-schedule, 5 seeds, every method's own lr at each budget, 20 evaluations a
# run: the notebook's defaults) are named <DATASET>-<model>-<gpu>-fair.
study=$key-$short-$gpu${STUDY_SUFFIX--fair}
if [ "${FRESH:-0}" = 1 ]; then
  echo "FRESH=1: removing earlier runs of $study and $study-lr"
  rm -rf "$root/results/runs/$study" "$root/results/runs/$study-lr" "$root/results/figures/$study"
fi
seeds=()
[ -n "${SEEDS:-}" ] && seeds=(--seeds $SEEDS)
read -ra extra <<< "${EXTRA_PARAMS:-}"  # split on spaces only: its brackets are not file patterns
echo "study $study: ${params[*]}, $hub_model -> $model"
python3 "$root/run_notebooks.py" --preset auto --only 04_ --no-progress --results "$root/results" --out "$out" "${seeds[@]}" \
  --param "${params[@]}" model_name="$hub_model" study="$study" lrs="$lrs" "${extra[@]}"
