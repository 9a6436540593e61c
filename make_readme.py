"""Write the generated parts of README.md and the whole of results/README.md from the run files.

    python make_readme.py

Re-summarizes results/runs/ into results/summary.csv, then rewrites
- README.md between `<!-- answer:start -->` and `<!-- answer:end -->`: the equal-time answer
  (`answer_markdown`: which method, if any, beats `short-schedule` at equal wall-clock on a verdict
  Holm-corrected over all the answer's comparisons, where, by how much, the sentence on `mclearn`,
  and one table at most 110 characters wide), every number of it linked to the run files it comes
  from; the answer reads the fair-protocol studies (`answer_studies`) once there are any;
- results/README.md: the full equal-time answer (`equal_time_markdown`: every verdict, each
  study's equal-time table, time to target with its bootstrap intervals and its performance
  profile), the previous protocol's studies (`previous_markdown`), the MC-Learn ablation
  (`ablation_markdown`: its rule, table, choice and a paragraph per dataset), one section per study
  (`study_sections`: its report table from summary.csv, or its learning-rate sweep; for a
  fair-protocol study also what selection did in its `mclearn` runs, `selection_paragraph`) and the
  step benchmark tables (`bench_markdown`). Hand-written notes between `<!-- notes:KEY:start -->` and
  `<!-- notes:KEY:end -->` are kept across regenerations.

Every link is relative to the file it is written into. The numbers come from the study's table
functions (`report_table`, `lr_sweep_table`, `equal_time_tables`, `time_to_target`, `ablation_table`,
`ablation_diagnostics`, `fair_selection_summary`, `budget_study_lr_table`); this file lays them out
and writes the ablation's paragraphs from its numbers (`ablation_paragraphs`, `selection_paragraph`).
One render decodes each run file once: its `RunStore` (the run records publish read for
summary.csv, and the ablation's table) is passed down to every section, and the next render makes
its own.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import mcstudy as ms

REPO = Path(__file__).resolve().parent
ANSWER_MARKERS = ("<!-- answer:start -->", "<!-- answer:end -->")
NOTES = re.compile(r"<!-- notes:(?P<key>[^ ]+):start -->\n(?P<body>.*?)<!-- notes:(?P=key):end -->", re.S)
EQUAL_TIME_FIGURES = "equal-time"  # results/figures/<this>/: the cross-study profile and time-to-target table
EQUAL_TIME_KEY = "equal-time"  # the notes key of results/README.md's equal-time section
EQUAL_TIME_HEADING = "Equal time"  # its heading, which the README's answer links
ABLATION_KEY = "ablation"  # the notes key of results/README.md's ablation section
ABLATION_HEADING = "Ablation"  # its heading, which the README's answer links
BENCH_KEY = "step-benchmark"
BENCH_COLUMNS = {"variant": "loop variant", "method": "method", "batch_size": "batch", "train_seconds": "train s",
                 "tokens_per_s": "tokens/s", "mfu": "MFU", "overhead_fraction": "own overhead",
                 "full_pass_replay_seconds": "its full passes alone (s)", "commit": "commit"}


def _link(path: Path, base: Path | None) -> str:
    """Return `path` as a link target relative to the folder `base` (as given when base is None)."""
    import os

    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix() if base else Path(path).as_posix()


def anchor(heading: str) -> str:
    """Return the fragment GitHub gives a markdown heading: lower case, punctuation other than
    '-' and '_' dropped, spaces as '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _table(frame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


# ----------------------------------------------------------------------------- the run records
class RunStore:
    """One render's run records of one results folder: each study's read from its run files
    (ms.load_runs, an unreadable file refused) the first time a table asks for it, then shared by
    every other table of the render, and the latest ablation with its table built once (`ablation`).
    update_readme makes one per render and passes it down; nothing keeps it after the render, so
    the next render reads the run files as they are then."""

    def __init__(self, results_dir: str | Path, every_record: Sequence[dict] | None = None):
        """`every_record`: every run record of `results_dir`, as ms.load_runs(results_dir) returns
        them (publish has read them all for summary.csv), so that no study is read again."""
        self.results_dir = Path(results_dir)
        self._complete = every_record is not None  # every study is in _studies; one that is not has no runs
        self._studies: dict[str, list[dict]] = {}
        for record in every_record or ():
            self._studies.setdefault(str(record["study"]), []).append(record)
        self._ablation: tuple[list[str], list[dict], Any] | None = None

    def study(self, name: str) -> list[dict]:
        """Return the run records of study `name` in ms.load_runs' order (a new list of the stored
        records, which no table changes)."""
        if name not in self._studies:
            self._studies[name] = [] if self._complete else ms.load_runs(self.results_dir, name)
        return list(self._studies[name])

    def ablation(self) -> tuple[list[str], list[dict], Any]:
        """Return (the latest ablation's studies and run records (`ablation_records`), their
        ms.ablation_table over ms.ABLATION_SETS), built on the first call."""
        if self._ablation is None:
            studies, records = ablation_records(self.results_dir, self)
            self._ablation = studies, records, ms.ablation_table(records, ms.ABLATION_SETS)
        return self._ablation


def _store(results_dir: str | Path, store: RunStore | None) -> RunStore:
    """Return `store` (the render's run records), or a new RunStore of `results_dir` when None;
    raise ValueError when `store` holds another results folder's records."""
    if store is None:
        return RunStore(results_dir)
    if store.results_dir.resolve() != Path(results_dir).resolve():
        raise ValueError(f"the run records passed are those of {store.results_dir}, not of {results_dir}: pass "
                         f"a RunStore of {results_dir}, or none")
    return store


# ----------------------------------------------------------------------------- the studies
def _summary(results_dir: str | Path):
    """Return summary.csv's rows (a DataFrame), or None when there is none."""
    path = Path(results_dir) / "summary.csv"
    return ms.read_summary(path) if path.exists() else None


def _ablation_names(rows) -> list[str]:
    """Return the ablation studies among summary rows (names ending in ms.ABLATION_SUFFIX), by name."""
    return sorted(str(s) for s in set(rows["study"]) if ms.is_ablation_study(s))


def study_order(rows) -> list[str]:
    """Return the studies of summary rows that get a section of their own, in reading order:
    the equal-time studies, then the other GPU studies (the ablation studies among them), then the
    CPU ones, each by name. A learning-rate sweep ("<study>-lr") is shown inside its study's section
    when that study exists."""
    studies = set(rows["study"].astype(str))
    on_cpu = rows.groupby("study")["device"].agg(lambda d: all(str(v).startswith("cpu") for v in d))
    equal_time = ms.equal_time_study_names(rows)
    own = [s for s in studies if not (s.endswith("-lr") and s.removesuffix("-lr") in studies)]
    return sorted(own, key=lambda s: (s not in equal_time, bool(on_cpu[s]), s))


def _study_table(store: RunStore, rows, study: str) -> str:
    """Return a study's table in markdown: the lr sweep table of a "-lr" study's run files, else
    the report table of its summary rows."""
    if study.endswith("-lr"):
        return _table(ms.lr_sweep_table(store.study(study)))
    return _table(ms.report_table(rows[rows["study"] == study]).drop(columns=["study"]))


def _sources(results_dir: Path, study: str, link_base: Path | None) -> str:
    runs = _link(Path(results_dir, "runs", study), link_base) + "/"
    rows_file = _link(Path(results_dir, "summary.csv"), link_base)
    return f"run files: [`{runs}`]({runs}), rows of [`{rows_file}`]({rows_file})"


def study_sections(results_dir: str | Path = "results", link_base: Path | None = None,
                   notes: dict[str, str] | None = None, store: RunStore | None = None) -> str:
    """Return one markdown section per study of <results>/summary.csv (`study_order`): its
    heading (the study's name), the run files it comes from, its table (`report_table`; for an
    equal-time study also its equal-time table in its protocol's Holm family, `equal_time_families`;
    a fair-protocol study's paragraph on what selection did in its `mclearn` runs,
    `selection_paragraph`; a learning-rate sweep's `lr_sweep_table`, under its study when it has one,
    and for a fair-protocol study each method's lr at each budget, `lr_table_markdown`) and its notes
    block.
    An ablation study (ms.ABLATION_SUFFIX) gets no equal-time table: its one-seed runs are in the
    Ablation section (`ablation_markdown`). `store`: the render's run records (RunStore)."""
    rows = _summary(results_dir)
    if rows is None:
        return "_No results yet: run a sweep, then `python make_readme.py`._"
    store = _store(results_dir, store)
    results_dir, notes = Path(results_dir), notes or {}
    order, equal_time = study_order(rows), ms.equal_time_study_names(rows)
    families = equal_time_families(results_dir, store)
    parts = ["Contents: " + ", ".join(f"[{study}](#{anchor(study)})" for study in order) + ".\n"]
    for study in order:
        parts.append(f"### {study}\n\n{_sources(results_dir, study, link_base)}\n\n"
                     f"{_study_table(store, rows, study)}\n")
        if study in equal_time:
            table = families[study]
            parts.append(f"Equal time against `{ms.REFERENCE}` (test split, paired over seeds; verdicts on the "
                         f"Holm-adjusted p over the {table.attrs['family']} comparisons of its protocol's studies, "
                         f"simultaneous intervals at 1 - {ms.VERDICT_ALPHA}/{table.attrs['family']}):\n\n"
                         f"{_table(table)}\n")
        if study.endswith(ms.FAIR_SUFFIX):
            paragraph = selection_paragraph(ms.fair_selection_summary(store.study(study)))
            parts += [f"{paragraph}\n"] if paragraph else []
        sweep = f"{study}-lr"
        if not study.endswith("-lr") and sweep in set(rows["study"]):
            parts.append(f"Its learning-rate sweep, **{sweep}** ({_sources(results_dir, sweep, link_base)}):\n\n"
                         f"{_study_table(store, rows, sweep)}\n")
            if study.endswith(ms.FAIR_SUFFIX):
                parts.append(lr_table_markdown(store.study(sweep)))
        parts.append(notes_block(study, notes))
    return "\n".join(parts)


