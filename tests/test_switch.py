"""MC-Learn's switch (select_switch): a pool is selected (scored, drawn by its scores) only
where the estimated variance reduction pays for its scoring, else drawn uniformly with no scoring;
the estimate (variance_reduction), the rule (select_pays), the decisions of a trainer fed known
losses, a run's record of them, and the variance check at the end of a run (last_layer_gradients).
Its unbiasedness across switches is tested with the estimator's case in test_cv_trainer.py;
tests/break_switch.sh breaks all of it on purpose. Timed code runs on conftest's cost clock."""
import dataclasses
import importlib.util
import math
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch

import make_readme as mr
import mclearn_core as mc
import mcstudy as ms
from conftest import ROOT, fixed_step_costs

TOKEN_SECONDS = 1e-4


# --- the estimate and the rule -------------------------------------------------------------------------
def test_variance_reduction_is_the_ratio_of_the_draws_variances():
    """On a population of 40 gradients in R^3 taken whole as the sample (a = 1), variance_reduction
    with the squared mean is the exact ratio of one draw's Hansen-Hurwitz variance under uniform and
    under p (each computed from its definition, sum_i P_i |g_i / (N P_i) - mu|^2); without it, with
    p proportional to scores s, it is Katharopoulos and Fleuret's 1 / (1 - |g - u|^2 / |g|^2); a
    uniform draw gives 1; 200,000 draws under p, each its own sample (a = Q), estimate the second
    moments' ratio within 1 %; no signal (every m zero) gives NaN."""
    rng = np.random.default_rng(0)
    n = 40
    grads = rng.normal(size=(n, 3)) * rng.gamma(1.0, 1.0, size=(n, 1))
    p = rng.dirichlet(np.full(n, 2.0))
    mu = grads.mean(0)

    def variance(prob):
        return float(sum(prob[i] * np.sum((grads[i] / (n * prob[i]) - mu) ** 2) for i in range(n)))

    m = (grads ** 2).sum(1)
    exact = variance(np.full(n, 1 / n)) / variance(p)
    assert mc.variance_reduction(m, n * p, np.ones(n), float(mu @ mu)) == pytest.approx(exact, rel=1e-9)
    s = np.sqrt(m)
    g, u = s / s.sum(), 1 / n
    kf = 1 / (1 - np.sum((g - u) ** 2) / np.sum(g ** 2))
    assert mc.variance_reduction(s ** 2, n * g, np.ones(n)) == pytest.approx(kf, rel=1e-9)
    assert kf > 1.2
    assert mc.variance_reduction(m, np.ones(n), np.ones(n)) == pytest.approx(1.0)
    second_moments = np.mean(m) / np.sum(m / (n * n * p))
    draws = rng.choice(n, size=200_000, p=p)
    assert mc.variance_reduction(m[draws], n * p[draws], n * p[draws]) == pytest.approx(second_moments, rel=0.01)
    assert math.isnan(mc.variance_reduction(np.zeros(n), n * p, np.ones(n)))


def test_selection_pays_from_one_plus_its_cost_and_never_without_signal():
    """tau >= 1 + cost; Katharopoulos and Fleuret's threshold (B + 3b) / 3b for a presample three
    times the batch is 2, the rule's at cost B t_f / (3 b t_f) = 1; NaN never pays."""
    assert mc.select_pays(2.0, 1.0) and not mc.select_pays(1.999, 1.0)
    assert mc.select_pays(1.0, 0.0) and not mc.select_pays(1.05, 0.06)
    assert not mc.select_pays(float("nan"), 0.0)


def test_the_switch_backs_off_while_selection_fails_and_resets_when_it_pays():
    """After the k-th selected pool in a row that did not pay, 2^k - 1 further uniform pools wait
    (2^k uniform pools in all) before the promise of the losses is weighed; a selected pool that pays resets it."""
    switch = mc.SelectSwitch()
    assert switch.decide(True, 0.9, 0.1) == "uniform" and switch.wait == 1  # failure 1
    assert switch.decide(False, 5.0, 0.1) == "uniform" and switch.decisions[-1]["source"] == "waiting"
    assert switch.decide(False, 5.0, 0.1) == "select" and switch.decisions[-1]["source"] == "promised"
    assert switch.decide(True, 1.0, 0.1) == "uniform" and switch.wait == 3  # failure 2: 4 uniform pools
    modes = [switch.decide(False, 5.0, 0.1) for _ in range(4)]
    assert modes == ["uniform", "uniform", "uniform", "select"]
    assert switch.decide(True, 1.5, 0.1) == "select" and switch.failures == 0
    assert switch.decide(True, 1.0, 0.1) == "uniform" and switch.wait == 1
    assert [d["mode"] for d in switch.decisions][:3] == ["uniform", "uniform", "select"]
    assert switch.decisions[0] == {"after": "select", "source": "achieved", "tau": 0.9, "cost": 0.1, "mode": "uniform"}


