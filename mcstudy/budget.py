"""Budget studies: every method at shares of the full baseline's seconds (time budgets), each
method's own knob planned for its share (plan_time_budget), its learning rate tuned on a grid per
budget (tune_lr), then its seeds run at the chosen lr (run_budget_study)."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

import mclearn_core as core
from mcstudy.config import Config, replace_config
from mcstudy.data import plan_epoch
from mcstudy.engine import BudgetPlan, measure_forward_seconds
from mcstudy.runs import check_methods, guarded_sweep, run_once, save_flipped_rows
from mcstudy.train import Prepared, format_budget, prepare, prepared_step_costs, run_label
from mcstudy.methods import METHODS


# --- budget studies: a tuned baseline, then every method at shares of its time --------------------
def budget_study_runs(methods: Sequence[str], time_budgets: Sequence[float], seeds: Sequence[int],
                      method_budgets: dict[str, Sequence[float]] | None = None,
                      method_seeds: dict[str, int] | None = None) -> list[tuple[str, float, int]]:
    """Return the (method, time budget, seed) runs of a budget study, in the order it trains them:
    per seed, the baseline (budget 0), then each method at each of its budgets (`method_budgets`
    overrides `time_budgets` for the methods it names; methods without a wall-clock knob run once,
    at budget 0). A method named in `method_seeds` runs on that many of the first seeds only.
    Raises ValueError (one line, check_methods) for an unknown or repeated method id."""
    check_methods(methods)
    method_budgets, method_seeds = method_budgets or {}, method_seeds or {}
    runs = []
    for k, seed in enumerate(seeds):
        for method in methods:
            if k >= method_seeds.get(method, len(seeds)):
                continue
            if METHODS[method].reference or METHODS[method].wall_clock_note:
                runs.append((method, 0.0, seed))
            else:
                runs.extend((method, float(b), seed) for b in method_budgets.get(method, time_budgets))
    return runs


def measure_relative_costs(prepared: "Prepared") -> dict[str, Any]:
    """Return the costs a budget study plans the peers' knobs with, relative to one baseline
    update (graphed where the baseline is) of a full batch at the training set's median batch
    width: `forward_share`, a no-grad scoring forward of that batch (graphed where the update is,
    `forward_graphed`, as the peers run it), with the seconds behind it. The peers' updates are
    graphed as the baseline's, so an update costs 1 in these units. Measured once per process, untimed."""
    cfg, device = prepared.cfg, prepared.device
    widths = [w for _, w in plan_epoch(prepared.train, cfg, torch.Generator().manual_seed(0))]
    width = int(np.median(widths))
    rows = min(cfg.batch_size, len(prepared.train))
    costs = prepared_step_costs(prepared)
    update = costs.at(rows, width)
    graphed = costs.graphed  # the peers score through graphs exactly when their update is graphed
    forward = measure_forward_seconds(cfg, prepared.base_model, prepared.train, device, rows, width,
                                           graphed=graphed)
    return {"rows": rows, "width": width, "update_seconds": update, "forward_seconds": forward,
            "forward_share": forward / update, "forward_graphed": graphed}


def plan_time_budget(method: str, time_budget: float, cfg: Config, costs: dict[str, Any]) -> BudgetPlan:
    """Return the BudgetPlan that sets `method`'s own knobs so its train time is `time_budget`
    times the baseline's, with costs in units of one baseline update (measure_relative_costs):
    its class's plan_budget (Method.plan_budget; ValueError for a method without a knob)."""
    check_methods([method])
    return METHODS[method].plan_budget(method, float(time_budget), cfg, costs)


def with_explicit(cfg: Config, **changes: Any) -> Config:
    """Return `cfg` with `changes`, marked as set by the caller so method presets keep them."""
    return replace_config(cfg, explicit=tuple(sorted(set(cfg.explicit) | set(changes))), **changes)


@dataclass
class BudgetStudy:
    """A budget study's runs: the baseline's learning-rate sweep and its lr, each method's own lr
    runs and lr at each budget, the reference seconds, and the tuned baseline's and every
    (method, budget, seed) run."""

    lr_records: list[dict[str, Any]]
    lr: float
    records: list[dict[str, Any]]
    relative_costs: dict[str, Any] | None = None
    method_lrs: dict[tuple[str, float], float] = dataclasses.field(default_factory=dict)  # (method, budget) -> its lr
    tune_records: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the methods' own lr runs
    wall_seconds: float = 0.0  # the study's wall-clock in this process (prepare included)
    train_seconds: float = 0.0  # the sum of its runs' train seconds
    reference_seconds: float = float("nan")  # the full baseline's seconds the time budgets are shares of


