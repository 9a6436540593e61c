"""The study's tables and plots: the run files read back (load_runs), summary.csv and the report
table, the learning-rate sweep, the comparison table, time-to-accuracy and Pareto plots, and the
estimator study (bias and variance of MC-Learn's estimators against the full probability)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import mclearn_core as core
import mclearn_paper as paper
from mcstudy.budget import record_lr, best_lr
from mcstudy.runs import (OLD_RUN_FILE_SUFFIX, RUN_FILE_NAME, RUN_FILE_SUFFIX, RUN_READ_ERRORS, RunFileError,
                          check_run_file, old_run_file_error, read_run)
from mcstudy.train import atomic_target, format_budget, portable_path
from mcstudy.methods import NO_WALL_CLOCK_KNOB


# --- the summary: summary.csv and the report table ------------------------------------------------
def load_runs(results_dir: str | Path, study: str | None = None, unreadable: str = "refuse") -> list[dict[str, Any]]:
    """Return every run record under <results>/runs (one study, or all), each checked to be the run
    its path names (check_run_file: RunFileError otherwise). A file that does not read as JSON
    (truncated, say) raises RunFileError naming it; with unreadable="skip" it is left where it is,
    named in a warning and not returned (a sweep of its study sets it aside and redoes its run). A
    run file in the old format (plain JSON) raises old_run_file_error; with unreadable="skip" it is
    left out with that error as a warning; any other .json raises RunFileError (check_run_file).
    Records of the previous protocol (no identity) are returned as they are: tables read them."""
    root = Path(results_dir) / "runs"
    folders = f"{study}/" if study else "*/"
    for path in sorted(root.glob(f"{folders}*{OLD_RUN_FILE_SUFFIX}")):  # a run file of the old format, or none
        if not RUN_FILE_NAME.fullmatch(path.name + ".gz"):
            check_run_file(path, None)  # raises: its name is not a run file's
        if unreadable != "skip":
            raise old_run_file_error(path)
        print(f"warning: {old_run_file_error(path)} (left out of the summary)", file=sys.stderr, flush=True)
    records = []
    for path in sorted(root.glob(f"{folders}*{RUN_FILE_SUFFIX}")):
        try:
            record = read_run(path)
        except RUN_READ_ERRORS as err:
            problem = f"{type(err).__name__}: {err}"
            if unreadable != "skip":
                raise RunFileError(f"{path} is not a readable run file ({problem}): restore it (git checkout "
                                        f"-- {path}), or delete it and run its study's sweep again, which retrains it"
                                        ) from None
            print(f"warning: {path} is not a readable run file ({problem}): left out of the summary; a sweep of its "
                  f"study sets it aside and retrains its run", file=sys.stderr, flush=True)
            continue
        check_run_file(path, record)
        records.append(record)
    return records


SUMMARY_COLUMNS = ["study", "method", "seed", "device", "train_seconds", "accuracy", "examples_backward",
                   "examples_scored", "time_budget", "graphed", "test_accuracy", "diverged"]


def summary_row(record: dict[str, Any]) -> dict[str, Any]:
    """Return the SUMMARY_COLUMNS of a run record, with defaults for files written before a column
    existed: time_budget 0.0 (none), graphed from the telemetry (False when it says nothing),
    test_accuracy None, examples_scored 0."""
    row = {c: record.get(c) for c in SUMMARY_COLUMNS}
    row["examples_scored"] = row["examples_scored"] or 0
    row["time_budget"] = float(record.get("time_budget") or 0.0)
    row["graphed"] = bool(record["graphed"]) if record.get("graphed") is not None else _telemetry_graphed(record)
    row["diverged"] = bool(record.get("diverged"))
    return row


def _telemetry_graphed(record: dict[str, Any]) -> bool:
    """Return whether an old run file's telemetry says its update was replayed as CUDA graphs:
    its "graphed" flag, or a nonzero "cuda_graphs" count (the baseline family); False otherwise."""
    telemetry = record.get("telemetry") or {}
    return bool(telemetry.get("graphed") or telemetry.get("cuda_graphs"))


def summary_rows(results_dir: str | Path = "results", unreadable: str = "skip"):
    """Return one row per run under <results>/runs (a DataFrame, columns SUMMARY_COLUMNS, sorted by
    study, method, budget and seed); `unreadable` as load_runs takes it."""
    return summary_frame(load_runs(results_dir, unreadable=unreadable))


def summary_frame(records: Sequence[dict[str, Any]]):
    """Return one row per run record (a DataFrame, columns SUMMARY_COLUMNS, sorted by study,
    method, budget and seed): summary_rows of records already read."""
    import pandas as pd

    rows = pd.DataFrame([summary_row(r) for r in records], columns=SUMMARY_COLUMNS)
    return rows.sort_values(["study", "method", "time_budget", "seed"])


def write_summary(results_dir: str | Path, rows) -> Path:
    """Write summary rows (summary_rows) to <results>/summary.csv atomically; return its path."""
    out = Path(results_dir) / "summary.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(out) as tmp:
        rows.to_csv(tmp, index=False)
    return out


def summarize(results_dir: str | Path = "results", study: str | None = None, show: bool = True):
    """Write <results>/summary.csv (one row per run, columns SUMMARY_COLUMNS; an unreadable run file
    is left out with a warning, see load_runs) and return the report table (a DataFrame, see
    `report_table`) of `study` (or every study)."""
    rows = summary_rows(results_dir)
    write_summary(results_dir, rows)
    table = report_table(rows if study is None else rows[rows["study"] == study])
    if show:
        print(table.to_string(index=False))
    return table


def read_summary(path: str | Path) -> Any:
    """Return the rows of a summary.csv (a DataFrame)."""
    import pandas as pd

    return pd.read_csv(path)


def _with_summary_defaults(rows) -> Any:
    """Return a copy of summary rows (a DataFrame) with every SUMMARY_COLUMNS column, filling the
    ones an old summary.csv lacks or leaves empty: time_budget 0.0, graphed False, test_accuracy
    NaN, examples_scored 0."""
    import pandas as pd

    rows = rows.copy()
    for column in SUMMARY_COLUMNS:
        if column not in rows:
            rows[column] = np.nan
    rows["time_budget"] = rows["time_budget"].astype(float).fillna(0.0)
    for flag in ("graphed", "diverged"):  # True/False as written by pandas, or empty in an old file
        rows[flag] = rows[flag].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0", "yes"))
    rows["test_accuracy"] = pd.to_numeric(rows["test_accuracy"], errors="coerce").astype(float)
    rows["examples_scored"] = rows["examples_scored"].fillna(0)
    return rows


def report_table(rows) -> Any:
    """Return the report table (a DataFrame), one row per (study, device, method, time_budget) of
    summary rows (SUMMARY_COLUMNS; columns an old summary.csv lacks get `_with_summary_defaults`).

    Columns: budget ("—" none, "1/3", "1/2", else "0.25"), seeds, accuracy (%) as mean ± std over
    seeds, test accuracy (%) likewise (only when some run has one), train seconds as
    "median [min–max]", seconds / baseline (median over the baseline's median, same study and
    device; the baseline is method "baseline" without a budget), reaches budget ("yes" when the
    median is within 5 % of budget × baseline median, else "no (r)" with r = median over that target;
    "—" without a budget; "no wall-clock knob" for NO_WALL_CLOCK_KNOB methods in a budget study), speed-up vs baseline (baseline median over median), accuracy change (pt)
    against the baseline's mean, examples seen (backward) and scored (forward only) as means, and
    graphed (yes, no or mixed over seeds). Rows: per study and device, the baseline first, then by
    budget, then by method.
    """
    import pandas as pd

    rows = _with_summary_defaults(rows)
    show_test = bool(rows["test_accuracy"].notna().any())
    out = []
    for (study, device), group in rows.groupby(["study", "device"], sort=False, dropna=False):
        base = group[(group["method"] == "baseline") & (group["time_budget"] == 0)]
        base_seconds = base["train_seconds"].median() if len(base) else float("nan")
        base_acc = base["accuracy"].mean() if len(base) else float("nan")
        budget_study = bool((group["time_budget"] > 0).any())
        for (method, budget), all_runs in _report_groups(group):
            runs = all_runs[~all_runs["diverged"]]  # a diverged run has no accuracy or comparable time
            failed = f"diverged ({len(all_runs) - len(runs)}/{len(all_runs)} seeds)"
            acc, secs = runs["accuracy"] * 100, runs["train_seconds"]
            ratio = secs.median() / base_seconds
            accuracy = failed if not len(runs) else _mean_std(acc) + (f" ({failed})" if len(runs) < len(all_runs) else "")
            row = {"study": study, "device": device, "method": method, "budget": format_budget(budget),
                   "seeds": len(all_runs), "accuracy (%)": accuracy}
            if show_test:
                test = runs["test_accuracy"].dropna() * 100
                row["test accuracy (%)"] = _mean_std(test) if len(test) else "—"
            if budget_study and method in NO_WALL_CLOCK_KNOB:
                reaches = "no wall-clock knob"
            elif not len(runs):
                reaches = "—"
            else:
                reaches = _reaches_budget(ratio, budget) if len(base) or budget == 0 else "n/a"
            def against_baseline(text: str) -> str:  # "—" without a trained run, "n/a" without a baseline
                return "—" if not len(runs) else text if len(base) else "n/a"

            row.update({
                "train seconds": _median_range(secs) if len(runs) else "—",
                "seconds / baseline": against_baseline(f"{ratio:.2f}"),
                "reaches budget": reaches,
                "speed-up vs baseline": against_baseline(f"{1 / ratio:.2f}x"),
                "accuracy change (pt)": against_baseline(f"{round(acc.mean() - base_acc * 100, 2) + 0.0:+.2f}"),
                "examples seen (backward)": int(runs["examples_backward"].mean()) if len(runs) else 0,
                "examples scored (forward only)": int(runs["examples_scored"].mean()) if len(runs) else 0,
                "graphed": _yes_no_mixed(all_runs["graphed"]),
            })
            out.append(row)
    return pd.DataFrame(out)


def _report_order(method: str, budget: float) -> tuple[bool, float, str]:
    """Return the sort key of a report row: the baseline first, then by budget, then by method."""
    return (method != "baseline", budget, method)


def _report_groups(rows) -> list[tuple[tuple[str, float], Any]]:
    """Return the ((method, time_budget), runs) groups of summary rows in report order."""
    groups = rows.groupby(["method", "time_budget"], sort=False, dropna=False)
    return sorted(groups, key=lambda item: _report_order(*item[0]))


def _reaches_budget(ratio: float, budget: float, slack: float = 0.05) -> str:
    """Return "—" without a budget, "yes" when `ratio` (run median over baseline median) is at
    most budget × (1 + slack), else "no (r)" with r = ratio / budget."""
    if not budget:
        return "—"
    over = ratio / budget
    return "yes" if over <= 1 + slack else f"no ({over:.2f})"


def _yes_no_mixed(flags) -> str:
    """Return "yes" when every flag is true, "no" when none is, else "mixed"."""
    flags = [bool(f) for f in flags]
    return "yes" if all(flags) else "no" if not any(flags) else "mixed"


def _median_range(values) -> str:
    """Return "median [min–max]" of the values, two decimals."""
    return f"{values.median():.2f} [{values.min():.2f}–{values.max():.2f}]"


def _sample_std(values) -> float:
    """Return the sample standard deviation (ddof 1) of the values, 0.0 for fewer than two."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _mean_std(values) -> str:
    """Return "mean ± sample std" of the values (2 decimals); one value alone, without a spread:
    a single seed has none, and "± 0.00" would claim one."""
    if len(values) < 2:
        return f"{float(np.mean(values)):.2f}"
    return f"{values.mean():.2f} ± {_sample_std(values):.2f}"


