#!/usr/bin/env bash
# Break what MC-Learn's draw prefers and InfoBatch's rules on purpose: each run makes one
# one-line edit of mclearn_core.py in a scratch copy and runs the draw's tests (tests/test_draws.py,
# tests/test_sampler.py) or InfoBatch's (tests/test_peers.py, tests/test_budget_study.py) there; every
# line of output must say "failed". None of these edits biases the estimator (a known draw probability
# keeps it unbiased), so the unbiasedness tests cannot see them.
#   bash tests/break_draws.sh | tee results/estimator_breakages/break_draws.log
#   (about 8 minutes on 2 cores; not part of test.sh)
source "$(dirname "$0")/breakage_lib.sh"
BREAK_TESTS=(tests/test_draws.py tests/test_sampler.py)
# --- the temperature and the soft top-k
run "temperature multiplies the score gap instead of dividing it" \
  'z = np.clip((scores - threshold) / (0.05 * tau), -60, 60)' 'z = np.clip((scores - threshold) * tau / 0.05, -60, 60)'
run "soft top-k ten times softer (0.5 tau)" \
  'z = np.clip((scores - threshold) / (0.05 * tau), -60, 60)' 'z = np.clip((scores - threshold) / (0.5 * tau), -60, 60)'
run "soft top-k threshold at the (k+1)-th largest score" \
  'threshold = np.partition(scores, scores.size - k)[scores.size - k]' \
  'threshold = np.sort(scores)[max(scores.size - k - 1, 0)]'
run "top-k over the whole pool, not inside each class" \
  'probs[rows] = soft_topk_keep_prob(scores[rows], round(kappa * rows.sum()), tau)' \
  'probs[rows] = soft_topk_keep_prob(scores, round(kappa * len(scores)), tau)[rows]'
run "replay mixed the other way round" \
  'return (1.0 - replay_share) * np.asarray(candidate_prob) + replay_share / len(candidate_prob)' \
  'return replay_share * np.asarray(candidate_prob) + (1.0 - replay_share) / len(candidate_prob)'
# --- systematic (once) draws over a pool
run "systematic points laid over the rows in index order" \
  'order = rng.permutation(len(expected))' 'order = np.arange(len(expected))'
run "once: a step's rows in index order (no shuffle before the width sort)" \
  'chosen = rng.permutation(np.repeat(np.arange(len(draw_prob)), counts))' \
  'chosen = np.repeat(np.arange(len(draw_prob)), counts)'
run "once: a pool's steps narrowest first (not shuffled)" \
  'chosen = chosen[np.argsort(member_width[chosen], kind="stable")].reshape(steps, full)[rng.permutation(steps)]' \
  'chosen = chosen[np.argsort(member_width[chosen], kind="stable")].reshape(steps, full)'
# --- once-draw probabilities against the plan's own count
run "once-draw probabilities sized from all of a plan's draws (steps x kept)" \
  'draw_prob = full_pass_draw_probs(candidate_prob, replay_share, steps * full, once_floor)' \
  'draw_prob = full_pass_draw_probs(candidate_prob, replay_share, steps * kept, once_floor)'
run "once-draw probabilities sized from one step's full passes" \
  'draw_prob = full_pass_draw_probs(candidate_prob, replay_share, steps * full, once_floor)' \
  'draw_prob = full_pass_draw_probs(candidate_prob, replay_share, full, once_floor)'
run "once-draw cap at the uniform count, not one pass" \
  'cap, least = max(1.0, draws / size), min(floor, draws / size)' \
  'cap, least = draws / size, min(floor, draws / size)'
run "pool sized without kappa (the full passes reach the whole pool)" \
  'return max(self.kept_rows, self.num_classes, round(self.full_rows * cfg.refresh_every / kappa))' \
  'return max(self.kept_rows, self.num_classes, round(self.full_rows * cfg.refresh_every))'
# --- InfoBatch's rules against its reference
BREAK_TESTS=(tests/test_peers.py tests/test_budget_study.py -k infobatch)
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: prunes rows above the mean" \
  'low = seen & (scores < np.nanmean(scores))' 'low = seen & (scores > np.nanmean(scores))'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: rows at the mean count as well learned" \
  'low = seen & (scores < np.nanmean(scores))' 'low = seen & (scores <= np.nanmean(scores))'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: threshold at the median of the seen rows" \
  'low = seen & (scores < np.nanmean(scores))' 'low = seen & (scores < np.nanmedian(scores))'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: mean over every row, unseen ones as 0" \
  'low = seen & (scores < np.nanmean(scores))' 'low = seen & (scores < np.nan_to_num(scores).mean())'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: prunes with probability 1 - r" \
  'prune = low & (self.rng.random(len(scores)) < self.ctx.cfg.infobatch_prune)' \
  'prune = low & (self.rng.random(len(scores)) < 1 - self.ctx.cfg.infobatch_prune)'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: kept low-loss rows rescaled by 1 / r" \
  'weights[low] = 1.0 / (1.0 - self.ctx.cfg.infobatch_prune)' 'weights[low] = 1.0 / self.ctx.cfg.infobatch_prune'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: every kept seen row rescaled, the high-loss ones too" \
  'weights[low] = 1.0 / (1.0 - self.ctx.cfg.infobatch_prune)' 'weights[seen] = 1.0 / (1.0 - self.ctx.cfg.infobatch_prune)'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: anneal's share of epochs rounded down (start rounded up)" \
  'return math.floor(round(epochs * (1 - anneal), 9))' 'return math.ceil(round(epochs * (1 - anneal), 9))'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: anneal starts one epoch late" \
  'return math.floor(round(epochs * (1 - anneal), 9))' 'return math.floor(round(epochs * (1 - anneal), 9)) + 1'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: anneal share read as the pruning share" \
  'return math.floor(round(epochs * (1 - anneal), 9))' 'return math.floor(round(epochs * anneal, 9))'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: anneal boundary in raw floats" \
  'return math.floor(round(epochs * (1 - anneal), 9))' 'return math.floor(epochs * (1 - anneal))'
BREAK_FILE=mcstudy/methods/infobatch.py run "InfoBatch: an epoch counted from 1 against the anneal start" \
  'return self.epoch >= infobatch_anneal_start(cfg.epochs, cfg.infobatch_anneal)' \
  'return self.epoch + 1 >= infobatch_anneal_start(cfg.epochs, cfg.infobatch_anneal)'
