#!/usr/bin/env bash
# Check that the published tables re-render the same from two trees: the commit REV and this working
# tree. Each is copied to a scratch folder (REV by git archive; the working tree: its tracked and
# untracked, not ignored files), where make_readme.py writes README.md's answer, results/README.md and
# results/summary.csv, and benchmarks/ablation.py writes results/ablation/; then the two are diffed.
# Use it where a change must not move a number: REV a commit with the same runs before the change (for
# the run files' conversion, benchmarks/migrate_runs.py: the last commit with plain .json run files).
# Usage: bash benchmarks/check_render.sh REV        Exit 0: identical; 1: they differ (the diff is printed).
set -euo pipefail
if [ $# -ne 1 ]; then sed -n 2,8p "$0"; exit 2; fi
rev=$1
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/rev" "$scratch/tree"
git -C "$root" archive "$rev" | tar -x -C "$scratch/rev"
(cd "$root" && git ls-files -z -co --exclude-standard |  # tracked (less those deleted) and untracked files
   xargs -0 sh -c 'for f; do if [ -e "$f" ]; then printf "%s\0" "$f"; fi; done' _ | xargs -0 cp --parents -t "$scratch/tree")
for side in rev tree; do
  (cd "$scratch/$side" && python3 make_readme.py && python3 benchmarks/ablation.py > /dev/null) ||
    { echo "error: rendering the $side copy failed (see above)" >&2; exit 1; }
done
status=0
answer() { sed -n '/<!-- answer:start -->/,/<!-- answer:end -->/p' "$1"; }  # README.md's generated part
diff <(answer "$scratch/rev/README.md") <(answer "$scratch/tree/README.md") || status=1
for file in results/README.md results/summary.csv results/ablation; do
  diff -r "$scratch/rev/$file" "$scratch/tree/$file" || status=1
done
[ $status = 0 ] && echo "identical: README.md's answer, results/README.md, results/summary.csv, results/ablation/ of" \
  "$rev and the working tree"
exit $status
