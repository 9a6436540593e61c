"""The short-schedule reference and the equal-time statistics: short-schedule's plan,
the test split carved from train, one tuning rule for every method, paired t-intervals and p-values,
Holm's correction over a family of comparisons and the simultaneous intervals, the two protocols'
time rules (the previous one against short-schedule's seconds, the fair one against each run's own
target), what a fair cell's runs did, time to target with its bootstrap intervals and the performance
profile. Each arithmetic test compares with numbers worked out by hand here."""
import math
from copy import deepcopy

import numpy as np
import pandas as pd
import pytest
import torch

import mclearn_core as mc
import mcstudy as ms
import mcstudy.budget


# --- short-schedule's plan -------------------------------------------------------------------------
def test_short_schedule_length_fits_the_budget_with_its_captures():
    """Ten steps of 1 s in shape a, then ten of 2 s in shape b; captures 3 s each, a shape captured
    from its 3rd use (min_uses 3). Whole plan: 10 + 20 + 2 x 3 = 36 s. At 1/2 the budget is 18 s:
    the prefix of 9 steps costs 9 + 3 (a captured) = 12; 10 steps 13; 11 steps 15; 12 steps 17;
    13 steps 19 + 3 (b captured at its 3rd use) = 22 > 18. So 12 steps, priced 17 s."""
    seconds = [1.0] * 10 + [2.0] * 10
    shapes = [("a",)] * 10 + [("b",)] * 10
    n, prices = ms.short_schedule_length(seconds, shapes, 0.5, capture_seconds=3.0, min_uses=3)
    assert n == 12
    assert prices == {"full_steps": 20, "full_seconds": 36.0, "budget_seconds": 18.0, "planned_seconds": 17.0}
    # a shape used fewer than min_uses times is never captured, in the plan or its price
    n, prices = ms.short_schedule_length([1.0] * 4, [("a",), ("a",), ("b",), ("a",)], 1.0, 5.0, min_uses=3)
    assert n == 4 and prices["full_seconds"] == 4 + 5.0 and prices["planned_seconds"] == 9.0
    # eager (no capture cost): the share of the steps' seconds, and at least one step
    assert ms.short_schedule_length([1.0] * 30, [("a",)] * 30, 1 / 3, 0.0)[0] == 10
    assert ms.short_schedule_length([5.0, 1.0], [("a",), ("a",)], 0.1, 0.0)[0] == 1


def _context(prepared, cfg, seed=0):
    model = deepcopy(prepared.base_model).train()
    return ms.RunContext(cfg=cfg, model=model, train=prepared.train, eval=prepared.eval, num_labels=4,
                         device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                         device_generator=torch.Generator().manual_seed(seed))


def _fake_costs(seconds_per_row=1e-3):
    return mc.StepCosts(seconds={(r, w): r * w * seconds_per_row for r in (2, 4, 8, 16) for w in (8, 16, 24, 32, 40, 48)},
                        graphed=False, capture_seconds=0.0, measure_seconds=0.0, warnings=[])


