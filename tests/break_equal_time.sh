#!/usr/bin/env bash
# Break the equal-time machinery on purpose: each run makes one one-line edit of
# mcstudy/equal_time.py (or make_readme.py) in a scratch copy and runs tests/test_equal_time.py and the
# answer's tests of tests/test_readme.py (make_readme.py reads its verdicts from mcstudy) there,
# or the tests it names; every line of output must say "failed". Writes nothing;
# `bash tests/break_equal_time.sh | tee results/equal_time_breakages/break_equal_time.log` keeps the
# log (about 9 minutes on 2 cores; not part of test.sh).
source "$(dirname "$0")/breakage_lib.sh"
BREAK_TESTS=(tests/test_equal_time.py tests/test_readme.py::test_the_answer_names_a_method_only_on_a_holm_corrected_verdict)
README_TESTS=(tests/test_readme.py::test_the_answer_names_a_method_only_on_a_holm_corrected_verdict
              tests/test_readme.py::test_no_winner_says_so_and_names_the_closest
              tests/test_readme.py::test_fair_studies_form_the_answer_and_the_equal_time_studies_become_the_previous_protocol
              tests/test_readme.py::test_an_lr_table_with_every_choice_interior_says_so
              tests/test_readme.py::test_the_ablation_section_gives_the_5_seed_result_where_the_chosen_presets_runs_exist)
BREAK_FILE=mcstudy/methods/short_schedule.py run "short schedule: price the prefix without its captures" \
  'prices.append(spent + captured * capture_seconds)' 'prices.append(spent)'
BREAK_FILE=mcstudy/methods/short_schedule.py run "short schedule: train the last steps of the plan, not the leading ones" \
  'self.plan = self.plan[:n]' 'self.plan = self.plan[-n:]'
BREAK_FILE=mcstudy/methods/short_schedule.py run "short schedule: drop the exact-fit tolerance" \
  'budget_seconds * (1 + 1e-9), side="right")' 'budget_seconds, side="left")'
BREAK_FILE=mcstudy/equal_time.py run "interval: normal quantile instead of Student's t" \
  'stats.t.ppf(0.5 + confidence / 2, n - 1)' 'stats.norm.ppf(0.5 + confidence / 2)'
BREAK_FILE=mcstudy/equal_time.py run "interval: population sd (ddof 0)" \
  'se = float(diffs.std(ddof=1) / math.sqrt(n))' 'se = float(diffs.std() / math.sqrt(n))'
BREAK_FILE=mcstudy/equal_time.py run "p-value: one-sided" \
  'p = float(2 * stats.t.sf(abs(mean) / se, n - 1))' 'p = float(stats.t.sf(abs(mean) / se, n - 1))'
BREAK_FILE=mcstudy/equal_time.py run "Holm: no correction (the raw p)" '        out[i] = running' '        out[i] = p'
BREAK_FILE=mcstudy/equal_time.py run "Holm: Bonferroni (m x p) instead of the step-down" \
  'running = max(running, min(1.0, (m - rank) * p))' 'running = max(running, min(1.0, m * p))'
BREAK_FILE=mcstudy/equal_time.py run "Holm: no running maximum" \
  'running = max(running, min(1.0, (m - rank) * p))' 'running = min(1.0, (m - rank) * p)'
BREAK_FILE=mcstudy/equal_time.py run "Holm: the verdict reads the raw p" \
  '                   else _verdict(diff, test["ratio"], p))' '                   else _verdict(diff, test["ratio"]))'
BREAK_FILE=mcstudy/equal_time.py run "verdict: the direction against the mean" \
  'return "better" if diff["mean"] > 0 else "worse"' 'return "worse" if diff["mean"] > 0 else "better"'
BREAK_FILE=mcstudy/equal_time.py run "simultaneous interval at 1 - alpha, not 1 - alpha / m" \
  'paired_difference(test["acc"], test["ref_acc"], 1 - VERDICT_ALPHA / m)' \
  'paired_difference(test["acc"], test["ref_acc"], 1 - VERDICT_ALPHA)'