def lr_run_label(lr: float, base: str = "baseline") -> str:
    """Return the run label of a learning-rate sweep's run, its lr written in full after `base`
    ("baseline-lr1.6e-04", "mclearn-b0.50-lr8e-05"): rounding it to one digit would name 1.6e-4
    and 2e-4 alike."""
    mantissa, exponent = f"{float(lr):.6e}".split("e")
    return f"{base}-lr{mantissa.rstrip('0').rstrip('.')}e{exponent}"


def record_lr(record: dict[str, Any]) -> float:
    """Return the learning rate a run trained with (its config's lr)."""
    return float(record["config"]["lr"])


def best_lr(records: Sequence[dict[str, Any]]) -> float:
    """Return the lr of a sweep's runs with the best mean accuracy over seeds (ties: the smaller
    lr); a diverged run (accuracy NaN) counts as the worst. Raise ValueError when there are no
    runs, or when every run diverged."""
    if not records:
        raise ValueError("No learning-rate sweep runs to choose an lr from: run the sweep (lrs=...) first.")
    if all(not math.isfinite(r["accuracy"]) for r in records):
        raise ValueError(f"Every run of the learning-rate sweep diverged (lrs {sorted({record_lr(r) for r in records})}): "
                         f"sweep lower lrs.")
    accuracies: dict[float, list[float]] = {}
    for record in records:
        accuracy = record["accuracy"]
        accuracies.setdefault(record_lr(record), []).append(accuracy if math.isfinite(accuracy) else -1.0)
    mean_accuracy = {lr: float(np.mean(values)) for lr, values in accuracies.items()}
    best = max(mean_accuracy.values())
    return min(lr for lr, accuracy in mean_accuracy.items() if accuracy >= best - 1e-12)


# A tuning grid starts at the baseline's tuned lr times these and grows by factors of 2 past whichever
# edge holds the best lr, until the best is interior, the next lr up diverged, or it holds LR_GRID_MOST lrs.
LR_GRID_FACTORS = (0.5, 1.0, 2.0)
LR_GRID_MOST = 7


def next_grid_lr(records: Sequence[dict[str, Any]]) -> float | None:
    """Return the lr a growing tuning grid tries next, or None when its choice is settled: twice the
    largest lr tried when the best (best_lr) is the largest and ran (an lr above it that diverged
    settles it), half the smallest when the best is the smallest; None when the best is interior,
    or the grid holds LR_GRID_MOST lrs (the edge then stays unresolved: lr_grid_status)."""
    tried = sorted({record_lr(r) for r in records})
    best = best_lr(records)
    if len(tried) >= LR_GRID_MOST:
        return None
    if best == tried[-1]:
        return float(f"{2 * best:.6g}")
    if best == tried[0]:
        return float(f"{best / 2:.6g}")
    return None


def lr_grid_status(records: Sequence[dict[str, Any]]) -> str:
    """Return where a tuning grid's choice sits: "interior" (a finite run on each side of it), "edge:
    next diverged" (the largest lr that ran, the next one up diverged), or "edge: highest" / "edge:
    lowest" (no lr beyond it tried: the choice may lie outside the grid)."""
    tried = sorted({record_lr(r) for r in records})
    best = best_lr(records)
    finite = sorted({record_lr(r) for r in records if math.isfinite(r["accuracy"])})
    if best == tried[0]:
        return "edge: lowest"
    if best == tried[-1]:
        return "edge: highest"
    if best == finite[-1]:
        return "edge: next diverged"
    return "interior"


def tune_lr(run_at: Callable[[float], dict[str, Any]], lrs: Sequence[float]) -> list[dict[str, Any]]:
    """Return the runs of a growing tuning grid: `run_at(lr)` (a run record) at each of `lrs`, then at
    next_grid_lr of the runs so far until it says the choice is settled."""
    records = [run_at(float(lr)) for lr in lrs]
    while (lr := next_grid_lr(records)) is not None:
        records.append(run_at(lr))
    return records


