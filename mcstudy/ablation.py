"""The MC-Learn ablation: which variant of the method to keep (ablation_table, by its rule), the
diagnostics that say why (ablation_diagnostics; over the seeds of a fair-protocol study,
fair_selection_summary), the chosen preset's equal-time verdicts, and the pool-scoring table.
Numbers and frames only: make_readme.py writes the sentences."""
from __future__ import annotations

import math
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from mcstudy.config import MCLEARN_VARIANTS, MCLEARN_VARIANT_PARTS, SWITCH_ABLATION, _VARIANT_KEYS_OFF
from mcstudy.runs import ABLATION_SUFFIX, FAIR_ABLATION_SUFFIX
from mcstudy.train import format_budget, run_label
from mcstudy.equal_time import REFERENCE, equal_time_table, study_set, updates_run


# --- the MC-Learn ablation: which variant the `mclearn` preset becomes -----------------------------
ABLATION_RULE = ("Rule (fixed before the runs): every MC-Learn variant, one seed, each dataset at budgets 1/3 and 1/2 "
                 "(a cell), on validation accuracy (the eval split). In each cell the variants are ranked by accuracy "
                 "(1 = best; equal accuracies share their mean rank; a missing or diverged run ranks last); the "
                 "`mclearn` preset becomes the variant with the best mean rank over the cells, ties going to the "
                 "simpler one (fewer of the parts free, once, anneal, switch on), then to the earlier in "
                 "MCLEARN_VARIANTS.")
# The datasets the rule ranks over (gpu_ablation.sh queues them): until each has its cells there is no
# choice, only a leader, and the `mclearn` preset stays what it is.
ABLATION_SETS = ("banking77", "clinc150", "sst2", "sst2-noisy20")
EQUAL_TIME_SUFFIX = "-equal-time"  # the previous protocol's 5-seed test-split study of a dataset
# An ablation study's name ends in ABLATION_SUFFIX (section 8); it is no equal-time study (one seed, validation).


def _short_study(study: str) -> str:
    """Return a study's name without its model, device and "-equal-time" parts ("clinc150")."""
    import re

    return re.sub(r"-(mpnet|minilm|tiny|distilbert)\b.*$", "", study.removesuffix(EQUAL_TIME_SUFFIX)) or study


def ablation_dataset(study: str) -> str:
    """Return the dataset part of an ablation study's name ("sst2-noisy20" of "sst2-noisy20-mpnet-h200-ablation")."""
    return _short_study(study.removesuffix(ABLATION_SUFFIX))


def equal_time_study_of(ablation_study: str) -> str:
    """Return the equal-time study of an ablation study's dataset, model and device: the same prefix
    with EQUAL_TIME_SUFFIX ("sst2-mpnet-h200-equal-time" of "sst2-mpnet-h200-ablation"); of a fair-
    protocol ablation, its fair study ("sst2-mpnet-h200-fair" of "sst2-mpnet-h200-fair-ablation")."""
    if ablation_study.endswith(FAIR_ABLATION_SUFFIX):
        return ablation_study.removesuffix(ABLATION_SUFFIX)
    return ablation_study.removesuffix(ABLATION_SUFFIX) + EQUAL_TIME_SUFFIX


def fair_study_of(ablation_study: str, fair_studies: Iterable[str]) -> str | None:
    """Return the fair-protocol study among `fair_studies` (fair_study_names: one a dataset and
    model) of an ablation study's dataset and model on any GPU ("banking77-mpnet-h100-fair" of
    "banking77-mpnet-h200-fair-ablation"), None when there is none: the chosen preset's 5 seeds run
    where a GPU is lent, which need not be the ablation's."""
    own = study_set(ablation_study.removesuffix(ABLATION_SUFFIX))
    return next((study for study in fair_studies if study_set(study) == own), None)