BREAK_FILE=make_readme.py run "Holm: one family per study, not over the answer's studies" \
  'tables = ms.equal_time_tables(records) if records else {}' \
  'tables = {study: ms.equal_time_table(runs) for study, runs in records.items()}' "${README_TESTS[@]}"
BREAK_FILE=mcstudy/equal_time.py run "fair: a cell over its target keeps its verdict" \
  'if own_ratio > 1 + EQUAL_TIME_TOLERANCE:' 'if False:'
BREAK_FILE=mcstudy/equal_time.py run "fair: short-schedule off its target still gives verdicts" \
  'if abs(reference_ratio - 1) > EQUAL_TIME_TOLERANCE:' 'if False:'
BREAK_FILE=mcstudy/equal_time.py run "fair: fair runs judged by the previous protocol's rule" '    return fair == {True}' '    return False'
BREAK_FILE=mcstudy/equal_time.py run "fair: the cell's mean ratio, not its median" \
  'own_ratio = float(np.median(ratios))' 'own_ratio = float(np.mean(ratios))'
BREAK_FILE=mcstudy/equal_time.py run "fair: on target counts runs under their target by any amount" \
  'on_target = sum(abs(x - 1) <= EQUAL_TIME_TOLERANCE for x in ratios)' \
  'on_target = sum(x <= 1 + EQUAL_TIME_TOLERANCE for x in ratios)'
BREAK_FILE=mcstudy/equal_time.py run "fair: lr at the last update, the least over runs instead of the largest" \
  '"lr last / peak": f"{100 * max(last):.2f} %"' '"lr last / peak": f"{100 * min(last):.2f} %"'
BREAK_FILE=mcstudy/equal_time.py run "fair: a run without its fields passes silently" \
  'if not isinstance(value, dict) or key not in value:' 'if False:'
BREAK_FILE=mcstudy/equal_time.py run "updates: the steps planned, not the updates that ran" \
  '        ran = ((record.get("telemetry") or {}).get("budget") or {}).get("steps_run")' '        ran = None' \
  tests/test_equal_time.py tests/test_variants.py -k "updates or paragraphs or five_seed"
BREAK_FILE=mcstudy/equal_time.py run "time to target: mean over seeds instead of median" \
  'medians = {m: float(np.median(list(t.values()))) for m, t in per_seed.items()}' \
  'medians = {m: float(np.mean(list(t.values()))) for m, t in per_seed.items()}'
BREAK_FILE=mcstudy/equal_time.py run "time to target: target from the baseline's mean accuracy" \
  'target = float(np.median([r["accuracy"] for r in base.values()])) - drop_pt / 100' \
  'target = float(np.mean([r["accuracy"] for r in base.values()])) - drop_pt / 100'
BREAK_FILE=mcstudy/equal_time.py run "time to target: bootstrap resamples without replacement" \
  'picks = rng.integers(0, len(times), size=(BOOTSTRAP_RESAMPLES, len(times)))' \
  'picks = np.argsort(rng.random((BOOTSTRAP_RESAMPLES, len(times))), axis=1)'
BREAK_FILE=mcstudy/equal_time.py run "time to target: the speed-up's resamples not paired by seed" \
  'theirs = _bootstrap_medians(np.array([ref_times[s] for s in paired]), np.random.default_rng(BOOTSTRAP_SEED))' \
  'theirs = _bootstrap_medians(np.array([ref_times[s] for s in paired]), np.random.default_rng(BOOTSTRAP_SEED + 1))'
BREAK_FILE=mcstudy/equal_time.py run "time to target: a tie counts as faster" \
  'f"{sum(times[s] < ref_times[s] for s in paired)}/{len(paired)}"' \
  'f"{sum(times[s] <= ref_times[s] for s in paired)}/{len(paired)}"'
BREAK_FILE=mcstudy/equal_time.py run "time to target: the last run over budgets instead of the fastest" \
  'per_seed[method][seed] = min(best, math.inf if reached is None else reached)' \
  'per_seed[method][seed] = math.inf if reached is None else reached'