def budget_study_lr_table(records: Sequence[dict[str, Any]]):
    """Return a DataFrame of a budget study's lr choices, one row per (method, budget) of its tuning
    runs (its -lr study; the baseline's sweep is budget 1): the grid tried with each lr's accuracy on
    the eval split ("diverged" for a run that did), the lr chosen (best_lr) and where it sits in the
    grid (lr_grid_status: an edge means the best lr may lie outside what was tried)."""
    import pandas as pd

    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for record in records:
        budget = float(record.get("time_budget") or 0.0) or 1.0
        groups.setdefault((record["method"], budget), []).append(record)
    rows = []
    for (method, budget), runs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        grid = ", ".join(f"{record_lr(r):g}: " + (f"{r['accuracy'] * 100:.2f}" if math.isfinite(r["accuracy"])
                                                   else "diverged") for r in sorted(runs, key=record_lr))
        rows.append({"method": method, "budget": "1 (full)" if budget == 1.0 else format_budget(budget),
                     "lr (eval accuracy %)": grid,
                     "chosen lr": f"{best_lr(runs):g}", "where": lr_grid_status(runs)})
    return pd.DataFrame(rows, columns=["method", "budget", "lr (eval accuracy %)", "chosen lr", "where"])


def reference_seconds(records: Sequence[dict[str, Any]]) -> float:
    """Return the seconds a study's time budgets are shares of: the median train seconds of the full
    baseline's runs that finished (its lr sweep: the same plan at every lr). Raise ValueError when
    none did."""
    seconds = [r["train_seconds"] for r in records if math.isfinite(r["accuracy"]) and math.isfinite(r["train_seconds"])]
    if not seconds:
        raise ValueError("No finished run of the full baseline to take the reference seconds from: every run of its "
                         "lr sweep diverged; sweep lower lrs.")
    return float(np.median(seconds))


