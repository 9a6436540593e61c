"""The comparison methods (mcstudy.methods): each method's invariant with fixed seeds and stated tolerances;
a method added by one registration trains as theirs do."""
import math
from copy import deepcopy

import numpy as np
import pytest
import torch

import mcstudy as ms
from mcstudy import methods
from mcstudy.methods import vcas


def _ctx(prepared, cfg=None, seed=0):
    cfg = cfg or prepared.cfg
    model = deepcopy(prepared.base_model)
    return ms.RunContext(cfg=cfg, model=model, train=prepared.train, eval=prepared.eval,
                         num_labels=len(prepared.label_names), device=prepared.device,
                         generator=torch.Generator().manual_seed(seed),
                         device_generator=torch.Generator().manual_seed(seed))


def test_uniform_uses_the_configured_fraction(prepared):
    cfg = ms.replace_config(prepared.cfg, uniform_fraction=0.25)
    method = ms.Uniform(_ctx(prepared, cfg))
    assert len(method.data) == round(0.25 * len(prepared.train))
    rows = torch.cat([idx for idx, _ in method.plan])
    assert len(rows) == len(method.data) and len(set(rows.tolist())) == len(rows)  # each once


def test_selective_backprop_selection_rate_matches_beta(prepared):
    # With i.i.d. losses the percentile is ~uniform, so E[keep] = E[U^beta] = 1/(beta+1).
    # 200 batches of 64 (12,800 draws): binomial sd ~0.004; tolerance 0.02 (5 sd).
    for beta in (1.0, 3.0):
        method = ms.SelectiveBackprop(_ctx(prepared, ms.replace_config(prepared.cfg, sb_beta=beta)))
        rng = np.random.default_rng(0)
        kept = [method.select(rng.exponential(size=64)).mean() for _ in range(200)]
        assert np.mean(kept[20:]) == pytest.approx(1 / (beta + 1), abs=0.02)


def test_selective_backprop_prefers_high_loss(prepared):
    method = ms.SelectiveBackprop(_ctx(prepared))
    rng = np.random.default_rng(1)
    for _ in range(20):
        method.select(rng.exponential(size=64))
    # Small batches against a history of typical losses: a tiny loss sits near percentile 0,
    # a huge one at 1, so (percentile)^3 keeps nearly all high and almost no low ones.
    keeps = []
    for _ in range(100):
        keeps.append(method.select(np.r_[np.full(2, 0.01), np.full(2, 50.0), rng.exponential(size=12)]))
        method.history = method.history[~np.isin(method.history, (0.01, 50.0))]
    keeps = np.array(keeps)
    assert keeps[:, 2:4].mean() > 0.9 and keeps[:, :2].mean() < 0.05


def test_rho_loss_selects_by_reducible_not_raw_loss(prepared):
    method = ms.RhoLoss(_ctx(prepared))
    method.selected = 2
    # Raw loss ranks 0 > 1 > 2 > 3, but 0 and 1 are irreducible (noisy labels): reducible
    # loss ranks 2 and 3 first. A raw-loss selector would pick {0, 1}.
    train_loss = torch.tensor([5.0, 4.0, 3.0, 2.5])
    irreducible = torch.tensor([4.9, 3.9, 0.5, 0.5])
    assert set(method.select(train_loss, irreducible).tolist()) == {2, 3}
    assert set(torch.topk(train_loss, 2).indices.tolist()) == {0, 1}


def test_rho_loss_holdout_is_disjoint_and_sized(prepared):
    method = ms.RhoLoss(_ctx(prepared))
    held, pool = set(method.holdout.tolist()), set(method.pool_rows.tolist())
    assert not held & pool and len(held) + len(pool) == len(prepared.train)
    assert len(held) == max(prepared.cfg.batch_size, round(prepared.cfg.rho_holdout * len(prepared.train)))
    assert method.selected == round(method.candidates * prepared.cfg.rho_select_fraction)