def equal_time_families(results_dir: str | Path = "results", store: RunStore | None = None) -> dict:
    """Return {study: its equal-time table} of every equal-time study, each protocol's studies one
    Holm family (ms.equal_time_tables over `answer_studies`' two groups); `store` as study_sections
    takes it."""
    out, store = {}, _store(results_dir, store)
    for group in answer_studies(results_dir):
        if group:
            out.update(ms.equal_time_tables({study: store.study(study) for study in group}))
    return out


def lr_table_markdown(tune_records: list[dict]) -> str:
    """Return a fair-protocol study's lr table in markdown: ms.budget_study_lr_table of its tuning
    runs (per method and budget the lrs tried with their accuracy, the choice and where it sits in
    the grid, ms.lr_grid_status) as it comes, then one line naming the choices at a grid edge:
    those bounded by a diverged next lr ("edge: next diverged") and those unresolved (any other
    edge: the best lr may lie outside what was tried), or that every choice is interior."""
    table = ms.budget_study_lr_table(tune_records)

    def named(which) -> str:
        return "; ".join(f"`{row['method']}` at {row['budget']} ({row['where']})" for _, row in table[which].iterrows())

    where = table["where"].astype(str)
    bounded = where == "edge: next diverged"
    unresolved = where.str.startswith("edge") & ~bounded
    parts = ([f"At a grid edge bounded by a diverged next lr: {named(bounded)}."] if bounded.any() else []) + \
        ([f"**At a grid edge, unresolved**: {named(unresolved)}."] if unresolved.any() else [])
    line = " ".join(parts) or "Every choice is interior to its grid."
    return f"Each method's own lr at each budget (tuned on the first seed, eval split):\n\n{_table(table)}\n\n{line}\n"


def _spread(value: ms.Spread, spec: str, unit: str = "", scale: float = 1.0) -> str:
    """Return a Spread as "median [min–max]" in `spec` (times `scale`, then `unit`): the value alone
    for one seed, "[min, max]" for a signed `spec`."""
    median, low, high = (f"{v * scale:{spec}}" for v in (value.median, value.low, value.high))
    if value.seeds == 1:
        return f"{median}{unit}"
    return f"{median}{unit} [{low}, {high}]" if spec.startswith("+") else f"{median}{unit} [{low}–{high}]"


def _seeds(seeds: Sequence[int]) -> str:
    """Return "seed 42" / "seeds 42 and 43" / "seeds 42, 43 and 44"."""
    return f"seed{'s' if len(seeds) > 1 else ''} {_listed([str(int(s)) for s in seeds])}"


def selection_paragraph(summary: Sequence[dict[str, Any]], method: str = "mclearn") -> str:
    """Return the paragraph under a fair-protocol study's equal-time table on what selection did in
    its `method` runs: ms.fair_selection_summary's numbers (`summary`) per budget, each the median
    [min–max] over the seeds that carry it: the MC-Learn variant the runs trained as, their share of
    steps drawn from selected pools, selection's variance reduction against uniform draws at the
    end of each run (measured on the last layer's gradients, estimated from the losses), the
    updates they ran against REFERENCE's and seed by seed, and their scoring seconds against their
    update seconds. What run files do not carry (no selection record, no variance check) is named
    with its seeds, never printed as a number. Empty without a budgeted run of `method`."""
    if not summary:
        return ""
    text = [f"What selection did in `{method}`'s runs (from their run files; median [min–max] over the "
            f"seeds that carry each number):"]
    for cell in summary:
        seeds, variants = cell["seeds"], cell["variants"]
        switch = "" if cell["switch"] else ", without the pays-for-itself switch"
        text.append(f"At {ms.format_budget(cell['budget'])} ({len(seeds)} seed{'s' * (len(seeds) > 1)}, "
                    f"as {_listed([f'`{v}`' for v in variants])}{switch}):")
        lacking = cell["no selection"]
        unchecked = sorted(set(cell["no check"]) - set(lacking))
        if len(lacking) == len(seeds):
            text.append("its run files carry no selection record, so they give no share of steps drawn "
                        "from selected pools and no variance reduction against uniform draws, measured "
                        "or estimated.")
        else:
            missing = (f" (the run files of {_seeds(lacking)} carry no selection record: no share, no "
                       f"variance reduction)" if lacking else "")
            text.append(f"it drew {_spread(cell['selected share'], '.2f', ' %', 100)} of its steps from "
                        f"selected pools{missing}.")
        if len(lacking) < len(seeds) and len(unchecked) == len(seeds) - len(lacking):
            text.append("Its run files carry no variance check at the end of the run, so they give no "
                        "variance reduction against uniform draws, measured or estimated.")
        elif len(lacking) < len(seeds):
            text.append(f"At the end of each run, on one pool, selection's variance reduction against "
                        f"uniform draws was {_spread(cell['tau measured'], '.3f')} measured on the last "
                        f"layer's gradients and {_spread(cell['tau est'], '.3f')} estimated from the losses "
                        f"(above 1: selection reduces the variance)"
                        + (f"; the run files of {_seeds(unchecked)} carry no variance check" if unchecked
                           else "") + ".")
        updates, short, paired = cell["updates"], cell["short updates"], cell["updates vs short"]
        if updates is None:
            text.append("Its run files carry no count of updates.")
        elif short is None:
            text.append(f"It ran {_spread(updates, ',.0f')} updates; `{ms.REFERENCE}` has no run at this "
                        f"budget.")
        else:
            same = (f"{_spread(paired, '+,.0f')} on the same seed ({paired.seeds} "
                    f"pair{'s' if paired.seeds > 1 else ''})" if paired else "no seed in common")
            text.append(f"It ran {_spread(updates, ',.0f')} updates against `{ms.REFERENCE}`'s "
                        f"{_spread(short, ',.0f')}, {same}.")
        score, update, ratio = cell["score s"], cell["update s"], cell["score / update"]
        timeless = cell["no seconds"]
        if score is None and update is None:
            text.append("Its run files carry no scoring or update seconds.")
        elif update is None:
            text.append(f"Scoring took {_spread(score, '.3f', ' s')}; its run files carry no update seconds.")
        elif score is None:
            text.append(f"Its run files carry no scoring seconds (updates replayed through graphs: "
                        f"{_spread(update, '.3f', ' s')}).")
        elif ratio is None:
            text.append(f"Scoring took {_spread(score, '.3f', ' s')} against {_spread(update, '.3f', ' s')} "
                        f"of updates replayed through graphs, no seed carrying both.")
        else:
            text.append(f"Scoring took {_spread(score, '.3f', ' s')} against {_spread(update, '.3f', ' s')} "
                        f"of updates replayed through graphs, {_spread(ratio, '.2f', ' %', 100)} of them"
                        + (f" (the run files of {_seeds(timeless)} carry no scoring or update seconds)"
                           if timeless else "") + ".")
    return " ".join(text)


# ----------------------------------------------------------------------------- the equal-time answer
def equal_time_studies(results_dir: str | Path = "results") -> list[str]:
    """Return the equal-time studies of <results>/summary.csv, by name: those that ran the
    short-schedule reference, except lr sweeps and ablation studies (`ms.equal_time_study_names`)."""
    rows = _summary(results_dir)
    return [] if rows is None else sorted(ms.equal_time_study_names(rows))


def answer_studies(results_dir: str | Path = "results") -> tuple[list[str], list[str]]:
    """Return (the studies the answer reads, the previous protocol's): the fair-protocol studies
    (ms.fair_study_names: names ending in ms.FAIR_SUFFIX, one a dataset and model) and the others
    when there are fair ones, else every equal-time study and none."""
    studies = equal_time_studies(results_dir)
    fair = ms.fair_study_names(studies)  # one study a dataset and model, or a one-line error
    return (fair, [s for s in studies if s not in fair]) if fair else (studies, [])


def _cell_verdicts(found: dict, method: str) -> list[tuple[str, str, str]]:
    """Return [(data, budget, verdict)] of `method` against short-schedule in every cell of `found`."""
    return [(c["name"], c["budget"], c["verdict"]) for c in found["cells"] if c["method"] == method]