@pytest.mark.parametrize("budget", [1 / 3, 1 / 2, 2 / 3])
def test_short_schedule_trains_the_baselines_leading_steps_and_ends_its_schedule_inside(prepared, smoke_cfg, budget):
    """short-schedule keeps the baseline's own plan (same seed: same batches, same order) cut to
    the steps whose priced seconds fit the budget; no row repeats before every row was seen; its
    warmup and cosine span the shortened run (lr 0 after its last step, warmup_ratio of its steps)."""
    cfg = ms.replace_config(smoke_cfg, epochs=2, time_budget=budget)
    full = ms.Baseline(_context(prepared, cfg))
    ctx = _context(prepared, cfg)
    ctx.step_costs = _fake_costs()
    short = ms.ShortSchedule(ctx)
    short.setup()
    n = short.num_steps()
    seconds = [ctx.step_costs.at(len(rows), w) for rows, w in full.plan]
    assert sum(seconds[:n]) <= budget * sum(seconds) * (1 + 1e-9) < sum(seconds[:n + 1])
    for (rows, width), (rows_full, width_full) in zip(short.plan, full.plan):
        assert width == width_full and torch.equal(rows, rows_full)
    seen = torch.cat([rows for rows, _ in short.plan])
    first_epoch = len(prepared.train)
    assert len(set(seen[:first_epoch].tolist())) == min(len(seen), first_epoch)  # each once before any twice
    ms.build_optimization(ctx, short)
    lrs = []
    for _ in range(n):
        lrs.append(ctx.optimizer.param_groups[-1]["lr"])
        ctx.optimizer.step()  # no gradients: moves nothing, keeps the scheduler's order check quiet
        ctx.scheduler.step()
    warmup = int(cfg.warmup_ratio * n)
    assert lrs[warmup] == pytest.approx(cfg.lr) and max(lrs) == pytest.approx(cfg.lr)
    assert ctx.optimizer.param_groups[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # decayed inside the budget
    assert short.telemetry()["short_schedule"]["steps"] == n


def test_short_schedule_at_no_budget_is_the_full_baseline(prepared, smoke_cfg):
    ctx = _context(prepared, smoke_cfg)
    ctx.step_costs = _fake_costs()
    short = ms.ShortSchedule(ctx)
    short.setup()
    assert short.num_steps() == ms.Baseline(_context(prepared, smoke_cfg)).num_steps()
    assert ms.plan_time_budget("short-schedule", 0.5, smoke_cfg, {}).knobs == {}


def test_a_short_schedule_run_takes_its_share_of_the_baselines_steps(prepared, smoke_cfg):
    """End to end on the CPU: the run's steps follow its plan from the measured step costs, and
    evaluation sees the trained model (the eval curve has the run's evaluations)."""
    cfg = ms.replace_config(smoke_cfg, time_budget=0.5, eval_points=4)
    record = ms.train_method("short-schedule", cfg, prepared, seed=1, progress=False)
    plan = record["telemetry"]["short_schedule"]
    assert record["steps"] == plan["steps"] and 0.3 * plan["full_steps"] <= plan["steps"] <= 0.7 * plan["full_steps"]
    assert plan["planned_seconds"] <= plan["budget_seconds"]
    assert len(record["eval_curve"]) == 4 and record["eval_curve"][-1]["step"] == plan["steps"]


# --- the test split carved out of train --------------------------------------------------------------
def test_test_holdout_carves_a_stratified_disjoint_test_split(tmp_path):
    import pandas as pd

    labels = np.repeat([0, 1, 2], [300, 150, 50])
    texts = [f"row {i} class {c}" for i, c in enumerate(labels)]
    pd.DataFrame({"text": texts, "label": labels}).to_parquet(tmp_path / "train.parquet")
    pd.DataFrame({"text": texts[:30], "label": labels[:30]}).to_parquet(tmp_path / "validation.parquet")
    cfg = ms.make_config("cpu-smoke", dataset=str(tmp_path), eval_split="validation", max_train_examples=0,
                         test_holdout=100, label_noise=0.1)
    bundle = ms.load_text_dataset(cfg)
    assert len(bundle.test.texts) == 100 and len(bundle.train.texts) == 400
    assert not set(bundle.test.texts) & set(bundle.train.texts)
    assert np.bincount(bundle.test.labels).tolist() == [60, 30, 10]  # in proportion to the classes
    assert all(t.endswith(f"class {y}") for t, y in zip(bundle.test.texts, bundle.test.labels))  # never flipped
    assert len(bundle.flipped_rows) == 40  # label noise flips only the remaining train rows
    again = ms.load_text_dataset(cfg)
    assert again.test.texts == bundle.test.texts  # a fixed seed: the same rows for every run
    with pytest.raises(ms.DataError, match="test_holdout"):
        ms.load_text_dataset(ms.replace_config(cfg, test_split="validation"))
    with pytest.raises(ms.DataError, match="test_holdout=500"):
        ms.load_text_dataset(ms.replace_config(cfg, test_holdout=500))


# --- one tuning rule ---------------------------------------------------------------------------------------
def test_every_budgeted_method_picks_its_own_lr_at_each_budget_by_one_rule(smoke_cfg, prepared, monkeypatch):
    """Each budgeted method (short-schedule included) tunes at every budget it runs, on the first
    seed, on a grid of the baseline's lr x (0.5, 1, 2) that grows by factors of 2 past the edge
    holding the best until the best is interior or the next lr up diverged, and trains that budget
    with its most accurate lr; the baseline keeps its sweep's (grown the same way). Every budgeted
    run gets a clock of budget x the median seconds of the baseline's sweep. Training is replaced
    by a record whose accuracy peaks at a (method, budget)-specific lr and that diverges at and
    above a method's limit."""
    best = {("baseline", 0.0): 2e-3, ("short-schedule", 1 / 3): 8e-3, ("short-schedule", 0.5): 4e-3,
            ("uniform", 1 / 3): 5e-4, ("uniform", 0.5): 1e-3, ("mclearn", 1 / 3): 6.4e-2, ("mclearn", 0.5): 2e-3}
    diverges = {"mclearn": 8e-3}
    seconds = iter([3.0, 3.4, 2.8] + [1.0] * 200)  # the baseline's sweep first: median 3.0
    calls = []

    def fake_train(method, cfg, prepared, seed, log_path=None, progress=True, budget=None):
        calls.append((method, cfg.lr, cfg.time_budget, seed, cfg.study, cfg.budget_seconds))
        if cfg.lr >= diverges.get(method, math.inf):
            raise ms.DivergedError(f"{method}: the training loss became nan at step 3.")
        accuracy = 0.9 - abs(math.log2(cfg.lr / best[method, round(cfg.time_budget, 6)])) / 10
        return {**ms.run_identity(method, ms.config_for_method(cfg, method), prepared, seed, budget),
                "graphed": False, "train_seconds": next(seconds), "accuracy": accuracy, "test_accuracy": None,
                "eval_curve": [], "examples_backward": 0, "examples_scored": 0}

    best = {(m, round(b, 6)): lr for (m, b), lr in best.items()}
    monkeypatch.setattr("mcstudy.runs.train_method", fake_train)
    monkeypatch.setattr(mcstudy.budget, "measure_relative_costs", lambda prepared: {"forward_share": 0.3})
    cfg = ms.replace_config(smoke_cfg, study="tune")
    result = ms.run_budget_study(cfg, ["baseline", "short-schedule", "uniform", "mclearn"], (1 / 3, 1 / 2),
                                 lrs=(1e-3, 2e-3, 4e-3), seeds=[42, 43], prepared=prepared, progress=False,
                                 lr_factors=(0.5, 1, 2), method_seeds={"mclearn": 1})
    assert result.lr == 2e-3 and result.reference_seconds == 3.0
    chosen = {("short-schedule", 1 / 3): 8e-3, ("short-schedule", 0.5): 4e-3, ("uniform", 1 / 3): 5e-4,
              ("uniform", 0.5): 1e-3, ("mclearn", 1 / 3): 4e-3, ("mclearn", 0.5): 2e-3}
    assert result.method_lrs == chosen
    grids = {}
    for method, lr, budget, seed, study, _ in calls:
        if study == "tune-lr" and method != "baseline":
            assert seed == 42
            grids.setdefault((method, budget), []).append(lr)
    assert grids == {("short-schedule", 1 / 3): [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2],
                     ("short-schedule", 0.5): [1e-3, 2e-3, 4e-3, 8e-3],
                     ("uniform", 1 / 3): [1e-3, 2e-3, 4e-3, 5e-4, 2.5e-4], ("uniform", 0.5): [1e-3, 2e-3, 4e-3, 5e-4],
                     ("mclearn", 1 / 3): [1e-3, 2e-3, 4e-3, 8e-3], ("mclearn", 0.5): [1e-3, 2e-3, 4e-3]}
    for record in result.records:
        budget = record["time_budget"]
        assert record["config"]["lr"] == (chosen[record["method"], budget] if budget else 2e-3)
        assert record["config"]["budget_seconds"] == pytest.approx(budget * 3.0)
    labels = sorted((r["run_label"], r["seed"]) for r in result.records)
    assert ("mclearn-b0.33", 42) in labels and ("mclearn-b0.33", 43) not in labels  # method_seeds
    assert len(result.records) == 2 * (1 + 2 + 2) + 2
    table = ms.budget_study_lr_table([*result.lr_records, *result.tune_records]).set_index(["method", "budget"])
    assert table.loc[("baseline", "1 (full)"), "where"] == "interior"
    assert table.loc[("mclearn", "1/3"), "where"] == "edge: next diverged"
    assert table.loc[("mclearn", "1/3"), "lr (eval accuracy %)"].endswith("0.008: diverged")
    assert table.loc[("short-schedule", "1/3"), "chosen lr"] == "0.008"
    assert set(table["where"]) == {"interior", "edge: next diverged"}


def test_a_tuning_grid_grows_past_its_edges_and_stops_at_its_size():
    """next_grid_lr doubles past a best at the top, halves past a best at the bottom, stops when the
    best is interior or the lr above it diverged, and at LR_GRID_MOST lrs (lr_grid_status: an
    unresolved edge)."""
    def runs(accuracy_by_lr):
        return [{"config": {"lr": lr}, "accuracy": acc} for lr, acc in accuracy_by_lr.items()]

    assert ms.next_grid_lr(runs({1: 0.5, 2: 0.6, 4: 0.7})) == 8
    assert ms.next_grid_lr(runs({1: 0.7, 2: 0.6, 4: 0.5})) == 0.5
    assert ms.next_grid_lr(runs({1: 0.5, 2: 0.7, 4: 0.6})) is None
    assert ms.next_grid_lr(runs({1: 0.5, 2: 0.7, 4: math.nan})) is None
    assert ms.lr_grid_status(runs({1: 0.5, 2: 0.7, 4: math.nan})) == "edge: next diverged"
    assert ms.lr_grid_status(runs({1: 0.5, 2: 0.6, 4: 0.7})) == "edge: highest"
    assert ms.lr_grid_status(runs({1: 0.7, 2: 0.6})) == "edge: lowest"
    assert ms.lr_grid_status(runs({1: 0.5, 2: 0.7, 4: 0.6})) == "interior"
    full = runs({2 ** k: 0.1 * k for k in range(ms.LR_GRID_MOST)})
    assert ms.next_grid_lr(full) is None and ms.lr_grid_status(full) == "edge: highest"
    assert ms.next_grid_lr(full[:-1]) == 2 ** (ms.LR_GRID_MOST - 1)


def test_budget_study_runs_take_each_methods_budgets_and_seeds():
    runs = ms.budget_study_runs(["baseline", "short-schedule", "rho-loss", "vcas"], (1 / 3, 1 / 2), [1, 2, 3],
                                method_budgets={"rho-loss": [0.5]}, method_seeds={"rho-loss": 2})
    assert runs == [("baseline", 0.0, 1), ("short-schedule", 1 / 3, 1), ("short-schedule", 0.5, 1), ("rho-loss", 0.5, 1),
                    ("vcas", 0.0, 1), ("baseline", 0.0, 2), ("short-schedule", 1 / 3, 2), ("short-schedule", 0.5, 2),
                    ("rho-loss", 0.5, 2), ("vcas", 0.0, 2), ("baseline", 0.0, 3), ("short-schedule", 1 / 3, 3),
                    ("short-schedule", 0.5, 3), ("vcas", 0.0, 3)]


def test_budget_study_runs_refuse_an_unknown_method_in_one_line():
    from mcstudy.budget import budget_study_runs

    with pytest.raises(ValueError, match=r"Unknown method\(s\) \['short-schedul'\]\. Choose from: baseline"):
        budget_study_runs(["baseline", "short-schedul"], (1 / 3,), [1])


def test_best_lr_passes_over_diverged_runs():
    runs = [{"accuracy": float("nan"), "config": {"lr": 4e-3}}, {"accuracy": 0.5, "config": {"lr": 1e-3}}]
    assert ms.best_lr(runs) == 1e-3
    with pytest.raises(ValueError, match="diverged"):
        ms.best_lr(runs[:1])


# --- paired differences, time to target, performance profile ---------------------------------------------
def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    """Differences 1, 2, 3, 4, 5 (seeds 1-5): mean 3, sd sqrt(2.5) = 1.5811; t(0.975, 4) = 2.7764:
    half-width 2.7764 x 1.5811 / sqrt(5) = 1.9632. Unpaired seeds and NaNs are left out."""
    method = {1: 11.0, 2: 12.0, 3: 13.0, 4: 14.0, 5: 15.0, 6: 99.0, 7: float("nan")}
    reference = {1: 10.0, 2: 10.0, 3: 10.0, 4: 10.0, 5: 10.0, 7: 10.0, 8: 0.0}
    diff = ms.paired_difference(method, reference)
    assert diff["n"] == 5 and diff["mean"] == pytest.approx(3.0)
    assert diff["lo"] == pytest.approx(3 - 1.96324, abs=1e-4) and diff["hi"] == pytest.approx(3 + 1.96324, abs=1e-4)
    one = ms.paired_difference({1: 2.0}, {1: 1.0})
    assert one["n"] == 1 and math.isnan(one["lo"])


def _record(method, budget, seed, accuracy, curve, test=None):
    return {"method": method, "time_budget": budget, "seed": seed, "accuracy": accuracy, "test_accuracy": test,
            "train_seconds": curve[-1][0] if curve else float("nan"),
            "eval_curve": [{"train_seconds": t, "accuracy": a} for t, a in curve]}


def test_time_to_target_takes_the_least_time_over_budgets_then_the_median_over_seeds():
    """Baseline final accuracies 0.90, 0.92, 0.97: median 0.92 (mean 0.93), target 0.91 at 1 point. Seed by
    seed the least seconds over each method's runs at any budget (short-schedule's include the
    full baseline's); then the median over seeds; a seed that never gets there counts as inf."""
    records = [
        _record("baseline", 0.0, 1, 0.90, [(5, 0.85), (10, 0.90)]),  # never 0.91
        _record("baseline", 0.0, 2, 0.92, [(5, 0.91), (10, 0.92)]),  # 5
        _record("baseline", 0.0, 3, 0.97, [(5, 0.90), (10, 0.97)]),  # 10
        _record("short-schedule", 0.5, 1, 0.91, [(2, 0.80), (4, 0.91)]),  # 4 -> seed 1: 4
        _record("short-schedule", 0.5, 3, 0.90, [(5, 0.90)]),  # never -> seed 3: 10 (baseline)
        _record("uniform", 1 / 3, 1, 0.92, [(1, 0.91), (3, 0.92)]),  # 1
        _record("uniform", 0.5, 1, 0.92, [(2, 0.93)]),  # 2: the least over budgets is 1
        _record("uniform", 1 / 3, 2, 0.80, [(3, 0.80)]),  # never
        _record("uniform", 1 / 3, 3, 0.80, [(3, 0.80)]),  # never
    ]
    table = ms.time_to_target(records, drop_pt=1.0).set_index("method")
    assert table.loc["short-schedule", "target (%)"] == 91.0
    assert table.loc["short-schedule", "median_seconds"] == 5.0  # median of 4, 5, 10
    assert table.loc["short-schedule", "seeds reached"] == "3/3"
    assert math.isinf(table.loc["uniform", "median_seconds"])  # median of 1, inf, inf
    assert table.loc["uniform", "seconds"] == "never" and table.loc["uniform", "seeds reached"] == "1/3"
    half = ms.time_to_target(records[:3] + records[5:6], drop_pt=0.5).set_index("method")  # target 0.915
    assert half.loc["short-schedule", "median_seconds"] == 10.0  # seeds: never, 10, 10
    assert half.loc["uniform", "median_seconds"] == 3.0
    assert half.loc["uniform", "speed-up vs short-schedule"] == "3.33x"


def test_equal_time_table_pairs_each_method_with_the_short_schedule_at_its_budget():
    ref = [91.0, 92.0, 93.0]
    records = [_record("baseline", 0.0, s, 0.95, [(10, 0.95)], test=0.95) for s in (1, 2, 3)]
    records += [_record("short-schedule", 0.5, s, 0.0, [(5, 0.9)], test=a / 100) for s, a in zip((1, 2, 3), ref)]
    records += [_record("uniform", 0.5, s, 0.0, [(5, 0.9)], test=(a + d) / 100) for s, a, d in zip((1, 2, 3), ref, (1, 2, 3))]
    records += [_record("infobatch", 0.5, s, 0.0, [(6, 0.9)], test=(a + d) / 100) for s, a, d in zip((1, 2, 3), ref, (-1, 0, 1.5))]
    table = ms.equal_time_table(records).set_index(["budget", "method"])
    uniform = table.loc[("1/2", "uniform")]
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.3027: half-width 4.3027 / sqrt(3) = 2.4841
    assert uniform["vs short-schedule (pt)"] == "+2.00" and uniform["95% interval"] == "[-0.48, +4.48]"
    assert uniform["verdict"] == "tie" and uniform["accuracy (%)"] == "94.00 ± 2.00"  # 92, 94, 96
    assert table.loc[("1/2", "infobatch"), "verdict"] == "over time"  # a tie in 1.2x short-schedule's seconds
    assert table.loc[("1/2", "infobatch"), "s / short"] == "1.20" and table.loc[("1/2", "uniform"), "s / short"] == "1.00"
    assert table.loc[("1/2", "uniform"), "s / full"] == "0.50" and table.loc[("1/2", "infobatch"), "s / full"] == "0.60"
    assert table.loc[("1 (full)", "short-schedule"), "accuracy (%)"] == "95.00 ± 0.00"
    better = records[:6] + [_record("uniform", 0.5, s, 0.0, [(5, 0.9)], test=(a + d) / 100)
                            for s, a, d in zip((1, 2, 3), ref, (2.0, 2.1, 1.9))]
    assert ms.equal_time_table(better).set_index("method").loc["uniform", "verdict"] == "better"


def test_a_lead_bought_with_more_time_is_not_at_equal_time():
    """A method ahead of short-schedule on every seed but with median train seconds over
    1 + EQUAL_TIME_SLACK (1.05) times short-schedule's at that budget is "over time", not "better"
    (a one-epoch InfoBatch run prunes nothing and takes the full baseline's time); at 1.04x it is
    "better"; a tie over time is "over time" too; behind with more time stays "worse". The
    "s / short" column is the ratio of the medians."""
    ref = [91.0, 92.0, 93.0]
    base = [_record("baseline", 0.0, s, 0.95, [(10, 0.95)], test=0.95) for s in (1, 2, 3)]
    short = [_record("short-schedule", 0.5, s, 0.0, [(t, 0.9)], test=a / 100) for s, a, t in zip((1, 2, 3), ref, (4, 5, 9))]

    def verdict(seconds, lead):
        runs = [_record("infobatch", 0.5, s, 0.0, [(t, 0.9)], test=(a + d) / 100)
                for s, a, t, d in zip((1, 2, 3), ref, seconds, lead)]
        row = ms.equal_time_table(base + short + runs).set_index("method").loc["infobatch"]
        return row["verdict"], row["s / short"]

    assert ms.EQUAL_TIME_SLACK == 0.05
    assert verdict((5.3, 5.3, 5.3), (2.0, 2.1, 1.9)) == ("over time", "1.06")  # median 5.3 over median 5
    assert verdict((1.0, 5.2, 30.0), (2.0, 2.1, 1.9)) == ("better", "1.04")
    assert verdict((15, 15, 15), (-1.0, 0.0, 1.5)) == ("over time", "3.00")
    assert verdict((15, 15, 15), (-2.0, -2.1, -1.9)) == ("worse", "3.00")


# --- p-values, Holm's correction, simultaneous intervals ---------------------------------------------------
def test_paired_difference_gives_the_two_sided_p_value_of_the_paired_t_test():
    """Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641 on 2 degrees of freedom, whose
    two-sided tail is 1 - t / sqrt(t^2 + 2) = 1 - 3.4641 / 3.7417 = 0.07418. With no spread the test
    is decided by the mean alone: p 0 when it is not 0, 1 when it is."""
    diff = ms.paired_difference({1: 11.0, 2: 12.0, 3: 13.0}, {1: 10.0, 2: 10.0, 3: 10.0})
    assert diff["p"] == pytest.approx(0.07418, abs=1e-5)
    assert ms.paired_difference({1: 2.0, 2: 3.0}, {1: 1.0, 2: 2.0})["p"] == 0.0
    assert ms.paired_difference({1: 2.0, 2: 3.0}, {1: 2.0, 2: 3.0})["p"] == 1.0
    assert math.isnan(ms.paired_difference({1: 2.0}, {1: 1.0})["p"])


def test_holm_adjusts_step_down_keeps_the_order_and_skips_missing_tests():
    """p = 0.01, 0.04, 0.03, none, 0.005 (m = 4 tests): sorted 0.005 x 4 = 0.02, 0.01 x 3 = 0.03,
    0.03 x 2 = 0.06, 0.04 x 1 = 0.04 raised to the running maximum 0.06; capped at 1."""
    adjusted = ms.holm_adjust([0.01, 0.04, 0.03, float("nan"), 0.005])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and adjusted[4] == pytest.approx(0.02)
    assert math.isnan(adjusted[3])
    assert ms.holm_adjust([0.6, 0.7]) == [1.0, 1.0]


def _study(study, diffs_by_method, seeds=(1, 2, 3), budget=0.5, reference=(90.0, 91.0, 92.0)):
    """One study's runs: the full baseline, short-schedule at `budget` with `reference` test accuracies
    (%) and each method that many points above it, seed by seed."""
    records = [dict(_record("baseline", 0.0, s, 0.95, [(10, 0.95)], test=0.95), study=study) for s in seeds]
    records += [dict(_record("short-schedule", budget, s, 0.0, [(5, 0.9)], test=a / 100), study=study)
                for s, a in zip(seeds, reference)]
    for method, diffs in diffs_by_method.items():
        records += [dict(_record(method, budget, s, 0.0, [(5, 0.9)], test=(a + d) / 100), study=study)
                    for s, a, d in zip(seeds, reference, diffs)]
    return records


def test_the_holm_family_spans_every_study_given_and_the_verdict_reads_the_adjusted_p():
    """Study a: uniform 0.6, 1.0, 1.4 points above short-schedule: t = 1 / (0.4 / sqrt 3) = 4.3301,
    p = 1 - 4.3301 / sqrt(20.75) = 0.04941, and its 95 % interval 1 +- 4.3027 x 0.23094 = [+0.01, +1.99]
    excludes 0: alone (a family of one) it is "better". Study b: infobatch 1.9, 2.0, 2.1 above
    (t = 34.641, p = 1 - 34.641 / sqrt(1202) = 0.000832) and uniform -0.1, 0, +0.1 (p 1). Together
    (m = 3): 0.000832 x 3 = 0.0025 (better), 0.04941 x 2 = 0.0988 (a tie, though its own interval
    excludes 0), 1. The simultaneous interval is the t-interval at 1 - 0.05 / 3: two-sided quantile
    0.99167 of t(2) = 0.98333 sqrt 2 / sqrt(1 - 0.98333^2) = 7.6489, half-width 7.6489 x 0.23094 = 1.766."""
    a = _study("a", {"uniform": (0.6, 1.0, 1.4)})
    b = _study("b", {"infobatch": (1.9, 2.0, 2.1), "uniform": (-0.1, 0.0, 0.1)})
    alone = ms.equal_time_table(a).set_index("method").loc["uniform"]
    assert alone["verdict"] == "better" and alone["p"] == "0.049" and alone["Holm p"] == "0.049"
    tables = ms.equal_time_tables({"a": a, "b": b})
    assert tables["a"].attrs["family"] == tables["b"].attrs["family"] == 3
    row = tables["a"].set_index("method").loc["uniform"]
    assert row["95% interval"] == "[+0.01, +1.99]" and row["Holm p"] == "0.099" and row["verdict"] == "tie"
    assert row["simultaneous interval"] == "[-0.77, +2.77]"
    other = tables["b"].set_index("method")
    assert other.loc["infobatch", "Holm p"] == "0.002" and other.loc["infobatch", "verdict"] == "better"
    assert other.loc["uniform", "Holm p"] == "1.000" and other.loc["uniform", "verdict"] == "tie"
    behind = ms.equal_time_table(_study("c", {"uniform": (-1.9, -2.0, -2.1)})).set_index("method")
    assert behind.loc["uniform", "verdict"] == "worse"  # the direction is the mean's


# --- the fair protocol: each run against its own target seconds -------------------------------------
def _fair(method, budget, seed, test, ratio=1.0, updates=50, last=0.0, total=25.0, startup=0.1, score=None,
          study="s-fair"):
    """A fair-protocol run (the fields run_record writes: protocol, updates, lr_schedule,
    startup_seconds, time_target): a budgeted run trained for `ratio` times its
    target seconds (10 x budget); the full baseline (budget 0) is step-driven and has no target."""
    seconds = 10.0 * (budget or 1) * ratio
    record = dict(_record(method, budget, seed, 0.0, [(seconds, 0.9)], test=test), study=study,
                  run_label=ms.run_label(method, budget), protocol="fair", updates=updates,
                  lr_schedule={"peak_lr": 1e-4, "driven_by": "clock" if budget else "steps", "updates": updates,
                               "last_share": last, "sum_share": total},
                  startup_seconds={"warmup": 0.0, "capture": 0.0, "rare_eager": 0.0, "graphs": 0, "share": startup})
    if budget:
        record["time_target"] = {"seconds": 10.0 * budget, "reference_seconds": 10.0, "share": budget, "ratio": ratio}
    if score is not None:
        record["telemetry"] = {"measured_seconds": {"score": score}}
    return record


def _fair_study(ratios, lead=(2.0, 2.1, 1.9), reference_ratios=(1.0, 1.0, 1.0)):
    ref = (91.0, 92.0, 93.0)
    records = [_fair("baseline", 0.0, s, 0.95) for s in (1, 2, 3)]
    records += [_fair("short-schedule", 0.5, s, a / 100, ratio=r) for s, a, r in zip((1, 2, 3), ref, reference_ratios)]
    records += [_fair("infobatch", 0.5, s, (a + d) / 100, ratio=r) for s, a, d, r in zip((1, 2, 3), ref, lead, ratios)]
    return records


def test_a_fair_run_is_at_equal_time_within_three_percent_of_its_own_target():
    """Fair protocol: infobatch 2 points ahead on every seed. Its cell's median train seconds over
    target: 1.031 (> 1 + EQUAL_TIME_TOLERANCE) is "over time"; 1.029 is "better" though one run took
    1.5x; behind and over time is no verdict either ("over time", unlike the previous protocol);
    ratios 1.0, 1.0, 1.2 have median 1.0 (on target). "on target" counts the runs within 3 % either way
    (0.95 is not). A short-schedule cell off its target (0.96) leaves no verdict at that budget."""
    def row(ratios, **kw):
        return ms.equal_time_table(_fair_study(ratios, **kw)).set_index("method").loc["infobatch"]

    assert ms.EQUAL_TIME_TOLERANCE == 0.03
    over = row((1.0, 1.031, 1.031))
    assert (over["verdict"], over["s / target"], over["on target"]) == ("over time", "1.031", "1/3")
    held = row((1.029, 1.029, 1.5))
    assert (held["verdict"], held["s / target"], held["on target"]) == ("better", "1.029", "2/3")
    assert row((1.1, 1.1, 1.1), lead=(-2.0, -2.1, -1.9))["verdict"] == "over time"
    assert row((1.0, 1.0, 1.2))["verdict"] == "better"
    assert row((0.95, 1.0, 1.0))["on target"] == "2/3"
    assert row((1.0, 1.0, 1.0), reference_ratios=(0.96, 0.96, 0.96))["verdict"] == "short-schedule off target"
    short = ms.equal_time_table(_fair_study((1.0, 1.0, 1.0))).set_index(["budget", "method"])
    assert short.loc[("1/2", "short-schedule"), "s / target"] == "1.000"
    assert short.loc[("1 (full)", "short-schedule"), "s / target"] == ""  # the reference: no target


def test_a_fair_cell_shows_what_its_runs_did():
    """Updates 40, 50, 60 (mean 50.0); lr at the last update 0, 0.4 and 0.2 % of peak (the largest:
    0.40 %); sum of lr / peak 24, 25, 26 (25.0); warm-up + capture 10, 20, 30 % of train seconds
    (20.0 %); MC-Learn's scoring 0.1, 0.2, 0.3 s of 5 s (2, 4, 6 %: 4.0 %), "—" for a method without."""
    ref = (91.0, 92.0, 93.0)
    records = [_fair("baseline", 0.0, s, 0.95) for s in (1, 2, 3)]
    records += [_fair("short-schedule", 0.5, s, a / 100) for s, a in zip((1, 2, 3), ref)]
    records += [_fair("mclearn", 0.5, s, a / 100, updates=u, last=l, total=t, startup=w, score=c)
                for s, a, u, l, t, w, c in zip((1, 2, 3), ref, (40, 50, 60), (0.0, 0.004, 0.002), (24.0, 25.0, 26.0),
                                               (0.1, 0.2, 0.3), (0.1, 0.2, 0.3))]
    table = ms.equal_time_table(records).set_index(["budget", "method"])
    assert list(table.columns[-7:]) == ms.FAIR_COLUMNS
    own = table.loc[("1/2", "mclearn")]
    assert (own["updates"], own["lr last / peak"], own["Σ lr / peak"], own["warm-up+capture"], own["scoring"]) == \
        ("50.0", "0.40 %", "25.0", "20.0 %", "4.0 %")
    assert table.loc[("1/2", "short-schedule"), "scoring"] == "—"
    idle = ms.fair_cell_columns([_fair("uniform", 0.5, 1, 0.9, updates=0, last=None, startup=None)])
    assert (idle["updates"], idle["lr last / peak"], idle["warm-up+capture"]) == ("0.0", "—", "—")  # recorded None
    assert "s / target" not in ms.equal_time_table(_study("p", {"uniform": (1, 2, 3)}))  # previous protocol


def test_fair_runs_without_their_fields_or_mixed_with_previous_runs_are_refused():
    records = _fair_study((1.0, 1.0, 1.0))
    del records[-1]["time_target"]
    with pytest.raises(ValueError, match=r"s-fair/infobatch-b0.50 seed 3 .* lacks time_target"):
        ms.equal_time_table(records)
    mixed = _fair_study((1.0, 1.0, 1.0))
    del mixed[-1]["protocol"]
    with pytest.raises(ValueError, match="infobatch at 1/2 mixes fair-protocol runs"):
        ms.equal_time_table(mixed)
    previous = [r for r in _fair_study((1.0, 1.0, 1.0)) if r["method"] != "infobatch"]
    previous += [{k: v for k, v in r.items() if k != "protocol"} for r in _fair_study((1.0, 1.0, 1.0))
                 if r["method"] == "infobatch"]
    with pytest.raises(ValueError, match="different protocols"):
        ms.equal_time_table(previous)


def test_updates_run_are_the_updates_a_run_made_not_the_steps_it_planned():
    assert ms.updates_run({"updates": 43, "steps": 53}) == 43
    assert ms.updates_run({"steps": 53, "telemetry": {"budget": {"steps": 53, "steps_run": 41}}}) == 41
    assert ms.updates_run({"steps": 59, "telemetry": {}}) == 59
    assert ms.updates_run({}) is None


# --- time to target's bootstrap intervals ------------------------------------------------------------------
def test_time_to_target_gives_bootstrap_intervals_over_the_seeds():
    """Target 94 % (baseline 95 %). Seconds to it, seeds 1 and 2: short-schedule 2 and 4, uniform 1 and 3,
    infobatch 2 and 5, rho-loss 1 and never. A resample of two seeds has median (1,1) -> 1, (1,3) -> 2 or
    (3,3) -> 3 with chances 1/4, 1/2, 1/4: uniform's 95 % interval [1.00, 3.00]. Its speed-up resamples the
    same seeds for both: 2/1, 3/2 or 4/3, so [1.33x, 2.00x] (unpaired it would reach 4/1 and 2/3); it was
    faster on 2 of 2 seeds, infobatch on 0 of 2 (a tie at seed 1 is not faster). rho-loss: median never,
    interval [1.00, never], speed-up 2/1 or 0 (never): [0.00x, 2.00x]. A fixed generator: the same table twice."""
    records = [_record("baseline", 0.0, s, 0.95, [(10, 0.95)]) for s in (1, 2)]
    for method, times in {"short-schedule": (2, 4), "uniform": (1, 3), "infobatch": (2, 5), "rho-loss": (1, None)}.items():
        records += [_record(method, 0.5, s, 0.95, [(t, 0.95)] if t else [(9, 0.5)]) for s, t in zip((1, 2), times)]
    table = ms.time_to_target(records)
    assert table.equals(ms.time_to_target(records))
    rows = table.set_index("method")
    assert rows.loc["uniform", "seconds"] == "2.00" and rows.loc["uniform", "95% bootstrap (s)"] == "[1.00, 3.00]"
    assert rows.loc["uniform", "speed-up vs short-schedule"] == "1.50x"
    assert rows.loc["uniform", "speed-up 95% bootstrap"] == "[1.33x, 2.00x]"
    assert rows.loc["uniform", "seeds faster"] == "2/2" and rows.loc["infobatch", "seeds faster"] == "0/2"
    assert rows.loc["short-schedule", "seeds faster"] == "—"
    assert rows.loc["rho-loss", "seconds"] == "never" and rows.loc["rho-loss", "95% bootstrap (s)"] == "[1.00, never]"
    assert rows.loc["rho-loss", "speed-up 95% bootstrap"] == "[0.00x, 2.00x]"
    assert ms.BOOTSTRAP_RESAMPLES == 10_000 and ms.BOOTSTRAP_SEED == 0


def test_performance_profile_counts_studies_within_tau_of_the_fastest():
    times = {"a": {"short-schedule": 10.0, "mclearn": 5.0, "uniform": math.inf},
             "b": {"short-schedule": 4.0, "mclearn": 6.0, "uniform": 4.4},
             "c": {"short-schedule": math.inf, "mclearn": math.inf, "uniform": math.inf}}
    profile = ms.performance_profile(times, [1.0, 1.1, 1.5, 2.0])
    assert profile.loc["short-schedule"].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 2 / 3])
    assert profile.loc["mclearn"].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert profile.loc["uniform"].tolist() == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3])
    assert list(profile.index)[0] == "short-schedule"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run it on the GPU machine)")