def test_infobatch_rescaling_is_unbiased(prepared):
    # E[weight] = 1 for every low-loss example: (1 - p) * 1/(1 - p) + p * 0. Over 4,000 draws of
    # 200 examples the mean weighted loss matches the plain mean within 1% (sd ~0.1%).
    method = ms.InfoBatch(_ctx(prepared))
    rng = np.random.default_rng(2)
    scores = rng.exponential(size=200)
    totals = [float((method.prune_weights(scores, anneal=False) * scores).mean()) for _ in range(4000)]
    assert np.mean(totals) == pytest.approx(scores.mean(), rel=0.01)
    weights = method.prune_weights(scores, anneal=False)
    high = scores >= scores.mean()
    assert np.all(weights[high] == 1.0)  # only below-mean examples are pruned
    pruned_share = (weights[~high] == 0).mean()
    assert pruned_share == pytest.approx(prepared.cfg.infobatch_prune, abs=0.15)


def test_infobatch_prunes_nothing_without_scores_or_in_anneal(prepared):
    method = ms.InfoBatch(_ctx(prepared))
    assert np.all(method.prune_weights(np.full(50, np.nan), anneal=False) == 1.0)
    assert np.all(method.prune_weights(np.arange(50.0), anneal=True) == 1.0)


# InfoBatch's rules, as its reference defines them (Qin et al. 2024, and the sampler of its public code):
# the rows whose last loss is below the mean are the well-learned ones; each is pruned with probability r
# and the kept ones are scaled by 1 / (1 - r); the last share of the epochs trains on all data.
INFOBATCH_SEEN = np.array([0.25, 0.25, 0.25, 0.75, 1.0, 3.5])  # sum 6, mean 1.0 exactly; median 0.5


@pytest.mark.parametrize("prune", [0.3, 0.7])
def test_infobatch_prunes_below_the_mean_of_the_seen_rows_and_scales_the_kept_ones(prepared, prune):
    """500 tiles of 6 seen rows (mean 1.0; the 0.75 row lies below it but above the median, 0.5, and
    above the mean over all 8 rows counting the 2 unseen ones as 0, 0.75) and 2 unseen rows (NaN):
    the 0.25 and 0.75 rows (2,000) are pruned with probability r (binomial sd at most 0.011;
    tolerance 0.045, 4 sd) and kept at weight 1 / (1 - r) exactly; the row at the mean, the row above
    it and the unseen ones always keep weight 1. r is not 1/2, so 1 / r and 1 / (1 - r) differ."""
    method = ms.InfoBatch(_ctx(prepared, ms.replace_config(prepared.cfg, infobatch_prune=prune)))
    scores = np.tile(np.r_[INFOBATCH_SEEN, np.nan, np.nan], 500)
    low = np.isin(scores, (0.25, 0.75))
    weights = method.prune_weights(scores, anneal=False)
    assert np.all(weights[~low] == 1.0)  # at or above the mean, or unseen
    assert set(np.unique(weights[low])) == {0.0, 1.0 / (1.0 - prune)}
    assert (weights[low] == 0).mean() == pytest.approx(prune, abs=0.045)
    assert (weights[scores == 0.75] == 0).mean() == pytest.approx(prune, abs=0.09)  # 500 rows: 4 sd
    # E[weight] = 1 on every low row: over 200 epochs' draws the mean weight of the low rows is 1 within
    # 4 standard errors (sd of a weight sqrt(r / (1 - r)), 400,000 draws)
    means = [method.prune_weights(scores, anneal=False)[low].mean() for _ in range(200)]
    assert np.mean(means) == pytest.approx(1.0, abs=4 * math.sqrt(prune / (1 - prune) / (200 * low.sum())))