def equal_time_verdicts(results_dir: str | Path = "results", studies: list[str] | None = None,
                        store: RunStore | None = None) -> dict:
    """Return what an equal-time answer says, from the run files of `studies` (None: the answer's,
    `answer_studies`), one Holm family over all their comparisons (ms.equal_time_tables):
    "studies" [(study, short name, device)], "seeds" (the most seeds of any run set), "family" (the
    comparisons in the family), "fair" (whether the tables are the fair protocol's), "tables"
    {study: its table}, "cells" (every comparison: study, method, name, budget, diff, interval,
    holm, ratio, verdict), "wins" and "losses" (those with the verdict "better" / "worse"), "over" (no
    verdict: over time, or short-schedule off target), "leads_over" (of those, the ones ahead of
    short-schedule), "closest" (where nothing wins: the comparison ahead of short-schedule at equal
    time with the least Holm-adjusted p, None without one), "rows" (per study and budget,
    short-schedule's accuracy and the method at equal time with the largest difference),
    "ttt_rows" and "times" (time to target per study and method), "reference_seconds" {short name:
    study_reference_seconds}, "records" {study: its run records}. `store`: the render's run records
    (RunStore)."""
    out = {"studies": [], "seeds": set(), "cells": [], "rows": [], "ttt_rows": [], "times": {}, "tables": {},
           "reference_seconds": {}}
    names = answer_studies(results_dir)[0] if studies is None else studies
    store = _store(results_dir, store)
    records = out["records"] = {study: store.study(study) for study in names}
    tables = ms.equal_time_tables(records) if records else {}
    for study in names:
        name, table = ms._short_study(study), tables[study]
        out["seeds"] |= {r["seed"] for r in records[study]}
        out["studies"].append((study, name, records[study][0].get("device", "?")))
        out["tables"][study] = table
        for budget, group in table.groupby("budget", sort=False):
            if budget.startswith("1 ("):
                continue
            ref = group[group["method"] == ms.REFERENCE]
            others = group[(group["method"] != ms.REFERENCE) & (group["verdict"] != "")]
            fair = "s / target" in group
            for _, row in others.iterrows():
                out["cells"].append({"study": study, "method": row["method"], "name": name, "budget": budget,
                                     "diff": row["vs short-schedule (pt)"], "interval": row["95% interval"],
                                     "holm": row["Holm p"], "ratio": row["s / target" if fair else "s / short"],
                                     "fair": fair, "verdict": row["verdict"]})
            timely = others[~others["verdict"].isin(NO_VERDICT)]  # the best at equal time answers the question
            if len(ref) and len(timely):
                diffs = timely["vs short-schedule (pt)"].map(lambda v: float(v) if v not in ("", "—") else -math.inf)
                best = timely.loc[diffs.idxmax()]
                out["rows"].append({"data": name, "budget": budget, "short-schedule (%)": ref.iloc[0]["accuracy (%)"],
                                    "best other": best["method"],
                                    "difference (pt)": best["vs short-schedule (pt)"],
                                    "95% interval": best["95% interval"],
                                    "Holm p": best["Holm p"], "verdict": best["verdict"]})
        out["reference_seconds"][name] = study_reference_seconds(records[study])
        ttt = ms.time_to_target(records[study], 1.0)
        out["times"][name] = dict(zip(ttt["method"], ttt["median_seconds"]))
        for _, row in ttt.iterrows():
            out["ttt_rows"].append({"data": name, "method": row["method"], "target (%)": f"{row['target (%)']:.2f}",
                                    "seconds to target": row["seconds"], "95% bootstrap (s)": row["95% bootstrap (s)"],
                                    "seeds reached": row["seeds reached"],
                                    "speed-up vs short-schedule": row["speed-up vs short-schedule"],
                                    "speed-up 95% bootstrap": row["speed-up 95% bootstrap"],
                                    "seeds faster": row["seeds faster"]})
    cells = out["cells"]
    out.update(wins=[c for c in cells if c["verdict"] == "better"], losses=[c for c in cells if c["verdict"] == "worse"],
               over=[c for c in cells if c["verdict"] in NO_VERDICT])
    out["leads_over"] = [c for c in out["over"] if _ahead(c)]
    ahead = [c for c in cells if _ahead(c) and c["verdict"] not in NO_VERDICT and c["holm"] not in ("", "—")]
    out["closest"] = min(ahead, key=lambda c: _p_value(c["holm"]), default=None) if not out["wins"] else None
    out["family"] = next(iter(tables.values())).attrs["family"] if tables else 0
    out["fair"] = any("s / target" in t for t in tables.values())
    out["seeds"] = len(out["seeds"])
    return out


NO_VERDICT = ("over time", f"{ms.REFERENCE} off target")  # the time rule's verdicts: no verdict on accuracy
# A dataset key ending so names a study whose runs last about a minute (gpu_budget_study.sh sst2-long); its
# verdicts are set beside those of the key without it, whose runs last seconds.
LONG_SUFFIX = "-long"
FIXED_COST_LIMIT = 0.05  # fixed costs under this share of train seconds leave a cell to the method, not its start


def study_reference_seconds(records: Sequence[dict]) -> float:
    """Return the seconds a study's budgets are shares of: its budgeted runs' time_target
    reference_seconds (the fair protocol), else the median train seconds of its full baseline's runs;
    NaN without either."""
    shared = [r["time_target"]["reference_seconds"] for r in records if r.get("time_target")]
    if shared:
        return float(np.median(shared))
    try:
        return ms.reference_seconds([r for r in records if r.get("method") == "baseline" and not r.get("time_budget")])
    except ValueError:  # no finished run of the full baseline
        return math.nan


def _share(text: str) -> float:
    """Return a table's "12.3 %" as 0.123 and "—" or "" as 0 (a method without that cost)."""
    return float(text.rstrip(" %")) / 100 if text not in ("", "—") else 0.0


def fixed_cost_table(found: dict):
    """Return, per budget and method of `found`'s studies (equal_time_verdicts, fair protocol), the
    fixed costs as a share of train seconds: eager warm-up steps and graph captures
    (startup_seconds) plus MC-Learn's scoring, mean over seeds, evaluation excluded; one column
    per study (its short name), "—" where a study has no such cell or records no costs. Empty
    without fair-protocol tables."""
    import pandas as pd

    cells: dict[tuple[str, str], dict[str, str]] = {}
    names = []
    for study, name, _ in found["studies"]:
        table = found["tables"][study]
        if "warm-up+capture" not in table:
            continue
        names.append(name)
        for _, row in table.iterrows():
            startup = row["warm-up+capture"]
            value = "—" if startup in ("", "—") else f"{100 * (_share(startup) + _share(row['scoring'])):.1f} %"
            cells.setdefault((row["budget"], row["method"]), {})[name] = value
    rows = [{"budget": budget, "method": method, **{n: own.get(n, "—") for n in names}}
            for (budget, method), own in cells.items()]
    return pd.DataFrame(rows, columns=["budget", "method", *names])


def fixed_cost_sentence(found: dict, budget: str = "1/3") -> str:
    """Return one sentence per minute-long study (LONG_SUFFIX) on its fixed costs at `budget`
    (fixed_cost_table): that every method's are under FIXED_COST_LIMIT of its train seconds, or
    which are not; empty without such a study or cells at `budget`."""
    table = fixed_cost_table(found)
    sentences = []
    for name in [n for _, n, _ in found["studies"] if n.endswith(LONG_SUFFIX) and n in table]:
        at = table[(table["budget"] == budget) & (table[name] != "—")]
        if not len(at):
            continue
        over = [f"`{row['method']}` {row[name]}" for _, row in at.iterrows() if _share(row[name]) >= FIXED_COST_LIMIT]
        limit = f"{100 * FIXED_COST_LIMIT:.0f} %"
        sentences.append(f"On {name} at {budget} the fixed costs are under {limit} of train seconds for every "
                         f"method." if not over else
                         f"On {name} at {budget} the fixed costs reach {limit} of train seconds for "
                         f"{'; '.join(over)}.")
    return " ".join(sentences)


def scale_sentence(found: dict, link: bool = True) -> str:
    """Return one sentence per minute-long study among `found`'s (a short name ending in
    LONG_SUFFIX whose counterpart without it is there too): how long the full fine-tune trains in
    each, and how the verdicts of the budgets both have change from seconds-long to minute-long
    runs (the same verdict in how many of the comparisons they share, and each that changes), each
    study's device named where the two differ; empty without such a pair."""
    names = [name for _, name, _ in found["studies"]]
    devices = {name: device for _, name, device in found["studies"]}
    by_cell = {(c["name"], c["budget"], c["method"]): c["verdict"] for c in found["cells"]}
    sentences = []
    for long in [n for n in names if n.endswith(LONG_SUFFIX) and n.removesuffix(LONG_SUFFIX) in names]:
        short = long.removesuffix(LONG_SUFFIX)
        shared = [(budget, method) for (name, budget, method) in by_cell if name == long
                  and (short, budget, method) in by_cell]
        changed = [f"`{method}` at {budget} {by_cell[(short, budget, method)]} → {by_cell[(long, budget, method)]}"
                   for budget, method in shared if by_cell[(short, budget, method)] != by_cell[(long, budget, method)]]
        seconds = found["reference_seconds"]
        ref = lambda name: f"[{name}]" if link else name  # noqa: E731
        if devices[long] != devices[short]:  # seconds on two GPUs: say which gave each
            ref = lambda name, plain=ref: f"{plain(name)} ({devices[name]})"  # noqa: E731
        sentence = (f"From seconds to a minute: the full fine-tune trains for {seconds[long]:.1f} s on {ref(long)} "
                    f"against {seconds[short]:.1f} s on {ref(short)}, and {len(shared) - len(changed)} of the "
                    f"{len(shared)} comparisons they share keep their verdict")
        sentences.append(sentence + (f"; changed: {'; '.join(changed)}." if changed else "."))
    return " ".join(sentences)
NO_EQUAL_TIME = ("_No equal-time study yet: run `bash benchmarks/gpu_budget_study.sh DATASET MODEL_DIR OUT_DIR` "
                 "(a GPU), or notebook 04 with `short-schedule` among its methods._")


def _ahead(cell: dict) -> bool:
    """Return whether a comparison's mean difference from short-schedule is above 0."""
    return cell["diff"] not in ("", "—") and float(cell["diff"]) > 0


