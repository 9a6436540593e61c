#!/usr/bin/env bash
# Break the equal-time machinery on purpose (issue 21): each run makes one one-line edit of
# mclearn_core.py in a scratch copy and runs tests/test_equal_time.py and the answer's test of
# tests/test_readme.py (make_readme.py reads its verdicts from mclearn_core) there; every line of
# output must say "failed". Writes nothing; `bash tests/break_equal_time.sh | tee results/equal_time_breakages/break_equal_time.log`
# keeps the log (about 1 minute; not part of test.sh).
source "$(dirname "$0")/breakage_lib.sh"
BREAK_TESTS=(tests/test_equal_time.py tests/test_readme.py::test_the_answer_names_a_method_only_where_its_interval_excludes_zero)
run "short schedule: price the prefix without its captures" \
  'prices.append(spent + captured * capture_seconds)' 'prices.append(spent)'
run "short schedule: train the last steps of the plan, not the leading ones" \
  'self.plan = self.plan[:n]' 'self.plan = self.plan[-n:]'
run "short schedule: drop the exact-fit tolerance" \
  'budget_seconds * (1 + 1e-9), side="right")' 'budget_seconds, side="left")'
run "interval: normal quantile instead of Student's t" \
  'stats.t.ppf(0.5 + confidence / 2, n - 1)' 'stats.norm.ppf(0.5 + confidence / 2)'
run "interval: population sd (ddof 0)" \
  'half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n))' \
  'half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * diffs.std() / math.sqrt(n))'
run "verdict from the mean, not the interval" \
  'verdict = "better" if diff["lo"] > 0 else "worse" if diff["hi"] < 0 else "tie"' \
  'verdict = "better" if diff["mean"] > 0 else "worse" if diff["mean"] < 0 else "tie"'
run "time to target: mean over seeds instead of median" \
  'medians = {m: float(np.median(list(t.values()))) for m, t in per_seed.items()}' \
  'medians = {m: float(np.mean(list(t.values()))) for m, t in per_seed.items()}'
run "time to target: target from the baseline's mean accuracy" \
  'target = float(np.median([r["accuracy"] for r in base.values()])) - drop_pt / 100' \
  'target = float(np.mean([r["accuracy"] for r in base.values()])) - drop_pt / 100'
run "time to target: the last run over budgets instead of the fastest" \
  'per_seed[method][seed] = min(best, math.inf if reached is None else reached)' \
  'per_seed[method][seed] = math.inf if reached is None else reached'
run "the full baseline is not the short schedule's budget 1" \
  '            method, budget = REFERENCE, 1.0' '            budget = 1.0'
run "performance profile: strictly within tau" \
  'hits += bool(math.isfinite(best) and per.get(method, math.inf) <= tau * best)' \
  'hits += bool(math.isfinite(best) and per.get(method, math.inf) < tau * best)'
run "tuning rule: every method keeps the baseline's lr" \
  'method_lrs[method] = best_lr(runs)' 'method_lrs[method] = lr'
run "test holdout: a plain random draw instead of a stratified one" \
  'held = _stratified_rows(train.labels, rows, np.random.default_rng(seed))' \
  'held = np.random.default_rng(seed).choice(len(train.texts), rows, replace=False)'
run "equal time: a lead bought with more seconds counts" \
  'if verdict != "worse" and time_ratio > 1 + EQUAL_TIME_SLACK:' 'if False:'
run "equal time: seconds compared with the full baseline's, not the short schedule's" \
  'ratio = float(np.median(seconds) / np.median(ref_seconds)) if seconds and ref_seconds else float("nan")' \
  'ratio = float(np.median(seconds) / base_seconds) if seconds and ref_seconds else float("nan")'
BREAK_FILE=make_readme.py run "equal time: the answer's table picks the best over time too" \
  'timely = others[others["verdict"] != "over time"]' 'timely = others'