# --- a trainer fed known losses -----------------------------------------------------------------------
def switch_trainer(prepared, **changes) -> mc.MCLearn:
    """An MCLearn of the `mclearn-once-switch` preset on the cpu-smoke training set (480 rows, 4 classes):
    8 full-pass rows of 16 draws per step, pools of 4 steps at kappa 0.5 (64 rows; a uniform pool holds
    the 32 rows of its passes), replay share 0.3, an informative cheap head (spread difficulties),
    tilted class weights, no label smoothing; the update's measured seconds per full-pass row set as
    the cost clock prices a 48-token row (no update runs here)."""
    cfg = ms.replace_config(ms.config_for_method(prepared.cfg, "mclearn-once-switch"), full_rows=8, full_prob=0.5,
                            refresh_every=4, kappa_schedule=(0.5,), replay_share_init=0.3,
                            replay_share_bounds=(0.3, 0.3), label_smoothing=0.0, **changes)
    ctx = ms.RunContext(cfg=cfg, model=deepcopy(prepared.base_model).eval(), train=prepared.train,
                        eval=prepared.eval, num_labels=4, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0), device_generator=torch.Generator().manual_seed(0))
    trainer = ms.MCLearnMethod(ctx)
    with torch.no_grad():
        torch.manual_seed(3)
        trainer.cheap_head.weight.normal_(0.0, 3.0)
    trainer.policy.class_weights = np.array([0.4, 0.3, 0.2, 0.1])
    trainer.costs.observe("update", cfg.max_length * TOKEN_SECONDS)
    return trainer


def book(trainer: mc.MCLearn, loss_of) -> dict:
    """Serve the pool's steps as a run would, with the full passes' losses `loss_of(positions)` (pool
    positions [steps, full] -> losses), then read them at the next refresh (_update_policy); return
    the switch's decision."""
    positions = trainer.plan.kept_pos[:, : trainer.full_rows]
    losses = np.asarray(loss_of(positions), dtype=np.float64)
    trainer.step_stats = [torch.tensor(np.stack([np.zeros(trainer.full_rows), losses[j], trainer.plan.full_weight[j]]),
                                       dtype=torch.float32) for j in range(len(positions))]
    trainer._update_policy()
    return trainer.switch.decisions[-1]