def latest_ablation(studies: Iterable[str]) -> list[str]:
    """Return the studies of the latest ablation among ablation `studies`, by name: the fair
    protocol's (names ending in FAIR_ABLATION_SUFFIX, the switch's ablation) where there are any,
    else the others (the variants' ablation, under the previous protocol). One rule ranks one
    ablation's cells: two ablations' columns of a dataset would collide, and neither's variants ran
    in the other's."""
    studies = sorted(set(studies))
    fair = [s for s in studies if s.endswith(FAIR_ABLATION_SUFFIX)]
    return fair or studies


def ablation_folder(studies: Iterable[str]) -> str:
    """Return the folder under the results folder that holds an ablation's tables
    (benchmarks/ablation.py): "ablation/fair" for the fair protocol's studies, else "ablation"."""
    return "ablation/fair" if any(str(s).endswith(FAIR_ABLATION_SUFFIX) for s in studies) else "ablation"


def preset_before(records: Sequence[dict[str, Any]]) -> str:
    """Return the preset an ablation's choice is compared with, besides REFERENCE: for the switch's
    ablation (studies ending in FAIR_ABLATION_SUFFIX) the `mclearn` preset it starts from
    (SWITCH_ABLATION's first), else `mclearn-v1`, the preset the variants' ablation starts from."""
    fair = any(str(r.get("study", "")).endswith(FAIR_ABLATION_SUFFIX) for r in ablation_runs(records))
    return SWITCH_ABLATION[0] if fair else next(v for v, parts in MCLEARN_VARIANTS.items() if not parts)


