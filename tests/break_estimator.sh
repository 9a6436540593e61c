#!/usr/bin/env bash
# Break the estimator and its wiring on purpose: each run makes one edit of
# mclearn_core.py in a scratch copy and runs the estimator, policy, budget and sampler tests there;
# every line of output must name at least one failed test.
#   bash tests/break_estimator.sh      (about 32 minutes on 2 cores; not part of test.sh)
source "$(dirname "$0")/breakage_lib.sh"
BREAK_TESTS=(tests/test_cv_trainer.py tests/test_policy.py tests/test_budget.py tests/test_sampler.py)
weight_breakages
# --- biases of 1-2 % and a gradient leak
run "pool-membership probability over n_c + 1 (a 1.8 % bias)" \
  'probs.append(np.full(quota, quota / len(order)))' 'probs.append(np.full(quota, quota / (len(order) + 1)))'
run "candidate draw probabilities normalised 1 % short" \
  '    return candidate / total if total > 0 else' '    return candidate / (1.01 * total) if total > 0 else'
run "width probabilities smoothed by 0.01" \
  'step_bucket = rng.choice(len(bucket_widths), size=steps, p=bucket_prob / bucket_prob.sum())' \
  'step_bucket = rng.choice(len(bucket_widths), size=steps, p=(bucket_prob + 0.01) / (bucket_prob + 0.01).sum())'
run "the distillation's gradient leaks into the model (teacher not detached)" \
  'teacher = torch.softmax(full_logits.detach().float() / temp, -1)' 'teacher = torch.softmax(full_logits.float() / temp, -1)'
run "full-pass weights capped at w_clip / kept (half the cap)" \
  'np.minimum(full_weight, w_clip / full)' 'np.minimum(full_weight, w_clip / kept)'
# --- the policy update's inputs and its order with the refresh
run "rank guard fed (cheap loss, weight)" 'self.last_rank = spearman(cheap, full)' 'self.last_rank = spearman(cheap, weight)'
run "ESS fraction of the cheap-term weights" 'for w in self.plan.full_weight]' 'for w in self.plan.kept_weight]'
run "class RMS of the full loss without its weight" \
  'np.sqrt(np.mean((weight[labels == c] * full[labels == c]) ** 2))' 'np.sqrt(np.mean(full[labels == c] ** 2))'
run "labels of the wrong draws (the last full_rows of a step)" \
  'labels = self.pool["labels_host"][self.plan.kept_pos[: len(stats), : self.full_rows]].ravel()' \
  'labels = self.pool["labels_host"][self.plan.kept_pos[: len(stats), -self.full_rows:]].ravel()'
run "class shares of the candidate path alone" \
  '"class_share": np.bincount(labels_host, weights=draw_prob, minlength=self.num_classes)' \
  '"class_share": np.bincount(labels_host, weights=candidate, minlength=self.num_classes)'
run "replay share fed the rank instead of the ESS fraction" \
  'self.policy.update_replay_share(self.ess_fraction)' 'self.policy.update_replay_share(self.last_rank)'
run "refresh before the policy update" \
  '            self._update_policy()
            self.plan_start = i
            if self.budget and clock is None:' \
  '            self.plan_start = i
            if self.budget and clock is None:'
# --- what MC-Learn passes its budget solver, the re-plan and the schedule
run "the caller scales time_budget by 1.2" \
  'self.plan.bucket_widths.tolist(), self.time_budget(), cfg.refresh_every,' \
  'self.plan.bucket_widths.tolist(), 1.2 * self.time_budget(), cfg.refresh_every,'
run "setup time left uncharged" 'spent = time.perf_counter() - start' 'spent = 0.0'
BREAK_FILE=mcstudy/methods/mclearn.py run "one epoch priced where the run has several" \
  'torch.Generator().manual_seed(0))] * cfg.epochs' 'torch.Generator().manual_seed(0))]'
run "refreshes priced at the first pool's size (bug 3 back)" \
  'mean_refresh = self.setup_refresh_per_member * self.mean_pool_size(0.0)' \
  'mean_refresh = self.setup_refresh_per_member * self.pool_size(self.policy.kappa(0.0))'
run "no re-plan at refreshes" 'self.replan(i, progress)' 'None'
run "steps left priced at the baseline's update (no measured ratio)" \
  'ratio = measured / self.priced_update_seconds if self.priced_update_seconds > 0 else 1.0' 'ratio = 1.0'
run "lr schedule not moved along after a re-plan" \
  'return int(self.position / accum + 1e-9) / math.ceil(self.loop_steps / accum)' \
  'return int(self.steps_run / accum + 1e-9) / math.ceil(self.loop_steps / accum)'
run "steps after the re-planned end still train" 'if self.budget and clock is None and i >= self.total_steps:' 'if False:'
run "lr schedule at its end from the first step (nothing learns)" \
  'return int(self.position / accum + 1e-9) / math.ceil(self.loop_steps / accum)' \
  'return int(self.loop_steps / accum + 1e-9) / math.ceil(self.loop_steps / accum)'
BREAK_FILE=mcstudy/engine.py run "evaluation scrambles the predictions" \
  'logits[idx.to(device)] = out.float()' 'logits[idx.to(device)] = out.float()[torch.randperm(len(idx))]'
# --- gradient accumulation and per-group clipping: MC-Learn must honour both
run "grad_accum_steps ignored by MC-Learn (bug 1 back)" \
  'accumulate = ctx.cfg.grad_accum_steps > 1' 'accumulate = False'
run "model and cheap head clipped together (bug 2 back)" \
  'for params in clip_groups(ctx):' 'for params in [optimizer_params(ctx.optimizer)]:'
# --- the capture reserve
run "captures counted one eager use late" \
  'need = warmup_steps - (uses_so_far[b] if uses_so_far is not None else 0)' \
  'need = warmup_steps + 1 - (uses_so_far[b] if uses_so_far is not None else 0)'
BREAK_FILE=mcstudy/methods/mclearn.py run "setup reserves one capture per width again" \
  'return core.expected_captures(np.where(frequent, self.plan.bucket_prob, 0.0), upper, self.ctx.cfg.graph_warmup_steps)' \
  'return float(np.count_nonzero(self.plan.bucket_prob))'
run "re-plans hold back no captures" \
  'reserve = self.captures_expected(most) * self.ctx.step_costs.capture_seconds' 'reserve = 0.0'
BREAK_FILE=mcstudy/methods/mclearn.py run "captured widths still reserved" \
  'prob = [p if key not in done and self.planned_uses.get(key, 0) >= GRAPH_MIN_USES else 0.0' \
  'prob = [p if self.planned_uses.get(key, 0) >= GRAPH_MIN_USES else 0.0'
BREAK_FILE=mcstudy/methods/mclearn.py run "warm-up uses forgotten" \
  'return core.expected_captures(prob, steps, self.ctx.cfg.graph_warmup_steps, [used.get(k, 0) for k in keys])' \
  'return core.expected_captures(prob, steps, self.ctx.cfg.graph_warmup_steps)'