@guarded_sweep("", "-lr")
def run_budget_study(cfg: Config, methods: Sequence[str], time_budgets: Sequence[float] = (1 / 3, 1 / 2),
                     lrs: Sequence[float] = (), seeds: Sequence[int] | None = None,
                     prepared: Prepared | None = None, progress: bool = True, lr_factors: Sequence[float] = LR_GRID_FACTORS,
                     method_budgets: dict[str, Sequence[float]] | None = None,
                     method_seeds: dict[str, int] | None = None) -> BudgetStudy:
    """Run a budget study in one process and return its BudgetStudy; finished runs are read back.

    Phases: (1) prepare the data and model once (flipped rows written with the study); (2) the
    full baseline's learning-rate sweep over `lrs` with the first seed (study "<study>-lr"), grown
    by factors of 2 past an edge (tune_lr), whose most accurate lr (on the eval split) the baseline
    trains with (no `lrs`: cfg.lr, and the first seed's baseline run instead of the sweep); the
    median train seconds of those runs are the reference every time budget is a share of
    (reference_seconds); (3) the costs the peers' knobs are planned with (measure_relative_costs);
    (4) one tuning rule for every budgeted method, short-schedule included: at every budget it runs
    at, with the first seed, a grid of the baseline's lr x `lr_factors` grown by tune_lr (also in
    "<study>-lr"), keeping the most accurate (no `lr_factors`: the baseline's lr); (5) per seed, the
    tuned baseline, then each method at each of its budgets: its own knob (plan_time_budget) and a
    clock of budget x the reference seconds (cfg.budget_seconds: it trains until they are spent,
    its lr following their elapsed share), or once at its defaults when it has no wall-clock knob
    (budget_study_runs: `method_budgets`, `method_seeds`)."""
    check_methods(methods)
    for name, named in (("method_budgets", method_budgets or {}), ("method_seeds", method_seeds or {})):
        check_methods(list(named))
        unlisted = [m for m in named if m not in methods]
        if unlisted:
            raise ValueError(f"{name} names {', '.join(unlisted)}, which methods= does not list: add them to methods= "
                             f"or drop them from {name}.")
    every_budget = [*time_budgets, *(b for bs in (method_budgets or {}).values() for b in bs)]
    bad = [b for b in every_budget if not 0 < b <= 1]
    if bad:
        raise ValueError(f"time_budgets and method_budgets must be shares in (0, 1] of the baseline's time, got {bad}.")
    bad = [f for f in lr_factors if not f > 0]
    if bad:
        raise ValueError(f"lr_factors multiply the baseline's tuned lr and must be > 0, got {bad}.")
    seeds = list(seeds if seeds is not None else cfg.seeds)
    if not seeds:
        raise ValueError("A budget study needs at least one seed: set seeds=, e.g. seeds=[42, 43, 44].")
    started = time.perf_counter()
    # -- phase 1: data and model, once -------------------------------------------------------------
    prepared = prepared or prepare(cfg)
    save_flipped_rows(cfg, prepared)
    # -- phase 2: the baseline's learning rate, and the reference seconds ------------------------------
    sweep_cfg = replace_config(cfg, study=f"{cfg.study}-lr")
    save_flipped_rows(sweep_cfg, prepared)
    lr_records = tune_lr(lambda lr: run_once(with_explicit(sweep_cfg, lr=lr), "baseline", seeds[0], prepared,
                                                  lr_run_label(lr), progress=progress, keep_diverged=True), lrs) if lrs else []
    lr = best_lr(lr_records) if lr_records else cfg.lr
    tuned = with_explicit(cfg, lr=lr)
    if progress and lr_records:
        core.say(f"learning rate: {lr:g} (best of {', '.join(f'{record_lr(r):g}' for r in lr_records)}; "
                 f"{lr_grid_status(lr_records)})")
    planned = [m for m in methods if not (METHODS[m].reference or METHODS[m].wall_clock_note)]
    reference = lr_records or ([run_once(tuned, "baseline", seeds[0], prepared, "baseline", progress=progress)]
                               if planned else [])
    full_seconds = reference_seconds(reference) if planned else float("nan")
    # -- phase 3: the costs the peers' knobs are planned with ---------------------------------------------
    costs = measure_relative_costs(prepared) if planned else None

    def run_config(base: Config, method: str, budget: float,
                   method_lr: float) -> tuple[Config, BudgetPlan]:
        plan = plan_time_budget(method, budget, tuned, costs or {})
        return with_explicit(base, lr=method_lr, time_budget=plan.time_budget,
                             budget_seconds=round(plan.time_budget * full_seconds, 6), **plan.knobs), plan

    def run_budgeted(base: Config, method: str, budget: float, method_lr: float, seed: int, label: str) -> dict:
        run_cfg, plan = run_config(base, method, budget, method_lr)
        return run_once(run_cfg, method, seed, prepared, label, plan, progress,
                             extra={"relative_costs": costs}, keep_diverged=True)

    # -- phase 4: one tuning rule: each budgeted method's own lr at each of its budgets, first seed -----------
    runs = budget_study_runs(methods, time_budgets, seeds, method_budgets, method_seeds)
    cells = sorted({(m, b) for m, b, _ in runs if m in planned}, key=lambda mb: (planned.index(mb[0]), mb[1]))
    method_lrs: dict[tuple[str, float], float] = {}
    tune_records: list[dict[str, Any]] = []
    for method, budget in cells:
        if not lr_factors:
            method_lrs[method, budget] = lr
            continue
        grid = tune_lr(lambda x: run_budgeted(sweep_cfg, method, budget, x, seeds[0],
                                              lr_run_label(x, run_label(method, budget))),
                       [float(f"{lr * f:.6g}") for f in lr_factors])
        tune_records += grid
        method_lrs[method, budget] = best_lr(grid)
        if progress:
            core.say(f"{method} at {format_budget(budget)}: lr {method_lrs[method, budget]:g} (of "
                     f"{', '.join(f'{record_lr(r):g}' for r in grid)}; {lr_grid_status(grid)})")
    # -- phase 5: the runs ----------------------------------------------------------------------------------
    records = []
    for method, budget, seed in runs:
        if METHODS[method].reference:
            records.append(run_once(tuned, method, seed, prepared, method, progress=progress))
            continue
        if METHODS[method].wall_clock_note:
            records.append(run_once(tuned, method, seed, prepared, method,
                                         plan_time_budget(method, 0.0, tuned, {}), progress, keep_diverged=True))
            continue
        label = run_label(method, budget)
        records.append(run_budgeted(tuned, method, budget, method_lrs[method, budget], seed, label))
    wall = time.perf_counter() - started
    trained = sum(r["train_seconds"] for r in [*lr_records, *tune_records, *records] if math.isfinite(r["train_seconds"]))
    core.say(f"study wall-clock {wall:.0f} s for {trained:.0f} s of training ({wall / max(trained, 1e-9):.2f}x; runs "
             f"read back from earlier count as training, not as wall-clock)")  # also without progress bars
    return BudgetStudy(lr_records=lr_records, lr=lr, records=records, relative_costs=costs, method_lrs=method_lrs,
                       tune_records=tune_records, wall_seconds=wall, train_seconds=trained,
                       reference_seconds=full_seconds)