@pytest.mark.parametrize("epochs, anneal, start", [
    (8, 0.125, 7),  # 7 = 0.875 x 8: epochs 1-7 (counted from 1) may prune, the 8th uses all data
    (3, 0.125, 2),  # 2.625: epochs 1 and 2 may prune; the 0.375 epoch of anneal rounds up to the third
    (2, 0.125, 1),  # 1.75: only the first epoch (no scores yet: it prunes nothing) before the anneal
    (1, 0.125, 0),  # 0.875: a one-epoch run is all anneal
    (10, 0.25, 7),  # 7.5: the last 3 epochs (2.5 rounded up)
    (10, 0.9, 1),  # 10 x (1 - 0.9) is 0.9999999999999998 in floats: still one pruning epoch
    (10, 0.7, 3),  # 3.0000000000000004 in floats: 3
    (200, 0.125, 175),  # the reference's CIFAR-100 setting: 175 of 200 epochs prune
    (5, 0.0, 5),  # no anneal: every epoch may prune
    (4, 1.0, 0),  # all anneal
])
def test_infobatch_anneal_starts_where_the_reference_stops_pruning(epochs, anneal, start):
    """The first epoch on all data (counted from 0), worked out by hand: the reference prunes in epoch t
    (counted from 1) only while t <= (1 - anneal) x epochs."""
    assert ms.infobatch_anneal_start(epochs, anneal) == start


def test_infobatch_prunes_in_its_epochs_before_the_anneal_and_in_none_after(prepared, smoke_cfg):
    """Four epochs at anneal 0.125 (4 x 0.875 = 3.5: anneal start 3): epoch 0 (counted from 0) has no
    scores, epochs 1 and 2 prune, epoch 3 uses all data; at anneal 0.3 (2.8: start 2) only epoch 1
    prunes. Neither product is whole, so rounding the anneal's share of epochs down shows."""
    for anneal, pruning in ((0.125, (1, 2)), (0.3, (1,))):
        cfg = ms.replace_config(smoke_cfg, epochs=4, infobatch_anneal=anneal, infobatch_prune=0.5)
        ctx = _ctx(prepared, cfg, seed=4)
        method = ms.InfoBatch(ctx)
        ms.build_optimization(ctx, method)
        method._new_epoch()  # epoch 0: no row has a score yet
        method.scores[:] = torch.rand(len(prepared.train), generator=torch.Generator().manual_seed(4))
        for _ in range(3):  # the epochs' plans (no training: every row keeps its score)
            method._new_epoch()
        assert [epoch for epoch, count in enumerate(method.pruned) if count > 0] == list(pruning)
        assert len(method.pruned) == 4 and len(method.plan) == method.steps_per_epoch  # the last: all data


def test_importance_keep_gives_unbiased_sums():
    # Sum of x_i * keep_i / p_i is unbiased for sum x_i; 20,000 draws, 99% CI.
    gen = torch.Generator().manual_seed(3)
    scores = torch.rand(40, generator=gen) + 0.05
    values = torch.randn(40, generator=gen)
    draws = []
    for _ in range(20000):
        keep, prob = ms.importance_keep(scores, 0.3, gen)
        draws.append(float((values * keep / prob).sum()))
    draws = np.array(draws)
    half_width = 2.576 * draws.std() / math.sqrt(len(draws))
    assert abs(draws.mean() - float(values.sum())) < half_width
    keep, prob = ms.importance_keep(scores, 0.3, gen)
    assert float(prob.sum()) <= 0.3 * 40 + 1e-4  # the ratio caps the expected kept share


def test_vcas_sampled_gradients_are_unbiased():
    # Weight gradient (token sampling) and activation gradient (example sampling) of a small
    # linear model: the mean over 3,000 sampled backward passes matches the exact gradient with
    # relative error < 0.05 and cosine > 0.995 (the sampling noise alone is ~0.02 relative).
    torch.manual_seed(0)
    x = torch.randn(8, 5, 6)
    weight = torch.randn(3, 6, requires_grad=True)
    target = torch.randn(8, 5, 3)
    state = ms.VCASState(0.4, 0.4, torch.Generator().manual_seed(4))

    def grad(sampled: bool):
        state.enabled = sampled
        weight.grad = None
        hidden = vcas._SampleActivationGrad.apply(x.clone().requires_grad_(True), state)
        out = vcas._SampledWeightGradLinear.apply(hidden, weight, None, state)
        ((out - target) ** 2).sum().backward()
        return weight.grad.clone()

    exact = grad(False)
    mean = torch.stack([grad(True) for _ in range(3000)]).mean(0)
    assert float((mean - exact).norm() / exact.norm()) < 0.05
    assert float(torch.nn.functional.cosine_similarity(mean.flatten(), exact.flatten(), dim=0)) > 0.995
    assert state.weight_seen > 0 and state.weight_kept / state.weight_seen < 0.9  # it did sample


