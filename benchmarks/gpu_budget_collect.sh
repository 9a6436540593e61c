#!/usr/bin/env bash
# Collect what a detached gpu_budget_queue.sh has finished: wait until the queue is through or WAIT_S
# seconds have passed, then pack each study that has ended (its run files, its -lr sweep, its
# figures and executed notebook) into OUT_DIR/<DATASET>.tgz (<DATASET>-failed.tgz when it failed), beside the queue's log.
# Usage: bash benchmarks/gpu_budget_collect.sh WORK_DIR OUT_DIR [WAIT_S]   (WAIT_S default 0)
# Unpack here with: tar xzf <DATASET>.tgz   (from the repository root: results/... and nb/<DATASET>/...)
set -uo pipefail
if [ $# -lt 2 ]; then sed -n 2,6p "$0"; exit 2; fi
work=$1; out=$2; wait_s=${3:-0}
while [ ! -e "$work/done/ALL" ] && [ "$SECONDS" -lt "$wait_s" ]; do sleep 5; done
cp "$work/queue.log" "$out/queue.log" 2>/dev/null
for marker in "$work"/done/*; do
  key=$(basename "$marker")
  [ "$key" = ALL ] && continue
  name=$key; [ "$(cat "$marker")" != 0 ] && name=$key-failed && echo "$key: the study failed (see queue.log)"
  # the study and its -lr sweep: the folders named <DATASET>-<model>-<gpu>[-lr] that the queue wrote
  studies=$(cd "$work/results/runs" && find . -maxdepth 1 -type d -newer "$work/started" -name "$key-*" -printf '%f\n' |
            grep -E "^$key-[a-z0-9]+-[a-z0-9]+(-equal-time)?(-lr)?$")
  paths=("nb/$key")
  for s in $studies; do paths+=("results/runs/$s"); [ -d "$work/results/figures/$s" ] && paths+=("results/figures/$s"); done
  (cd "$work" && tar czf "$out/$name.tgz" "${paths[@]}") && echo "$key: packed ${paths[*]}"
done
[ -e "$work/done/ALL" ] && echo "queue through" || echo "queue still running: $(tail -1 "$work/queue.log")"