def test_the_switch_draws_uniformly_and_scores_nothing_without_signal_and_selects_with_a_few_heavy_rows(
        prepared, cost_clock):
    """Constant losses carry no signal: after a selected pool whose passes all had loss 0.7, the draws
    achieved less than a uniform draw (tau < 1: the head's probabilities spread the weights for nothing),
    so the next pools are uniform: stratified by class frequency (the policy's tilted weights ignored),
    drawn uniformly, and nothing is scored (no head call, no scoring seconds); the losses of a uniform
    pool, constant, promise exactly nothing (tau = 1 < 1 + cost: the draw by them is uniform). Then a
    uniform pool whose passes have a few heavy rows (4 of 32 at loss 3, the rest at 0.01) promises more
    than its cost: the next pool is selected (scored by the head, drawn by its difficulties), and when
    the heavy losses fall on the passes it drew most likely, what it achieved pays too: it stays."""
    cost_clock(TOKEN_SECONDS)
    trainer = switch_trainer(prepared)
    freq = np.bincount(prepared.train.labels.numpy()) / len(prepared.train)
    trainer.refresh(0.5)
    assert not trainer.pool["uniform"] and trainer.pool["scored"].all()
    first = book(trainer, lambda pos: np.full(pos.shape, 0.7))
    assert first["after"] == "select" and first["source"] == "achieved" and first["tau"] < 1.0
    assert first["mode"] == "uniform" and 0 < first["cost"] < 0.2
    for source in ("waiting", "promised"):
        scored, seconds = trainer.variant_counts["head_scored_rows"], trainer.costs.seconds["score"]
        trainer.refresh(0.5)
        pool = trainer.pool
        assert pool["uniform"] and np.allclose(pool["candidate_prob"], 1 / len(pool["rows"]))
        assert not pool["scored"].any() and trainer.variant_counts["head_scored_rows"] == scored
        assert trainer.costs.seconds["score"] == seconds  # the head ran on nothing
        assert np.abs(np.bincount(pool["labels_host"], minlength=4) / len(pool["rows"]) - freq).max() < 0.05
        decision = book(trainer, lambda pos: np.full(pos.shape, 0.7))
        assert decision["source"] == source and decision["mode"] == "uniform"
    assert decision["tau"] == pytest.approx(1.0)
    trainer.refresh(0.5)
    drawn = np.unique(trainer.plan.kept_pos[:, : trainer.full_rows])
    promise = book(trainer, lambda pos: np.where(np.isin(pos, drawn[:4]), 3.0, 0.01))
    assert promise["source"] == "promised" and promise["tau"] > 1 + promise["cost"] and promise["mode"] == "select"
    scored = trainer.variant_counts["head_scored_rows"]
    trainer.refresh(0.5)
    pool = trainer.pool
    assert not pool["uniform"] and pool["scored"].all() and np.ptp(pool["candidate_prob"]) > 0
    assert trainer.variant_counts["head_scored_rows"] == scored + len(pool["rows"])
    share = pool["pool_prob"] * trainer.plan.draw_prob
    positions = trainer.plan.kept_pos[:, : trainer.full_rows]
    likeliest = np.unique(positions)[np.argsort(-share[np.unique(positions)])][:4]
    achieved = book(trainer, lambda pos: np.where(np.isin(pos, likeliest), 3.0, 0.01))
    assert achieved["source"] == "achieved" and achieved["tau"] > 1 + achieved["cost"] and achieved["mode"] == "select"


