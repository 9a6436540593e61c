"""Budget studies (section 8, runs): each method's knobs for a share of the tuned baseline's time, the
learning-rate sweep, and a whole study on the CPU smoke preset (resumable, flipped rows saved)."""
from pathlib import Path

import numpy as np
import pytest

import mcstudy as ms


@pytest.mark.parametrize("forward_share", [0.25, 0.33, 0.45])
@pytest.mark.parametrize("budget", [1 / 3, 1 / 2, 0.8])
def test_scoring_peers_are_planned_to_the_budget(forward_share, budget):
    """Selective Backprop and RHO-LOSS: the plan's cost model (docstring of selection_rate_plan)
    evaluated at its knobs gives the budget, whether the selection rate or the candidate share
    carries it; the selection rate never drops under MIN_SELECTION_RATE."""
    cfg = ms.make_config("cpu-smoke", epochs=2)
    costs = {"forward_share": forward_share}
    for method in ("selective-backprop", "rho-loss"):
        plan = ms.plan_time_budget(method, budget, cfg, costs)
        knobs = plan.knobs
        rate = 1 / (knobs["sb_beta"] + 1) if method == "selective-backprop" else knobs["rho_select_fraction"]
        assert rate >= ms.MIN_SELECTION_RATE - 1e-12 and 0 < knobs["candidate_share"] <= 1
        if method == "rho-loss":
            fixed = (cfg.rho_holdout * cfg.rho_il_epochs + forward_share) / cfg.epochs
            offered = 1 - cfg.rho_holdout
        else:
            fixed, offered = 0.0, 1.0
        cost = fixed + offered * knobs["candidate_share"] * (forward_share + rate)
        assert plan.predicted_share == pytest.approx(cost)
        if knobs["candidate_share"] > 0.05:  # reachable: the plan spends the budget, no more
            assert cost == pytest.approx(budget, rel=1e-9)
        assert (plan.note is None) == (knobs["candidate_share"] == 1.0)


def test_plain_knobs_and_methods_without_a_wall_clock_knob():
    cfg = ms.make_config("cpu-smoke")
    assert ms.plan_time_budget("uniform", 0.5, cfg, {}).knobs == {"uniform_fraction": 0.5}
    assert ms.plan_time_budget("mclearn", 1 / 3, cfg, {}).knobs == {}  # MC-Learn reads time_budget itself
    # InfoBatch: no knob, the clock ends its open-ended epochs at its own prune ratio
    assert ms.plan_time_budget("infobatch", 1 / 3, cfg, {}).knobs == {}
    for method in ms.NO_WALL_CLOCK_KNOB:
        plan = ms.plan_time_budget(method, 0.5, cfg, {})
        assert plan.knobs == {} and plan.time_budget == 0.0 and "no wall-clock knob" in plan.note
    with pytest.raises(ValueError, match="No time-budget knob"):
        ms.plan_time_budget("baseline", 0.5, cfg, {})
    assert ms.run_label("uniform", 1 / 3) == "uniform-b0.33" and ms.run_label("vcas", 0.0) == "vcas"


VCAS_NOTE = ("no wall-clock knob: its ratios cut backward FLOPs, not seconds (dense kernels still do the "
             "work); it runs once per seed at its defaults")
PAPER_NOTE = ("no wall-clock knob: its budget ratio prices each step against the baseline's over as many "
              "steps as the baseline takes; it runs once per seed at its defaults")