def _previous_leader(found: dict) -> tuple[str, int] | None:
    """Return (the method, its count) ahead of short-schedule in the most cells of `found` at equal
    time on its uncorrected 95 % interval (lower bound above 0), ties to the first by name; None
    when no method is."""
    leads: dict[str, int] = {}
    for cell in found["cells"]:
        if cell["verdict"] not in NO_VERDICT and cell["interval"] not in ("", "—") \
                and float(cell["interval"][1:].split(",")[0]) > 0:
            leads[cell["method"]] = leads.get(cell["method"], 0) + 1
    return min(leads.items(), key=lambda kv: (-kv[1], kv[0]), default=None)


def _p_value(text: str) -> float:
    """Return a table's p-value string as a number ("<0.001" as 0.001)."""
    return 0.001 if text == "<0.001" else float(text)


def _holm(text: str) -> str:
    """Return "Holm p 0.078" ("Holm p < 0.001") of a table's Holm-adjusted p-value string."""
    return f"Holm p {text}" if not text.startswith("<") else f"Holm p < {text[1:]}"


def _time_rule(found: dict) -> str:
    """Return the time rule of `found`'s protocol in words."""
    if found["fair"]:
        return f"over {ms.EQUAL_TIME_TOLERANCE:.0%} above their target seconds"
    return f"over {1 + ms.EQUAL_TIME_SLACK:.2f}x `{ms.REFERENCE}`'s seconds"


def _short_correction(found: dict) -> str:
    """Return how the verdicts are made, in a few words, with the family's size."""
    return f"paired t-tests Holm-corrected over all {found['family']}"


def _correction(found: dict) -> str:
    """Return how the verdicts are made, in words, with the family's size."""
    return (f"paired t-tests over seeds, Holm-corrected over all {found['family']} comparisons: \"better\" or "
            f"\"worse\" only where the adjusted p < {ms.VERDICT_ALPHA}")


def _found(cell: dict, link: bool) -> str:
    """Return one verdict as text: "`method` on data at budget (diff pt, [lo, hi], Holm p)", for one
    not at equal time with ", r x its time" (previous protocol: over short-schedule's seconds), ", r
    of its target seconds" (fair protocol) or ", `short-schedule` off target" added; the data name
    a reference link to its run files when `link`."""
    name = f"[{cell['name']}]" if link else cell["name"]
    time = ""
    if cell["verdict"] == "over time":
        time = f", {cell['ratio']} of its target seconds" if cell["fair"] else f", {cell['ratio']}x its time"
    elif cell["verdict"] in NO_VERDICT:
        time = f", `{ms.REFERENCE}` off target"
    return f"`{cell['method']}` on {name} at {cell['budget']} ({cell['diff']} pt, {cell['interval']}, " \
           f"{_holm(cell['holm'])}{time})"


def _preset_tally(own: list[tuple[str, str, str]], link: bool = False) -> str:
    """Return ": better in a, tied in b, worse in c (naming them) of its n cells" from a method's
    [(dataset, budget, verdict)] against short-schedule, the time rule's "over time" counted apart
    where it has any; "" without a cell. `link` writes each named dataset as a [reference]."""
    if not own:
        return ""
    counts = {v: sum(verdict == v for *_, verdict in own) for v in ("better", "tie", "worse")}
    untimed = sum(verdict in NO_VERDICT for *_, verdict in own)
    worse = ", ".join(f"{f'[{name}]' if link else name} {budget}" for name, budget, verdict in own if verdict == "worse")
    parts = [f"better in {counts['better']}", f"tied in {counts['tie']}",
             f"worse in {counts['worse']}" + (f" ({worse})" if worse else "")]
    if untimed:
        parts.append(f"over time in {untimed}")
    return f": {', '.join(parts)} of its {len(own)} cell{'' if len(own) == 1 else 's'}"


def _listed(names: Sequence[str]) -> str:
    """Return names as a list in words: "a", "a and b", "a, b and c"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


MIXED = "mixed"  # the preset group of a cell whose seeds' `mclearn` runs trained as different presets


def mclearn_cell_presets(found: dict) -> dict[tuple[str, str], tuple[str, ...]]:
    """Return {(study, budget): the presets (ms.variant_of of their stored configs, sorted) that the
    `mclearn` runs which `found`'s equal-time table compares there (one a seed, ms._by_budget) trained
    as}, over `found`'s studies (equal_time_verdicts); more than one where its seeds mix presets."""
    return {(study, ms.format_budget(budget)): tuple(sorted({ms.variant_of(r.get("config") or {})
                                                             for r in runs.values()}))
            for study, records in found["records"].items()
            for (method, budget), runs in ms._by_budget(records).items() if method == "mclearn"}


def _mclearn_presets(found: dict) -> list[str]:
    """Return the presets (ms.variant_of of their stored configs, sorted) that `found`'s `mclearn`
    runs trained as (equal_time_verdicts' records)."""
    return sorted({ms.variant_of(r.get("config") or {}) for runs in found["records"].values()
                   for r in runs if r["method"] == "mclearn"})


def _presets_sentence(found: dict, chosen: str | None, before: str | None, ablation: str) -> str:
    """Return the sentence on `mclearn`'s verdicts against short-schedule in `found` tallied per
    preset its runs trained as (mclearn_cell_presets of each cell's own runs): `chosen` (the
    ablation's choice, linked as `ablation`) first, each with its datasets, then the others by name
    (`before` named as the preset before the choice), then the cells whose seeds mix presets, each
    with its presets; where no cell is of `chosen` (or there is no choice), a sentence says so."""
    presets = mclearn_cell_presets(found)
    groups: dict[str, list[dict]] = {}
    for cell in found["cells"]:
        if cell["method"] == "mclearn":
            own = presets[(cell["study"], cell["budget"])]
            groups.setdefault(own[0] if len(own) == 1 else MIXED, []).append(cell)
    parts = []
    for preset in sorted(groups, key=lambda p: (p != chosen, p == MIXED, p)):
        cells = groups[preset]
        tally = _preset_tally([(c["name"], c["budget"], c["verdict"]) for c in cells], True)
        if preset == MIXED:
            where = "; ".join(f"[{c['name']}] {c['budget']}: `{'`, `'.join(presets[(c['study'], c['budget'])])}`"
                              for c in cells)
            parts.append(f"in cells whose seeds mix presets ({where}){tally}")
            continue
        data = _listed(list(dict.fromkeys(f"[{c['name']}]" for c in cells)))
        if preset == chosen:
            note = f"the {ablation}'s choice, on {data}"
        elif chosen in groups:
            note = f"{'the preset before it, ' if preset == before else ''}on {data}; not yet re-run with the choice"
        else:
            note = f"on {data}"
        parts.append(f"as `{preset}` ({note}){tally}")
    sentence = f" `mclearn` {'; '.join(parts)}."
    if chosen and chosen not in groups:
        sentence += f" The {ablation} has since chosen `{chosen}`, not yet run here."
    elif not chosen and before:
        sentence += f" The {ablation} has no choice yet."
    return sentence