def ablation_runs(records: Sequence[dict[str, Any]], methods: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Return the budgeted runs of `methods` (None: the MC-Learn variants and the short schedule) among
    `records`, without the lr-tuning runs (their run labels carry "-lr...")."""
    methods = {*MCLEARN_VARIANTS, REFERENCE} if methods is None else set(methods)
    return [r for r in records if r["method"] in methods and r.get("time_budget")
            and r.get("run_label", "") == run_label(r["method"], r["time_budget"])]


def ablation_table(records: Sequence[dict[str, Any]], sets: Sequence[str] = ()):
    """Return the ablation table (ABLATION_RULE): one row per variant of MCLEARN_VARIANTS that has
    runs, its parts, per (dataset, budget) cell its validation accuracy (%, the mean over seeds
    when there are several) with its rank in that cell in parentheses, its mean rank over the
    cells, and "chosen" on the variant the rule picks ("leading" while it cannot pick). A cell is a
    study (one dataset) x a time budget of the variants' budgeted runs (lr-tuning runs do not
    count). Last, when it has runs in the cells, a reference row for REFERENCE (the control): its
    accuracy per cell, rank and mean rank "—", never chosen (it is not ranked). .attrs holds "rule",
    "cells", "leader" (the variant of the best mean rank over the cells there are, None without
    runs), "missing" (the datasets of `sets`, e.g. ABLATION_SETS, without a cell) and "chosen": the
    leader once no set is missing, else None."""
    import pandas as pd
    from scipy.stats import rankdata

    runs = [r for r in ablation_runs(records) if r["method"] in MCLEARN_VARIANTS]
    cells = sorted({(r["study"], float(r["time_budget"])) for r in runs})
    variants = [v for v in MCLEARN_VARIANTS if any(r["method"] == v for r in runs)]

    def cell_accuracy(method: str, cell: tuple[str, float], among: Sequence[dict[str, Any]]) -> float:
        values = [float(r["accuracy"]) * 100 for r in among if r["method"] == method
                  and (r["study"], float(r["time_budget"])) == cell and math.isfinite(float(r["accuracy"]))]
        return float(np.mean(values)) if values else float("nan")

    accuracy = np.array([[cell_accuracy(v, cell, runs) for cell in cells] for v in variants]).reshape(
        len(variants), len(cells))
    # rank 1 = most accurate; NaN (missing or diverged) ranks last, equal values share their mean rank
    ranks = np.column_stack([rankdata(np.where(np.isfinite(col), -col, np.inf)) for col in accuracy.T]) \
        if cells else np.zeros((len(variants), 0))
    mean_rank = ranks.mean(axis=1) if cells else np.full(len(variants), np.nan)
    order = sorted(range(len(variants)),
                   key=lambda i: (round(mean_rank[i], 9), len(MCLEARN_VARIANTS[variants[i]]), i))
    leader = variants[order[0]] if variants and cells else None
    missing = [d for d in sets if d not in {ablation_dataset(study) for study, _ in cells}]
    chosen = None if missing else leader
    rows = []
    for i, variant in enumerate(variants):
        row = {"variant": variant, "parts": "+".join(MCLEARN_VARIANTS[variant]) or "—"}
        for j, (study, budget) in enumerate(cells):
            row[f"{ablation_dataset(study)} {format_budget(budget)}"] = \
                f"{accuracy[i, j]:.2f} ({ranks[i, j]:g})" if math.isfinite(accuracy[i, j]) else f"— ({ranks[i, j]:g})"
        mark = "chosen" if variant == chosen else "leading" if variant == leader else ""
        row.update({"mean rank": round(float(mean_rank[i]), 3), "chosen": mark})
        rows.append(row)
    controls = [r for r in ablation_runs(records) if r["method"] == REFERENCE]
    if variants and any((r["study"], float(r["time_budget"])) in cells for r in controls):
        reference = [cell_accuracy(REFERENCE, cell, controls) for cell in cells]
        rows.append({"variant": REFERENCE, "parts": "(reference)",
                     **{f"{ablation_dataset(study)} {format_budget(budget)}":
                        f"{acc:.2f} (—)" if math.isfinite(acc) else "— (—)"
                        for (study, budget), acc in zip(cells, reference)},
                     "mean rank": "—", "chosen": ""})
    table = pd.DataFrame(rows)
    table.attrs.update(rule=ABLATION_RULE, chosen=chosen, leader=leader, missing=missing, cells=cells)
    return table


def choice_sentence(table, preset: str) -> str:
    """Return the sentence under an ablation table: "Chosen: `x`." once the rule has every set's
    cells; before that, that there is no choice yet (the sets still to run, the `mclearn` preset
    staying `preset`) and which variant leads over the cells so far."""
    if table.attrs["chosen"] is not None:
        return f"Chosen: `{table.attrs['chosen']}`."
    missing = table.attrs["missing"]
    done = len({ablation_dataset(study) for study, _ in table.attrs["cells"]})
    return (f"No choice yet: {', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no runs "
            f"({done} of the rule's {done + len(missing)} datasets ran; `bash benchmarks/gpu_ablation.sh`), "
            f"so the `mclearn` preset stays `{preset}`. Leading over the {len(table.attrs['cells'])} cells so far: "
            f"`{table.attrs['leader']}`.")


def ablation_diagnostics(records: Sequence[dict[str, Any]], methods: Iterable[str] | None = None):
    """Return one row per budgeted run of a variant or the short schedule (one seed each in the
    ablation; `methods` names others, as `mclearn` in an equal-time study): its validation accuracy
    (%, the eval split) and its difference in points from the short schedule's run of the same
    study, budget and seed (None without one), the optimizer updates that ran (updates_run: not
    the steps a plan scheduled), train seconds, the distinct training rows it gave a full pass (the
    short schedule: its examples, at most the training set, as it sees every row once before any
    twice) and their share, and for
    MC-Learn its full passes, the median rank agreement of its scorer (telemetry steps' rank_corr,
    3 decimals), its scoring and update seconds (updates replayed through CUDA graphs) and warm-up
    seconds (the eager steps and captures of each new update shape: measured_seconds.update_warmup),
    for every method the seconds its graph captures took (graph_capture_seconds) and, on noisy data,
    the flipped rows' share of its full passes against their share of the data (full_passes)."""
    import pandas as pd

    runs = ablation_runs(records, methods)
    control = {(r["study"], float(r["time_budget"]), r["seed"]): float(r["accuracy"]) * 100
               for r in runs if r["method"] == REFERENCE}
    rows = []
    for r in sorted(runs, key=lambda r: (r["study"], r["time_budget"], r["method"], r["seed"])):
        telemetry = r.get("telemetry") or {}
        passes = telemetry.get("full_passes") or {}
        distinct = passes.get("distinct_rows")
        if r["method"] == REFERENCE:
            distinct = min(int(r.get("examples_backward", 0)), int(r.get("train_examples", 0)))
        ranks = [s["rank_corr"] for s in telemetry.get("steps", []) if s.get("rank_corr") is not None]
        seconds = telemetry.get("measured_seconds") or {}
        flipped = passes.get("flipped") or {}
        accuracy = float(r["accuracy"]) * 100
        reference = control.get((r["study"], float(r["time_budget"]), r["seed"]))
        versus = round(accuracy - reference, 2) if reference is not None and math.isfinite(accuracy - reference) else None
        rows.append({"study": ablation_dataset(r["study"]), "budget": format_budget(r["time_budget"]), "method": r["method"],
                     "seed": r["seed"], "accuracy (%)": round(accuracy, 2), "vs short (pt)": versus,
                     "updates": updates_run(r), "train s": round(float(r["train_seconds"]), 2),
                     "distinct rows": distinct, "distinct share": round(distinct / r["train_examples"], 4)
                     if distinct is not None and r.get("train_examples") else None,
                     "full passes": passes.get("passes"), "rank agreement": round(float(np.median(ranks)), 3) if ranks else None,
                     "score s": seconds.get("score"), "update s": seconds.get("update"),
                     "warm-up s": seconds.get("update_warmup"), "capture s": telemetry.get("graph_capture_seconds"),
                     "flipped pass share": flipped.get("pass_share"), "flipped data share": flipped.get("data_share"),
                     **selection_diagnostics(telemetry)})
    frame = pd.DataFrame(rows)
    for column in ("updates", "distinct rows", "full passes"):  # counts stay integers where a run has none
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def selection_diagnostics(telemetry: dict[str, Any]) -> dict[str, Any]:
    """Return a run's selection numbers (MCLearn.selection_telemetry; None where a run has none):
    "selected share", the share of its steps drawn from selected pools; "tau switch", the median of
    the switch's estimates over its pools (achieved or promised; select_switch only); and the
    variance check's at the end on one pool ("check rows"): "tau est", estimated from the losses,
    and "tau measured", on the last layer's gradients."""
    selection = telemetry.get("selection") or {}
    check = selection.get("variance_check") or {}
    estimates = [d["tau"] for d in selection.get("decisions", []) if d["source"] != "waiting" and d["tau"] is not None]
    return {"selected share": selection.get("selected_share"),
            "tau switch": round(float(np.median(estimates)), 4) if estimates else None,
            "check rows": check.get("rows"), "tau est": check.get("loss"), "tau measured": check.get("measured")}