def test_the_cost_weighs_the_measured_scoring_of_a_selected_pool_against_its_updates(prepared, cost_clock):
    """selection_cost = (seconds per row scored) x (a selected pool's rows) / ((seconds per full-pass row
    of an update) x full_rows x refresh_every), from the CostMeter's EMAs; with free_scores the rows with
    a stored loss are not scored, and their share is the signal left for free."""
    cost_clock(TOKEN_SECONDS)
    trainer = switch_trainer(prepared)
    trainer.refresh(0.5)
    ema = trainer.costs.flush()
    cost, stored = trainer.selection_cost(0.5)
    assert stored is None
    assert cost == pytest.approx(ema["score"] * 64 / (ema["update"] * 8 * 4))
    free = switch_trainer(prepared, free_scores=True)
    free.refresh(0.5)
    free.score_table[: len(prepared.train) // 4] = 0.5  # a quarter of the rows passed once
    cost, stored = free.selection_cost(0.5)
    ema = free.costs.flush()
    assert stored == pytest.approx(0.25)
    assert cost == pytest.approx(ema["score"] * 64 * 0.75 / (ema["update"] * 8 * 4))


# --- runs ---------------------------------------------------------------------------------------------
def _priced(prepared):
    return dataclasses.replace(prepared, step_costs=fixed_step_costs(prepared.cfg, TOKEN_SECONDS))


def pool_modes(selection: dict) -> list[tuple[int, int, str]]:
    """Return (first step, end step, kind) of each pool's steps from a run file's decisions (the
    first pools, setup's, are selected)."""
    starts = [0] + [d["step"] for d in selection["decisions"]]
    modes = ["select"] + [d["mode"] for d in selection["decisions"]]
    ends = starts[1:] + [selection["steps"]]
    return list(zip(starts, ends, modes))


def test_a_switch_run_records_each_decision_and_the_share_of_steps_that_selected(prepared, smoke_cfg, cost_clock):
    """A clock-driven run of `mclearn-once-switch` (4 s of the cost model): one decision per refresh after
    setup's, each with its estimate (tau, cost, source) and the kind of pool chosen; the steps drawn from
    selected pools, counted as they ran, are those the decisions give; and the variance check at the end
    measures selection's variance reduction on one pool (the estimates on the same pool with it)."""
    cost_clock(TOKEN_SECONDS)
    cfg = ms.replace_config(smoke_cfg, time_budget=0.5, budget_seconds=4.0, eval_points=2)
    record = ms.train_method("mclearn-once-switch", cfg, _priced(prepared), seed=3, progress=False)
    selection = record["telemetry"]["selection"]
    assert selection["select_switch"] and record["telemetry"]["variant"]["select_switch"]
    assert abs(record["time_target"]["ratio"] - 1) <= 0.03
    decisions = selection["decisions"]
    assert len(decisions) == record["telemetry"]["refreshes"] - 2 >= 3  # setup refreshes twice
    for d in decisions:
        assert d["mode"] in ("select", "uniform") and d["source"] in ("achieved", "promised", "waiting")
        assert d["cost"] > 0 and (d["tau"] is None or d["tau"] > 0) and d["stored_share"] is None
    steps = selection["steps"]
    assert steps == record["steps"] == record["telemetry"]["budget"]["steps_run"]
    assert selection["selected_steps"] == sum(end - start for start, end, mode in pool_modes(selection)
                                              if mode == "select")
    assert selection["selected_share"] == round(selection["selected_steps"] / steps, 4)
    check = selection["variance_check"]
    assert check["layer"] == "classifier" and check["rows"] >= 100
    for key in ("measured", "gradient_bound", "loss", "scores"):
        assert 0 < check[key] < 10, key


def test_where_scoring_costs_more_than_selection_can_return_the_run_trains_uniformly(prepared, smoke_cfg, cost_clock):
    """With a scorer that costs as much as an update per row-token (the cost clock's scorer share 1), a
    selected pool's scoring costs more than its steps' updates: after setup's pools every pool is
    uniform and scores nothing (the head scored setup's two pools only, and the scoring seconds are
    theirs), most steps are uniform; the same run without the switch scores every pool."""
    clock = cost_clock(TOKEN_SECONDS)
    clock.scorer_share = 1.0
    cfg = ms.replace_config(smoke_cfg, time_budget=0.5, budget_seconds=8.0, eval_points=2)
    record = ms.train_method("mclearn-once-switch", cfg, _priced(prepared), seed=3, progress=False)
    selection, telemetry = record["telemetry"]["selection"], record["telemetry"]
    assert all(d["mode"] == "uniform" for d in selection["decisions"]) and len(selection["decisions"]) >= 2
    assert min(d["cost"] for d in selection["decisions"]) > 1
    setup_pool = telemetry["steps"][0]["pool"]  # the first step's pool: setup's second
    assert telemetry["variant"]["head_scored_rows"] == 2 * setup_pool
    assert telemetry["variant"]["uniform_pools"] == telemetry["refreshes"] - 2
    assert selection["selected_share"] < 0.5
    always = ms.train_method("mclearn-once", cfg, _priced(prepared), seed=3, progress=False)
    assert always["telemetry"]["selection"]["selected_share"] == 1.0
    assert always["telemetry"]["measured_seconds"]["score"] > 1.5 * telemetry["measured_seconds"]["score"]


# --- the variance check at the end of a run ---------------------------------------------------------
def test_last_layer_gradients_match_autograd(prepared):
    """For 12 rows, with label smoothing 0.1: each row's squared gradient norm at the last layer
    (weight and bias) and its loss equal autograd's on that row alone, and the mean's squared norm
    equals that of autograd's weighted mean gradient (float32 tolerance)."""
    model = deepcopy(prepared.base_model)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.5)
    cfg = ms.replace_config(prepared.cfg, label_smoothing=0.1)
    rows = np.arange(3, 39, 3)
    weights = np.linspace(0.5, 1.5, len(rows)) / len(rows)
    out = ms.last_layer_gradients(model, prepared.train, rows, cfg, torch.device("cpu"), weights)
    assert out["layer"] == "classifier"
    model.eval()
    layer = model.classifier
    mean = [torch.zeros_like(layer.weight), torch.zeros_like(layer.bias)]
    for k, row in enumerate(rows):
        batch = mc.make_batch(prepared.train, torch.tensor([row]), mc.batch_width(prepared.train, [row], cfg.pad_multiple))
        logits = model(**mc.model_inputs(model, batch)).logits
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"], label_smoothing=0.1)
        gw, gb = torch.autograd.grad(loss, [layer.weight, layer.bias])
        assert out["second_moment"][k] == pytest.approx(float((gw ** 2).sum() + (gb ** 2).sum()), rel=1e-4)
        assert out["loss"][k] == pytest.approx(float(loss.detach()), rel=1e-5)
        mean[0] += weights[k] * gw
        mean[1] += weights[k] * gb
    assert out["mean_square"] == pytest.approx(float((mean[0] ** 2).sum() + (mean[1] ** 2).sum()), rel=1e-4)
    assert model.training is False  # left as it was


