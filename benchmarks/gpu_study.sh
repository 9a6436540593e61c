#!/usr/bin/env bash
# The full-scale study on the GPU machine (issue 5/6): SST-2 (GLUE, 67,349 train / 872 validation)
# with all-MiniLM-L6-v2 (weights stored as float16, loaded as float32), one epoch, preset h100.
# Usage: bash benchmarks/gpu_study.sh STUDY "METHODS..." [SEEDS...]
# Expects .gpu/data/sst2 and .gpu/models/all-MiniLM-L6-v2 (see ../shared/GPU.md); writes results/.
set -euo pipefail
study=${1:-sst2-minilm-h100}  # the GPU study
methods=${2:-"baseline mclearn mclearn-paper uniform"}
shift 2 || true
seeds=${*:-"42 43 44"}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python3 mclearn_core.py --preset h100 --study "$study" --results-dir results \
  --dataset .gpu/data/sst2 --model .gpu/models/all-MiniLM-L6-v2 \
  --methods $methods --seeds $seeds --set eval_split=validation