def test_vcas_adapts_ratios_and_reports_flops(prepared, smoke_cfg):
    cfg = ms.replace_config(smoke_cfg, vcas_every=5)
    record = ms.train_method("vcas", cfg, prepared, seed=5, progress=False)
    telemetry = record["telemetry"]
    assert len(telemetry["adaptations"]) == math.ceil(record["steps"] / 5)
    first = telemetry["adaptations"][0]
    assert first["var_act"] == pytest.approx(0.0, abs=1e-10)  # at ratio 1 sampling is exact
    assert telemetry["final_act_ratio"] < 1.0 or telemetry["final_weight_ratio"] < 1.0
    assert 0.0 < telemetry["backward_flops_saved_fraction"] < 1.0
    assert math.isfinite(record["accuracy"])


@pytest.mark.parametrize("method", ["uniform", "selective-backprop", "rho-loss", "infobatch"])
def test_peer_runs_end_to_end(prepared, smoke_cfg, method):
    smoke_cfg = ms.replace_config(smoke_cfg, uniform_fraction=0.3)
    record = ms.train_method(method, smoke_cfg, prepared, seed=6, progress=False)
    assert math.isfinite(record["accuracy"]) and record["examples_backward"] > 0
    if method == "infobatch":
        assert record["telemetry"]["pruned_per_epoch"] == [0]  # one epoch, fresh scores
    if method == "uniform":
        assert record["examples_backward"] == round(smoke_cfg.uniform_fraction * len(prepared.train))


def test_infobatch_prunes_after_the_first_epoch_and_stops_after_its_epochs(prepared, smoke_cfg):
    # Three epochs at anneal 0.125 (anneal start 2): epoch 2 (counted from 1) drops about
    # prune x (share below the mean) of the data, epoch 3 uses all of it; the run must not refill
    # the pruned steps.
    cfg = ms.replace_config(smoke_cfg, epochs=3)
    record = ms.train_method("infobatch", cfg, prepared, seed=7, progress=False)
    pruned = record["telemetry"]["pruned_per_epoch"]
    n = len(prepared.train)
    assert pruned[0] == 0 and 0.1 * n < pruned[1] < 0.5 * n and pruned[2] == 0
    assert record["examples_backward"] == 3 * n - pruned[1]


def test_infobatch_schedule_ends_with_its_last_epoch(prepared, smoke_cfg):
    """Pruned epochs end early; each epoch's share of the lr schedule is compressed into the steps
    it runs, so the lr at the run's last update is at most 1 % of its peak (not stuck part-way)."""
    cfg = ms.replace_config(smoke_cfg, epochs=3, infobatch_prune=0.9)
    record = ms.train_method("infobatch", cfg, prepared, seed=3, progress=False)
    assert sum(record["telemetry"]["pruned_per_epoch"]) > 0.2 * len(prepared.train)
    schedule = record["lr_schedule"]
    assert schedule["driven_by"] == "progress" and schedule["last_share"] <= 0.01
    assert record["updates"] == schedule["updates"] < record["steps"]  # the steps pruning left do nothing