def test_cuda_graphed_scoring_gives_the_eager_losses(prepared, smoke_cfg):
    """On CUDA the scoring peers' no-grad forward replays a CUDA graph per (rows, width); in eval mode
    (no dropout, fp32) its losses must equal an eager forward's for every shape and order (1e-5)."""
    device = torch.device("cuda")
    cfg = ms.replace_config(smoke_cfg, device="cuda", precision="fp32", cuda_graphs=True, pad_multiple=32)
    train = prepared.train.to(device)
    model = deepcopy(prepared.base_model).to(device).eval()
    ctx = ms.RunContext(cfg=cfg, model=model, train=train, eval=train, num_labels=4, device=device,
                        generator=torch.Generator().manual_seed(0), device_generator=torch.Generator(device=device).manual_seed(0))
    method = ms.SelectiveBackprop(ctx)
    ms.build_optimization(ctx, method)
    gen = torch.Generator().manual_seed(1)
    for rows in [16, 16, 48, 16, 48, 16, 48, 48, 16, 16]:
        idx = torch.randperm(len(train), generator=gen)[:rows]
        graphed = method.score(train, idx)
        with torch.no_grad():
            batch = mc.make_batch(train, idx, mc.batch_width(train, idx, cfg.pad_multiple))
            eager = ctx.per_example_loss(ctx.forward(batch), batch["labels"])
        assert torch.allclose(graphed, eager, atol=1e-5), (graphed - eager).abs().max()
    assert method.telemetry()["scoring_graphed"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run it on the GPU machine)")