def test_the_variance_check_measures_the_draw_of_a_selected_pool_once(prepared, cost_clock):
    """variance_check draws one pool as a selected pool at the run's end would be, measures once (a
    second call returns the same record without drawing again), and reports the measured reduction as
    variance_reduction of the last layer's gradients under that pool's draw probabilities, their
    squared mean included (the model's head favours class 0, so the mean gradient is far from 0 and
    the measured reduction differs from the bound without it by over 1 %)."""
    cost_clock(TOKEN_SECONDS)
    trainer = switch_trainer(prepared)
    with torch.no_grad():
        trainer.ctx.model.classifier.bias.copy_(torch.tensor([2.0, 0.5, -0.5, -1.5]))
    drawn = []
    next_pool = trainer.stream.next_pool
    trainer.stream.next_pool = lambda size, weights: drawn.append(next_pool(size, weights)) or drawn[-1]
    check = trainer.variance_check()
    assert len(drawn) == 1 and trainer.variance_check() is check and len(drawn) == 1
    rows, pool_prob = drawn[0]
    assert check["rows"] == len(rows)
    n = len(prepared.train)
    sample = n * pool_prob / len(rows)
    _, _, difficulty = trainer.head_difficulty(rows)
    candidate = mc.candidate_draw_probs(difficulty.numpy(), trainer.labels_host[rows], 0.5, trainer.policy.tau)
    draw = mc.full_pass_draw_probs(candidate, 0.3, 32, trainer.ctx.cfg.once_floor)
    grads = ms.last_layer_gradients(trainer.ctx.model, prepared.train, rows, trainer.ctx.cfg, torch.device("cpu"),
                                    1 / (len(rows) * sample))
    expected = mc.variance_reduction(grads["second_moment"], sample * len(rows) * draw, sample, grads["mean_square"])
    assert check["measured"] == pytest.approx(round(expected, 4), abs=1e-4)
    assert abs(check["measured"] / check["gradient_bound"] - 1) > 0.01
    assert check["loss"] == pytest.approx(round(mc.variance_reduction((1 - np.exp(-grads["loss"])) ** 2,
                                                                      sample * len(rows) * draw, sample), 4), abs=1e-4)




def test_a_variance_check_that_cannot_read_the_last_layer_says_so(prepared, cost_clock, capsys):
    """A model whose config counts more labels than any linear layer gives: no last layer to measure
    at; the run file gets the error instead of numbers, and it is printed in one line."""
    cost_clock(TOKEN_SECONDS)
    trainer = switch_trainer(prepared)
    trainer.ctx.model.config.num_labels = 5
    check = trainer.variance_check()
    assert set(check) == {"error"} and "no linear layer with 5 outputs" in check["error"]
    out = capsys.readouterr().out
    assert out.startswith("warning (mclearn): no variance check at the end of the run:")
    assert all(len(line) <= mc.CLI_WIDTH for line in out.splitlines())

# --- the ablation's report of the switch (item 4) -----------------------------------------------------
def test_a_fair_ablation_reads_its_fair_study_and_is_the_latest():
    """The switch's ablation (studies ending in -fair-ablation) confirms in the dataset's fair study and
    replaces the variants' in the report (one rule ranks one ablation's cells); its tables go to
    results/ablation/fair; its choice is compared with the `mclearn` preset it starts from."""
    assert ms.equal_time_study_of("sst2-mpnet-h200-fair-ablation") == "sst2-mpnet-h200-fair"
    assert ms.equal_time_study_of("sst2-mpnet-h200-ablation") == "sst2-mpnet-h200-equal-time"
    fair = ["sst2-mpnet-h100-fair", "sst2-noisy20-mpnet-h200-fair", "sst2-minilm-h200-fair"]
    assert ms.fair_study_of("sst2-mpnet-h200-fair-ablation", fair) == "sst2-mpnet-h100-fair"  # any GPU
    assert ms.fair_study_of("sst2-noisy20-mpnet-h100-ablation", fair) == "sst2-noisy20-mpnet-h200-fair"
    assert ms.fair_study_of("banking77-mpnet-h200-fair-ablation", fair) is None
    assert ms.ablation_dataset("sst2-noisy20-mpnet-h200-fair-ablation") == "sst2-noisy20"
    old, new = ["a-mpnet-h200-ablation", "b-mpnet-h200-ablation"], ["b-mpnet-h200-fair-ablation"]
    assert ms.latest_ablation(old + new) == new and ms.latest_ablation(old) == old
    assert ms.ablation_folder(new) == "ablation/fair" and ms.ablation_folder(old) == "ablation"
    assert ms.preset_before([_run("mclearn-once", "b-mpnet-h200-fair-ablation", 0.8)]) == "mclearn-once" \
        == ms.SWITCH_ABLATION[0]  # the preset the switch's ablation started from (its choice is `mclearn` since)
    assert ms.preset_before([_run("mclearn-once", "b-mpnet-h200-ablation", 0.8)]) == "mclearn-v1"


