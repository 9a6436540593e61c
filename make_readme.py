"""Write the generated parts of README.md and the whole of results/README.md from the run files.

    python make_readme.py

Re-summarizes results/runs/ into results/summary.csv, then rewrites
- README.md between `<!-- answer:start -->` and `<!-- answer:end -->`: the equal-time answer
  (`answer_markdown`: which method, if any, beats `short-schedule` at equal wall-clock, where, by
  how much with its paired 95 % interval, and one table at most 110 characters wide), every number
  of it linked to the run files it comes from;
- results/README.md: the full equal-time answer (`equal_time_markdown`: every verdict, each
  study's equal-time table, time to target and its performance profile), the MC-Learn ablation
  (`ablation_markdown`: its rule, table, choice and a paragraph per dataset), one section per study
  (`study_sections`: its report table from summary.csv, or its learning-rate sweep) and the step
  benchmark tables (`bench_markdown`). Hand-written notes between `<!-- notes:KEY:start -->` and
  `<!-- notes:KEY:end -->` are kept across regenerations.

Every link is relative to the file it is written into. The numbers come from mclearn_core's table
functions (`report_table`, `lr_sweep_table`, `equal_time_table`, `time_to_target`, `ablation_table`,
`ablation_paragraphs`); this file only
lays them out.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np

import mclearn_core as mc

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


# ----------------------------------------------------------------------------- the studies
def _summary(results_dir: str | Path):
    """Return summary.csv's rows (a DataFrame), or None when there is none."""
    path = Path(results_dir) / "summary.csv"
    return mc.read_summary(path) if path.exists() else None


def _equal_time_names(rows) -> set[str]:
    """Return the equal-time studies among summary rows: those that ran the short-schedule
    reference, except its learning-rate sweeps ("-lr") and the one-seed ablation studies (names
    ending in mc.ABLATION_SUFFIX: they ran it as the ablation's control, on validation accuracy)."""
    return {str(s) for s in set(rows.loc[rows["method"] == mc.REFERENCE, "study"])
            if not str(s).endswith("-lr") and not mc.is_ablation_study(s)}


def _ablation_names(rows) -> list[str]:
    """Return the ablation studies among summary rows (names ending in mc.ABLATION_SUFFIX), by name."""
    return sorted(str(s) for s in set(rows["study"]) if mc.is_ablation_study(s))


def study_order(rows) -> list[str]:
    """Return the studies of summary rows that get a section of their own, in reading order:
    the equal-time studies, then the other GPU studies (the ablation studies among them), then the
    CPU ones, each by name. A learning-rate sweep ("<study>-lr") is shown inside its study's section
    when that study exists."""
    studies = set(rows["study"].astype(str))
    on_cpu = rows.groupby("study")["device"].agg(lambda d: all(str(v).startswith("cpu") for v in d))
    equal_time = _equal_time_names(rows)
    own = [s for s in studies if not (s.endswith("-lr") and s.removesuffix("-lr") in studies)]
    return sorted(own, key=lambda s: (s not in equal_time, bool(on_cpu[s]), s))


def _study_table(results_dir: Path, rows, study: str) -> str:
    """Return a study's table in markdown: the lr sweep table of a "-lr" study's run files, else
    the report table of its summary rows."""
    if study.endswith("-lr"):
        return _table(mc.lr_sweep_table(mc.load_runs(results_dir, study)))
    return _table(mc.report_table(rows[rows["study"] == study]).drop(columns=["study"]))


def _sources(results_dir: Path, study: str, link_base: Path | None) -> str:
    runs = _link(Path(results_dir, "runs", study), link_base) + "/"
    rows_file = _link(Path(results_dir, "summary.csv"), link_base)
    return f"run files: [`{runs}`]({runs}), rows of [`{rows_file}`]({rows_file})"