# The scoring peers' plans, keyed (method, epochs, forward_share, budget): forward_share 0.3 puts
# Selective Backprop at 1/3 under MIN_SELECTION_RATE, and RHO-LOSS's fixed costs (its irreducible-loss
# model) take the whole budget at one epoch (the 5 % floor) and part of it at three.
SCORED_PLANS = {
    ('selective-backprop', 1, 0.3, 1 / 3): (
        {'sb_beta': 9.0, 'candidate_share': 0.8333333333333333}, 0.3333333333333333,
        'the selection rate alone cannot reach 0.33: scoring every candidate costs 0.30 of '
        'the baseline; candidates cut to 0.83 of each epoch'),
    ('rho-loss', 1, 0.3, 1 / 3): (
        {'rho_select_fraction': 0.1, 'candidate_share': 0.05}, 0.518,
        'cannot reach 0.33: the fixed costs alone take 0.50 of the baseline; runs at '
        'selection rate 0.1 on 5% of each epoch'),
    ('selective-backprop', 1, 0.3, 1 / 2): (
        {'sb_beta': 4.0, 'candidate_share': 1.0}, 0.5,
        None),
    ('rho-loss', 1, 0.3, 1 / 2): (
        {'rho_select_fraction': 0.1, 'candidate_share': 0.05}, 0.518,
        'cannot reach 0.50: the fixed costs alone take 0.50 of the baseline; runs at '
        'selection rate 0.1 on 5% of each epoch'),
    ('selective-backprop', 1, 0.05, 1 / 3): (
        {'sb_beta': 2.5294117647058822, 'candidate_share': 1.0}, 0.3333333333333333,
        None),
    ('rho-loss', 1, 0.05, 1 / 3): (
        {'rho_select_fraction': 0.1, 'candidate_share': 0.6172839506172837}, 0.3333333333333333,
        'the selection rate alone cannot reach 0.33: scoring every candidate costs 0.29 of '
        'the baseline; candidates cut to 0.62 of each epoch'),
    ('selective-backprop', 1, 0.05, 1 / 2): (
        {'sb_beta': 1.2222222222222223, 'candidate_share': 1.0}, 0.5,
        None),
    ('rho-loss', 1, 0.05, 1 / 2): (
        {'rho_select_fraction': 0.2277777777777778, 'candidate_share': 1.0}, 0.5,
        None),
    ('rho-loss', 3, 0.3, 1 / 3): (
        {'rho_select_fraction': 0.1, 'candidate_share': 0.4629629629629629}, 0.3333333333333333,
        'the selection rate alone cannot reach 0.33: scoring every candidate costs 0.44 of '
        'the baseline; candidates cut to 0.46 of each epoch'),
    ('rho-loss', 3, 0.3, 1 / 2): (
        {'rho_select_fraction': 0.1, 'candidate_share': 0.9259259259259259}, 0.5,
        'the selection rate alone cannot reach 0.50: scoring every candidate costs 0.44 of '
        'the baseline; candidates cut to 0.93 of each epoch'),
    ('rho-loss', 3, 0.05, 1 / 3): (
        {'rho_select_fraction': 0.2277777777777778, 'candidate_share': 1.0}, 0.3333333333333333,
        None),
    ('rho-loss', 3, 0.05, 1 / 2): (
        {'rho_select_fraction': 0.412962962962963, 'candidate_share': 1.0}, 0.5,
        None),
}


@pytest.mark.parametrize("budget", [1 / 3, 1 / 2])
def test_every_method_plans_the_same_knobs_for_a_budget(budget):
    """Every method of the registry at the study's budgets gets these knobs, predicted shares and
    notes: the plain knobs carry the budget itself, the methods without a wall-clock knob run at
    their defaults, the scoring peers' solver gives SCORED_PLANS, the baseline has no plan."""
    cfg, costs = ms.make_config("cpu-smoke"), {"forward_share": 0.3}
    plain = {"short-schedule": {}, "uniform": {"uniform_fraction": budget}, "infobatch": {},
             **{name: {} for name in ("mclearn", *ms.MCLEARN_VARIANTS)}}
    for method in ms.METHODS:
        if method == "baseline":
            with pytest.raises(ValueError, match="No time-budget knob for method .baseline.: it is the reference"):
                ms.plan_time_budget(method, budget, cfg, costs)
            continue
        plan = ms.plan_time_budget(method, budget, cfg, costs)
        if method in plain:
            want = ms.BudgetPlan(method, budget, plain[method], budget)
        elif method in ("vcas", "mclearn-paper"):
            want = ms.BudgetPlan(method, 0.0, {}, None, VCAS_NOTE if method == "vcas" else PAPER_NOTE)
        else:
            want = ms.BudgetPlan(method, budget, *SCORED_PLANS[method, 1, 0.3, budget])
        assert plan == want, method


def test_the_scoring_peers_plan_the_same_knobs_at_every_cost():
    for (method, epochs, forward_share, at), (knobs, share, note) in SCORED_PLANS.items():
        plan = ms.plan_time_budget(method, at, ms.make_config("cpu-smoke", epochs=epochs),
                                   {"forward_share": forward_share})
        assert plan == ms.BudgetPlan(method, at, knobs, share, note), (method, epochs, forward_share, at)


def test_tuned_lr_reaches_every_method_even_past_method_presets():
    """The GPU preset of mclearn-paper sets its own lr; a budget study's tuned lr must win."""
    cfg = ms.with_explicit(ms.make_config("h100"), lr=1.6e-4)
    for method in ms.METHODS:
        assert ms.config_for_method(cfg, method).lr == 1.6e-4, method
    assert ms.config_for_method(ms.with_explicit(cfg, class_weight_lr=0.3), "mclearn-v1").class_weight_lr == 0.3


def test_best_lr_takes_the_most_accurate_and_the_smaller_on_ties():
    runs = [{"accuracy": a, "config": {"lr": lr}} for a, lr in [(0.8, 1e-4), (0.9, 4e-4), (0.9, 2e-4)]]
    assert ms.best_lr(runs) == 2e-4
    with pytest.raises(ValueError):
        ms.best_lr([])


