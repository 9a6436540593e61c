"""The fair protocol's training rules: equal time by the clock (RunClock), lr schedules that end at
the last update (LRSchedule driven by the clock, by InfoBatch's epochs, by MC-Learn's re-plans), one
capture policy for every method, and the run file's record of all of it. Runs are timed by a cost
model (conftest.cost_clock), so every number here is the same on any host, busy or not."""
import dataclasses
import math

import pytest
import torch

import mcstudy as ms
from conftest import fixed_step_costs

TOKEN_SECONDS = 1e-4  # the cost model: an update of 16 rows at 32 tokens costs 0.05 s


def _priced(prepared):
    """The prepared data with the cost model's step-cost table (no measuring on the host)."""
    return dataclasses.replace(prepared, step_costs=fixed_step_costs(prepared.cfg, TOKEN_SECONDS))


# --- the clock ---------------------------------------------------------------------------------------
def test_run_clock_takes_a_step_while_it_ends_nearer_the_budget_than_stopping():
    """Budget 1 s, steps of 0.1 s: at 0.94 s elapsed the next step would end at 1.04 s, nearer than
    stopping (0.06 s short): it is taken; at 0.96 s it would end 0.06 s over, farther than the 0.04 s
    stopping leaves: the run stops. The estimate is the median of the last CLOCK_WINDOW steps, so
    one slow step (a graph capture) does not move it; the first step is always taken; a step's lr
    follows the elapsed share at its expected end."""
    clock = ms.RunClock(1.0)
    assert not clock.should_stop(5.0)  # no step yet: the first is always taken
    for _ in range(5):
        clock.observe(0.1)
    clock.observe(2.0)  # a capture
    assert clock.step_estimate() == pytest.approx(0.1)
    assert not clock.should_stop(0.94) and clock.should_stop(0.96)
    assert clock.next_progress(0.5) == pytest.approx(0.6) and clock.progress == pytest.approx(0.6)
    assert clock.next_progress(0.95) == 1.0
    for _ in range(ms.CLOCK_WINDOW):
        clock.observe(0.2)
    assert len(clock.recent) == ms.CLOCK_WINDOW and clock.step_estimate() == pytest.approx(0.2)


CLOCKED = ["short-schedule", "uniform", "infobatch", "mclearn", "selective-backprop", "rho-loss"]


@pytest.mark.parametrize("method", CLOCKED)
def test_a_clock_driven_run_spends_its_budget_and_ends_its_schedule_at_its_last_update(prepared, smoke_cfg,
                                                                                        cost_clock, method):
    """Every budgeted method, clock-driven at 3 s of the cost model (about 60 updates of 16 rows):
    its train seconds (setup included, evaluation excluded) are within 3 % of the budget, its lr
    at the last update is at most 1 % of its peak, and the run file says so (time_target,
    lr_schedule, updates); it evaluates along the way and last after its last step."""
    cost_clock(TOKEN_SECONDS)
    cfg = ms.replace_config(smoke_cfg, time_budget=0.5, budget_seconds=3.0, uniform_fraction=0.5, eval_points=4)
    plan = ms.plan_time_budget(method, 0.5, cfg, {"forward_share": 0.3})
    if method == "rho-loss":  # a step scores 10 batches: at 4 the 3 s hold enough steps to land within 3 %
        cfg = ms.replace_config(cfg, rho_candidate_mult=4)
    record = ms.train_method(method, ms.with_explicit(cfg, **plan.knobs), _priced(prepared), seed=3, progress=False)
    target, schedule = record["time_target"], record["lr_schedule"]
    print(method, record["train_seconds"], record["updates"], schedule)
    assert abs(record["train_seconds"] / 3.0 - 1) <= 0.03
    assert target == {"seconds": 3.0, "reference_seconds": 6.0, "share": 0.5,
                      "ratio": round(record["train_seconds"] / 3.0, 4)}
    assert schedule["driven_by"] == "clock" and schedule["peak_lr"] == cfg.lr
    assert 0 <= schedule["last_share"] <= 0.01 and record["updates"] == schedule["updates"] > 10
    assert record["protocol"] == "fair" and record["startup_seconds"]["share"] == 0.0  # no graphs on the CPU
    curve = record["eval_curve"]
    assert len(curve) == 4 and curve[-1]["step"] == record["steps"]
    assert curve[-1]["accuracy"] == pytest.approx(record["accuracy"])
    assert [p["train_seconds"] for p in curve] == sorted(p["train_seconds"] for p in curve)


