#!/usr/bin/env bash
# Break the fair protocol's training rules on purpose: equal time by the clock, lr schedules
# that end at the last update, each method's own lr at each budget from a growing grid, one capture
# policy. Each run makes one edit of mclearn_core.py (or the mcstudy module it names) in a scratch
# copy and runs the tests named below there; every line of output must say "failed". Writes nothing;
# `bash tests/break_fair.sh | tee results/fair_breakages/break_fair.log` keeps the log
# (about 12 minutes on 2 cores; not part of test.sh).
source "$(dirname "$0")/breakage_lib.sh"
BREAK_TESTS=(tests/test_fair_protocol.py tests/test_equal_time.py tests/test_peers.py::test_infobatch_schedule_ends_with_its_last_epoch
             "tests/test_cv_trainer.py::test_refreshes_replan_the_steps_left_when_pools_or_steps_cost_more_than_planned"
             tests/test_cv_trainer.py::test_mclearn_reserves_the_captures_it_expects_to_make
             tests/test_training.py::test_lr_schedule_steps_as_the_transformers_schedule_and_books_every_update)
BREAK_FILE=mcstudy/engine.py run "clock: stop a whole step before the budget, not half" \
  'return bool(self.recent) and elapsed + (self.step_estimate() + extra) / 2 >= self.seconds' \
  'return bool(self.recent) and elapsed + (self.step_estimate() + extra) >= self.seconds'
BREAK_FILE=mcstudy/engine.py run "clock: a step's lr at its start, not its expected end" \
  'self.progress = min(1.0, (elapsed + self.step_estimate() + extra) / self.seconds)' \
  'self.progress = min(1.0, elapsed / self.seconds)'
BREAK_FILE=mcstudy/engine.py run "clock: the next step estimated by the last one, not the median" \
  'return float(np.median(self.recent)) if self.recent else 0.0' 'return float(self.recent[-1]) if self.recent else 0.0'
BREAK_FILE=mcstudy/train.py run "clock: the loop does not drive the lr by the clock" \
  'ctx.scheduler.drive(clock.next_progress(elapsed, extra))' 'clock.next_progress(elapsed, extra)'
BREAK_FILE=mcstudy/train.py run "clock: the method's extra seconds are not weighed" \
  'elapsed, extra = train_seconds + time.perf_counter() - t0, method.extra_step_seconds(step)' \
  'elapsed, extra = train_seconds + time.perf_counter() - t0, 0.0'
run "clock: MC-Learn ends at its planned steps" \
  'if self.budget and clock is None and i >= self.total_steps:' 'if self.budget and i >= self.total_steps:'
BREAK_FILE=mcstudy/methods/infobatch.py run "clock: InfoBatch anneals by its configured epochs" \
  '        if clock is not None:
            return clock.progress >= 1 - cfg.infobatch_anneal' '        if False:
            return clock.progress >= 1 - cfg.infobatch_anneal'
BREAK_FILE=mcstudy/methods/infobatch.py run "schedule: InfoBatch's progress by whole epochs (no compression)" \
  'return min(1.0, (self.epoch + self.cursor / max(len(self.plan), 1)) / epochs)' \
  'return min(1.0, self.epoch / epochs)'
run "schedule: MC-Learn's lr follows its steps, not its re-planned progress" \
  'return int(self.position / accum + 1e-9) / math.ceil(self.loop_steps / accum)' \
  'return int(self.steps_run / accum + 1e-9) / math.ceil(self.loop_steps / accum)'
BREAK_FILE=mcstudy/engine.py run "schedule: book the next update's lr instead of the one used" \
  '        self.updates += 1
        self.last_share, self.sum_share = self.multiplier, self.sum_share + self.multiplier
        if not self.driven:
            self._set(self.f(min(self.updates, self.total)))' \
  '        self.updates += 1
        if not self.driven:
            self._set(self.f(min(self.updates, self.total)))
        self.last_share, self.sum_share = self.multiplier, self.sum_share + self.multiplier'
BREAK_FILE=mcstudy/methods/mclearn.py run "capture policy: MC-Learn captures every width" \
  'self.graphed = GraphedUpdate(self.ctx, self._update, self.planned_update_shapes() if self.budget else None)' \
  'self.graphed = GraphedUpdate(self.ctx, self._update)'
BREAK_FILE=mcstudy/methods/mclearn.py run "capture policy: MC-Learn's reserve counts rare widths" \
  'frequent = self.plan.bucket_prob * upper >= GRAPH_MIN_USES' 'frequent = self.plan.bucket_prob * upper >= 0'
BREAK_FILE=mcstudy/methods/infobatch.py run "capture policy: InfoBatch plans one epoch's shapes" \
  'return {shape: uses * self.ctx.cfg.epochs for shape, uses in collections.Counter(' \
  'return {shape: uses for shape, uses in collections.Counter('
BREAK_FILE=mcstudy/engine.py run "start-up: warm-up seconds taken from the shapes never captured" \
  '            if key in self.graphs:
                warmup += seconds' '            if key not in self.graphs:
                warmup += seconds'
BREAK_FILE=mcstudy/train.py run "start-up: the scoring forward's graphs left out" \
  'graphs = [g for g in (method.graphed, getattr(method, "scorer", None)) if g is not None]' \
  'graphs = [g for g in (method.graphed,) if g is not None]'
BREAK_FILE=mcstudy/budget.py run "tuning: the grid does not grow" \
  'while (lr := next_grid_lr(records)) is not None:' 'while False and (lr := next_grid_lr(records)) is not None:'
BREAK_FILE=mcstudy/budget.py run "tuning: the grid grows only upward" \
  '    if best == tried[0]:
        return float(f"{best / 2:.6g}")
    return None' '    return None'
BREAK_FILE=mcstudy/budget.py run "tuning: a top below a diverged lr counts as interior" \
  '        return "edge: next diverged"' '        return "interior"'
BREAK_FILE=mcstudy/budget.py run "tuning: the reference seconds are the mean of the sweep's" \
  '    return float(np.median(seconds))
' '    return float(np.mean(seconds))
'
BREAK_FILE=mcstudy/budget.py run "tuning: budgeted runs get no clock" \
  'budget_seconds=round(plan.time_budget * full_seconds, 6), **plan.knobs), plan' \
  'budget_seconds=0.0, **plan.knobs), plan'
BREAK_FILE=mcstudy/budget.py run "tuning: every budget takes the lr tuned at the first" \
  'records.append(run_budgeted(tuned, method, budget, method_lrs[method, budget], seed, label))' \
  'records.append(run_budgeted(tuned, method, budget, method_lrs[method, time_budgets[0]], seed, label))'
