#!/usr/bin/env bash
# Unpack what gpu_budget_collect.sh packed into this repository: each finished study of FROM_DIR/<DATASET>.tgz
# replaces the study of that name (its run files, -lr sweep and figures), its executed notebook goes to
# results/notebooks/<gpu>/<DATASET><STUDY_SUFFIX>/, and the queue's log to results/gpu_tests/. A committed study of
# the same dataset and model on another GPU is removed with git rm: the answer reads one study a dataset and
# model (ms.fair_study_names refuses two). <DATASET>-failed.tgz and <DATASET>-partial.tgz are left packed, named.
# Usage: bash benchmarks/gpu_budget_unpack.sh FROM_DIR        then: python3 make_readme.py, and commit
#   (make_readme.py --allow-fewer once a study was removed: its runs leave summary.csv, which it names)
# Environment: STUDY_SUFFIX as given to the queue (default -fair).
set -euo pipefail
shopt -s nullglob
if [ $# -ne 1 ]; then sed -n 2,9p "$0"; exit 2; fi
from=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
suffix=${STUDY_SUFFIX--fair}
cd "$root"
unpacked=() gpus=() removed=0
for archive in "$from"/*.tgz; do
  key=$(basename "$archive" .tgz)
  case "$key" in *-failed|*-partial) echo "$key.tgz: left packed (the study did not end well: see queue.log)"; continue ;; esac
  studies=$(tar tzf "$archive" | grep -oE "^results/runs/$key-[a-z0-9]+-[a-z0-9]+$suffix/" | cut -d/ -f3 | sort -u)
  if [ -z "$studies" ] || [ "$(wc -w <<< "$studies")" != 1 ]; then
    echo "$archive holds no single study <$key>-<model>-<gpu>$suffix: was STUDY_SUFFIX the queue's?" >&2; exit 1
  fi
  study=$studies base=${studies%"$suffix"}
  gpu=${base##*-} set_model=${base%-*}
  for old in results/runs/"$set_model"-*"$suffix"; do  # the same dataset and model on another GPU
    old=$(basename "$old") old_base=${old%"$suffix"}
    [ "$old" != "$study" ] && [ "${old_base%-*}" = "$set_model" ] || continue
    stale=(results/runs/"$old" results/runs/"$old-lr" results/figures/"$old" results/notebooks/"${old_base##*-}/$key$suffix")
    git rm -rq --ignore-unmatch -- "${stale[@]}"
    rm -rf -- "${stale[@]}"
    echo "$old: removed, superseded by $study"
    removed=1
  done
  rm -rf "results/runs/$study" "results/runs/$study-lr" "results/figures/$study" "nb/$key"
  tar xzf "$archive"
  notebook="results/notebooks/$gpu/$key$suffix"
  mkdir -p "$notebook"
  mv "nb/$key/04_compare_methods.ipynb" "$notebook/"
  rm -rf "nb/$key"
  rmdir nb 2>/dev/null || true
  echo "$key: $study, its -lr sweep, figures and $notebook/04_compare_methods.ipynb"
  unpacked+=("$key") gpus+=("$gpu")
done
if [ ${#unpacked[@]} -gt 0 ] && [ -e "$from/queue.log" ]; then
  log="results/gpu_tests/${suffix#-}-queue-$(IFS=-; echo "${unpacked[*]}")-${gpus[0]}.log"
  mkdir -p results/gpu_tests
  cp "$from/queue.log" "$log"
  echo "queue log: $log"
fi
if [ "$removed" = 1 ]; then
  echo "then: python3 make_readme.py --allow-fewer (the removed studies' runs leave summary.csv), and commit"
elif [ ${#unpacked[@]} -gt 0 ]; then
  echo "then: python3 make_readme.py, and commit"
fi
