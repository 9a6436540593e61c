"""Equal-time verdicts: each method against the short schedule at the same share of the full
baseline's seconds, paired over seeds with Holm-adjusted p-values (the headline and the README's
answer), time to target with bootstrap intervals, and the performance profile."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import mclearn_core as core
from mcstudy.runs import is_ablation_study
from mcstudy.tables import (_mean_std, _sample_std, _study_title, _with_summary_defaults, load_runs,
                            read_summary, report_table, study_data, time_to_accuracy)
from mcstudy.train import PROTOCOL, format_budget, portable_path


def headline(results_dir: str | Path = "results", study: str | None = None, method: str = "mclearn",
             time_budget: float | None = None, dataset: str | None = None, label_noise: float = 0.0) -> str:
    """Return markdown: a study's answer in two sentences (`method` against the optimized baseline:
    speed-up and accuracy change) and the mean ± std table they come from, all from
    <results>/summary.csv. `study=None` picks, among studies with both a baseline and `method` run
    (and, with `dataset`, whose runs trained that dataset with `label_noise`: study_data), the
    fair-protocol ones (names ending in FAIR_SUFFIX: the README's answer) if any, of those the ones
    that ran on a GPU if any, and of them the one with the most runs. In a budget study the
    sentences compare the runs at `time_budget` (None: the method's smallest budget), on the test
    split when every compared run has one (else the eval split), and the second sentence ends with
    the strongest simple control: REFERENCE (the full fine-tune cut to the same time) where the
    study has it at that budget, with the paired difference over seeds, its 95 % interval and
    verdict (in a fair-protocol study the answer's Holm-corrected one, _family_verdict; else
    _verdict), else the uniform subset where the study has one."""
    import pandas as pd

    summary = Path(results_dir) / "summary.csv"
    if not summary.exists():
        return "_No results yet: run the notebook (or a sweep) to write `summary.csv`._"
    rows = read_summary(summary)
    if study is None:
        has_both = rows.groupby("study")["method"].agg(lambda names: {"baseline", method} <= set(names))
        chosen = list(has_both[has_both].index)
        if dataset is not None:
            trained = (portable_path(str(dataset)), float(label_noise or 0.0))
            chosen = [name for name in chosen if study_data(results_dir, name) == trained]
        fair = [name for name in chosen if str(name).endswith(FAIR_SUFFIX)]  # the answer's protocol first
        candidates = rows[rows["study"].isin(fair or chosen)]
        if candidates.empty:
            on = f" on `{portable_path(str(dataset))}`" + (f" with label_noise={label_noise:g}" if label_noise else "") \
                if dataset is not None else ""
            return f"_No study in `{portable_path(str(summary))}` has both baseline and {method} runs{on} yet._"
        on_gpu = candidates[~candidates["device"].str.startswith("cpu")]
        counts = (on_gpu if len(on_gpu) else candidates).groupby("study").size()
        study = counts[counts == counts.max()].index.sort_values()[0]
    group = rows[rows["study"] == study]
    if group.empty or not {"baseline", method} <= set(group["method"]):
        raise ValueError(f"Study {study!r} in {summary} lacks a baseline or a {method!r} run. Pass another "
                         f"study= (one of {sorted(set(rows['study']))}) or run the missing methods.")
    device = group["device"].mode()[0]  # one device: speed-ups only compare runs of the same hardware
    group = group[group["device"] == device]
    group = _with_summary_defaults(group)
    budgets = group["time_budget"]
    budget = min(budgets[group["method"] == method]) if time_budget is None else time_budget
    compared = group[((group["method"] == "baseline") & (budgets == 0)) | (budgets == budget)].copy()
    tested = "test_accuracy" in compared and bool(compared["test_accuracy"].notna().all())
    if tested:  # the split no choice was made on, as the equal-time tables report
        compared["accuracy"] = compared["test_accuracy"]
    mean = compared.groupby("method")[["train_seconds", "accuracy"]].mean()
    seconds, base_seconds = mean.loc[method, "train_seconds"], mean.loc["baseline", "train_seconds"]
    accuracy, base_accuracy = mean.loc[method, "accuracy"] * 100, mean.loc["baseline", "accuracy"] * 100
    change, faster = accuracy - base_accuracy, seconds < base_seconds
    keeps = change >= -0.5
    at = f" at {format_budget(budget)} of the baseline's time" if budget else ""
    first = (f"In study `{study}` ({device}, {group[group['method'] == method]['seed'].nunique()} seeds{at}), "
             f"`{method}` trained in {seconds:.1f} s against the optimized baseline's {base_seconds:.1f} s "
             f"({base_seconds / seconds:.2f}x) and reached {accuracy:.2f} % {'test ' if tested else ''}accuracy "
             f"against {base_accuracy:.2f} % "
             f"({change:+.2f} points).")
    verdict = "keeps its accuracy (within 0.5 points)" if keeps else f"loses {-change:.2f} points of accuracy"
    second = (f"So here it is {'faster' if faster else 'slower'} than the full fine-tune "
              f"{'and' if faster == keeps else 'but'} {verdict}")
    if budget and REFERENCE in mean.index:
        own, ref = (compared[compared["method"] == m].set_index("seed") for m in (method, REFERENCE))
        diff = paired_difference((own["accuracy"] * 100).to_dict(), (ref["accuracy"] * 100).to_dict())
        ratio = float(own["train_seconds"].median() / ref["train_seconds"].median())
        family = _family_verdict(results_dir, rows, study, method, budget)
        found = (f"{diff['mean']:+.2f} points [{diff['lo']:+.2f}, {diff['hi']:+.2f}] paired over {diff['n']} seeds: "
                 f"{family or _verdict(diff, ratio)}" if math.isfinite(diff["lo"]) else
                 f"{diff['mean']:+.2f} points on one seed (too few for an interval)" if diff["n"] else
                 "not comparable (no seed in common)")
        second += (f"; against `{REFERENCE}`, the full fine-tune cut to the same time "
                   f"({mean.loc[REFERENCE, 'accuracy'] * 100:.2f} % in {mean.loc[REFERENCE, 'train_seconds']:.1f} s), "
                   f"it is {found}")
    elif "uniform" in mean.index:
        second += (f"; the uniform-subset control reached {mean.loc['uniform', 'accuracy'] * 100:.2f} % in "
                   f"{mean.loc['uniform', 'train_seconds']:.1f} s")
    table = report_table(group).drop(columns=["study"]).to_markdown(index=False, disable_numparse=True)
    return (f"{first} {second}.\n\nMean ± std over seeds, from `{portable_path(str(summary))}` "
            f"(study `{study}`):\n\n{table}\n")


def equal_time_study_names(rows) -> set[str]:
    """Return the equal-time studies among summary rows: those that ran the REFERENCE, except its
    learning-rate sweeps ("-lr") and the one-seed ablation studies (names ending in ABLATION_SUFFIX:
    they ran it as the ablation's control, on validation accuracy)."""
    return {str(s) for s in set(rows.loc[rows["method"] == REFERENCE, "study"])
            if not str(s).endswith("-lr") and not is_ablation_study(s)}


def study_set(study: str) -> str:
    """Return the dataset and model of a GPU study's name <dataset>-<model>-<gpu>[-fair]
    ("banking77-mpnet" of "banking77-mpnet-h100-fair" and of "banking77-mpnet-h200")."""
    return study.removesuffix(FAIR_SUFFIX).rsplit("-", 1)[0]


def fair_study_names(studies: Sequence[str] | set[str]) -> list[str]:
    """Return the fair-protocol studies among equal-time `studies` (equal_time_study_names): those
    ending in FAIR_SUFFIX, sorted. Raise ValueError (one line) when two are of one dataset and model
    on different GPUs (names <dataset>-<model>-<gpu>-fair that differ in <gpu> only): the answer's
    Holm family and tallies count each dataset once, so the superseded study has to go."""
    names = sorted(s for s in studies if s.endswith(FAIR_SUFFIX))
    by_set: dict[str, list[str]] = {}
    for name in names:
        by_set.setdefault(study_set(name), []).append(name)
    twice = [group for group in by_set.values() if len(group) > 1]
    if twice:
        both = ", ".join(twice[0])
        raise ValueError(f"results/runs holds fair-protocol studies of one dataset and model on two GPUs ({both}): "
                         f"the answer counts each dataset once; delete the superseded study's run folders "
                         f"(results/runs/<study> and <study>-lr) and run make_readme.py again")
    return names


def _family_verdict(results_dir: str | Path, rows, study: str, method: str, budget: float) -> str | None:
    """Return the verdict of `method` against REFERENCE at `budget` in a fair-protocol `study` as the
    README's answer gives it: the Holm-adjusted p over every comparison of the fair-protocol studies
    of <results>/summary.csv (equal_time_tables) and the verdict read off it, "Holm p 0.279 over the
    24 comparisons of the fair studies: tie"; None for a study of the previous protocol or a cell
    without a test."""
    if not str(study).endswith(FAIR_SUFFIX):
        return None
    names = fair_study_names(equal_time_study_names(rows))
    tables = equal_time_tables({name: load_runs(results_dir, name) for name in names})
    table = tables[study]
    cell = table[(table["method"] == method) & (table["budget"] == format_budget(budget))]
    if cell.empty or cell.iloc[0]["Holm p"] in ("", "—"):
        return None
    return (f"Holm p {cell.iloc[0]['Holm p']} over the {table.attrs['family']} comparisons of the fair studies: "
            f"{cell.iloc[0]['verdict']}")


# --- equal time against the short schedule, and time to target (AlgoPerf style) -------------------
REFERENCE = "short-schedule"  # every budgeted method is compared with it; the full baseline is its budget 1
FAIR_SUFFIX = "-fair"  # a fair-protocol study's name ends so ("banking77-mpnet-h200-fair"; its sweep "-fair-lr")
# Fair protocol: every budgeted run trains until its own clock reaches its target seconds (time_budget
# x the reference seconds); it is on target when its train seconds over that target
# (record["time_target"]["ratio"]) lie within 1 +- this share. A cell whose median ratio is above
# 1 + EQUAL_TIME_TOLERANCE gets no verdict ("over time"), nor does a comparison whose short-schedule
# cell lies outside 1 +- EQUAL_TIME_TOLERANCE ("short-schedule off target").
EQUAL_TIME_TOLERANCE = 0.03
# Previous protocol (runs without record["protocol"]): equal time means equal seconds: a method whose
# median train seconds at a budget exceed the short schedule's there by more than this share is not at
# equal time, and its lead does not count ("over time"; InfoBatch on a one-epoch set prunes nothing
# and takes the full baseline's time).
EQUAL_TIME_SLACK = 0.05
# The verdicts' family-wise error rate: a comparison is "better" or "worse" only where its Holm-adjusted
# p-value (Holm 1979, over every comparison of the family) is below it; the simultaneous intervals are
# Bonferroni's at 1 - VERDICT_ALPHA / m for a family of m comparisons.
VERDICT_ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10_000  # resamples of the seeds for time to target's intervals
BOOTSTRAP_SEED = 0  # the bootstrap's generator seed: the same runs give the same intervals


def final_accuracy(record: dict[str, Any]) -> float:
    """Return the accuracy a run is reported with: on the test split when it has one (no choice
    was made on it), else on the eval split; NaN for a diverged run."""
    test = record.get("test_accuracy")
    return float(test) if test is not None else float(record["accuracy"])


def is_fair(record: dict[str, Any]) -> bool:
    """Return True for a run made under the fair protocol (record["protocol"] == PROTOCOL); a run
    without the field is of the previous protocol."""
    return record.get("protocol") == PROTOCOL


def paired_difference(method: dict[int, float], reference: dict[int, float],
                      confidence: float = 0.95) -> dict[str, float]:
    """Return the paired difference method - reference over the seeds both have (finite values):
    n, mean, the two-sided `confidence` Student-t interval [lo, hi] of its mean,
    mean +- t(n-1) sd / sqrt(n), and p, the two-sided p-value of the paired t-test of mean 0,
    2 P(T(n-1) > |mean| / (sd / sqrt(n))) (0 when sd is 0 and the mean is not, 1 when both are);
    NaN bounds and p for fewer than two pairs."""
    from scipy import stats

    seeds = sorted(k for k in set(method) & set(reference)
                   if math.isfinite(method[k]) and math.isfinite(reference[k]))
    diffs = np.array([method[k] - reference[k] for k in seeds], dtype=float)
    n = len(diffs)
    mean = float(diffs.mean()) if n else float("nan")
    if n < 2:
        return {"n": n, "mean": mean, "lo": float("nan"), "hi": float("nan"), "p": float("nan")}
    se = float(diffs.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * se)
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1)) if se > 0 else float(mean == 0)
    return {"n": n, "mean": mean, "lo": mean - half, "hi": mean + half, "p": p}


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Return Holm's step-down adjusted p-values, in the order given: with the m finite p-values
    sorted p(1) <= ... <= p(m), p(i) becomes max over j <= i of min(1, (m - j + 1) p(j)); a NaN
    (no test) stays NaN and does not count in m."""
    order = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    m, out, running = len(order), [float("nan")] * len(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def holm_verdict(diff: dict[str, float], adjusted_p: float) -> str:
    """Return "better" / "worse" (the sign of the mean difference) where the Holm-adjusted p-value
    is below VERDICT_ALPHA, else "tie"; "—" without a test (fewer than two pairs)."""
    if not math.isfinite(adjusted_p):
        return "—"
    if adjusted_p >= VERDICT_ALPHA:
        return "tie"
    return "better" if diff["mean"] > 0 else "worse"


def _verdict(diff: dict[str, float], time_ratio: float = 1.0, adjusted_p: float | None = None) -> str:
    """Return the verdict of a comparison under the previous protocol's time rule: holm_verdict
    (with `adjusted_p`; None: the comparison's own p, a family of one), then "over time" in place of
    "better" or "tie" when the method took more than 1 + EQUAL_TIME_SLACK times the short
    schedule's seconds (`time_ratio`): it was not at equal time. "worse" stays: behind with more
    time is still behind."""
    verdict = holm_verdict(diff, diff["p"] if adjusted_p is None else adjusted_p)
    if verdict in ("better", "tie") and time_ratio > 1 + EQUAL_TIME_SLACK:
        return "over time"
    return verdict


def _fair_verdict(verdict: str, own_ratio: float, reference_ratio: float) -> str:
    """Return `verdict` under the fair protocol's time rule: "over time" when the method's median
    train seconds over its target exceed 1 + EQUAL_TIME_TOLERANCE, "short-schedule off target"
    when the short schedule's lie outside 1 +- EQUAL_TIME_TOLERANCE (no verdict either way)."""
    if own_ratio > 1 + EQUAL_TIME_TOLERANCE:
        return "over time"
    if abs(reference_ratio - 1) > EQUAL_TIME_TOLERANCE:
        return f"{REFERENCE} off target"
    return verdict


def _by_budget(records: Sequence[dict[str, Any]]) -> dict[tuple[str, float], dict[int, dict[str, Any]]]:
    """Return {(method, budget): {seed: record}}; the full baseline is the reference's budget 1."""
    out: dict[tuple[str, float], dict[int, dict[str, Any]]] = {}
    for record in records:
        budget = float(record.get("time_budget") or 0.0)
        method = record["method"]
        if method == "baseline" and not budget:
            method, budget = REFERENCE, 1.0
        out.setdefault((method, budget), {})[int(record["seed"])] = record
    return out


def _cell_is_fair(runs: dict[int, dict[str, Any]], where: str) -> bool:
    """Return whether a cell's runs are of the fair protocol; raise ValueError naming the cell
    (`where`) when it mixes fair and previous-protocol runs."""
    fair = {is_fair(r) for r in runs.values()}
    if len(fair) > 1:
        raise ValueError(f"{where} mixes fair-protocol runs (record['protocol'] == {PROTOCOL!r}) with runs "
                         f"of the previous protocol: keep each protocol's runs in a study of its own")
    return fair == {True}


def _field(record: dict[str, Any], *keys: str) -> Any:
    """Return record[keys[0]][keys[1]]...; raise ValueError naming the run and the key where a
    fair-protocol run lacks it."""
    value: Any = record
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"run {record.get('study')}/{record.get('run_label')} seed {record.get('seed')} is "
                             f"marked protocol {PROTOCOL!r} but lacks {'.'.join(keys[:depth + 1])}: "
                             f"re-run it with the code that writes the fair protocol's fields")
        value = value[key]
    return value


def updates_run(record: dict[str, Any]) -> int | None:
    """Return the optimizer updates a run made: record["updates"] (fair protocol), else the steps
    MC-Learn's budget let run (telemetry.budget.steps_run: a re-plan may end it before its planned
    `steps`), else its steps; None for a record with none of them."""
    ran = record.get("updates")
    if ran is None:
        ran = ((record.get("telemetry") or {}).get("budget") or {}).get("steps_run")
    if ran is None:
        ran = record.get("steps")
    return None if ran is None else int(ran)


def time_ratio(record: dict[str, Any]) -> float:
    """Return a clock-driven run's train seconds over its target (record["time_target"]["ratio"])."""
    return float(_field(record, "time_target", "ratio"))


def scoring_share(record: dict[str, Any]) -> float | None:
    """Return the share of a run's train seconds its scoring took (MC-Learn's
    telemetry.measured_seconds.score), None for a run that records none."""
    score = ((record.get("telemetry") or {}).get("measured_seconds") or {}).get("score")
    return None if score is None or not record.get("train_seconds") else float(score) / float(record["train_seconds"])


def fair_cell_columns(runs: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Return what a cell of fair-protocol runs did, as strings: "updates" (mean of the updates that
    ran), "lr last / peak" (the largest over its runs of the lr at the last update over the peak
    lr, %), "Σ lr / peak" (mean over runs of the sum over updates of lr / peak), "warm-up+capture"
    (mean share of train seconds that eager warm-up steps and graph captures took,
    startup_seconds.share, %) and "scoring" (mean share of train seconds MC-Learn's scoring took, %;
    "—" for a method without scoring); a value a run recorded as None (no update, no seconds) is
    left out, "—" where none has one."""
    def known(*keys: str) -> list[float]:  # a run without updates has no last lr, one without seconds no share
        return [float(v) for v in (_field(r, *keys) for r in runs) if v is not None]

    last, startup = known("lr_schedule", "last_share"), known("startup_seconds", "share")
    scoring = [s for s in (scoring_share(r) for r in runs) if s is not None]
    return {"updates": f"{np.mean(known('updates')):.1f}",
            "lr last / peak": f"{100 * max(last):.2f} %" if last else "—",
            "Σ lr / peak": f"{np.mean(known('lr_schedule', 'sum_share')):.1f}",
            "warm-up+capture": f"{100 * np.mean(startup):.1f} %" if startup else "—",
            "scoring": f"{100 * np.mean(scoring):.1f} %" if scoring else "—"}


def _p(value: float) -> str:
    """Return a p-value as the tables write it: "<0.001", three decimals, or "—" (no test)."""
    return "—" if not math.isfinite(value) else "<0.001" if value < 0.001 else f"{value:.3f}"


def _interval(diff: dict[str, float]) -> str:
    return f"[{diff['lo']:+.2f}, {diff['hi']:+.2f}]" if math.isfinite(diff["lo"]) else "—"


EQUAL_TIME_COLUMNS = ["budget", "method", "seeds", "accuracy (%)", "s / full", "s / short", "vs short-schedule (pt)",
                      "95% interval", "simultaneous interval", "p", "Holm p", "verdict"]
FAIR_COLUMNS = ["s / target", "on target", "updates", "lr last / peak", "Σ lr / peak", "warm-up+capture", "scoring"]


def equal_time_tables(studies: dict[str, Sequence[dict[str, Any]]]):
    """Return {study: its equal-time table}, one DataFrame per study comparing every budgeted method
    with the short schedule at the same budget, one row per (budget, method): seeds, accuracy (%)
    mean ± std (final_accuracy: test split when there is one), measured seconds over the full
    baseline's median and over the short schedule's at that budget (medians), and the paired
    difference against short-schedule's runs of the same seeds (points) with its 95 % t-interval,
    its Bonferroni-simultaneous interval (1 - VERDICT_ALPHA / m), its p-value, Holm-adjusted p and
    verdict. The family is every comparison with a test in all the studies given (m of them), so
    that the verdicts hold together at VERDICT_ALPHA: "better"/"worse" only where the Holm-adjusted
    p is below it (holm_verdict), then the protocol's time rule: for fair-protocol cells (is_fair)
    _fair_verdict, with the FAIR_COLUMNS "s / target" (median train seconds over the runs'
    targets), "on target" (runs within 1 +- EQUAL_TIME_TOLERANCE) and fair_cell_columns; else
    _verdict's "over time" (over 1 + EQUAL_TIME_SLACK times the short schedule's seconds, not
    behind). The short schedule's own rows come first at each budget; budget 1 is the full
    baseline. .attrs: "family" (m) and "alpha"."""
    import pandas as pd

    tables: dict[str, tuple[list[dict[str, Any]], bool]] = {}
    tests: list[dict[str, Any]] = []
    for study, records in studies.items():
        groups, name = _by_budget(records), study or "the study"
        base = groups.get((REFERENCE, 1.0), {})
        base_seconds = float(np.median([r["train_seconds"] for r in base.values()])) if base else float("nan")
        rows, fair_study = [], False
        for (method, budget), runs in sorted(groups.items(),
                                             key=lambda kv: (kv[0][1], kv[0][0] != REFERENCE, kv[0][0])):
            if not budget:
                continue  # no wall-clock knob (VCAS, mclearn-paper): no budget to compare at
            fair = _cell_is_fair(runs, f"{name}: {method} at {format_budget(budget)}")
            fair_study |= fair
            acc = {k: final_accuracy(r) * 100 for k, r in runs.items()}
            finite = [v for v in acc.values() if math.isfinite(v)]
            seconds = [r["train_seconds"] for r in runs.values() if math.isfinite(r["train_seconds"])]
            full = method == REFERENCE and budget == 1.0
            row = {"budget": "1 (full)" if full else format_budget(budget), "method": method, "seeds": len(runs),
                   "accuracy (%)": _mean_std(pd.Series(finite)) if finite else "diverged",
                   "s / full": f"{np.median(seconds) / base_seconds:.2f}" if seconds and base else "—",
                   **{column: "" for column in EQUAL_TIME_COLUMNS[5:] + FAIR_COLUMNS}}
            own_ratio = float("nan")
            if fair:
                row.update(fair_cell_columns(list(runs.values())))
                if not full:
                    ratios = [time_ratio(r) for r in runs.values()]
                    own_ratio = float(np.median(ratios))
                    on_target = sum(abs(x - 1) <= EQUAL_TIME_TOLERANCE for x in ratios)
                    row.update({"s / target": f"{own_ratio:.3f}", "on target": f"{on_target}/{len(ratios)}"})
            reference = groups.get((REFERENCE, budget))
            if method != REFERENCE and reference:
                if _cell_is_fair(reference, f"{name}: {REFERENCE} at {format_budget(budget)}") != fair:
                    raise ValueError(f"{name}: {method} at {format_budget(budget)} and {REFERENCE} there are of "
                                     f"different protocols: compare the runs of one protocol")
                ref_acc = {k: final_accuracy(r) * 100 for k, r in reference.items()}
                diff = paired_difference(acc, ref_acc)
                ref_seconds = [r["train_seconds"] for r in reference.values() if math.isfinite(r["train_seconds"])]
                ratio = float(np.median(seconds) / np.median(ref_seconds)) if seconds and ref_seconds else float("nan")
                row.update({"s / short": f"{ratio:.2f}" if math.isfinite(ratio) else "—",
                            "vs short-schedule (pt)": f"{diff['mean']:+.2f}" if diff["n"] else "—",
                            "95% interval": _interval(diff)})
                tests.append({"row": row, "acc": acc, "ref_acc": ref_acc, "diff": diff, "fair": fair,
                              "ratio": ratio if math.isfinite(ratio) else 1.0, "own_ratio": own_ratio,
                              "ref_ratio": float(np.median([time_ratio(r) for r in reference.values()]))
                              if fair else float("nan")})
            rows.append(row)
        tables[study] = (rows, fair_study)
    adjusted = holm_adjust([t["diff"]["p"] for t in tests])
    m = sum(math.isfinite(p) for p in adjusted)
    for test, p in zip(tests, adjusted):
        diff = test["diff"]
        verdict = (_fair_verdict(holm_verdict(diff, p), test["own_ratio"], test["ref_ratio"]) if test["fair"]
                   else _verdict(diff, test["ratio"], p))
        wide = paired_difference(test["acc"], test["ref_acc"], 1 - VERDICT_ALPHA / m) if m else diff
        test["row"].update({"simultaneous interval": _interval(wide), "p": _p(diff["p"]), "Holm p": _p(p),
                            "verdict": verdict})
    out = {}
    for study, (rows, fair_study) in tables.items():
        columns = EQUAL_TIME_COLUMNS + (FAIR_COLUMNS if fair_study else [])
        table = pd.DataFrame([{c: row[c] for c in columns} for row in rows], columns=columns)
        table.attrs.update(family=m, alpha=VERDICT_ALPHA)
        out[study] = table
    return out


def equal_time_table(records: Sequence[dict[str, Any]]):
    """Return one study's equal-time table (equal_time_tables of `records` alone: its comparisons
    are the Holm family)."""
    return equal_time_tables({"": records})[""]


def _bootstrap_medians(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return BOOTSTRAP_RESAMPLES medians of `times` resampled with replacement (inf: never)."""
    picks = rng.integers(0, len(times), size=(BOOTSTRAP_RESAMPLES, len(times)))
    return np.median(times[picks], axis=1)


