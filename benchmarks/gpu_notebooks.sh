#!/usr/bin/env bash
# Execute the flagship and notebooks/01-04 on the GPU machine on SST-2 with a local
# pretrained encoder, writing clean executed copies (run_notebooks.py: parameters in the parameters
# cell, no injected cell, no absolute path). The notebooks are given hub ids (dataset glue/sst2,
# model sentence-transformers/<name>), which MCLEARN_LOCAL_COPIES maps to the local folders, so the
# committed copies Run All on Colab with the same data and model from the hub.
# Usage: bash benchmarks/gpu_notebooks.sh MODEL_DIR DATA_DIR OUT_DIR [NOTEBOOK_KEYS...]
#   MODEL_DIR  local copy of a sentence-transformers encoder, folder named as on the hub
#              (.gpu/models/all-MiniLM-L6-v2, /tmp/all-mpnet-base-v2)
#   DATA_DIR   SST-2: train.parquet and validation.parquet (../shared/data/sst2 copied to .gpu/data/sst2)
#   OUT_DIR    folder for the executed copies (e.g. results/notebooks/h100); copy its
#              Monte_Carlo_Learn.ipynb to the repository root to commit the flagship
#   NOTEBOOK_KEYS  default "Monte_Carlo 01_ 02_ 03_ 04_" (split over calls to stay under 10 minutes;
#              finished runs are read back, so later calls resume)
# Environment: PRESET (default auto: the device's preset; MCLEARN_PRESET=t4 makes auto the T4 path,
#   fp16 + GradScaler), STUDY (default sst2-<minilm|mpnet>-notebooks-<preset>; "none" keeps each
#   notebook's own default, e.g. the flagship's flagship-<preset>), RESULTS (default results: the
#   results_dir given to every notebook; the flagship's own default is runs-local), HUB_MODEL (default
#   sentence-transformers/<basename of MODEL_DIR>).
# The flagship as committed (its parameters cell then names only the hub data and model):
#   STUDY=none RESULTS=runs-local bash benchmarks/gpu_notebooks.sh MODEL_DIR DATA_DIR OUT_DIR Monte_Carlo
# Needs nbclient, nbformat, ipykernel (not papermill; not datasets): when they do not import, it installs
# the wheels in .whl (make them here with `bash benchmarks/notebook_wheels.sh`, carry .whl) into /tmp/site,
# or uses /tmp/site if an earlier call on the same warm machine installed them there.
# Writes <RESULTS>/runs/<study>/, <RESULTS>/figures/<study>/, <RESULTS>/summary.csv and OUT_DIR/*.ipynb.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 3 ]; then sed -n 2,28p "$0"; exit 2; fi
model=$(cd "$1" && pwd); data=$(cd "$2" && pwd); out=$3; shift 3
keys=${*:-"Monte_Carlo 01_ 02_ 03_ 04_"}
source "$root/benchmarks/notebook_env.sh"
hub_model=${HUB_MODEL:-sentence-transformers/$(basename "$model")}
copies="$root/.gpu/copies"  # <hub id> -> the local folder (mcstudy.config.local_copy)
mkdir -p "$copies/glue" "$copies/$(dirname "$hub_model")"
ln -sfn "$data" "$copies/glue/sst2"
ln -sfn "$model" "$copies/$hub_model"
export MCLEARN_LOCAL_COPIES="$copies"
preset=${PRESET:-auto}
resolved=$(cd "$root" && python3 -c "import sys, mcstudy as ms; p = sys.argv[1]; print(ms.detect_preset() if p == 'auto' else p)" "$preset")
short=$(model_short_name "$hub_model")
study=${STUDY:-sst2-$short-notebooks-$resolved}
results=${RESULTS:-results}
params=(dataset=glue/sst2 model_name="$hub_model")
if [ "$study" != none ]; then params+=(study="$study"); fi
echo "preset $preset ($resolved), study $study, results $results: glue/sst2 -> $data, $hub_model -> $model"
python3 "$root/run_notebooks.py" --preset "$preset" --only $keys --no-progress --results "$root/$results" \
  --out "$out" --param "${params[@]}"
