#!/usr/bin/env bash
# Run several datasets' budget studies one after another on the GPU machine, each in one process of its
# own (gpu_budget_study.sh with FRESH=1), in a copy of the repository. Started detached (setsid), the
# queue outlives the device call that started it (a call may last 10 minutes, a study about as long);
# later calls collect what has finished with gpu_budget_collect.sh.
# Usage: setsid nohup bash benchmarks/gpu_budget_queue.sh MODEL_DIR WORK_DIR DATASET... >LOG 2>&1 </dev/null &
#   MODEL_DIR  the encoder folder (/tmp/all-mpnet-base-v2); WORK_DIR  where the copy runs (/tmp/work)
#   DATASET    sst2 | sst2-noisy20 | clinc150 | banking77 | sst2-long, run in the order given
# Environment: as gpu_budget_study.sh (LRS, SEEDS; MCLEARN_COMMIT and MCLEARN_GIT_CLEAN name the commit);
#   FRESH=0 resumes the studies from the run files the copy holds (a collected <DATASET>-partial.tgz unpacked).
# Writes WORK_DIR/queue.log, WORK_DIR/done/<DATASET> (the study's exit status) as each study ends, and
# WORK_DIR/done/ALL once the queue is through; executed notebooks go to WORK_DIR/nb/<DATASET>/.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 3 ]; then sed -n 2,11p "$0"; exit 2; fi
model=$(cd "$1" && pwd); work=$2; shift 2
mkdir -p "$work"
(cd "$root" && tar cf - --exclude='./.gpu/q*' .) | (cd "$work" && tar xf -)
mkdir -p "$work/done" "$work/nb"
touch "$work/started"  # gpu_budget_collect.sh packs the run folders written after this
sleep 1
log="$work/queue.log"
for key in "$@"; do
  echo "$(date -u +%FT%TZ) start $key" >> "$log"
  start=$SECONDS
  FRESH=${FRESH:-1} bash "$work/benchmarks/gpu_budget_study.sh" "$key" "$model" "$work/nb/$key" >> "$log" 2>&1
  status=$?
  echo "$status" > "$work/done/$key"
  echo "$(date -u +%FT%TZ) end $key: exit $status after $((SECONDS - start)) s" >> "$log"
done
touch "$work/done/ALL"