class Spread(NamedTuple):
    """One number of a cell over the seeds that carry it: median, least and largest value, seeds."""
    median: float
    low: float
    high: float
    seeds: int


def spread(values: Iterable[Any]) -> Spread | None:
    """Return the Spread of `values` without the missing ones (None, NaN, pandas' NA), None when
    none is left."""
    import pandas as pd

    kept = [float(v) for v in values if not pd.isna(v)]
    return Spread(float(np.median(kept)), min(kept), max(kept), len(kept)) if kept else None


def fair_selection_summary(records: Sequence[dict[str, Any]], method: str = "mclearn"
                           ) -> list[dict[str, Any]]:
    """Return what selection did in `method`'s budgeted runs of one fair-protocol study (`records`;
    lr-tuning runs do not count), one dict per time budget where it ran, in budget order, from
    ablation_diagnostics' rows of its runs and REFERENCE's: "budget" (the share), "seeds" (its
    seeds), "variants" (the MC-Learn variants its runs trained as, variant_of their configs),
    "switch" (the seeds whose run had the pays-for-itself switch on, select_switch),
    "no selection" (the seeds whose run file has no selected share: no selection record),
    "no check" (the seeds whose run file has no measured variance reduction), "no seconds" (those
    without scoring or update seconds), and each a Spread
    over the seeds that carry it, None where none does: "selected share" (of its steps, drawn from
    selected pools), "tau measured" (selection's variance reduction against uniform draws at the
    end of the run on one pool, the last layer's gradients), "tau est" (the same estimated from the
    losses), "updates" (updates_run), "short updates" (REFERENCE's at the budget), "updates vs
    short" (its updates minus REFERENCE's of the same seed, over the seeds both ran), "score s" and
    "update s" (measured_seconds: scoring, updates replayed through graphs) and "score / update"
    (their ratio, seed by seed). Raise ValueError when `records` hold more than one study."""
    import pandas as pd

    studies = sorted({str(r["study"]) for r in ablation_runs(records, {method, REFERENCE})})
    if len(studies) > 1:
        raise ValueError(f"fair_selection_summary reads one study's runs, got {', '.join(studies)}: pass "
                         f"the records of one study (ms.load_runs(results, study))")
    frame = ablation_diagnostics(records, {method, REFERENCE})
    runs = ablation_runs(records, {method})
    variants = {(float(r["time_budget"]), r["seed"]): variant_of(r.get("config") or {}) for r in runs}
    switched = {(float(r["time_budget"]), r["seed"]) for r in runs
                if "switch" in variant_parts_on(r.get("config") or {})}
    out = []
    for budget in sorted({b for b, _ in variants}):
        at = frame[frame["budget"] == format_budget(budget)]
        own, short = at[at["method"] == method], at[at["method"] == REFERENCE]
        short_updates = dict(zip(short["seed"], short["updates"]))
        paired = [u - short_updates[s] for s, u in zip(own["seed"], own["updates"])
                  if s in short_updates and not (pd.isna(u) or pd.isna(short_updates[s]))]
        ratio = [s / u for s, u in zip(own["score s"], own["update s"])
                 if not (pd.isna(s) or pd.isna(u)) and u > 0]
        out.append({"budget": budget, "seeds": sorted(int(s) for s in own["seed"]),
                    "variants": sorted({v for (b, _), v in variants.items() if b == budget}),
                    "switch": sorted(int(s) for b, s in switched if b == budget),
                    "no selection": sorted(int(s) for s in own["seed"][own["selected share"].isna()]),
                    "no check": sorted(int(s) for s in own["seed"][own["tau measured"].isna()]),
                    "no seconds": sorted(int(s) for s in own["seed"][own["score s"].isna()
                                                                      | own["update s"].isna()]),
                    **{key: spread(own[key]) for key in ("selected share", "tau measured", "tau est")},
                    "updates": spread(own["updates"]),
                    "short updates": spread(short["updates"]), "updates vs short": spread(paired),
                    "score s": spread(own["score s"]), "update s": spread(own["update s"]),
                    "score / update": spread(ratio)})
    return out


