#!/usr/bin/env bash
# Break MC-Learn's switch (select_switch) on purpose: each run makes one one-line edit of
# mclearn_core.py in a scratch copy and runs the switch's tests there; every line of output must say
# "failed". First the switch's own parts (the estimate, the rule, the decisions, the uniform pools, the
# record, the variance check) against tests/test_switch.py; then the estimator's weight breakages
# (breakage_lib.sh) against the estimator's test across switches (tests/test_cv_trainer.py), the switch
# variants' unbiasedness tests (tests/test_variants.py: the objective's gradient) and the class shares'
# test (tests/test_policy.py), as break_variants.sh runs them for the other variants.
#   bash tests/break_switch.sh | tee results/estimator_breakages/break_switch.log
#   (about 9 minutes on two cores; not part of test.sh)
source "$(dirname "$0")/breakage_lib.sh"
BREAK_TESTS=(tests/test_switch.py tests/test_cv_trainer.py tests/test_variants.py tests/test_policy.py
             -k "switch or variance_optimal")
OWN=(tests/test_switch.py)
# --- the estimate and the rule
run "variance reduction without the sample's own probability" \
  'uniform = float(np.mean(m / a)) - mean_square' 'uniform = float(np.mean(m)) - mean_square' "${OWN[@]}"
run "selection pays whatever its cost" 'return bool(tau >= 1.0 + cost)' 'return bool(tau >= 1.0)' "${OWN[@]}"
run "the switch never backs off" \
  'self.wait = 0 if pays else SWITCH_BACKOFF ** self.failures - 1' 'self.wait = 0' "${OWN[@]}"
# --- what the decisions read
run "scores from the cheap head's loss, not the full pass's" \
  'scores = 1.0 - np.exp(-stats[:, 1].ravel())' 'scores = 1.0 - np.exp(-stats[:, 0].ravel())' "${OWN[@]}"
run "achieved tau without the draws' probabilities" \
  'tau = variance_reduction(scores ** 2, share, share)' \
  'tau = variance_reduction(scores ** 2, np.ones(len(share)), np.ones(len(share)))' "${OWN[@]}"
run "promised tau of the uniform draw that made the losses" \
  'tau = variance_reduction(scores[at] ** 2, len(members) * draw, np.ones(len(members)))' \
  'tau = variance_reduction(scores[at] ** 2, np.ones(len(members)), np.ones(len(members)))' "${OWN[@]}"
run "the cost scores the rows with a stored loss too" \
  'scoring = ema["score"] * self.pool_size(kappa) * (1.0 - (stored or 0.0))' \
  'scoring = ema["score"] * self.pool_size(kappa)' "${OWN[@]}"
# --- the pools it chooses and the run file
run "the switch's uniform pools are scored" \
  'difficulty, scored = self.variant_scores(rows, score=not (ending or switched))' \
  'difficulty, scored = self.variant_scores(rows, score=not ending)' "${OWN[@]}"
run "a uniform pool keeps the policy's class weights" \
  'class_weights = np.full(self.num_classes, 1.0 / self.num_classes) if uniform else self.policy.class_weights' \
  'class_weights = self.policy.class_weights' "${OWN[@]}"
run "a uniform pool's steps counted as selected" \
  'self.selected_steps += not self.pool.get("uniform", False)' 'self.selected_steps += 1' "${OWN[@]}"
# --- the variance check at the end
BREAK_FILE=mcstudy/methods/mclearn.py run "last-layer gradient without its bias" \
  '((h ** 2).sum(1) + (1.0 if layer.bias is not None else 0.0))' '(h ** 2).sum(1)' "${OWN[@]}"
BREAK_FILE=mcstudy/methods/mclearn.py run "last-layer gradient without label smoothing" \
  'target = F.one_hot(batch["labels"], classes).float() * (1.0 - smoothing) + smoothing / classes' \
  'target = F.one_hot(batch["labels"], classes).float()' "${OWN[@]}"
BREAK_FILE=mcstudy/methods/mclearn.py run "the mean gradient unweighted" \
  'w = weights[start:start + len(idx), None]' 'w = torch.full_like(weights[start:start + len(idx), None], 1 / len(rows))' \
  "${OWN[@]}"
BREAK_FILE=mcstudy/methods/mclearn.py run "the measured reduction without the squared mean" \
  '"measured": tau(second, grads["mean_square"])' '"measured": tau(second)' "${OWN[@]}"
# --- the estimator's weights, against the test across switches
weight_breakages