def _run(method, study, accuracy, selection=None, budget=1 / 3):
    """A one-seed budgeted ablation run (1,000 training rows) with its selection record."""
    telemetry = {"steps": [], **({"selection": selection} if selection else {})}
    return {"method": method, "study": study, "time_budget": budget, "accuracy": accuracy, "seed": 42,
            "run_label": ms.run_label(method, budget), "train_seconds": 2.0, "train_examples": 1000,
            "examples_backward": 640, "steps": 10, "telemetry": telemetry}


def _selection(share, decisions, measured, estimated, rows=1000):
    return {"selected_share": share, "decisions": [{"source": s, "tau": t} for s, t in decisions],
            "variance_check": {"rows": rows, "measured": measured, "loss": estimated}}


def test_the_ablation_paragraph_says_what_selection_did():
    """Per cell, the chosen variant's share of steps from selected pools, its variance reduction at the
    end measured and estimated on one pool, and the switch's median estimate over its pools (achieved
    and promised ones, not the waiting ones: 0.9, 1.3, 1.1 -> 1.1); each other switch variant in a
    clause; the diagnostics carry the same numbers. Runs without the records give no such sentence."""
    study = "sst2-mpnet-h200-fair-ablation"
    switch = _selection(0.625, [("achieved", 0.9), ("waiting", 1.0), ("promised", 1.3), ("achieved", 1.1)], 0.95, 0.9)
    records = [_run("short-schedule", study, 0.80), _run("mclearn-once", study, 0.78, _selection(1.0, [], 0.7, 0.75)),
               _run("mclearn-once-switch", study, 0.81, switch)]
    frame = ms.ablation_diagnostics(records).set_index("method")
    assert frame.loc["mclearn-once-switch", "selected share"] == 0.625
    assert frame.loc["mclearn-once-switch", "tau switch"] == 1.1 and frame.loc["mclearn-once", "tau measured"] == 0.7
    assert mr._missing(frame.loc["short-schedule", "selected share"])
    text = mr.ablation_paragraphs(records)["sst2"]
    assert text.startswith("`mclearn-once-switch` against `short-schedule` and `mclearn-once` on sst2")
    assert ("It drew 62.50 % of its steps from selected pools; at the end of the run, on one pool of 1,000 rows, "
            "selection's variance reduction against uniform draws was 0.950 measured on the last layer's gradients "
            "and 0.900 estimated from the losses; the switch's median estimate over its pools 1.100 (above 1: "
            "selection reduces the variance).") in text
    records[2]["accuracy"] = 0.70  # the switch loses: mclearn-once is chosen, the switch gets its clause
    text = mr.ablation_paragraphs(records)["sst2"]
    assert text.startswith("`mclearn-once` against `short-schedule` on sst2")
    assert "It drew 100.00 % of its steps from selected pools" in text and "0.700 measured" in text
    assert ("`mclearn-once-switch` drew 62.50 % of its steps from selected pools (variance reduction at its end "
            "0.950 measured, 0.900 estimated; the switch's median estimate over its pools 1.100).") in text
    bare = [dict(r, telemetry={"steps": []}) for r in records]
    assert "selected pools" not in mr.ablation_paragraphs(bare)["sst2"]


def _fair_run(method, seed, updates, budget=1 / 3, selection=None, score=None, update=None, config=None,
              study="banking77-mpnet-h100-fair"):
    """A budgeted run of a fair-protocol study: its updates, selection record and measured seconds."""
    seconds = {} if score is None else {"score": score, "update": update}
    return {**_run(method, study, 0.9, selection, budget), "seed": seed, "updates": updates,
            "config": config or {}, "telemetry": {"steps": [], "measured_seconds": seconds,
                                                  **({"selection": selection} if selection else {})}}