def test_a_clock_driven_run_outlasts_its_plan(prepared, smoke_cfg, cost_clock):
    """uniform on a tenth of the data for one epoch plans 3 steps; at a budget of 20 steps' seconds
    it goes on over its subset epoch after epoch until the clock stops it."""
    cost_clock(TOKEN_SECONDS)
    cfg = ms.replace_config(smoke_cfg, time_budget=0.5, budget_seconds=1.0, uniform_fraction=0.1)
    record = ms.train_method("uniform", cfg, _priced(prepared), seed=3, progress=False)
    assert record["steps"] > 3 * 4 and abs(record["time_target"]["ratio"] - 1) <= 0.03
    assert record["examples_backward"] > 3 * len(prepared.train) * 0.1


def test_clock_plan_warning_says_when_the_clock_is_more_than_the_spread_from_the_plans_price():
    """The warning is None within CLOCK_PLAN_SPREAD of the priced seconds either way (the studies'
    clocks are 0.99-1.07x it), and names both seconds and the ratio outside it; nothing without a
    clock or without a priced plan."""
    spread, clock = ms.CLOCK_PLAN_SPREAD, ms.RunClock(1.0)
    assert ms.clock_plan_warning(clock, 1.0 / spread) is None and ms.clock_plan_warning(clock, spread) is None
    above = ms.clock_plan_warning(clock, 1.0 / (spread * 1.01))
    below = ms.clock_plan_warning(clock, spread * 1.01)
    assert above and "1.26x" in above and "1.000 s" in above and "0.792 s its plan prices" in above
    assert below and "0.79x" in below and "budget_seconds" in below
    assert ms.clock_plan_warning(None, 1.0) is None and ms.clock_plan_warning(clock, None) is None


@pytest.mark.parametrize("method", ["short-schedule", "mclearn"])
def test_a_clock_far_from_the_seconds_its_plan_prices_is_said_in_the_run(prepared, smoke_cfg, cost_clock, method):
    """A method that plans from the step costs (its steps, and the shapes it captures) says in its run
    file when its clock is 3x the seconds it priced (time_budget x the baseline's priced seconds),
    and says nothing at 1.1x, whichever seconds the priced table holds."""
    cost_clock(TOKEN_SECONDS)
    cfg = ms.config_for_method(ms.replace_config(smoke_cfg, time_budget=0.5, budget_seconds=1.0), method)
    ctx, trainer = ms.start_run(method, cfg, _priced(prepared), seed=1)
    trainer.setup()
    priced = trainer.priced_seconds()
    assert priced > 0
    for factor, said in [(1.1, False), (3.0, True)]:
        run = ms.replace_config(cfg, budget_seconds=factor * priced)
        record = ms.train_method(method, run, _priced(prepared), seed=1, progress=False)
        assert any("its plan prices" in warning for warning in record["warnings"]) is said, (factor, record["warnings"])


def test_clock_progress_drives_the_phases_of_mclearn_and_infobatch(prepared, smoke_cfg, cost_clock):
    """Clock-driven, MC-Learn's kappa and InfoBatch's anneal follow the elapsed share: MC-Learn
    reaches its last kappa (after 80 % of the seconds) and InfoBatch's last epochs, from the last
    infobatch_anneal share of the seconds on, prune nothing, while earlier ones did."""
    cost_clock(TOKEN_SECONDS)
    cfg = ms.replace_config(smoke_cfg, time_budget=0.5, budget_seconds=4.0, eval_points=2)
    record = ms.train_method("mclearn", cfg, _priced(prepared), seed=3, progress=False)
    assert {s["kappa"] for s in record["telemetry"]["steps"]} == set(cfg.kappa_schedule)
    cfg = ms.replace_config(cfg, infobatch_anneal=0.3)
    record = ms.train_method("infobatch", cfg, _priced(prepared), seed=3, progress=False)
    pruned = record["telemetry"]["pruned_per_epoch"]
    print(pruned)
    assert len(pruned) >= 3 > cfg.epochs and max(pruned[1:-1]) > 0 and pruned[-1] == 0