def plot_time_to_accuracy(records: Sequence[dict[str, Any]], path: str | Path | None = None):
    """Return a figure of eval accuracy against training seconds, one line per run."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors: dict[str, Any] = {}
    for record in records:
        curve = record["eval_curve"]
        color = colors.setdefault(record["method"], f"C{len(colors)}")
        ax.plot([0] + [c["train_seconds"] for c in curve], [np.nan] + [c["accuracy"] for c in curve],
                marker="o", ms=3, color=color, alpha=0.8,
                label=record["method"] if record["method"] not in ax.get_legend_handles_labels()[1] else None)
    ax.set_xlabel("training seconds (evaluation excluded)")
    ax.set_ylabel("eval accuracy")
    ax.set_title(f"time to accuracy ({records[0]['device'] if records else ''})")
    ax.legend()
    return core.figure_out(fig, path)


BUDGET_MARKERS = {0.0: "o", 1 / 3: "s", 1 / 2: "^"}  # marker per time budget in plot_pareto


EXTRA_BUDGET_MARKERS = ("D", "v", "P", "X", "<", ">")  # for budgets not in BUDGET_MARKERS


def plot_pareto(records: Sequence[dict[str, Any]], path: str | Path | None = None):
    """Return a figure of final accuracy (y) against train seconds (x): one point per (method,
    time budget) at the mean over seeds, error bars = std over seeds on both axes; colour per
    method, marker per budget, a dashed vertical line at each budget × the baseline's mean seconds,
    the baseline's point enlarged with a black edge. Records without `time_budget` count as
    budget 0 (none). With a baseline, a second panel zooms on the region near it (up to 1.15 x its
    seconds, 8 points under its accuracy), where the budgeted methods compete; diverged runs have
    no point. Saved as PNG when `path`."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = [summary_row(r) for r in records]
    method_colors: dict[str, str] = {}
    for row in sorted(rows, key=lambda row: row["method"] != "baseline"):
        method_colors.setdefault(row["method"], f"C{len(method_colors)}")
    budgets = sorted({row["time_budget"] for row in rows})
    budget_markers = {b: _budget_marker(b, k) for k, b in enumerate(b for b in budgets if b > 0)}
    budget_markers[0.0] = BUDGET_MARKERS[0.0]

    base = [r for r in rows if r["method"] == "baseline" and r["time_budget"] == 0]
    base_seconds = float(np.mean([r["train_seconds"] for r in base])) if base else float("nan")
    fig, axes = plt.subplots(1, 2 if base else 1, figsize=(12.5 if base else 7.5, 4.4), squeeze=False)
    axes = list(axes[0])
    points: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        if not row.get("diverged"):
            points.setdefault((row["method"], row["time_budget"]), []).append(row)
    for ax in axes:
        for (method, budget), runs in sorted(points.items(), key=lambda item: _report_order(*item[0])):
            seconds = np.array([r["train_seconds"] for r in runs], dtype=float)
            accuracy = np.array([r["accuracy"] for r in runs], dtype=float)
            is_baseline = method == "baseline" and budget == 0
            ax.errorbar(seconds.mean(), accuracy.mean(), xerr=_sample_std(seconds), yerr=_sample_std(accuracy),
                        fmt=budget_markers[budget], color=method_colors[method], capsize=3,
                        ms=11 if is_baseline else 7, mec="black" if is_baseline else method_colors[method],
                        mew=1.5 if is_baseline else 1.0, zorder=3 if is_baseline else 2)
        if base:
            for budget in (b for b in budgets if b > 0):
                x = budget * base_seconds
                ax.axvline(x, color="grey", ls="--", lw=1)
                ax.text(x, 0.98, f" {format_budget(budget)} budget", transform=ax.get_xaxis_transform(),
                        rotation=90, va="top", ha="right", fontsize=8, color="grey")
        ax.set_xlabel("training seconds")
        ax.set_ylabel("final eval accuracy")
    ax = axes[0]
    if base:
        base_accuracy = float(np.mean([r["accuracy"] for r in base]))
        axes[1].set_xlim(0, 1.15 * base_seconds)
        axes[1].set_ylim(base_accuracy - 0.08, base_accuracy + 0.015)
        axes[1].set_title("zoom: near the baseline", fontsize=10)
        ax = axes[1]  # the legend goes beside the last panel

    trained = {method for method, _ in points}
    method_handles = [Line2D([], [], color=color, marker="o", ls="",
                             label=method if method in trained else f"{method} (diverged)")
                      for method, color in method_colors.items()]
    budget_handles = [Line2D([], [], color="grey", marker=budget_markers[b], ls="",
                             label="no budget" if b == 0 else f"{format_budget(b)} budget") for b in budgets]
    ax.legend(handles=method_handles + budget_handles, title="colour: method\nmarker: budget", fontsize=7,
              title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[0].set_title(f"{_study_title(records)}: accuracy vs training time (mean ± std over seeds)", fontsize=10)
    return core.figure_out(fig, path)


def _budget_marker(budget: float, k: int) -> str:
    """Return plot_pareto's marker for a nonzero budget: BUDGET_MARKERS' when it is one of those
    (within 0.005), else the k-th of EXTRA_BUDGET_MARKERS."""
    for known, marker in BUDGET_MARKERS.items():
        if known > 0 and abs(budget - known) < 0.005:
            return marker
    return EXTRA_BUDGET_MARKERS[k % len(EXTRA_BUDGET_MARKERS)]


def _study_title(records: Sequence[dict[str, Any]]) -> str:
    """Return "study (dataset)" of the records' first run, dataset as its last path part; "" if none."""
    if not records:
        return ""
    first = records[0]
    dataset = str(first.get("config", {}).get("dataset") or first.get("dataset") or "")
    dataset = dataset.rstrip("/").split("/")[-1]
    return f"{first.get('study', '')} ({dataset})" if dataset else str(first.get("study", ""))


def time_to_accuracy(record: dict[str, Any], target: float) -> float | None:
    """Return the training seconds at the first evaluation reaching `target`, or None (never)."""
    for point in record["eval_curve"]:
        if point["accuracy"] >= target:
            return float(point["train_seconds"])
    return None


def comparison_table(records: Sequence[dict[str, Any]], tolerance_pt: float = 0.5):
    """Return `report_table` of the records, one row per (method, time budget), plus the time each
    reached the baseline's mean accuracy - `tolerance_pt` points: mean seconds over the seeds that
    did, with how many did, or "never". The baseline is method "baseline" with no time budget."""
    import pandas as pd

    frame = pd.DataFrame([summary_row(r) for r in records], columns=SUMMARY_COLUMNS)
    table = report_table(frame)
    base = [r for r, row in zip(records, frame.itertuples()) if r["method"] == "baseline" and row.time_budget == 0]
    target = np.mean([r["accuracy"] for r in base]) - tolerance_pt / 100 if base else None
    reach = []
    for _, runs in _report_groups(frame):
        group_records = [records[i] for i in runs.index]
        times = [time_to_accuracy(r, target) for r in group_records] if target is not None else [None]
        reached = [t for t in times if t is not None]
        reach.append(f"{np.mean(reached):.1f}s ({len(reached)}/{len(group_records)} seeds)" if reached else "never")
    table[f"time to baseline - {tolerance_pt} pt"] = reach
    return table


def lr_sweep_table(records: Sequence[dict[str, Any]]) -> Any:
    """Return a DataFrame of a learning-rate sweep, one row per run sorted by method, time budget,
    lr and seed: method and budget (only when the runs hold more than one method), lr (a float),
    seed, accuracy (%), test accuracy (%) (only when some run has one; "—" for a run without), train
    seconds (two-decimal strings, as in `report_table`), and chosen ("yes" on the runs of each
    method's `best_lr`, else "")."""
    import pandas as pd

    def key(r: dict[str, Any]) -> tuple[str, float]:
        return r["method"], float(r.get("time_budget") or 0.0)

    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    chosen = {k: best_lr(runs) for k, runs in groups.items()}
    several = len(groups) > 1
    show_test = any(r.get("test_accuracy") is not None for r in records)
    out = []
    for record in sorted(records, key=lambda r: (*key(r), record_lr(r), r["seed"])):
        row = {"method": record["method"], "budget": format_budget(key(record)[1])} if several else {}
        row.update({"lr": record_lr(record), "seed": record["seed"], "accuracy (%)": f"{record['accuracy'] * 100:.2f}"})
        if show_test:
            test = record.get("test_accuracy")
            row["test accuracy (%)"] = "—" if test is None else f"{test * 100:.2f}"
        row["train seconds"] = f"{record['train_seconds']:.2f}"
        row["chosen"] = "yes" if record_lr(record) == chosen[key(record)] else ""
        out.append(row)
    columns = [*(["method", "budget"] if several else []), "lr", "seed", "accuracy (%)", *(["test accuracy (%)"] if show_test else []), "train seconds", "chosen"]
    return pd.DataFrame(out, columns=columns)


def study_data(results_dir: str | Path, study: str) -> tuple[str, float] | None:
    """Return (dataset, label_noise) that a study's runs trained on, from the config of its first
    readable run file (the dataset as a hub name or a path relative to the repository, portable_path),
    or None when the study has no readable run file under <results>/runs."""
    for path in sorted((Path(results_dir) / "runs" / study).glob(f"*{RUN_FILE_SUFFIX}")):
        try:
            config = read_run(path).get("config") or {}
        except (*RUN_READ_ERRORS, ValueError):
            continue
        return portable_path(str(config.get("dataset"))), float(config.get("label_noise") or 0.0)
    return None


# --- the estimator study --------------------------------------------------------------------------
def estimator_study(full_probs: Sequence[float], w_clip_values: Sequence[float | None], draws: int, seed: int = 0,
                    clip_sweep_full_prob: float = 0.25, pool: int = 512, kept: int = 128, kappa: float = 0.5,
                    tau: float = 1.0, replay_share: float = 0.05, noise: float = 0.3):
    """Return a DataFrame, one row per (sweep, full_prob, w_clip, estimator), of the empirical bias,
    standard error and variance of `cv_estimate` and `ht_estimate` (mclearn_paper) on a synthetic pool.

    The pool's full losses are Gamma(2, 0.5); the cheap loss is the full loss plus N(0, noise)
    noise. Each draw keeps a soft top-k by cheap loss plus a `replay_share`, weights with
    `ht_weights`, and sends a Bernoulli(full_prob) subset to the full loss. Every setting reuses the same
    random draws (a paired comparison). The target is the pool's mean full loss.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, pool)
    loss_full = rng.gamma(2.0, 0.5, pool)
    loss_cheap = np.clip(loss_full + rng.normal(0.0, noise, pool), 0.0, None)
    cand_prob = core.candidate_probs(loss_cheap, labels, kappa, tau, (1 - replay_share) * kept)
    replay_prob = replay_share * kept / pool
    inclusion = paper.inclusion_probs(cand_prob, replay_prob)
    truth, rows = loss_full.mean(), []
    settings = [("full_prob", p, None) for p in full_probs] + [("w_clip", clip_sweep_full_prob, c) for c in w_clip_values]
    for sweep, full_prob, w_clip in settings:
        rng = np.random.default_rng([seed, 1])
        estimates: dict[str, list[float]] = {"cv_estimate": [], "ht_estimate": []}
        for _ in range(draws):
            k = np.flatnonzero(paper.draw_kept(cand_prob, replay_prob, rng))
            w = torch.as_tensor(paper.ht_weights(inclusion[k], pool, w_clip, inclusion.sum()))
            s = torch.as_tensor(rng.random(len(k)) < full_prob)
            full_prob_k = torch.full((len(k),), float(full_prob), dtype=torch.float64)
            full = torch.as_tensor(loss_full[k])[s]
            cheap = torch.as_tensor(loss_cheap[k])
            estimates["cv_estimate"].append(float(paper.cv_estimate(cheap, w, s, full, full_prob_k)))
            estimates["ht_estimate"].append(float(paper.ht_estimate(w, s, full, full_prob_k)))
        for name, values in estimates.items():
            values = np.asarray(values)
            rows.append({"sweep": sweep, "full_prob": full_prob, "w_clip": "none" if w_clip is None else w_clip,
                         "estimator": name, "bias": values.mean() - truth,
                         "se": values.std(ddof=1) / np.sqrt(draws), "variance": values.var(ddof=1),
                         "truth": truth})
    return pd.DataFrame(rows)


def plot_estimator_study(table, path_q: str | Path | None = None, path_clip: str | Path | None = None):
    """Return two figures of an `estimator_study` table: bias (±2 SE) and variance against the
    full-pass probability q,
    and against w_clip; saved as PNG when paths are given."""
    import matplotlib.pyplot as plt

    by_q = table[table["sweep"] == "full_prob"]
    fig_q, (ax_bias, ax_var) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, group in by_q.groupby("estimator"):
        ax_bias.plot(group["full_prob"], group["bias"], marker="o", label=name)
        ax_bias.fill_between(group["full_prob"], -2 * group["se"], 2 * group["se"], alpha=0.12)
        ax_var.plot(group["full_prob"], group["variance"], marker="o", label=name)
    ax_bias.axhline(0, color="k", lw=0.8)
    ax_bias.set(xlabel="full-pass probability q", ylabel="bias", title="bias vs q (±2 SE shaded)")
    ax_var.set(xlabel="full-pass probability q", ylabel="variance", yscale="log", title="variance vs q")
    ax_bias.legend()
    ax_var.legend()
    by_clip = table[table["sweep"] == "w_clip"].astype({"w_clip": str})
    fig_c, (cb, cv) = plt.subplots(1, 2, figsize=(11, 3.8))
    labels = list(dict.fromkeys(by_clip["w_clip"]))
    for k, (name, group) in enumerate(by_clip.groupby("estimator")):
        x = np.arange(len(group)) + (k - 0.5) * 0.35
        cb.bar(x, group["bias"], width=0.35, yerr=2 * group["se"], capsize=3, label=name)
        cv.bar(x, group["variance"], width=0.35, label=name)
    for ax in (cb, cv):
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_xlabel("w_clip")
        ax.legend()
    cb.axhline(0, color="k", lw=0.8)
    q_clip = by_clip["full_prob"].iloc[0] if len(by_clip) else float("nan")
    cb.set(ylabel="bias", title=f"bias vs w_clip (q = {q_clip}, ±2 SE)")
    cv.set(ylabel="variance", title="variance vs w_clip")
    return core.figure_out(fig_q, path_q), core.figure_out(fig_c, path_clip)