def test_cuda_short_schedule_run_is_graphed(prepared, smoke_cfg):
    cfg = ms.replace_config(smoke_cfg, device="cuda", precision="bf16", cuda_graphs=True, pad_multiple=32,
                            epochs=3, time_budget=0.5)
    record = ms.train_method("short-schedule", cfg, ms.prepare(cfg), seed=1, progress=False)
    assert record["graphed"] and record["telemetry"]["cuda_graphs"] >= 1


def test_the_answer_reads_one_fair_study_per_dataset_and_model(tmp_path):
    """Fair-protocol studies of one dataset and model on two GPUs would enter the answer's Holm family
    and tallies twice: fair_study_names (and the README's answer_studies through it) refuses them in
    one line naming both; SST-2, its noisy and long variants and another model are other sets."""
    import make_readme as mr

    studies = ["sst2-mpnet-h200-fair", "sst2-noisy20-mpnet-h100-fair", "sst2-long-mpnet-h100-fair",
               "sst2-minilm-h100-fair", "banking77-mpnet-h200-fair", "banking77-mpnet-h200-fair-lr",
               "banking77-mpnet-h200-fair-ablation", "clinc150-mpnet-h200-equal-time"]
    rows = pd.DataFrame([{"study": s, "method": ms.REFERENCE} for s in studies])
    assert ms.fair_study_names(ms.equal_time_study_names(rows)) == sorted(studies[:5])
    rows = pd.concat([rows, pd.DataFrame([{"study": "banking77-mpnet-h100-fair", "method": ms.REFERENCE}])])
    line = ("results/runs holds fair-protocol studies of one dataset and model on two GPUs "
            "(banking77-mpnet-h100-fair, banking77-mpnet-h200-fair): the answer counts each dataset once; delete "
            "the superseded study's run folders (results/runs/<study> and <study>-lr) and run make_readme.py again")
    with pytest.raises(ValueError) as err:
        ms.fair_study_names(ms.equal_time_study_names(rows))
    assert str(err.value) == line
    rows.assign(seed=42, device="cuda").to_csv(tmp_path / "summary.csv", index=False)
    with pytest.raises(ValueError, match=r"^results/runs holds fair-protocol studies of one dataset"):
        mr.answer_studies(tmp_path)