def answer_markdown(results_dir: str | Path = "results", link_base: Path | None = None,
                    details: str = "results/README.md", store: RunStore | None = None) -> str:
    """Return the README's answer in markdown: one paragraph naming each method that beats
    `short-schedule` at equal wall-clock on a Holm-corrected verdict and in how many of the (data,
    budget) cells, or that none does and the closest (the lead with the least adjusted p), saying
    how the verdicts are corrected; one sentence on `mclearn` against `short-schedule` (its
    verdicts over its cells); the leads that do not count (not at equal time), with its sources;
    one table, per cell `short-schedule`'s accuracy and the method at equal time with the largest
    mean difference from it, plus a row for every other method better there (110 characters wide
    with method names up to 10 characters, each more widening it by one); and the reference links
    ([data]: its run files, relative to `link_base`) that make every data name in them a link.
    `details` links the full answer (relative to link_base); with a previous protocol's studies, a
    link to its section there and a sentence on the method ahead in most of its cells on
    uncorrected intervals (`_previous_leader`): its verdicts in the answer's cells. With ablation
    studies, the `mclearn` sentence names the variant the
    ablation chose, linking its section of `details`; where the tallied `mclearn` runs trained as
    more than one preset, it tallies per preset (_presets_sentence). `store`: the render's run
    records (RunStore)."""
    import pandas as pd

    store = _store(results_dir, store)
    found = equal_time_verdicts(results_dir, store=store)
    if not found["studies"]:
        return NO_EQUAL_TIME
    wins, cells, studies = found["wins"], len(found["rows"]), found["studies"]
    data = _listed([f"[{name}]" for _, name, _ in studies])
    if wins:
        counts: dict[str, int] = {}
        for cell in wins:
            counts[cell["method"]] = counts.get(cell["method"], 0) + 1
        (first, n_first), *rest = counts.items()
        named = "".join(f" and `{m}` in {n}" for m, n in rest)
        verdict = (f"**At equal wall-clock on {data}, `{first}` beats `{ms.REFERENCE}` in {n_first} of the {cells} "
                   f"cells{named}; no other method does**, on {_short_correction(found)}.")
    else:
        verdict = (f"**No method beats simply training for less time**: in none of the {cells} "
                   f"cell{'' if cells == 1 else 's'} of {data} is a "
                   f"method better than `{ms.REFERENCE}` on {_short_correction(found)}")
        closest = found["closest"]
        verdict += (f"; the closest: `{closest['method']}` on [{closest['name']}] at {closest['budget']} "
                    f"({closest['diff']} pt, {_holm(closest['holm'])})." if closest else ".")
    own = _cell_verdicts(found, "mclearn")
    chosen, before = ablation_choice(results_dir, store)
    ablation = f"[ablation]({details}#{anchor(ABLATION_HEADING)})"
    # the presets the tallied `mclearn` runs trained as, from their stored configs: a study keeps the
    # runs of the preset it ran, which the ablation's choice may since have replaced
    presets = _mclearn_presets(found)
    if own and len(presets) > 1:  # two methods under one name: one tally per preset
        verdict += _presets_sentence(found, chosen, before, ablation)
    elif own:
        trained = presets[0] if presets else ""
        if chosen and trained and trained != chosen:
            preset = f" (trained as `{trained}`; the {ablation} has since chosen `{chosen}`, not yet run here)"
        elif chosen:
            preset = f" (`{chosen}` since the {ablation})"
        else:
            preset = f" (`{trained or before}`; the {ablation} has no choice yet)" if before else ""
        verdict += f" `mclearn`{preset}{_preset_tally(own, True)}."
    elif chosen:
        verdict += f" The one-seed {ablation} chose `{chosen}` for the `mclearn` preset."
    scale = scale_sentence(found)
    if scale:
        verdict += f" {scale}"
    devices = ", ".join(sorted({device for *_, device in studies}))
    sources = ""
    if found["leads_over"]:
        where: dict[str, list[str]] = {}
        for cell in found["leads_over"]:
            where.setdefault(cell["method"], []).append(cell["name"])
        sources += (f"Leads in {_time_rule(found)} do not count: " + "; ".join(
                    f"`{m}` in {len(names)} ({', '.join(f'[{n}]' for n in dict.fromkeys(names))})"
                    for m, names in where.items()) + ". ")
    sources += f"{devices}, up to {found['seeds']} seeds: [all verdicts]({details}#{anchor(EQUAL_TIME_HEADING)})"
    previous = answer_studies(results_dir)[1]
    if previous:
        link = f"[previous protocol]({details}#{anchor(PREVIOUS_HEADING)})"
        leader = _previous_leader(equal_time_verdicts(results_dir, previous, store))
        now = _cell_verdicts(found, leader[0]) if leader else []
        if now:
            verdict += (f" `{leader[0]}`, ahead in {leader[1]} cell{'' if leader[1] == 1 else 's'} of the {link} "
                        f"on uncorrected 95 % intervals{_preset_tally(now, True)} here.")
        else:
            sources += f", the {link}"
    sources += "."
    rows = []
    for row in found["rows"]:
        rows.append(row)
        for cell in wins:  # every other winner of the cell too
            if (cell["name"], cell["budget"]) == (row["data"], row["budget"]) and cell["method"] != row["best other"]:
                rows.append({**row, "best other": cell["method"], "difference (pt)": cell["diff"],
                             "Holm p": cell["holm"], "verdict": "better"})
    columns = ["data", "budget", "short-schedule (%)", "best other", "difference (pt)", "Holm p", "verdict"]
    table = pd.DataFrame(rows, columns=columns).rename(columns={"best other": "method"})
    table["data"] = table["data"].map(lambda name: f"[{name}]")
    references = "\n".join(f"[{name}]: {_link(Path(results_dir, 'runs', study), link_base)}/"
                           for study, name, _ in studies)
    return "\n".join(_wrap(f"{verdict} {sources}")) + f"\n\n{_table(table)}\n\n{references}"


def _wrap(text: str, width: int = 110) -> list[str]:
    """Return text cut into lines of at most `width` characters at spaces, never inside
    parentheses or brackets (a verdict's "(+1.00 pt, [+0.47, +1.54])" stays on one line)."""
    import textwrap

    glue = "\x00"
    kept = re.sub(r"\([^()]*\)|\[[^\[\]]*\]", lambda m: m[0].replace(" ", glue), text)
    return [line.replace(glue, " ") for line in textwrap.wrap(kept, width, break_long_words=False,
                                                               break_on_hyphens=False)]


def _fastest(found: dict) -> str:
    """Return one sentence per study on time to target: the methods faster than short-schedule
    there (speed-up above 1x), each with its bootstrap interval and the seeds on which it was
    faster, or that none was."""
    faster: dict[str, list[str]] = {}
    for row in found["ttt_rows"]:
        speed = row["speed-up vs short-schedule"]
        if row["method"] != ms.REFERENCE and speed != "—" and float(speed.rstrip("x")) > 1:
            faster.setdefault(row["data"], []).append(
                f"`{row['method']}` {speed} {row['speed-up 95% bootstrap']}, faster on {row['seeds faster']} seeds")
    return " ".join(f"On {name}: {'; '.join(faster[name])}." if name in faster else
                    f"On {name} no method reached it sooner than `{ms.REFERENCE}`."
                    for name in dict.fromkeys(row["data"] for row in found["ttt_rows"]))


def equal_time_markdown(results_dir: str | Path = "results", link_base: Path | None = None,
                        figures: bool = True, studies: list[str] | None = None,
                        folder_name: str = EQUAL_TIME_FIGURES, store: RunStore | None = None) -> str:
    """Return the full equal-time answer of `studies` (None: the answer's) in markdown: how the
    verdicts are made (Holm over the family), one sentence per verdict (every method better and
    every method worse than `short-schedule`, with its paired 95 % t-interval and Holm-adjusted p;
    those not at equal time apart), the sentence on `mclearn`, the table of
    `equal_time_verdicts`' rows, and time to target across studies: which methods reached it
    sooner than `short-schedule` (bootstrap intervals over seeds), its table and its performance
    profile (written to <results>/figures/<folder_name>/ when `figures`, linked when it exists).
    Every study links its section (`study_sections`). `store`: the render's run records (RunStore)."""
    import pandas as pd

    store = _store(results_dir, store)
    found = equal_time_verdicts(results_dir, studies, store)
    if not found["studies"]:
        return NO_EQUAL_TIME
    wins, losses = found["wins"], found["losses"]
    if wins:
        verdict = f"At equal wall-clock, these beat `{ms.REFERENCE}`: " + "; ".join(_found(w, False) for w in wins) + "."
    else:
        verdict = (f"**No method beats simply training for less time**: at equal wall-clock no budgeted method is "
                   f"better than `{ms.REFERENCE}`.")
        if found["closest"]:
            verdict += f" The closest: {_found(found['closest'], False)}."
    if losses:
        verdict += f" Behind `{ms.REFERENCE}`: " + "; ".join(_found(cell, False) for cell in losses) + "."
    if found["over"]:
        verdict += (f" Not at equal time ({_time_rule(found)}), so no verdict: "
                    + "; ".join(_found(cell, False) for cell in found["over"]) + ".")
    own = _cell_verdicts(found, "mclearn")
    if own and len(_mclearn_presets(found)) > 1:  # two methods under one name: one tally per preset
        chosen, before = ablation_choice(results_dir, store)
        verdict += _presets_sentence(found, chosen, before, f"[ablation](#{anchor(ABLATION_HEADING)})")
    elif own:
        verdict += f" `mclearn` against `{ms.REFERENCE}`{_preset_tally(own)}."
    links = [f"[`{study}`](#{anchor(study)}) ({device})" for study, _, device in found["studies"]]
    n = len(found["studies"])
    parts = [f"Verdicts: {_correction(found)}; the simultaneous intervals in the study tables are Bonferroni's "
             f"at 1 - {ms.VERDICT_ALPHA}/{found['family']}.\n",
             f"{verdict} From {n} stud{'y' if n == 1 else 'ies'} ({', '.join(links)}; up to {found['seeds']} seeds; "
             f"accuracy on the test split; every method's lr by one rule). The table: at each budget, "
             f"`{ms.REFERENCE}` and the method at equal time with the largest mean difference from it.\n",
             _table(pd.DataFrame(found["rows"])) + "\n"]
    scale = scale_sentence(found, link=False)
    if scale:
        parts.append(scale + "\n")
    fixed = fixed_cost_table(found)
    if len(fixed):
        parts.append("Fixed costs, as a share of train seconds (mean over seeds): eager warm-up steps and graph "
                     "captures, plus MC-Learn's scoring; evaluation excluded." + f" {fixed_cost_sentence(found)}".rstrip() + "\n")
        parts.append(_table(fixed) + "\n")
    folder = Path(results_dir) / "figures" / folder_name
    if figures:
        folder.mkdir(parents=True, exist_ok=True)
        taus = [round(t, 2) for t in np.arange(1.0, 3.001, 0.01)]
        ms.plot_performance_profile(ms.performance_profile(found["times"], taus), folder / "performance_profile.png")
        pd.DataFrame(found["ttt_rows"]).to_csv(folder / "time_to_target.csv", index=False)
    png = _link(folder / "performance_profile.png", link_base)
    profile_note = (f" Performance profile over the studies: [`{png}`]({png})."
                    if (folder / "performance_profile.png").exists() else "")
    parts.append(f"Time to target (the full baseline's median eval accuracy - 1 point; per seed the fastest run at "
                 f"any budget, median over seeds; intervals: {ms.BOOTSTRAP_RESAMPLES:,} bootstrap resamples of the "
                 f"seeds, generator seed {ms.BOOTSTRAP_SEED}). {_fastest(found)}" + profile_note + "\n")
    parts.append(_table(pd.DataFrame(found["ttt_rows"])) + "\n")
    return "\n".join(parts)