def study_sections(results_dir: str | Path = "results", link_base: Path | None = None,
                   notes: dict[str, str] | None = None) -> str:
    """Return one markdown section per study of <results>/summary.csv (`study_order`): its
    heading (the study's name), the run files it comes from, its table (`report_table`; for an
    equal-time study also its `equal_time_table`; a learning-rate sweep's `lr_sweep_table`, under
    its study when it has one) and its notes block. An ablation study (mc.ABLATION_SUFFIX) gets no
    equal-time table: its one-seed runs are in the Ablation section (`ablation_markdown`)."""
    rows = _summary(results_dir)
    if rows is None:
        return "_No results yet: run a sweep, then `python make_readme.py`._"
    results_dir, notes = Path(results_dir), notes or {}
    order, equal_time = study_order(rows), _equal_time_names(rows)
    parts = ["Contents: " + ", ".join(f"[{study}](#{anchor(study)})" for study in order) + ".\n"]
    for study in order:
        parts.append(f"### {study}\n\n{_sources(results_dir, study, link_base)}\n\n"
                     f"{_study_table(results_dir, rows, study)}\n")
        if study in equal_time:
            table = mc.equal_time_table(mc.load_runs(results_dir, study))
            parts.append(f"Equal time against `{mc.REFERENCE}` (test split, paired over seeds):\n\n{_table(table)}\n")
        sweep = f"{study}-lr"
        if not study.endswith("-lr") and sweep in set(rows["study"]):
            parts.append(f"Its learning-rate sweep, **{sweep}** ({_sources(results_dir, sweep, link_base)}):\n\n"
                         f"{_study_table(results_dir, rows, sweep)}\n")
        parts.append(notes_block(study, notes))
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the equal-time answer
def equal_time_studies(results_dir: str | Path = "results") -> list[str]:
    """Return the equal-time studies of <results>/summary.csv, by name: those that ran the
    short-schedule reference, except lr sweeps and ablation studies (`_equal_time_names`)."""
    rows = _summary(results_dir)
    return [] if rows is None else sorted(_equal_time_names(rows))


def equal_time_verdicts(results_dir: str | Path = "results") -> dict:
    """Return what the equal-time answer says, from the run files of every equal-time study:
    "studies" [(study, short name, device)], "seeds" (the most seeds of any run set), "wins" and
    "losses" [(method, short name, budget, difference, interval)] where a method's paired 95 %
    interval against `short-schedule` lies above (below) 0, "over" the same with its seconds over
    short-schedule's last, where it took more than 1 + EQUAL_TIME_SLACK times as long and was not
    behind (not at equal time: its lead does not count), "rows" (per study and budget,
    short-schedule's accuracy and the method at equal time with the largest difference),
    "ttt_rows" and "times" (time to target per study and method)."""
    out = {"studies": [], "seeds": set(), "wins": [], "losses": [], "over": [], "rows": [], "ttt_rows": [],
           "times": {}}
    for study in equal_time_studies(results_dir):
        records = mc.load_runs(results_dir, study)
        name = mc._short_study(study)
        out["seeds"] |= {r["seed"] for r in records}
        out["studies"].append((study, name, records[0].get("device", "?")))
        table = mc.equal_time_table(records)
        for budget, group in table.groupby("budget", sort=False):
            if budget.startswith("1 ("):
                continue
            ref = group[group["method"] == mc.REFERENCE]
            others = group[group["method"] != mc.REFERENCE]
            for _, row in others.iterrows():
                found = (row["method"], name, budget, row["vs short-schedule (pt)"], row["95% interval"])
                if row["verdict"] == "over time":
                    found += (row["s / short"],)
                {"better": out["wins"], "worse": out["losses"], "over time": out["over"]}.get(
                    row["verdict"], []).append(found)
            timely = others[others["verdict"] != "over time"]  # the best at equal time answers the question
            if len(ref) and len(timely):
                diffs = timely["vs short-schedule (pt)"].map(lambda v: float(v) if v not in ("", "—") else -math.inf)
                best = timely.loc[diffs.idxmax()]
                out["rows"].append({"data": name, "budget": budget, "short-schedule (%)": ref.iloc[0]["accuracy (%)"],
                                    "best other": best["method"],
                                    "difference (pt) [95% CI]": f"{best['vs short-schedule (pt)']} {best['95% interval']}",
                                    "verdict": best["verdict"]})
        ttt = mc.time_to_target(records, 1.0)
        out["times"][name] = dict(zip(ttt["method"], ttt["median_seconds"]))
        for _, row in ttt.iterrows():
            out["ttt_rows"].append({"data": name, "method": row["method"], "target (%)": f"{row['target (%)']:.2f}",
                                    "seconds to target": row["seconds"], "seeds reached": row["seeds reached"],
                                    "speed-up vs short-schedule": row["speed-up vs short-schedule"]})
    out["seeds"] = len(out["seeds"])
    return out


NO_EQUAL_TIME = ("_No equal-time study yet: run `bash benchmarks/gpu_budget_study.sh DATASET MODEL_DIR OUT_DIR` "
                 "(a GPU), or notebook 04 with `short-schedule` among its methods._")


