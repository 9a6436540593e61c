# Sourced by tests/break_*.sh: break mclearn_core.py on purpose, one edit at a time, in a scratch copy of
# the repository's code and tests, and print which tests then fail. A script sets BREAK_TESTS (the pytest
# arguments each breakage runs unless it names its own) and calls `run NAME OLD NEW [PYTEST ARGS...]`:
# OLD must occur exactly once in mclearn_core.py, or in BREAK_FILE where set (`BREAK_FILE=make_readme.py run ...`;
# mclearn_paper.py, a module of mcstudy/ and run_notebooks.py too).
# Each output line is "NAME => the failed tests, the count".
set -u
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run() {  # name, old, new[, pytest arguments: default BREAK_TESTS]
  rm -rf "${work:?}"/* && cp -r "$src"/mclearn_core.py "$src"/mclearn_paper.py "$src"/mcstudy "$src"/make_readme.py "$src"/run_notebooks.py "$src"/tests \
    "$src"/data "$src"/benchmarks "$src"/notebooks "$src"/*.ipynb "$work"/
  local file=${BREAK_FILE:-mclearn_core.py}
  if python3 - "$2" "$3" "$work/$file" 2>/dev/null <<'PY'
import sys
old, new = sys.argv[1], sys.argv[2]
p = sys.argv[3]; s = open(p).read()
assert s.count(old) == 1, old
open(p, "w").write(s.replace(old, new))
PY
  then :; else echo "$1 => EDIT NOT APPLIED: its old text must occur exactly once in $file"; return; fi
  local tests=("${@:4}")
  [ ${#tests[@]} -gt 0 ] || tests=("${BREAK_TESTS[@]}")
  out=$(cd "$work" && timeout 900 python3 -m pytest -q -p no:cacheprovider "${tests[@]}" 2>&1 |
        grep -E "^FAILED|^[0-9]+ (passed|failed|deselected)" | sed "s/ - .*//; s/^FAILED tests\///" | tr "\n" " ")
  echo "$1 => $out"
}
weight_breakages() {  # the estimator's weights broken: each must fail an unbiasedness test
  run "drop the pool-selection probability" \
    'return 1.0 / (population * np.asarray(pool_prob) * draws * np.asarray(draw_prob))' \
    'return 1.0 / (population * draws * np.asarray(draw_prob))'
  run "candidate probability where the draw probability belongs" \
    'kept_weight = draw_weights(draw_prob[positions], pool_prob[positions], population, kept)' \
    'kept_weight = draw_weights(candidate_prob[positions], pool_prob[positions], population, kept)'
  run "detach the full-pass loss in the objective" \
    'full_term = (inputs["full_weight"] * loss_full).sum()' \
    'full_term = (inputs["full_weight"] * loss_full.detach()).sum()'
  run "force the full-pass probability to 1" \
    'full_weight = kept_weight[:, :full] / full_prob' 'full_weight = kept_weight[:, :full] / 1.0'
  run "drop the replay draw's share" \
    'kept_weight = draw_weights(draw_prob[positions], pool_prob[positions], population, kept)' \
    'kept_weight = draw_weights((1.0 - replay_share) * candidate_prob[positions], pool_prob[positions], population, kept)'
  run "class shares: drop the current share factor" \
    'target = shares * np.where(np.isfinite(scaled), scaled, fill)' \
    'target = np.where(np.isfinite(scaled), scaled, fill)'
  run "weight with the within-bucket probability (forget the bucket draw)" \
    'kept_weight = draw_weights(draw_prob[positions], pool_prob[positions], population, kept)' \
    'kept_weight = draw_weights(draw_prob[positions] / bucket_prob[step_bucket][:, None], pool_prob[positions], population, kept)'
}