PREVIOUS_HEADING = "Previous protocol"  # results/README.md's section of the studies the fair protocol replaces
PREVIOUS_KEY = "previous-protocol"  # its notes key
PREVIOUS_FIGURES = "equal-time-previous"  # its figures folder under results/figures/
PREVIOUS_CHANGES = ("What changed since (the fair protocol): every budgeted method, `short-schedule` included, tunes "
                    "its own lr at every budget it reports; equal time is kept by the clock (each run trains until "
                    "its train seconds reach its share of the reference seconds, within "
                    f"{ms.EQUAL_TIME_TOLERANCE:.0%}); every schedule ends at the run's last update; one graph-capture "
                    "policy for every method; and the verdicts are Holm-corrected. These studies kept each method's lr "
                    "from 1/2, budgets priced from measured step costs and judged at "
                    f"{1 + ms.EQUAL_TIME_SLACK:.2f}x `{ms.REFERENCE}`'s seconds.")


def previous_markdown(results_dir: str | Path = "results", link_base: Path | None = None,
                      figures: bool = True, store: RunStore | None = None) -> str:
    """Return the previous protocol's section body: PREVIOUS_CHANGES and its studies' full
    equal-time answer (equal_time_markdown, their own Holm family); "" when the answer has no
    previous protocol (no fair-protocol study yet). `store`: the render's run records (RunStore)."""
    previous = answer_studies(results_dir)[1]
    if not previous:
        return ""
    return f"{PREVIOUS_CHANGES}\n\n" + equal_time_markdown(results_dir, link_base, figures, previous, PREVIOUS_FIGURES,
                                                           store)


# ----------------------------------------------------------------------------- the ablation
NO_ABLATION = ("_No ablation study yet: run `bash benchmarks/gpu_ablation.sh DATASET MODEL_DIR OUT_DIR` (a GPU), "
               "then `python make_readme.py`._")


def ablation_records(results_dir: str | Path = "results", store: RunStore | None = None
                     ) -> tuple[list[str], list[dict]]:
    """Return (the studies of the latest ablation of <results>/summary.csv (ms.latest_ablation: the
    switch's under the fair protocol once it has run, else the variants'), by name; their run records,
    from `store`, the render's run records (RunStore))."""
    rows, store = _summary(results_dir), _store(results_dir, store)
    studies = [] if rows is None else ms.latest_ablation(_ablation_names(rows))
    return studies, [r for study in studies for r in store.study(study)]


def ablation_choice(results_dir: str | Path = "results", store: RunStore | None = None
                    ) -> tuple[str | None, str | None]:
    """Return (the variant ms.ablation_table's rule chooses over the latest ablation's studies, the
    `mclearn` preset that ablation started from (ms.preset_before)); the choice is None while a
    dataset of ms.ABLATION_SETS has no runs (no choice yet), both are None without an ablation.
    `store`: the render's run records, which hold its ablation table (RunStore.ablation)."""
    _, records, table = _store(results_dir, store).ablation()
    return table.attrs["chosen"], ms.preset_before(records) if table.attrs["leader"] else None


# --- the ablation's paragraphs: its numbers (mcstudy.ablation) in sentences -------------------------
CONFIRMATION_SEEDS = 5  # the seeds an equal-time study needs of the chosen preset to confirm the one-seed ablation


def _missing(value: Any) -> bool:
    """Return True for None, NaN and pandas' NA (a missing diagnostics value)."""
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _count(value: Any) -> str:
    return "—" if _missing(value) else f"{value:,.0f}"


def _fixed(value: Any, spec: str, unit: str = "") -> str:
    return "—" if _missing(value) else f"{value:{spec}}{unit}"


def _percent(share: Any) -> str:
    return "—" if _missing(share) else f"{float(share) * 100:.2f} %"


def _more(a: Any, b: Any, noun: str) -> str:
    """Return "more NOUN than" / "fewer NOUN than" / "as many NOUN as" comparing a with b."""
    if _missing(a) or _missing(b):
        return f"{noun} against"
    return f"more {noun} than" if a > b else f"fewer {noun} than" if a < b else f"as many {noun} as"


def _cell_means(rows, method: str) -> dict[str, Any] | None:
    """Return {diagnostics column: its mean over `method`'s rows (None where all are missing)}, or
    None when `method` has no row among `rows` (one cell of ablation_diagnostics)."""
    own = rows[rows["method"] == method]
    if own.empty:
        return None
    return {c: (own[c].dropna().astype(float).mean() if own[c].notna().any() else None)
            for c in own.columns if c not in ("study", "budget", "method", "seed")}


def ablation_paragraphs(records: Sequence[dict[str, Any]],
                        equal_time: dict[str, tuple] | None = None) -> dict[str, str]:
    """Return {dataset: paragraph} for every ablation study among `records` (ablation_diagnostics'
    datasets): where the chosen variant (ablation_table's over the cells there are: the leader while
    a dataset of ms.ABLATION_SETS has no runs) is ahead of or behind REFERENCE and
    against the preset before it (preset_before: `mclearn-v1` for the variants' ablation, the
    `mclearn` preset for the switch's) at each budget of that dataset, and why, in the
    numbers of ablation_diagnostics (mean over seeds where a cell has several): validation accuracy
    and its difference from the short schedule, train seconds, updates that ran, distinct rows given a full
    pass and their share of the training set, full passes, the scorer's median rank agreement,
    scoring against update seconds and, on noisy data, the flipped rows' share of the full passes
    against their share of the data, and what selection did (selection_sentences). One seed is no
    verdict: the differences are one run's, and
    the words say only ahead, behind or equal.
    `equal_time` maps a dataset to (its equal-time study, that study's records[, its equal-time table
    in the answer's Holm family]): the paragraph then ends with ablation_confirmation's sentence
    (the chosen preset's 5-seed result, or that it is not yet run). Empty without a chosen variant."""
    table = ms.ablation_table(records)
    chosen = table.attrs["chosen"]
    if chosen is None:
        return {}
    frame = ms.ablation_diagnostics(records)
    previous = ms.preset_before(records)
    out = {}
    for dataset in dict.fromkeys(frame["study"]):
        rows = frame[frame["study"] == dataset]
        budgets = sorted({float(r["time_budget"]) for r in ms.ablation_runs(records)
                          if ms.ablation_dataset(r["study"]) == dataset})
        seeds = sorted(set(rows["seed"]))
        versus = f"`{ms.REFERENCE}`" + (f" and `{previous}`" if previous != chosen else "")
        text = [f"`{chosen}` against {versus} on {dataset} "
                f"({'seed ' + str(seeds[0]) + ', one run each, so no verdict' if len(seeds) == 1 else f'mean of {len(seeds)} seeds'}; "
                f"validation accuracy):"]
        for value in budgets:
            budget = ms.format_budget(value)
            at = rows[rows["budget"] == budget]
            c, s, v = (_cell_means(at, chosen), _cell_means(at, ms.REFERENCE),
                       _cell_means(at, previous) if chosen != previous else None)
            if c is None or s is None:
                missing = " and ".join(f"`{m}`" for m, x in ((chosen, c), (ms.REFERENCE, s)) if x is None)
                text.append(f"At {budget} there is no run of {missing}.")
                continue
            diff = c["vs short (pt)"]
            verdict = ("has no run of the same seed as" if _missing(diff) else "is ahead of" if diff > 0
                       else "is behind" if diff < 0 else "equals")
            sentence = (f"At {budget} it {verdict} `{ms.REFERENCE}` ({_fixed(diff, '+.2f', ' pt')}: "
                        f"{_fixed(c['accuracy (%)'], '.2f', ' %')} against {_fixed(s['accuracy (%)'], '.2f', ' %')})")
            if v is not None:
                gap = c["accuracy (%)"] - v["accuracy (%)"]
                versus = "ahead of" if gap > 0 else "behind" if gap < 0 else "equal to"
                sentence += (f" and {versus} `{previous}` ({gap:+.2f} pt: {_fixed(v['accuracy (%)'], '.2f', ' %')}, "
                             f"{_fixed(v['vs short (pt)'], '+.2f', ' pt')} against `{ms.REFERENCE}`)")
            text.append(sentence + ".")
            why = (f"In {_fixed(c['train s'], '.2f', ' s')} (`{ms.REFERENCE}` {_fixed(s['train s'], '.2f', ' s')}"
                   + (f", `{previous}` {_fixed(v['train s'], '.2f', ' s')}" if v else "") + ") it ran "
                   f"{_more(c['updates'], s['updates'], 'updates')} `{ms.REFERENCE}` ({_count(c['updates'])} against "
                   f"{_count(s['updates'])}" + (f"; `{previous}` {_count(v['updates'])}" if v else "") + ") and gave "
                   f"{_count(c['full passes'])} full passes to {_more(c['distinct rows'], s['distinct rows'], 'distinct rows')} "
                   f"`{ms.REFERENCE}`'s one pass each ({_count(c['distinct rows'])}, {_percent(c['distinct share'])} of the "
                   f"training set, against {_count(s['distinct rows'])}, {_percent(s['distinct share'])})")
            if v:
                why += (f", {_more(c['distinct rows'], v['distinct rows'], 'distinct rows')} `{previous}`'s "
                        f"{_count(v['full passes'])} full passes ({_count(v['distinct rows'])}, "
                        f"{_percent(v['distinct share'])})")
            text.append(why + ".")
            scorer = (f"Its scorer's median rank agreement was {_fixed(c['rank agreement'], '.3f')}"
                      + (f" (`{previous}` {_fixed(v['rank agreement'], '.3f')})" if v else "")
                      + f"; scoring took {_fixed(c['score s'], '.3f', ' s')} against "
                      f"{_fixed(c['update s'], '.3f', ' s')} of updates"
                      + (f" (`{previous}` {_fixed(v['score s'], '.3f', ' s')} against "
                         f"{_fixed(v['update s'], '.3f', ' s')})" if v else ""))
            text.append(scorer + ".")
            text += selection_sentences(at, chosen)
            if not (_missing(c["flipped data share"]) or _missing(c["flipped pass share"])):
                side = ("more than" if c["flipped pass share"] > c["flipped data share"] else "less than"
                        if c["flipped pass share"] < c["flipped data share"] else "just")
                text.append(f"The flipped rows, {_percent(c['flipped data share'])} of the data, took "
                            f"{_percent(c['flipped pass share'])} of its full passes, {side} their share"
                            + (f" (`{previous}`: {_percent(v['flipped pass share'])})" if v else "") + ".")
        if equal_time and dataset in equal_time:
            study, confirming, *table = equal_time[dataset]
            text.append(ablation_confirmation(confirming, chosen, dataset, study, budgets, *table))
        out[dataset] = " ".join(text)
    return out