def _found(item, link: bool) -> str:
    """Return one verdict as text: "`method` on data at budget (diff pt, [lo, hi])" (", r x its
    time" added for one not at equal time), the data name a reference link to its run files when
    `link`."""
    method, name, budget, diff, interval, *over = item
    time = f", {over[0]}x its time" if over else ""
    return f"`{method}` on {f'[{name}]' if link else name} at {budget} ({diff} pt, {interval}{time})"


def _preset_tally(own: list[tuple[str, str, str]]) -> str:
    """Return ": better in a, tied in b, worse in c (naming them) of its n cells" from the chosen
    preset's [(dataset, budget, verdict)] against short-schedule (mc.chosen_preset_verdicts per
    equal-time study), "over time" counted apart where it has any; "" without a cell."""
    if not own:
        return ""
    counts = {v: sum(verdict == v for *_, verdict in own) for v in ("better", "tie", "worse", "over time")}
    worse = ", ".join(f"{name} {budget}" for name, budget, verdict in own if verdict == "worse")
    parts = [f"better in {counts['better']}", f"tied in {counts['tie']}",
             f"worse in {counts['worse']}" + (f" ({worse})" if worse else "")]
    if counts["over time"]:
        parts.append(f"over time in {counts['over time']}")
    return f": {', '.join(parts)} of its {len(own)} cells"


def answer_markdown(results_dir: str | Path = "results", link_base: Path | None = None,
                    details: str = "results/README.md") -> str:
    """Return the README's answer in markdown: one paragraph naming each method that beats
    `short-schedule` at equal wall-clock (paired 95 % interval above 0) and in how many of the
    (data, budget) cells, or that none does, with its sources, and the methods whose leads do
    not count (not at equal time); one table, per cell `short-schedule`'s accuracy and the method
    at equal time closest to it or above it, plus a row for every other method above it there
    (at most 110 characters wide for method names up to 18 characters); and the reference links
    ([data]: its run files, relative to `link_base`) that make every data name in them a link.
    `details` links the full answer (relative to link_base). With ablation studies, the prose ends
    with the variant the ablation chose, linking its section of `details`."""
    import pandas as pd

    found = equal_time_verdicts(results_dir)
    if not found["studies"]:
        return NO_EQUAL_TIME
    wins, cells, studies = found["wins"], len(found["rows"]), found["studies"]
    names = [f"[{name}]" for _, name, _ in studies]
    data = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    if wins:
        counts: dict[str, int] = {}
        for method, *_ in wins:
            counts[method] = counts.get(method, 0) + 1
        (first, n_first), *rest = counts.items()
        named = "".join(f" and `{m}` in {n}" for m, n in rest)
        verdict = (f"**At equal wall-clock on {data}, `{first}` beats `{mc.REFERENCE}` in {n_first} of the {cells} "
                   f"(data, budget) cells{named}, with a paired 95 % interval above 0 (\"better\" below); no other "
                   f"method does**")
    else:
        verdict = (f"**No method beats simply training for less time**: in none of the {cells} (data, budget) cells "
                   f"of {data} is a budgeted method's accuracy above `{mc.REFERENCE}`'s with a paired 95 % interval "
                   f"that excludes 0")
    devices = ", ".join(sorted({device for *_, device in studies}))
    sources = f"({devices}, up to {found['seeds']} seeds, test-split accuracy)."
    if found["over"]:
        where: dict[str, list[str]] = {}
        for method, name, *_ in found["over"]:
            where.setdefault(method, []).append(name)
        sources += (f" Leads taken in over {1 + mc.EQUAL_TIME_SLACK:.2f}x `{mc.REFERENCE}`'s seconds do not "
                    f"count: " + "; ".join(
                        f"`{m}` in {len(names)} ({', '.join(f'[{n}]' for n in dict.fromkeys(names))})"
                        for m, names in where.items()) + ".")
    sources += f" Every verdict and study table: [{details}]({details}#{anchor(EQUAL_TIME_HEADING)})."
    chosen = ablation_choice(results_dir)
    if chosen:
        sources += (f" The one-seed [ablation]({details}#{anchor(ABLATION_HEADING)}) chose `{chosen}` for the "
                    f"`mclearn` preset.")
    rows = []
    for row in found["rows"]:
        rows.append(row)
        for method, name, budget, diff, interval in found["wins"]:  # every other winner of the cell too
            if (name, budget) == (row["data"], row["budget"]) and method != row["best other"]:
                rows.append({**row, "best other": method, "difference (pt) [95% CI]": f"{diff} {interval}",
                             "verdict": "better"})
    table = pd.DataFrame(rows).rename(columns={"best other": "method"})
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