# --- schedules that end at the last update, step-driven ---------------------------------------------
def test_infobatch_compresses_each_epochs_share_of_the_schedule_into_the_steps_it_runs(prepared, smoke_cfg):
    """Three epochs, the later ones pruned: the lr of each update is the schedule's at the share of
    the epochs done when it starts, each epoch's share spread over the steps that epoch runs, so the
    first update of epoch e is at e / 3 of the schedule and the last update's lr is at most 1 % of
    the peak (skipping a pruned epoch's steps ended the run at 8.5 % of its peak on Banking77)."""
    cfg = ms.replace_config(smoke_cfg, epochs=3, infobatch_prune=0.7, infobatch_anneal=0.0)
    ctx = ms.start_run("infobatch", cfg, prepared, seed=1)[0]
    method = ms.InfoBatch(ctx)
    ms.build_optimization(ctx, method)
    f, total = ms.schedule_multiplier(cfg, method.num_steps()), method.num_steps()
    shares, starts = [], []
    for i in range(method.num_steps()):
        progress = method.schedule_progress()
        ctx.scheduler.drive(progress)
        epoch = method.epoch
        if method.step(i):
            shares.append(ctx.scheduler.last_share)
            if method.epoch != epoch:
                starts.append(progress)
    assert starts == pytest.approx([0.0, 1 / 3, 2 / 3])
    pruned = method.telemetry()["pruned_per_epoch"]
    assert pruned[0] == 0 and min(pruned[1:]) > 0 and len(shares) < total
    assert shares[-1] <= 0.01 and ctx.scheduler.record()["updates"] == len(shares)
    assert shares[-1] == pytest.approx(f(total * (2 + (method.cursor - 1) / len(method.plan)) / 3))


def test_a_step_driven_baseline_ends_its_schedule_at_its_last_update(prepared, smoke_cfg):
    record = ms.train_method("baseline", smoke_cfg, prepared, seed=1, progress=False)
    schedule = record["lr_schedule"]
    assert schedule["driven_by"] == "steps" and schedule["updates"] == record["steps"] == 30
    assert 0 < schedule["last_share"] <= 0.01 and record["time_target"] is None
    f = ms.schedule_multiplier(smoke_cfg, 30)
    assert schedule["sum_share"] == pytest.approx(sum(f(k) for k in range(30)), abs=1e-3)


# --- one capture policy -------------------------------------------------------------------------------
def test_mclearn_plans_its_update_shapes_and_leaves_rare_ones_uncaptured(prepared, smoke_cfg):
    """MC-Learn's update graphs follow the capture policy of every method: its planned uses of each
    (full_rows, width) are its planned steps at the first pool's width mix, and a width planned
    fewer than GRAPH_MIN_USES times is never captured (it runs eagerly)."""
    cfg = ms.config_for_method(ms.replace_config(smoke_cfg, time_budget=0.5), "mclearn")
    priced = _priced(prepared)
    ctx, trainer = ms.start_run("mclearn", cfg, priced, seed=1)
    trainer.setup()
    uses = trainer.planned_update_shapes()
    assert sum(uses.values()) == pytest.approx(trainer.num_steps(), abs=len(uses))
    expected = {(trainer.full_rows, int(w)): round(p * trainer.num_steps())
                for w, p in zip(trainer.plan.bucket_widths, trainer.plan.bucket_prob)}
    assert uses == expected
    ms.build_optimization(ctx, trainer)
    trainer.step(0)
    graphed = trainer.graphed
    assert graphed.planned_uses == uses
    rare = [k for k, n in uses.items() if n < ms.GRAPH_MIN_USES]
    frequent = [k for k, n in uses.items() if n >= ms.GRAPH_MIN_USES]
    assert rare and frequent  # the smoke data has both
    assert not any(graphed.worth_capturing(k) for k in rare) and all(graphed.worth_capturing(k) for k in frequent)


def test_infobatch_plans_the_update_shapes_of_its_epochs():
    """InfoBatch's planned update shapes are its full-data epoch's, weighted, times its epochs."""
    cfg = ms.make_config("cpu-smoke", epochs=3)
    prepared = ms.prepare(cfg)
    ctx = ms.start_run("infobatch", cfg, prepared, seed=1)[0]
    method = ms.InfoBatch(ctx)
    epoch = ms.plan_epoch(prepared.train, cfg, torch.Generator().manual_seed(0))
    expected = {}
    for rows, width in epoch:
        expected[(len(rows), width, True)] = expected.get((len(rows), width, True), 0) + 3
    assert method.planned_update_shapes() == expected


# --- the run file ---------------------------------------------------------------------------------------
def test_startup_seconds_sum_the_graphs_warm_ups_and_captures(prepared, smoke_cfg):
    """startup_seconds adds the update's and the scoring forward's eager warm-up steps (of shapes
    they captured) and captures, counts their graphs, and gives the share of train seconds."""
    class Graphs:
        def __init__(self, warmup, rare, capture, graphs):
            self.eager, self.capture_seconds, self.graphs = (warmup, rare), capture, dict.fromkeys(range(graphs))

        def eager_seconds(self):
            return self.eager

    method = ms.Method(None)
    method.graphed, method.scorer = Graphs(0.2, 0.05, 0.3, 2), Graphs(0.1, 0.0, 0.2, 1)
    assert ms.startup_seconds(method, 4.0) == {"warmup": 0.3, "capture": 0.5, "rare_eager": 0.05, "graphs": 3,
                                               "share": 0.2}
    method.scorer = None
    assert ms.startup_seconds(method, 0.0)["share"] is None