SWITCHED = {"once_draws": True, "select_switch": True}


def test_a_fair_studys_paragraph_gives_selection_over_the_seeds_by_hand():
    """`mclearn` (as mclearn-once-switch) at 1/3, seeds 1-4 (records out of order), medians of four
    by hand: selected shares 0.10, 0.40, 0.20, 0.30 -> 0.25 [0.10-0.40]; measured variance
    reductions 1.0, 1.2, 1.1, 1.6 -> 1.15 (the mean would be 1.225); estimated 0.9, 1.0, 1.1, 1.3
    -> 1.05; updates 40, 46, 50, 44 -> 45. short-schedule ran seeds 0, 1, 3, 4 (no 2) with 80, 50,
    56, 49 updates -> 53 [49-80]; paired by seed (1: 40 - 50, 3: 50 - 56, 4: 44 - 49) -10, -6, -5
    -> -6 [-10, -5] over 3 pairs (paired in seed order instead: 40 - 80, ...). Scoring 0.02, 0.01,
    0.06, 0.04 s against updates 1, 1, 2, 1 s -> 0.03 s, 1 s, and seed by seed 2, 1, 3, 4 % -> 2.5 %.
    The runs at 1/2 are a cell of their own (seed 1: 999 - 500); two studies' records are refused."""
    shares, measured, estimated = (0.10, 0.40, 0.20, 0.30), (1.0, 1.2, 1.1, 1.6), (0.9, 1.0, 1.1, 1.3)
    updates, score, update = (40, 46, 50, 44), (0.02, 0.01, 0.06, 0.04), (1.0, 1.0, 2.0, 1.0)
    own = {seed: _fair_run("mclearn", seed, updates[i], score=score[i], update=update[i], config=SWITCHED,
                           selection=_selection(shares[i], [], measured[i], estimated[i]))
           for i, seed in enumerate((1, 2, 3, 4))}
    short = [_fair_run("short-schedule", seed, n) for seed, n in ((4, 49), (0, 80), (3, 56), (1, 50))]
    records = [own[3], short[0], own[1], own[4], short[1], own[2], *short[2:]]
    records += [_fair_run("mclearn", 1, 999, budget=0.5), _fair_run("short-schedule", 1, 500, budget=0.5)]
    cell = ms.fair_selection_summary(records)[0]
    assert (cell["budget"], cell["seeds"], cell["variants"]) == (1 / 3, [1, 2, 3, 4], ["mclearn-once-switch"])
    assert cell["switch"] == [1, 2, 3, 4] and cell["selected share"] == ms.Spread(0.25, 0.10, 0.40, 4)
    assert cell["tau measured"] == ms.Spread(pytest.approx(1.15), 1.0, 1.6, 4)
    assert cell["updates vs short"] == ms.Spread(-6.0, -10.0, -5.0, 3)
    text = mr.selection_paragraph(ms.fair_selection_summary(records))
    assert text.startswith("What selection did in `mclearn`'s runs (from their run files; median [min–max] "
                           "over the seeds that carry each number): At 1/3 (4 seeds, as "
                           "`mclearn-once-switch`): ")
    assert ("it drew 25.00 % [10.00–40.00] of its steps from selected pools. At the end of each run, on "
            "one pool, selection's variance reduction against uniform draws was 1.150 [1.000–1.600] "
            "measured on the last layer's gradients and 1.050 [0.900–1.300] estimated from the losses "
            "(above 1: selection reduces the variance). It ran 45 [40–50] updates against "
            "`short-schedule`'s 53 [49–80], -6 [-10, -5] on the same seed (3 pairs). Scoring took 0.030 s "
            "[0.010–0.060] against 1.000 s [1.000–2.000] of updates replayed through graphs, 2.50 % "
            "[1.00–4.00] of them. At 1/2 (1 seed, as `mclearn-v1`, without the pays-for-itself "
            "switch): ") in text
    assert "It ran 999 updates against `short-schedule`'s 500, +499 on the same seed (1 pair)." in text
    with pytest.raises(ValueError, match="reads one study's runs, got banking77-mpnet-h100-fair, other-fair"):
        ms.fair_selection_summary(records + [{**records[0], "study": "other-fair"}])