def equal_time_markdown(results_dir: str | Path = "results", link_base: Path | None = None,
                        figures: bool = True) -> str:
    """Return the full equal-time answer in markdown: one sentence per verdict (every method
    above and every method below `short-schedule` at equal time, with its paired 95 %
    t-interval), the table of `equal_time_verdicts`' rows, and the time-to-target table across
    studies with its performance profile (written to <results>/figures/equal-time/ when
    `figures`, linked when it exists). Every study links its section (`study_sections`)."""
    import pandas as pd

    found = equal_time_verdicts(results_dir)
    if not found["studies"]:
        return NO_EQUAL_TIME
    wins, losses = found["wins"], found["losses"]
    if wins:
        verdict = (f"At equal wall-clock, these beat `{mc.REFERENCE}` (the interval excludes 0): "
                   + "; ".join(_found(w, False) for w in wins) + ".")
    else:
        verdict = (f"**No method beats simply training for less time**: at equal wall-clock no budgeted method's "
                   f"accuracy is above `{mc.REFERENCE}`'s with a paired 95 % interval that excludes 0.")
    if losses:
        verdict += " Significantly behind it: " + "; ".join(_found(item, False) for item in losses) + "."
    if found["over"]:
        verdict += (f" Not at equal time (more than {1 + mc.EQUAL_TIME_SLACK:.2f}x `{mc.REFERENCE}`'s seconds), "
                    "so not counted: " + "; ".join(_found(item, False) for item in found["over"]) + ".")
    links = [f"[`{study}`](#{anchor(study)}) ({device})" for study, _, device in found["studies"]]
    n = len(found["studies"])
    parts = [f"{verdict} From {n} stud{'y' if n == 1 else 'ies'} ({', '.join(links)}; up to {found['seeds']} seeds; "
             f"accuracy on the test split; every method's lr by one rule). The table: at each budget, "
             f"`{mc.REFERENCE}` and the method at equal time closest to it or above it.\n",
             _table(pd.DataFrame(found["rows"])) + "\n"]
    folder = Path(results_dir) / "figures" / EQUAL_TIME_FIGURES
    if figures:
        folder.mkdir(parents=True, exist_ok=True)
        taus = [round(t, 2) for t in np.arange(1.0, 3.001, 0.01)]
        mc.plot_performance_profile(mc.performance_profile(found["times"], taus), folder / "performance_profile.png")
        pd.DataFrame(found["ttt_rows"]).to_csv(folder / "time_to_target.csv", index=False)
    png = _link(folder / "performance_profile.png", link_base)
    profile_note = (f" Performance profile over the studies: [`{png}`]({png})."
                    if (folder / "performance_profile.png").exists() else "")
    parts.append("Time to target (the full baseline's median eval accuracy - 1 point; per seed the fastest run at "
                 "any budget, median over seeds):" + profile_note + "\n")
    parts.append(_table(pd.DataFrame(found["ttt_rows"])) + "\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the ablation
NO_ABLATION = ("_No ablation study yet: run `bash benchmarks/gpu_ablation.sh DATASET MODEL_DIR OUT_DIR` (a GPU), "
               "then `python make_readme.py`._")


def ablation_records(results_dir: str | Path = "results") -> tuple[list[str], list[dict]]:
    """Return (the studies of the latest ablation of <results>/summary.csv (mc.latest_ablation: the
    switch's under the fair protocol once it has run, else issue 24's), by name; their run records)."""
    rows = _summary(results_dir)
    studies = [] if rows is None else mc.latest_ablation(_ablation_names(rows))
    return studies, [r for study in studies for r in mc.load_runs(results_dir, study)]


def ablation_choice(results_dir: str | Path = "results") -> str | None:
    """Return the variant mc.ablation_table's rule chooses over every ablation study, None without one."""
    return mc.ablation_table(ablation_records(results_dir)[1]).attrs["chosen"]


def ablation_markdown(results_dir: str | Path = "results", link_base: Path | None = None) -> str:
    """Return the ablation in markdown, from the run files of every ablation study: mc.ABLATION_RULE,
    mc.ablation_table (the short schedule's reference row last), the chosen variant, and per dataset
    (linking its run files) mc.ablation_paragraphs' paragraph, which ends with the chosen preset's
    5-seed result in the dataset's equal-time study (mc.equal_time_study_of), or that it is not yet
    run. Links the diagnostics file of benchmarks/ablation.py when it exists."""
    studies, records = ablation_records(results_dir)
    table = mc.ablation_table(records)
    if table.attrs["chosen"] is None:
        return NO_ABLATION
    rows = _summary(results_dir)
    present = set(rows["study"].astype(str))
    equal_time = {}
    for study in studies:
        other = mc.equal_time_study_of(study)
        equal_time[mc._ablation_dataset(study)] = (other, mc.load_runs(results_dir, other) if other in present else [])
    paragraphs = mc.ablation_paragraphs(records, equal_time)
    tally = _preset_tally([(dataset, budget, verdict) for dataset, (_, runs) in equal_time.items()
                           for budget, verdict in mc.chosen_preset_verdicts(runs, table.attrs["chosen"])])
    parts = [mc.ABLATION_RULE + "\n", _table(table) + "\n",
             f"Chosen: `{table.attrs['chosen']}`" + (f"; as the `mclearn` preset, over its seeds in the equal-time "
                                                     f"studies against `{mc.REFERENCE}`{tally}" if tally else "") + ".\n"]
    every_run = Path(results_dir) / mc.ablation_folder(studies) / "ablation_table.md"
    if every_run.exists():
        link = _link(every_run, link_base)
        parts.append(f"Every run's numbers (`python3 benchmarks/ablation.py`): [`{link}`]({link}).\n")
    for study in studies:
        dataset = mc._ablation_dataset(study)
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


def results_readme(results_dir: str | Path = "results", path: Path | None = None, figures: bool = True) -> str:
    """Return results/README.md: the equal-time answer in full, the ablation (`ablation_markdown`),
    one section per study and the step benchmark, with the notes blocks of the file at `path` (default <results>/README.md)
    kept. Raise ValueError naming the file and the keys when it holds notes that no section of
    the new text has (a study that left summary.csv), so that no hand-written text is lost."""
    results_dir = Path(results_dir)
    path = path or results_dir / "README.md"
    notes, base = read_notes(path), path.parent
    body = ("# Results\n\nGenerated by `python make_readme.py` from [`summary.csv`](summary.csv) (one row per run), "
            "the run files under\n[`runs/`](runs/) and the benchmark files under [`bench/`](bench/): edit only "
            "between `<!-- notes:... -->` markers,\nwhich regeneration keeps. Accuracy is mean ± std over seeds; "
            "train seconds are the median [min–max];\nspeed-ups count against the optimized baseline measured in "
            "the same study on the same device. The\nREADME's answer is the first section's short form.\n\n"
            f"## {EQUAL_TIME_HEADING}\n\nDoes anything beat `{mc.REFERENCE}`, the optimized baseline cut to the "
            f"budget?\n\n{notes_block(EQUAL_TIME_KEY, notes)}\n"
            f"{equal_time_markdown(results_dir, base, figures)}\n"
            f"## {ABLATION_HEADING}\n\nWhich MC-Learn variant the `mclearn` preset becomes (issue 24).\n\n"
            f"{notes_block(ABLATION_KEY, notes)}\n{ablation_markdown(results_dir, base)}\n"
            f"## Studies\n\n{notes_block('studies', notes)}\n{study_sections(results_dir, base, notes)}\n"
            f"## Step benchmark\n\n{notes_block(BENCH_KEY, notes)}\n{bench_markdown(results_dir, base)}\n")
    lost = sorted(set(notes) - set(notes_in(body)))
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
                  figures: bool = True) -> None:
    """Rewrite <results>/README.md (`results_readme`) and the answer block of `readme`
    (`answer_markdown`, linking the former)."""
    readme, results_dir = Path(readme), Path(results_dir)
    target = results_dir / "README.md"
    results_text = results_readme(results_dir, target, figures)
    text = replace_between(readme.read_text(), ANSWER_MARKERS,
                           answer_markdown(results_dir, readme.parent, _link(target, readme.parent)), readme)
    target.write_text(results_text)
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Re-summarize this repository's results/ and rewrite README.md's answer and results/README.md."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.parse_args(argv)
    mc.summarize(REPO / "results", show=False)
    update_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
