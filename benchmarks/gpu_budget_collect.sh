#!/usr/bin/env bash
# Collect what a detached gpu_budget_queue.sh has finished: wait until the queue is through or WAIT_S
# seconds have passed, then pack each study that has ended (its run files, its -lr sweep, its
# figures and executed notebook) into OUT_DIR/<DATASET>.tgz (<DATASET>-failed.tgz when it failed; <DATASET>-partial.tgz with the
# finished runs of the one still running), beside the queue's log.
# Usage: bash benchmarks/gpu_budget_collect.sh WORK_DIR OUT_DIR [WAIT_S]   (WAIT_S default 0)
# Environment: STUDY_SUFFIX as given to the queue (default -fair).
# Unpack here with: tar xzf <DATASET>.tgz   (from the repository root: results/... and nb/<DATASET>/...)
set -uo pipefail
shopt -s nullglob  # no study ended yet: nothing to pack (not a study named "*")
if [ $# -lt 2 ]; then sed -n 2,7p "$0"; exit 2; fi
work=$1; out=$2; wait_s=${3:-0}
while [ ! -e "$work/done/ALL" ] && [ "$SECONDS" -lt "$wait_s" ]; do sleep 5; done
cp "$work/queue.log" "$out/queue.log" 2>/dev/null
# the studies that ended (done/<DATASET>), and the one still running (its finished run files, as
# <DATASET>-partial.tgz: unpacked into results/runs, a later call of the same study without FRESH=1 reads them back)
running=$(grep -oE "start [a-z0-9-]+$" "$work/queue.log" 2>/dev/null | tail -1 | cut -d' ' -f2)
[ -n "$running" ] && [ -e "$work/done/$running" ] && running=
for marker in "$work"/done/* ${running:+"$work/running/$running"}; do
  key=$(basename "$marker")
  [ "$key" = ALL ] && continue
  name=$key
  if [ "$key" = "$running" ]; then name=$key-partial
  elif [ "$(cat "$marker")" != 0 ]; then name=$key-failed && echo "$key: the study failed (see queue.log)"; fi
  # the study and its -lr sweep: the folders named <DATASET>-<model>-<gpu><STUDY_SUFFIX>[-lr] that the queue
  # wrote (STUDY_SUFFIX as the queue had it: -fair by default, -ablation for gpu_ablation.sh --env)
  studies=$(cd "$work/results/runs" && find . -maxdepth 1 -type d -newer "$work/started" -name "$key-*" -printf '%f\n' |
            grep -E "^$key-[a-z0-9]+-[a-z0-9]+${STUDY_SUFFIX--fair}(-lr)?$")
  paths=(); [ -d "$work/nb/$key" ] && paths+=("nb/$key")
  for s in $studies; do paths+=("results/runs/$s"); [ -d "$work/results/figures/$s" ] && paths+=("results/figures/$s"); done
  [ ${#paths[@]} -gt 0 ] || { echo "$key: nothing written yet"; continue; }
  (cd "$work" && tar czf "$out/$name.tgz" "${paths[@]}") && echo "$key: packed ${paths[*]} as $name.tgz"
done
[ -e "$work/done/ALL" ] && echo "queue through" || echo "queue still running: $(tail -1 "$work/queue.log")"