def selection_sentences(rows, chosen: str) -> list[str]:
    """Return what selection did in one cell of ablation_diagnostics (`rows`), from the run files'
    selection records (selection_diagnostics, means over seeds): for the `chosen` variant, the share
    of its steps drawn from selected pools, then selection's variance reduction against uniform
    draws measured at the end of its run on one pool (the last layer's gradients) and estimated on
    the same pool from the losses, and with the switch the median of its own estimates over its
    pools; for each other variant with the switch on, its share and its two numbers. Nothing for a
    run without the records."""
    out = []
    for method in [chosen, *(v for v in ms.MCLEARN_VARIANTS if "switch" in ms.MCLEARN_VARIANTS[v] and v != chosen)]:
        m = _cell_means(rows, method)
        if m is None or _missing(m["selected share"]):
            continue
        switch = "" if _missing(m["tau switch"]) else \
            f"; the switch's median estimate over its pools {m['tau switch']:.3f}"
        if method == chosen:
            out.append(f"It drew {_percent(m['selected share'])} of its steps from selected pools; at the end of the "
                       f"run, on one pool of {_count(m['check rows'])} rows, selection's variance reduction against "
                       f"uniform draws was {_fixed(m['tau measured'], '.3f')} measured on the last layer's gradients "
                       f"and {_fixed(m['tau est'], '.3f')} estimated from the losses{switch} (above 1: selection "
                       f"reduces the variance).")
        else:
            out.append(f"`{method}` drew {_percent(m['selected share'])} of its steps from selected pools (variance "
                       f"reduction at its end {_fixed(m['tau measured'], '.3f')} measured, "
                       f"{_fixed(m['tau est'], '.3f')} estimated{switch}).")
    return out


def ablation_confirmation(records: Sequence[dict[str, Any]], chosen: str, dataset: str, study: str,
                          budgets: Sequence[float], table=None) -> str:
    """Return one sentence on the chosen variant's preset in an equal-time study (`records`, test
    split): its runs are those of method `mclearn` whose stored config has exactly the chosen
    variant's parts on (variant_parts_on), else those of the chosen variant's own id. With at least
    CONFIRMATION_SEEDS seeds of them at every one of `budgets`, its difference from REFERENCE there
    (paired over seeds, 95 % interval, verdict on the Holm-adjusted p of preset_table's family:
    `table`'s, or the preset's own comparisons), then why, per budget, in the means
    over those seeds of ablation_diagnostics' numbers against REFERENCE's: train seconds, updates that ran,
    distinct rows given a full pass and their share of the training set, the scorer's median rank
    agreement, the time breakdown (scoring, graph-replayed updates, warm-up steps and captures, the
    captures alone against REFERENCE's) and, on noisy data, the flipped rows' share of the
    full passes against their share of the data (only where its runs recorded their full passes);
    else that the 5 seeds are not yet run on `dataset` (with how many there are, when some are)."""
    runs, name = ms.chosen_preset_runs(records, chosen)
    table = ms.preset_table(records, runs, name, table)
    rows = {budget: table[(table["method"] == name) & (table["budget"] == ms.format_budget(budget))] for budget in budgets}
    seeds = {budget: int(row["seeds"].iloc[0]) if len(row) else 0 for budget, row in rows.items()}
    if min(seeds.values(), default=0) < CONFIRMATION_SEEDS:
        have = [f"{n} at {ms.format_budget(b)}" for b, n in seeds.items() if n]
        return (f"{CONFIRMATION_SEEDS} seeds of the chosen preset not yet run on {dataset}"
                + (f" (`{name}` in `{study}` has {', '.join(have)})" if have else "") + ".")
    found = [f"{row['vs short-schedule (pt)'].iloc[0]} pt {row['95% interval'].iloc[0]} at {ms.format_budget(b)} "
             f"({row['verdict'].iloc[0]})" for b, row in rows.items()]
    text = [f"In `{study}` ({min(seeds.values())} seeds, test split), the chosen preset (`{name}`) against "
            f"`{ms.REFERENCE}`: {' and '.join(found)}, paired 95 % intervals, verdicts on the Holm-adjusted p over "
            f"{table.attrs['family']} comparison{'' if table.attrs['family'] == 1 else 's'}."]
    frame = ms.ablation_diagnostics([r for r in records if r["method"] == ms.REFERENCE] + runs, {name, ms.REFERENCE})
    for budget in budgets:
        at = frame[frame["budget"] == ms.format_budget(budget)]
        c, s = _cell_means(at, name), _cell_means(at, ms.REFERENCE)
        if c is None or s is None or _missing(c["distinct rows"]):
            continue  # runs without the full-pass telemetry (record_passes) have no why to give
        why = (f"At {ms.format_budget(budget)}, in the means over its seeds, it trained {_fixed(c['train s'], '.2f', ' s')} "
               f"against `{ms.REFERENCE}`'s {_fixed(s['train s'], '.2f', ' s')}, ran {_fixed(c['updates'], '.1f')} updates "
               f"against {_fixed(s['updates'], '.1f')}, and gave full passes to {_count(c['distinct rows'])} distinct rows "
               f"({_percent(c['distinct share'])} of the training set) against {_count(s['distinct rows'])} "
               f"({_percent(s['distinct share'])}); its scorer's median rank agreement was "
               f"{_fixed(c['rank agreement'], '.3f')}; of its seconds, scoring took {_fixed(c['score s'], '.3f', ' s')}, "
               f"updates replayed through graphs {_fixed(c['update s'], '.3f', ' s')} and the eager warm-up steps and "
               f"captures of new update shapes {_fixed(c['warm-up s'], '.3f', ' s')} (the captures alone "
               f"{_fixed(c['capture s'], '.3f', ' s')}, `{ms.REFERENCE}`'s {_fixed(s['capture s'], '.3f', ' s')})")
        if not (_missing(c["flipped data share"]) or _missing(c["flipped pass share"])):
            why += (f"; the flipped rows, {_percent(c['flipped data share'])} of the data, took "
                    f"{_percent(c['flipped pass share'])} of its full passes")
        text.append(why + ".")
    return " ".join(text)