def test_a_fair_studys_paragraph_names_what_runs_without_selection_records_lack():
    """Runs without a selection record (mclearn-once trained before the record) give no share and no
    variance reduction: the paragraph says so, with no 0, NaN or None in their place; where some
    seeds lack it (or the variance check alone, or their seconds), it names them and gives the
    others' numbers. Without a run of `mclearn` there is no paragraph."""
    once = {"once_draws": True}
    bare = [_fair_run("mclearn", seed, 39 + 2 * seed, score=0.01, update=1.0, config=once) for seed in (1, 2)]
    text = mr.selection_paragraph(ms.fair_selection_summary(bare + [_fair_run("short-schedule", 1, 45)]))
    assert ("At 1/3 (2 seeds, as `mclearn-once`, without the pays-for-itself switch): its run files carry "
            "no selection record, so they give no share of steps drawn from selected pools and no variance "
            "reduction against uniform draws, measured or estimated. It ran 42 [41–43] updates against "
            "`short-schedule`'s 45, -4 on the same seed (1 pair).") in text
    assert not any(word in text for word in ("nan", "None", "0.00 %", "reduction against uniform draws was"))
    unchecked = {**_selection(0.5, [], None, None), "variance_check": {"error": "no last layer"}}
    mixed = [bare[0], _fair_run("mclearn", 2, 42, selection=_selection(0.4, [], 1.2, 1.1), config=SWITCHED),
             _fair_run("mclearn", 3, 43, selection=unchecked, config=SWITCHED)]
    text = mr.selection_paragraph(ms.fair_selection_summary(mixed))
    assert ("At 1/3 (3 seeds, as `mclearn-once` and `mclearn-once-switch`): it drew 45.00 % [40.00–50.00] "
            "of its steps from selected pools (the run files of seed 1 carry no selection record: no share, "
            "no variance reduction). At the end of each run, on one pool, selection's variance reduction "
            "against uniform draws was 1.200 measured on the last layer's gradients and 1.100 estimated from "
            "the losses (above 1: selection reduces the variance); the run files of seed 3 carry no variance "
            "check. It ran 42 [41–43] updates; `short-schedule` has no run at this budget. Scoring took "
            "0.010 s against 1.000 s of updates replayed through graphs, 1.00 % of them (the run files of "
            "seeds 2 and 3 carry no scoring or update seconds).") in text
    assert mr.selection_paragraph(ms.fair_selection_summary([_fair_run("short-schedule", 1, 45)])) == ""


def test_the_switchs_ablation_script_writes_its_table_beside_issue_24s(prepared, smoke_cfg, cost_clock):
    """gpu_ablation.sh's Python part for the switch's ablation on the CPU smoke preset (the cost clock
    times it): a budget study named <dataset>-<model>-<gpu>-fair-ablation of the baseline, the short
    schedule and SWITCH_ABLATION's switch pair at one budget, one seed, each run on its clock; then
    benchmarks/ablation.py, beside an issue-24 ablation study, reads only the switch's and writes its
    table and diagnostics (with the selection columns) to results/ablation/fair."""
    cost_clock(TOKEN_SECONDS)
    priced = _priced(prepared)
    old = ms.replace_config(smoke_cfg, study="smoke-tiny-cpu-ablation")
    ms.run_budget_study(old, ["baseline", "short-schedule", "mclearn-v1"], (0.5,), seeds=[42], prepared=priced,
                        progress=False, lr_factors=())
    cfg = ms.replace_config(smoke_cfg, study="smoke-tiny-cpu" + ms.FAIR_ABLATION_SUFFIX)
    study = ms.run_budget_study(cfg, ["baseline", "short-schedule", "mclearn-once", "mclearn-once-switch"], (0.5,),
                                seeds=[42], prepared=priced, progress=False, lr_factors=())
    switched = next(r for r in study.records if r["method"] == "mclearn-once-switch")
    assert switched["config"]["budget_seconds"] > 0 and switched["lr_schedule"]["driven_by"] == "clock"
    assert switched["telemetry"]["budget"]["time_budget"] == switched["time_budget"] == 0.5  # the study's share
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "benchmarks" / "ablation.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--results", cfg.results_dir]) == 0
    text = (Path(cfg.results_dir) / "ablation" / "fair" / "ablation_table.md").read_text()
    assert "smoke-tiny-cpu-fair-ablation" in text and "smoke-tiny-cpu-ablation," not in text
    assert "mclearn-once-switch" in text and "mclearn-v1" not in text
    assert "selected share" in text and "tau measured" in text
