#!/usr/bin/env bash
# Break the estimator on purpose (issue 11): each run makes one one-line edit of mclearn_core.py in
# a scratch copy and runs the estimator tests there; every line of output must say "1 failed".
#   bash tests/break_estimator.sh      (about 2 minutes; not part of test.sh)
# Each breakage: a one-line edit of mclearn_core.py in a scratch copy; then the estimator tests.
set -u
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$(cd "$(dirname "$0")/.." && pwd)
run() {  # name, python replacement (old ||| new)
  rm -rf "$work"/* && cp -r $src/mclearn_core.py $src/tests $src/data "$work"/
  python3 - "$2" "$3" "$work" <<'PY'
import sys
old, new = sys.argv[1], sys.argv[2]
p = sys.argv[3] + "/mclearn_core.py"; s = open(p).read()
assert s.count(old) == 1, old
open(p, "w").write(s.replace(old, new))
PY
  out=$(cd "$work" && timeout 900 python3 -m pytest -q -p no:cacheprovider tests/test_cv_trainer.py tests/test_policy.py -k "unbiased or variance_optimal" 2>&1 | grep -E "^FAILED|passed|failed" | sed "s/ - .*//" | tr "\n" " ")
  echo "$1 => $out"
}
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