def ablation_markdown(results_dir: str | Path = "results", link_base: Path | None = None,
                      store: RunStore | None = None) -> str:
    """Return the ablation in markdown, from the run files of every ablation study: ms.ABLATION_RULE,
    ms.ablation_table (the short schedule's reference row last), the chosen variant (or, while a
    dataset of ms.ABLATION_SETS has no runs, ms.choice_sentence: no choice yet, the leader), and per dataset
    (linking its run files) ablation_paragraphs' paragraph, which ends with the chosen preset's
    5-seed result in the fair-protocol study of the dataset and model on any GPU (ms.fair_study_of)
    where there is one, else in its equal-time study (ms.equal_time_study_of), with
    the verdicts of its protocol's Holm family (`equal_time_families`), or that it is not yet run. Links the
    diagnostics file of benchmarks/ablation.py when it exists. `store`: the render's run records,
    which hold the ablation and its table (RunStore.ablation)."""
    store = _store(results_dir, store)
    studies, records, table = store.ablation()
    if table.attrs["leader"] is None:
        return NO_ABLATION
    rows = _summary(results_dir)
    present = set(rows["study"].astype(str))
    equal_time, families = {}, equal_time_families(results_dir, store)
    fair_studies = ms.fair_study_names(present)
    for study in studies:
        other = ms.fair_study_of(study, fair_studies) or ms.equal_time_study_of(study)
        equal_time[ms.ablation_dataset(study)] = (other, store.study(other) if other in present else [],
                                                   families.get(other))
    choice = ms.choice_sentence(table, ms.preset_before(records))
    if table.attrs["chosen"] is None:  # no choice yet: the leader's numbers, nothing to confirm
        paragraphs = ablation_paragraphs(records)
    else:
        paragraphs = ablation_paragraphs(records, equal_time)
        tally = _preset_tally([(dataset, budget, verdict) for dataset, (_, runs, family) in equal_time.items()
                               for budget, verdict in ms.chosen_preset_verdicts(runs, table.attrs["chosen"], family)])
        if tally:
            choice = (f"{choice.removesuffix('.')}; as the `mclearn` preset, over its seeds in the studies the "
                      f"paragraphs below end with, against `{ms.REFERENCE}`{tally}.")
    parts = [ms.ABLATION_RULE + "\n", _table(table) + "\n", choice + "\n"]
    every_run = Path(results_dir) / ms.ablation_folder(studies) / "ablation_table.md"
    if every_run.exists():
        link = _link(every_run, link_base)
        parts.append(f"Every run's numbers (`python3 benchmarks/ablation.py`): [`{link}`]({link}).\n")
    for study in studies:
        dataset = ms.ablation_dataset(study)
        if dataset in paragraphs:
            runs = _link(Path(results_dir, "runs", study), link_base) + "/"
            parts.append(f"**{dataset}** ([`{runs}`]({runs})): {paragraphs[dataset]}\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the step benchmark
def bench_markdown(results_dir: str | Path = "results", link_base: Path | None = None) -> str:
    """Return one table per results/bench/*.json file (written by benchmarks/bench_step.py), rows
    in the file's order; MC-Learn rows add its own overhead: 1 - (seconds of plain updates on
    exactly its full-pass batches) / (its seconds)."""
    import pandas as pd

    parts = []
    for path in sorted(Path(results_dir, "bench").glob("*.json")):
        if path.name.startswith("step-cost-"):  # step-cost curves: a plot, linked from docs/method.md
            continue
        rows = pd.DataFrame(json.loads(path.read_text()))
        columns = [c for c in BENCH_COLUMNS if c in rows.columns]
        table = rows[columns].rename(columns=BENCH_COLUMNS)
        table["tokens/s"] = table["tokens/s"].map(lambda v: f"{v:,.0f}")
        if "own overhead" in table:
            table["own overhead"] = table["own overhead"].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
        table = table.astype(object).where(table.notna(), "").astype(str)
        devices = ", ".join(sorted(set(rows["device"])))
        link = _link(path, link_base)
        parts.append(f"[`{link}`]({link}) ({devices}, {int(rows['n_sequences'].iloc[0]):,} "
                     f"sequences per epoch)\n")
        parts.append(_table(table) + "\n")
    return "\n".join(parts) or "_No benchmark yet: run `python benchmarks/bench_step.py` on a GPU._"


# ----------------------------------------------------------------------------- the files
def notes_block(key: str, notes: dict[str, str]) -> str:
    """Return the hand-written notes of `key` between their markers (empty when there are none)."""
    return f"<!-- notes:{key}:start -->\n{notes.get(key, '')}<!-- notes:{key}:end -->\n"


def read_notes(path: Path) -> dict[str, str]:
    """Return {key: text} of the notes blocks of a generated file (none when it does not exist)."""
    return notes_in(path.read_text()) if path.exists() else {}


def notes_in(text: str) -> dict[str, str]:
    """Return {key: text} of the notes blocks in `text`."""
    return {m["key"]: m["body"] for m in NOTES.finditer(text)}


def results_readme(results_dir: str | Path = "results", path: Path | None = None, figures: bool = True,
                   store: RunStore | None = None) -> str:
    """Return results/README.md: the equal-time answer in full, the previous protocol's studies
    (`previous_markdown`, a section only when there are fair-protocol studies), the ablation
    (`ablation_markdown`), one section per study and the step benchmark, with the notes blocks of
    the file at `path` (default <results>/README.md) kept. Raise ValueError naming the file and the
    keys when it holds notes that no section of the new text has (a study that left summary.csv), so
    that no hand-written text is lost; an empty block of such a study goes with it. `store`: the
    render's run records (RunStore), which every section reads."""
    store = _store(results_dir, store)
    results_dir = Path(results_dir)
    path = path or results_dir / "README.md"
    notes, base = read_notes(path), path.parent
    body = ("# Results\n\nGenerated by `python make_readme.py` from [`summary.csv`](summary.csv) (one row per run), "
            "the run files under\n[`runs/`](runs/) and the benchmark files under [`bench/`](bench/): edit only "
            "between `<!-- notes:... -->` markers,\nwhich regeneration keeps. Accuracy is mean ± std over seeds; "
            "train seconds are the median [min–max];\nspeed-ups count against the optimized baseline measured in "
            "the same study on the same device. The\nREADME's answer is the first section's short form.\n\n"
            f"## {EQUAL_TIME_HEADING}\n\nDoes anything beat `{ms.REFERENCE}`, the optimized baseline cut to the "
            f"budget?\n\n{notes_block(EQUAL_TIME_KEY, notes)}\n"
            f"{equal_time_markdown(results_dir, base, figures, store=store)}\n")
    previous = previous_markdown(results_dir, base, figures, store)
    if previous:
        body += (f"## {PREVIOUS_HEADING}\n\nThe equal-time studies made before the fair protocol.\n\n"
                 f"{notes_block(PREVIOUS_KEY, notes)}\n{previous}\n")
    body += (f"## {ABLATION_HEADING}\n\nWhich MC-Learn variant the `mclearn` preset becomes, by a rule fixed before the runs.\n\n"
            f"{notes_block(ABLATION_KEY, notes)}\n{ablation_markdown(results_dir, base, store)}\n"
            f"## Studies\n\n{notes_block('studies', notes)}\n{study_sections(results_dir, base, notes, store)}\n"
            f"## Step benchmark\n\n{notes_block(BENCH_KEY, notes)}\n{bench_markdown(results_dir, base)}\n")
    lost = sorted(key for key in set(notes) - set(notes_in(body)) if notes[key].strip())  # empty: nothing to lose
    if lost:
        raise ValueError(f"{path} holds notes for {', '.join(lost)}, which no section has any more: move that text "
                         f"into another notes block or delete its markers, then run again")
    return body


def replace_between(text: str, markers: tuple[str, str], body: str, path: Path) -> str:
    """Return `text` with what lies between the two markers replaced by `body`; raise ValueError
    naming `path` when it lacks them."""
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"{path} lacks the markers {start} ... {end}: put them back where the answer goes")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_readme(readme: str | Path = REPO / "README.md", results_dir: str | Path = REPO / "results",
                  figures: bool = True, store: RunStore | None = None) -> None:
    """Rewrite <results>/README.md (`results_readme`) and the answer block of `readme`
    (`answer_markdown`, linking the former), both from one render's run records: `store`, or a new
    RunStore of `results_dir` (each run file read once)."""
    readme, results_dir = Path(readme), Path(results_dir)
    store = _store(results_dir, store)
    target = results_dir / "README.md"
    results_text = results_readme(results_dir, target, figures, store)
    text = replace_between(readme.read_text(), ANSWER_MARKERS,
                           answer_markdown(results_dir, readme.parent, _link(target, readme.parent), store), readme)
    target.write_text(results_text)
    readme.write_text(text)


def fewer_runs(summary, rows) -> list[str]:
    """Return "study/label-seed<k>" of each run that the published summary.csv at `summary` lists and
    the summary rows `rows` (ms.summary_rows) lack; none when there is no published file."""
    if not Path(summary).exists():
        return []

    def keys(frame) -> set[tuple[str, str, float, str]]:
        frame = ms._with_summary_defaults(frame)
        return {(str(s), str(m), round(float(b), 6), str(int(k))) for s, m, b, k in
                zip(frame["study"], frame["method"], frame["time_budget"], frame["seed"])}

    return [f"{s}/{ms.run_label(m, b)}-seed{k}" for s, m, b, k in sorted(keys(ms.read_summary(summary)) - keys(rows))]


def publish(readme: Path, results_dir: Path, allow_fewer: bool = False) -> None:
    """Re-summarize <results_dir>/runs into summary.csv and rewrite results/README.md and the answer
    of `readme`, after checking what they are written from: raise ValueError (one line naming what
    is missing and the fix) when the run folder is missing or holds no run file, when a run file
    is unreadable or not the run its name says (ms.load_runs), when `readme` lacks its answer
    markers, and when runs that the published summary.csv lists are gone (`allow_fewer`: published
    without them, named in a note). Nothing is written before every check holds."""
    runs = results_dir / "runs"
    if not runs.is_dir() or not any(runs.glob(f"*/*{ms.RUN_FILE_SUFFIX}")):
        raise ValueError(f"{runs} holds no run files, and make_readme.py writes every table from them: restore "
                         f"them (git checkout -- {runs}) or run a sweep first")
    every_record = ms.load_runs(results_dir)  # each run file read once, for summary.csv and every table
    rows = ms.summary_frame(every_record)
    gone = fewer_runs(results_dir / "summary.csv", rows)
    if gone and not allow_fewer:
        raise ValueError(f"{len(gone)} run(s) that {results_dir / 'summary.csv'} publishes are gone from {runs} "
                         f"({', '.join(gone[:3])}{' ...' if len(gone) > 3 else ''}): restore them (git checkout -- "
                         f"{runs}), or pass --allow-fewer to publish without them")
    if gone:
        print(f"note: publishing without {len(gone)} run(s) that summary.csv listed: {', '.join(gone[:10])}"
              f"{' ...' if len(gone) > 10 else ''}")
    replace_between(readme.read_text(), ANSWER_MARKERS, "", readme)  # its markers, before anything is written
    ms.write_summary(results_dir, rows)
    update_readme(readme, results_dir, store=RunStore(results_dir, every_record))


def main(argv: list[str] | None = None) -> int:
    """Re-summarize this repository's results/ and rewrite README.md's answer and results/README.md.
    An error is one line "error: ..." on stderr naming what is missing and the fix (exit 1)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--results", default=str(REPO / "results"), help="the results folder (default: results/)")
    parser.add_argument("--readme", default=str(REPO / "README.md"), help="the README whose answer block is rewritten")
    parser.add_argument("--allow-fewer", action="store_true",
                        help="publish although runs that summary.csv lists are gone (a note names them)")
    args = parser.parse_args(argv)
    try:
        publish(Path(args.readme), Path(args.results), args.allow_fewer)
    except (ValueError, OSError) as err:
        message = " ".join(str(err).split())
        if isinstance(err, OSError) and err.filename:
            message = f"{err.strerror or err}: {err.filename}"
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