def test_eager_seconds_split_warm_ups_of_captured_shapes_from_other_eager_steps(prepared, smoke_cfg):
    """GraphedUpdate.eager_seconds adds each eager step's seconds: steps of a shape it captured later
    are its warm-up, the rest (rare shapes, shapes never captured) the other eager seconds."""
    ctx = ms.start_run("baseline", smoke_cfg, prepared, seed=1)[0]
    graphed = ms.GraphedUpdate(ctx, lambda inputs, key: {})
    graphed.graphs = {("a",): None}
    graphed.eager_times = [(("a",), 0.03), (("a",), 0.02), (("b",), 0.005)]
    assert graphed.eager_seconds() == pytest.approx((0.05, 0.005))
    graphed.eager_times = []
    assert graphed.eager_seconds() == (0.0, 0.0)


def test_mclearn_tells_the_clock_what_its_refresh_steps_add(prepared, smoke_cfg, cost_clock, monkeypatch):
    """A clock-driven MC-Learn run weighs a step that starts with a pool refresh at the refresh's
    expected seconds (measured per pool member, times the pool's size): extra_step_seconds is 0
    between refreshes and that at one, and train_loop hands it to RunClock.should_stop."""
    cost_clock(TOKEN_SECONDS)
    cfg = ms.config_for_method(ms.replace_config(smoke_cfg, time_budget=0.5, budget_seconds=2.0), "mclearn")
    cfg = ms.replace_config(cfg, select_switch=False)  # every refresh scored: the fake clock prices it above 0
    ctx, trainer = ms.start_run("mclearn", cfg, _priced(prepared), seed=1)
    trainer.setup()
    every = cfg.refresh_every
    assert trainer.extra_step_seconds(1) == 0.0
    expected = trainer.setup_refresh_per_member * trainer.pool_size(trainer.policy.kappa(0.0))
    assert expected > 0 and trainer.extra_step_seconds(every) == pytest.approx(expected)
    asked = []
    should_stop = ms.RunClock.should_stop
    monkeypatch.setattr(ms.RunClock, "should_stop", lambda self, elapsed, extra=0.0: (
        asked.append(extra), should_stop(self, elapsed, extra))[1])
    ms.train_method("mclearn", cfg, _priced(prepared), seed=1, progress=False)
    assert all(extra > 0 for extra in asked[every::every]) and not any(asked[1:every])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run it on the GPU machine)")
@pytest.mark.parametrize("method", ["short-schedule", "infobatch", "mclearn"])
def test_cuda_clock_driven_graphed_runs_spend_their_budget_and_book_their_start_up(prepared, smoke_cfg, method):
    """On CUDA with graphs: a clock-driven run of about 1 s lands within 3 % of it, replays captured
    graphs, ends its lr at its last update, and books its eager warm-up steps and captures (read from
    CUDA events) as a share of its train seconds. Its clock is set as a study sets it, time_budget x
    the baseline's seconds (here priced from the measured step costs), with enough epochs for 1 s:
    a clock unrelated to the baseline leaves MC-Learn's plan, and so its capture policy, pricing
    another run than the clock times."""
    cfg = ms.replace_config(smoke_cfg, device="cuda", time_budget=0.5, cuda_graphs=True, pad_multiple=16,
                            eval_points=2)
    data = ms.prepare(cfg)
    costs = ms.prepared_step_costs(data)
    epoch = sum(costs.at(len(rows), width) for rows, width in
                ms.plan_epoch(data.train, cfg, torch.Generator().manual_seed(0)))
    epochs = max(1, math.ceil(1.0 / (cfg.time_budget * epoch)))
    cfg = ms.replace_config(cfg, epochs=epochs, budget_seconds=cfg.time_budget * epochs * epoch)
    record = ms.train_method(method, cfg, data, seed=1, progress=False)
    startup = record["startup_seconds"]
    print(method, record["train_seconds"], record["updates"], startup, record["lr_schedule"])
    assert record["graphed"] and startup["graphs"] >= 1 and startup["warmup"] > 0 and startup["capture"] > 0
    assert 0 < startup["share"] < 1 and abs(record["time_target"]["ratio"] - 1) <= 0.03
    assert record["lr_schedule"]["last_share"] <= 0.01