def variant_parts_on(config: dict[str, Any]) -> tuple[str, ...]:
    """Return the parts of MCLEARN_VARIANT_PARTS (free, once, anneal, switch) that a run's stored
    config has on, in that order: a part is on when any of its keys differs from its off value
    (free_scores, once_draws and select_switch true, uniform_start or uniform_end above 0); a key the
    config lacks is off (a run whose config has no variant key is `mclearn-v1`'s)."""
    return tuple(part for part, keys in MCLEARN_VARIANT_PARTS.items()
                 if any(config.get(key, _VARIANT_KEYS_OFF[key]) != _VARIANT_KEYS_OFF[key] for key in keys))


def variant_of(config: dict[str, Any]) -> str:
    """Return the id of the MC-Learn variant a run's stored config trained as: the MCLEARN_VARIANTS
    entry with exactly its parts on (variant_parts_on), "mclearn-v1" for none; a combination no
    variant has comes back as the name it would have ("mclearn-" and its parts)."""
    parts = variant_parts_on(config)
    return next((v for v, on in MCLEARN_VARIANTS.items() if on == parts), "-".join(("mclearn",) + parts))


def chosen_preset_runs(records: Sequence[dict[str, Any]], chosen: str) -> tuple[list[dict[str, Any]], str]:
    """Return (runs, method id) of the chosen variant's preset among an equal-time study's `records`:
    the runs of method `mclearn` whose stored config has exactly the chosen variant's parts on
    (variant_parts_on), else those of the chosen variant's own id."""
    parts = MCLEARN_VARIANTS[chosen]
    runs = [r for r in records if r["method"] == "mclearn" and variant_parts_on(r.get("config") or {}) == parts]
    if runs:
        return runs, "mclearn"
    return [r for r in records if r["method"] == chosen], chosen