def _quantiles(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Return the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of `values` as order
    statistics (no interpolation, so an interval may end at inf)."""
    lo, hi = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2], method="inverted_cdf")
    return float(lo), float(hi)


def _seconds_or_never(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "never"


def time_to_target(records: Sequence[dict[str, Any]], drop_pt: float = 1.0):
    """Return a DataFrame of each method's time to target (AlgoPerf style) in one study: target =
    the full baseline's median final eval accuracy - `drop_pt` points; a run's time is its train
    seconds (evaluation excluded) at its first evaluation at or above the target; a seed's time is
    the least over that method's runs at every budget (the short schedule's include the full
    baseline, its budget 1); the method's is the median over seeds, a seed that never reached it
    counting as never (inf). Columns: method, target (%), seconds ("never" when the median is
    never), "95% bootstrap (s)" (the percentile interval of the median over BOOTSTRAP_RESAMPLES
    resamples of the method's seeds with replacement, generator seed BOOTSTRAP_SEED), seeds reached
    ("k/n"), speed-up vs short-schedule (its seconds over the method's), "speed-up 95% bootstrap"
    (the same resamples of the seeds both have, paired: short-schedule's median over the method's,
    0 where the method's is never, inf where only short-schedule's is; "—" for a method that never
    reached it on those seeds), "seeds faster" (of the seeds both have, those where the method reached the target
    sooner than short-schedule; "—" on its own row) and median_seconds (a float)."""
    import pandas as pd

    groups = _by_budget(records)
    base = groups.get((REFERENCE, 1.0), {})
    if not base:
        raise ValueError("time_to_target needs the full baseline's runs (method 'baseline') for its target.")
    target = float(np.median([r["accuracy"] for r in base.values()])) - drop_pt / 100
    per_seed: dict[str, dict[int, float]] = {}
    for (method, budget), runs in groups.items():
        for seed, record in runs.items():
            reached = time_to_accuracy(record, target) if record.get("eval_curve") else None
            best = per_seed.setdefault(method, {}).get(seed, math.inf)
            per_seed[method][seed] = min(best, math.inf if reached is None else reached)
    medians = {m: float(np.median(list(t.values()))) for m, t in per_seed.items()}
    ref = medians.get(REFERENCE, math.nan)
    ref_times = per_seed.get(REFERENCE, {})
    out = []
    for method in sorted(medians, key=lambda m: (m != REFERENCE, m)):
        times, median = per_seed[method], medians[method]
        lo, hi = _quantiles(_bootstrap_medians(np.array(list(times.values())), np.random.default_rng(BOOTSTRAP_SEED)))
        paired = sorted(set(times) & set(ref_times))
        speed = "—"
        if paired and any(math.isfinite(times[s]) for s in paired):
            own = _bootstrap_medians(np.array([times[s] for s in paired]), np.random.default_rng(BOOTSTRAP_SEED))
            theirs = _bootstrap_medians(np.array([ref_times[s] for s in paired]), np.random.default_rng(BOOTSTRAP_SEED))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = np.where(np.isinf(own), 0.0, theirs / own)
            s_lo, s_hi = _quantiles(ratios)
            speed = f"[{s_lo:.2f}x, {s_hi:.2f}x]" if math.isfinite(s_hi) else f"[{s_lo:.2f}x, inf]"
        out.append({"method": method, "target (%)": round(target * 100, 2),
                    "seconds": _seconds_or_never(median),
                    "95% bootstrap (s)": f"[{_seconds_or_never(lo)}, {_seconds_or_never(hi)}]",
                    "seeds reached": f"{sum(math.isfinite(t) for t in times.values())}/{len(times)}",
                    "speed-up vs short-schedule": (f"{ref / median:.2f}x" if math.isfinite(median) and math.isfinite(ref)
                                                   else "—"),
                    "speed-up 95% bootstrap": speed,
                    "seeds faster": f"{sum(times[s] < ref_times[s] for s in paired)}/{len(paired)}"
                    if paired and method != REFERENCE else "—",
                    "median_seconds": median})
    return pd.DataFrame(out)


def performance_profile(times: dict[str, dict[str, float]], taus: Sequence[float]):
    """Return a DataFrame (rows: methods, columns: tau) of the AlgoPerf performance profile: the
    share of studies on which a method's time to target is within tau times the fastest method's
    time on that study. `times` maps study -> method -> seconds (inf: never); a study where no
    method reached the target counts against every method."""
    import pandas as pd

    methods = sorted({m for per in times.values() for m in per}, key=lambda m: (m != REFERENCE, m))
    rows = {}
    for method in methods:
        shares = []
        for tau in taus:
            hits = 0
            for per in times.values():
                best = min(per.values())
                hits += bool(math.isfinite(best) and per.get(method, math.inf) <= tau * best)
            shares.append(hits / len(times))
        rows[method] = shares
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(taus))


def plot_performance_profile(profile, path: str | Path | None = None):
    """Return a figure of a performance profile (performance_profile): one step line per method,
    each lifted by a small offset so that methods with equal profiles stay apart."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    taus = [float(t) for t in profile.columns]
    for k, (method, shares) in enumerate(profile.iterrows()):
        lift = 0.008 * k  # a small offset per method, so that equal lines stay visible
        ax.step(taus, np.asarray(shares, dtype=float) + lift, where="post", color="k" if method == REFERENCE else f"C{k}",
                lw=2.2 if method == REFERENCE else 1.4, label=method)
    ax.set_xlabel("tau: time to target within tau x the fastest method's")
    ax.set_ylabel("share of studies")
    ax.set_ylim(-0.03, 1.1)
    ax.set_title("performance profile (time to target, AlgoPerf style)", fontsize=10)
    ax.legend(fontsize=8)
    return core.figure_out(fig, path)


def plot_equal_time(records: Sequence[dict[str, Any]], path: str | Path | None = None):
    """Return a figure of final accuracy (final_accuracy, %) against train seconds: the short
    schedule's line through its budgets and the full baseline (black), every other budgeted
    method at the mean ± std over seeds of each budget."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups = _by_budget(records)
    methods = sorted({m for m, b in groups if b}, key=lambda m: (m != REFERENCE, m))
    for k, method in enumerate(methods):
        points = []
        for (m, budget), runs in sorted(groups.items(), key=lambda kv: kv[0][1]):
            if m != method or not budget:
                continue
            acc = [final_accuracy(r) * 100 for r in runs.values() if math.isfinite(final_accuracy(r))]
            secs = [r["train_seconds"] for r in runs.values() if math.isfinite(r["train_seconds"])]
            if acc:
                points.append((np.mean(secs), np.mean(acc), _sample_std(acc)))
        if not points:
            continue
        x, y, err = map(np.array, zip(*points))
        reference = method == REFERENCE
        ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=2, lw=2.2 if reference else 1,
                    ls="-" if reference else ":", color="k" if reference else f"C{k}", label=method)
    ax.set_xlabel("training seconds (evaluation excluded)")
    ax.set_ylabel("accuracy (%)" + (" on test" if records and records[0].get("test_accuracy") is not None else ""))
    ax.set_title(f"equal time: {_study_title(records)}", fontsize=10)
    ax.legend(fontsize=8)
    return core.figure_out(fig, path)