BREAK_FILE=mcstudy/equal_time.py run "the full baseline is not the short schedule's budget 1" \
  '            method, budget = REFERENCE, 1.0' '            budget = 1.0'
BREAK_FILE=mcstudy/equal_time.py run "performance profile: strictly within tau" \
  'hits += bool(math.isfinite(best) and per.get(method, math.inf) <= tau * best)' \
  'hits += bool(math.isfinite(best) and per.get(method, math.inf) < tau * best)'
BREAK_FILE=mcstudy/budget.py run "tuning rule: every method keeps the baseline's lr" \
  'method_lrs[method, budget] = best_lr(grid)' 'method_lrs[method, budget] = lr'
BREAK_FILE=mcstudy/data.py run "test holdout: a plain random draw instead of a stratified one" \
  'held = _stratified_rows(train.labels, rows, np.random.default_rng(seed))' \
  'held = np.random.default_rng(seed).choice(len(train.texts), rows, replace=False)'
BREAK_FILE=mcstudy/equal_time.py run "equal time: a lead bought with more seconds counts" \
  'if verdict in ("better", "tie") and time_ratio > 1 + EQUAL_TIME_SLACK:' 'if False:'
BREAK_FILE=mcstudy/equal_time.py run "equal time: seconds compared with the full baseline's, not the short schedule's" \
  'ratio = float(np.median(seconds) / np.median(ref_seconds)) if seconds and ref_seconds else float("nan")' \
  'ratio = float(np.median(seconds) / base_seconds) if seconds and ref_seconds else float("nan")'
BREAK_FILE=make_readme.py run "equal time: the answer's table picks the best over time too" \
  'timely = others[~others["verdict"].isin(NO_VERDICT)]' 'timely = others'
BREAK_FILE=make_readme.py run "answer: leads over time count every cell over time, behind ones too" \
  'out["leads_over"] = [c for c in out["over"] if _ahead(c)]' 'out["leads_over"] = out["over"]' "${README_TESTS[@]}"
BREAK_FILE=make_readme.py run "answer: the closest is the largest lead, not the least adjusted p" \
  'out["closest"] = min(ahead, key=lambda c: _p_value(c["holm"]), default=None)' \
  'out["closest"] = max(ahead, key=lambda c: float(c["diff"]), default=None)' "${README_TESTS[@]}"
BREAK_FILE=make_readme.py run "answer: the previous protocol's studies stay in the answer beside the fair ones" \
  'return (fair, [s for s in studies if s not in fair]) if fair else (studies, [])' 'return (studies, [])' \
  "${README_TESTS[@]}"
BREAK_FILE=make_readme.py run "answer: the sentence on mclearn counts another method's cells" \
  'return [(c["name"], c["budget"], c["verdict"]) for c in found["cells"] if c["method"] == method]' \
  'return [(c["name"], c["budget"], c["verdict"]) for c in found["cells"]]' "${README_TESTS[@]}"
BREAK_FILE=make_readme.py run "lr table: an unresolved edge is not named" \
  'unresolved = where.str.startswith("edge") & ~bounded' 'unresolved = where == "edge"' "${README_TESTS[@]}"
BREAK_FILE=make_readme.py run "ablation: the 5-seed verdicts in the preset's own family, not the answer's" \
  'families.get(other))' 'None)' "${README_TESTS[@]}"
BREAK_FILE=make_readme.py run "ablation: the 5-seed result read from the previous protocol's study beside a fair one" \
  'other = fair if fair in present else ms.equal_time_study_of(study)' 'other = ms.equal_time_study_of(study)' \
  "${README_TESTS[@]}"
BREAK_FILE=make_readme.py run "answer: the previous protocol's leader counts leads bought with more time" \
  'if cell["verdict"] not in NO_VERDICT and cell["interval"] not in ("", "—")' \
  'if cell["interval"] not in ("", "—")' "${README_TESTS[@]}"