def test_budget_study_runs_resumes_and_saves_flipped_rows(smoke_cfg, prepared, monkeypatch, cost_clock):
    """A budget study on noisy labels, timed by the cost model: the baseline's sweep (grown past its
    edge), every method at the tuned lr (no lr_factors) on its clock of budget x the sweep's median
    seconds, the flipped rows saved with the study and its sweep; run again, it reads every run back."""
    cost_clock(1e-4)
    cfg = ms.replace_config(smoke_cfg, study="budget-smoke", epochs=2, label_noise=0.25)
    noisy = ms.prepare(cfg)
    methods = ["baseline", "uniform", "infobatch", "vcas"]
    result = ms.run_budget_study(cfg, methods, (1 / 3, 1 / 2), lrs=(1e-3, 3e-3), seeds=[42],
                                 prepared=noisy, progress=False, lr_factors=())
    assert [r["config"]["lr"] for r in result.lr_records][:2] == [1e-3, 3e-3]
    assert result.lr == ms.best_lr(result.lr_records) and ms.lr_grid_status(result.lr_records) != "edge: highest"
    assert result.reference_seconds == ms.reference_seconds(result.lr_records)
    labels = sorted(r["run_label"] for r in result.records)
    assert labels == ["baseline", "infobatch-b0.33", "infobatch-b0.50", "uniform-b0.33", "uniform-b0.50", "vcas"]
    for record in result.records:
        assert record["config"]["lr"] == result.lr  # every method trains with the tuned lr
        assert record["flipped_rows"] == round(0.25 * len(noisy.train)) and record["label_noise"] == 0.25
        if record["method"] in ("uniform", "infobatch"):
            assert record["config"]["budget_seconds"] == pytest.approx(record["time_budget"] * result.reference_seconds)
            assert abs(record["time_target"]["ratio"] - 1) <= 0.03
        if record["method"] == "uniform":
            assert record["knobs"] == {"uniform_fraction": record["time_budget"]}
        if record["method"] == "vcas":
            assert record["time_budget"] == 0.0 and "no wall-clock knob" in record["budget_note"]
    runs = Path(cfg.results_dir) / "runs"
    saved = np.loadtxt(runs / "budget-smoke" / "flipped_rows.csv", skiprows=2, dtype=int)
    assert np.array_equal(saved, noisy.flipped_rows)
    assert (runs / "budget-smoke-lr" / "baseline-lr3e-03-seed42.json.gz").exists()
    assert (runs / "budget-smoke-lr" / "baseline-lr1e-03-seed42.json.gz").exists()
    # An interrupted study resumes: every run is read back, none retrained.
    monkeypatch.setattr("mcstudy.runs.train_method", lambda *a, **k: pytest.fail("a finished run was retrained"))
    again = ms.run_budget_study(cfg, methods, (1 / 3, 1 / 2), lrs=(1e-3, 3e-3), seeds=[42], prepared=noisy,
                                progress=False, lr_factors=())
    assert len(again.records) == len(result.records)


def test_a_diverged_method_is_recorded_and_the_study_goes_on(smoke_cfg, prepared, monkeypatch):
    """A NaN loss in one method's run is that run's result (the report says "diverged"), not the end
    of the study: the methods after it still run. The baseline's divergence still stops it."""
    cfg = ms.replace_config(smoke_cfg, study="budget-diverged")
    real = ms.train_method

    def train(method, *args, **kwargs):
        if method == "vcas":
            raise ms.DivergedError(ms._finite_message(float("nan"), 3, method))
        return real(method, *args, **kwargs)

    monkeypatch.setattr("mcstudy.runs.train_method", train)
    result = ms.run_budget_study(cfg, ["baseline", "vcas", "uniform"], (0.5,), seeds=[42], prepared=prepared,
                                 progress=False)
    by_label = {r["run_label"]: r for r in result.records}
    assert "step 3" in by_label["vcas"]["diverged"] and np.isnan(by_label["vcas"]["accuracy"])
    assert by_label["uniform-b0.50"]["accuracy"] > 0  # ran after the diverged one
    table = ms.summarize(cfg.results_dir, cfg.study, show=False)
    vcas = table[table["method"] == "vcas"].iloc[0]
    assert vcas["accuracy (%)"] == "diverged (1/1 seeds)" and vcas["train seconds"] == "—"
    assert vcas["reaches budget"] == "no wall-clock knob"  # said in the table, not left out
    monkeypatch.setattr("mcstudy.runs.train_method", lambda method, *a, **k: train("vcas", *a, **k))
    with pytest.raises(ms.DivergedError):
        ms.run_budget_study(ms.replace_config(cfg, study="budget-diverged-2"), ["baseline"], (0.5,), seeds=[42],
                            prepared=prepared, progress=False)


def test_lr_run_label_keeps_every_digit():
    """One digit named 1.6e-4 and 2e-4 alike (the second run then read the first back)."""
    labels = [ms.lr_run_label(lr) for lr in (1.6e-4, 2e-4, 3.2e-4, 4e-5, 1e-3, 2.5e-05)]
    assert labels == ["baseline-lr1.6e-04", "baseline-lr2e-04", "baseline-lr3.2e-04", "baseline-lr4e-05",
                      "baseline-lr1e-03", "baseline-lr2.5e-05"]