def preset_table(records: Sequence[dict[str, Any]], runs: list[dict[str, Any]], name: str, table):
    """Return the equal-time table whose rows of `name` give the chosen preset's verdicts: `table`
    (a wider Holm family's, as the README's answer's) when given, else equal_time_table of the
    short schedule's, the baseline's and the preset's `runs` alone. Raise ValueError when `table` is
    given but `records` hold runs of `name` that are not the preset's (the table's row mixes them)."""
    if table is None:
        return equal_time_table([r for r in records if r["method"] in (REFERENCE, "baseline")] + runs)
    if len(runs) != sum(r["method"] == name for r in records):
        raise ValueError(f"the equal-time table given counts runs of `{name}` whose config is not the chosen "
                         f"preset's: pass table=None, or keep those runs in a study of their own")
    return table


def chosen_preset_verdicts(records: Sequence[dict[str, Any]], chosen: str, table=None) -> list[tuple[str, str]]:
    """Return [(budget, verdict)] of the chosen variant's preset (chosen_preset_runs) against REFERENCE
    at every budget where it ran in an equal-time study's `records` (the verdicts of preset_table:
    `table`, the study's table in a wider Holm family, or the preset's own comparisons)."""
    runs, name = chosen_preset_runs(records, chosen)
    if not runs:
        return []
    table = preset_table(records, runs, name, table)
    own = table[table["method"] == name]
    return list(zip(own["budget"], own["verdict"]))


def pool_scoring_table(records: Sequence[dict[str, Any]]):
    """Return why MC-Learn's pool scoring is not graphed, read off its run files: one row per
    (study, method, budget) of the MC-Learn-family runs whose telemetry has a time breakdown, with
    the refreshes, the seconds scoring took (measured_seconds.score, median over seeds), its share
    of the train seconds (%), the measured seconds of one graph capture of the update
    (budget.step_costs.capture_seconds) and `capture / scoring`: how many times a run's whole scoring
    one capture costs. Graphing the scoring saves at most the scoring's launch overhead, and it would
    take at least one capture per pool shape: where `capture / scoring` is near or above 1, it cannot pay."""
    import pandas as pd

    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in records:
        t = r.get("telemetry") or {}
        if r.get("method", "").startswith("mclearn") and "score" in (t.get("measured_seconds") or {}) \
                and r.get("train_seconds") and r.get("run_label", "") == run_label(r["method"], r.get("time_budget") or 0.0):
            groups.setdefault((r["study"], r["method"], float(r.get("time_budget") or 0.0)), []).append(r)
    rows = []
    for (study, method, budget), runs in sorted(groups.items()):
        score = [r["telemetry"]["measured_seconds"]["score"] for r in runs]
        share = [100 * s / r["train_seconds"] for s, r in zip(score, runs)]
        capture = [((r["telemetry"].get("budget") or {}).get("step_costs") or {}).get("capture_seconds") for r in runs]
        capture = [c for c in capture if c]
        rows.append({"study": study, "method": method, "budget": format_budget(budget), "seeds": len(runs),
                     "refreshes": int(np.median([r["telemetry"].get("refreshes", 0) for r in runs])),
                     "scoring s": round(float(np.median(score)), 4), "scoring %": round(float(np.median(share)), 2),
                     "capture s": round(float(np.median(capture)), 4) if capture else float("nan"),
                     "capture / scoring": round(float(np.median(capture)) / float(np.median(score)), 2)
                     if capture and np.median(score) > 0 else float("nan")})
    return pd.DataFrame(rows)