def test_uniform_matches_the_measured_time_of_mclearn(prepared, smoke_cfg):
    # Listed first, uniform still runs after baseline and mclearn, with the data share equal to
    # mclearn's train seconds over the baseline's (same seed).
    records = ms.run_sweep(smoke_cfg, ["uniform", "baseline", "mclearn"], [3], prepared=prepared, progress=False)
    by_method = {r["method"]: r for r in records}
    share = by_method["mclearn"]["train_seconds"] / by_method["baseline"]["train_seconds"]
    expected = min(max(share, 0.01), 1.0)
    assert by_method["uniform"]["config"]["uniform_fraction"] == pytest.approx(expected)
    assert by_method["uniform"]["examples_backward"] == max(1, round(expected * len(prepared.train)))


def test_uniform_without_its_reference_runs_names_the_fix(prepared, smoke_cfg):
    with pytest.raises(ValueError, match="uniform_fraction="):
        ms.run_sweep(smoke_cfg, ["uniform"], [4], prepared=prepared, progress=False)


class LeadingShare(ms.FullPass):
    """A method written in this one file: the baseline's plan, which a budget study's clock (its
    time_budget share of the baseline's seconds) cuts to its leading steps; its plan says so."""

    name = "leading-share"
    note = "the clock cuts the baseline's plan to its leading steps"

    @classmethod
    def plan_budget(cls, name, time_budget, cfg, costs):
        return ms.BudgetPlan(name, time_budget, {}, time_budget, cls.note)


class Unclocked(ms.FullPass):
    """A method without a wall-clock knob that alone reads one Config key."""

    wall_clock_note = "no wall-clock knob: it trains the baseline's plan"
    own_fields = ("label_noise",)


@pytest.fixture
def registry():
    """Put METHODS and its derived views back as they were after the test."""
    saved = dict(methods.METHODS)
    yield methods.register_method
    methods.METHODS.clear()
    methods.METHODS.update(saved)
    methods.derive_registry_views()


def test_a_new_method_is_its_class_and_one_registration(registry, smoke_cfg, prepared, cost_clock):
    """A method defined in a test and registered by one call trains in a budget study as a peer of
    the package does: planned by its own plan_budget, on its clock, in the run store and the table."""
    cost_clock(1e-4)
    registry("leading-share", LeadingShare)
    cfg = ms.replace_config(smoke_cfg, study="new-method")
    result = ms.run_budget_study(cfg, ["baseline", "leading-share"], (1 / 2,), seeds=[42], prepared=prepared,
                                 progress=False, lr_factors=())
    runs = {r["run_label"]: r for r in result.records}
    assert sorted(runs) == ["baseline", "leading-share-b0.50"]
    record = runs["leading-share-b0.50"]
    assert record["method"] == "leading-share" and record["budget_note"] == LeadingShare.note
    assert record["config"]["budget_seconds"] == pytest.approx(0.5 * result.reference_seconds)
    assert 0 < record["examples_backward"] < runs["baseline"]["examples_backward"]
    assert ms.run_path(cfg.results_dir, cfg.study, "leading-share-b0.50", 42).exists()
    table = ms.summarize(cfg.results_dir, cfg.study, show=False)
    assert table[table["method"] == "leading-share"]["budget"].tolist() == ["1/2"]


def test_registering_a_method_derives_the_registry_views(registry):
    assert "unclocked" not in ms.NO_WALL_CLOCK_KNOB and "label_noise" in ms.run_key_fields("baseline")
    assert registry("unclocked", Unclocked) is Unclocked
    assert ms.NO_WALL_CLOCK_KNOB["unclocked"] == Unclocked.wall_clock_note
    assert ms.METHOD_OWN_FIELDS[("unclocked",)] == ("label_noise",)
    assert "label_noise" not in ms.run_key_fields("baseline") and "label_noise" in ms.run_key_fields("unclocked")
    assert ms.budget_study_runs(["baseline", "unclocked", "uniform"], (1 / 2,), [1]) == [
        ("baseline", 0.0, 1), ("unclocked", 0.0, 1), ("uniform", 0.5, 1)]
    assert ms.plan_time_budget("unclocked", 0.5, ms.make_config("cpu-smoke"), {}).note == Unclocked.wall_clock_note
    with pytest.raises(ValueError, match="'uniform' is taken by Uniform"):
        registry("uniform", Unclocked)
