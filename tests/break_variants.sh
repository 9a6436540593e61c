#!/usr/bin/env bash
# Break the estimator on purpose for MC-Learn's variants: each run makes one one-line edit of
# mclearn_core.py in a scratch copy and runs the unbiasedness tests there; every line of output must say
# "failed": the estimator's weight breakages fail mclearn's unbiasedness test and every variant's,
# the class shares' the policy test, and the variants' own breakages (the last ones) tests of
# tests/test_variants.py. The estimator's and its wiring's own breakages: tests/break_estimator.sh.
#   bash tests/break_variants.sh | tee results/estimator_breakages/break_variants.log
#   (about 17 minutes on 2 cores; not part of test.sh)
source "$(dirname "$0")/breakage_lib.sh"
BREAK_TESTS=(tests/test_cv_trainer.py tests/test_policy.py tests/test_variants.py -k "unbiased or variance_optimal")
weight_breakages
# The variants' own parts, against tests/test_variants.py:
run "once: systematic counts from a fixed start" \
  'below = np.searchsorted(rng.random() + np.arange(total), edges, side="left")' \
  'below = np.searchsorted(0.5 + np.arange(total), edges, side="left")' tests/test_variants.py
run "once: a step padded to its first row's width, not its widest" \
  'step_bucket = np.searchsorted(bucket_widths, member_width[chosen].max(axis=1))' \
  'step_bucket = np.searchsorted(bucket_widths, member_width[chosen][:, 0])' tests/test_variants.py
run "free: store the cheap head's loss as the row's score" \
  'self.score_table[rows] = stats[:, 1].ravel()' 'self.score_table[rows] = stats[:, 0].ravel()' tests/test_variants.py
run "free: the head learns from rows it did not score (no ignored label)" \
  'self.pool_labels[: len(rows)].fill_(-100)' 'self.pool_labels[: len(rows)].fill_(0)' tests/test_variants.py
run "free: distil on rows without features" \
  'share = share * self.pool_has_feats[inputs["full_pos"]]' 'share = share * 1.0' tests/test_variants.py
run "anneal: uniform pools keep the policy's class weights" \
  'class_weights = np.full(self.num_classes, 1.0 / self.num_classes) if uniform else self.policy.class_weights' \
  'class_weights = self.policy.class_weights' tests/test_variants.py
run "anneal: the end is scored too" \
  'ending = cfg.uniform_end > 0 and progress >= 1.0 - cfg.uniform_end' 'ending = False' tests/test_variants.py
run "record_passes: forget the last pool's steps" \
  'if self.pool is not None and self.step_stats:' 'if False:' tests/test_variants.py
