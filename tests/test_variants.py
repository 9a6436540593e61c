"""MC-Learn's variants: scores for free, every row once before any twice, uniform start and
end, the full-pass counts in the run file, the method presets, and the ablation table. Every variant's
estimator is tested where it runs (MCLearn's own refresh, draw and objective), as `mclearn`'s is in
test_cv_trainer.py; tests/break_estimator.sh breaks both on purpose."""
import dataclasses
import importlib.util
import math
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch

import make_readme as mr
import mclearn_core as mc
import mcstudy as ms
from conftest import ROOT

Z99 = 2.576  # two-sided 99% normal quantile
VARIANT_KEYS = ("free_scores", "once_draws", "uniform_start", "uniform_end", "select_switch")
VARIANTS = [v for v, parts in ms.MCLEARN_VARIANTS.items() if parts]  # mclearn-v1: test_cv_trainer.py's estimator case


def variant_keys(variant: str) -> dict:
    """Return the variant keys of a method preset."""
    return {k: ms.METHOD_PRESETS[variant][k] for k in VARIANT_KEYS}


def trainer_for(prepared, model=None, **changes) -> mc.MCLearn:
    """Return an MCLearn on the cpu-smoke training set (480 rows, 4 classes) at the fixed parameters of
    the estimator tests: 8 full-pass rows of 16 draws per step, pools serving 4 steps, replay share 0.3,
    no clipping, no label smoothing, an informative cheap head (spread difficulties) and tilted class
    weights (pool-membership probabilities differ by class); model in eval mode (no dropout); every pool
    selected (no switch: tests/test_switch.py tests it) unless `changes` turn it on."""
    changes = {"select_switch": False, **changes}
    cfg = ms.replace_config(prepared.cfg, full_rows=8, full_prob=0.5, refresh_every=4, w_clip=0.0,
                            kappa_schedule=(0.5,), replay_share_init=0.3, replay_share_bounds=(0.3, 0.3), label_smoothing=0.0, **changes)
    model = model if model is not None else deepcopy(prepared.base_model).eval()
    ctx = ms.RunContext(cfg=cfg, model=model, train=prepared.train, eval=prepared.eval, num_labels=4,
                        device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                        device_generator=torch.Generator().manual_seed(0))
    trainer = ms.MCLearnMethod(ctx)
    with torch.no_grad():
        torch.manual_seed(3)
        trainer.cheap_head.weight.normal_(0.0, 3.0)
    trainer.policy.class_weights = np.array([0.4, 0.3, 0.2, 0.1])
    return trainer


@pytest.fixture(scope="module")
def truth(prepared):
    """A model whose head favours class 0 (losses differ by class), its full-data mean loss and the
    projections of its full-data gradient on two fixed directions (the gradient itself, its head part)."""
    model = deepcopy(prepared.base_model).eval()
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([2.0, 0.5, -0.5, -1.5]))
    params = [p for p in model.parameters() if p.requires_grad]
    batch = mc.make_batch(prepared.train, torch.arange(len(prepared.train)), prepared.train.input_ids.shape[1])
    logits = model(**mc.model_inputs(model, batch)).logits
    loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
    grads = torch.autograd.grad(loss, params)
    head = {id(p) for m in mc.encoder_parts(model).head.values() for p in m.parameters()}
    directions = [list(grads), [g if id(p) in head else torch.zeros_like(g) for g, p in zip(grads, params)]]
    directions = [[d / torch.sqrt(sum((x ** 2).sum() for x in v)) for d in v] for v in directions]
    values = [loss.item()] + [float(sum((g * d).sum() for g, d in zip(grads, v))) for v in directions]
    return model, params, directions, np.array(values)


def variant_estimates(trainer, params, directions, pools: int, progress: tuple[float, ...]) -> np.ndarray:
    """Return [pools, 3]: per pool (a real refresh at progress[r % len(progress)]), the mean over its
    steps of the full-pass term and of the objective's gradient on each direction; after each pool
    its steps are booked as a run books them (after_pool: the score table, the pass counts)."""
    out = np.empty((pools, 3))
    trainer.costs.observe("update", 1e-3)  # the switch weighs scoring against measured updates: none run here
    for r in range(pools):
        trainer.refresh(progress[r % len(progress)])
        values, stats = [], []
        for j in range(trainer.ctx.cfg.refresh_every):
            inputs = {name: value[j] for name, value in trainer.plan_device.items()}
            parts = trainer.objective(inputs, trainer.plan.widths[j])
            grads = torch.autograd.grad(parts["objective"], params, allow_unused=True)
            values.append([float(parts["full"].detach())] + [float(sum((g * d).sum() for g, d in zip(grads, v) if g is not None))
                                                    for v in directions])
            stats.append(torch.stack([parts["loss_cheap_full"], parts["loss_full"].detach(), inputs["full_weight"]]))
        trainer.after_pool(torch.stack(stats).numpy())
        out[r] = np.mean(values, axis=0)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_objective_and_gradient_are_unbiased(prepared, truth, variant):
    """For every variant, over 160 pools of MCLearn's own refresh, draw and objective (anneal: a third of
    the pools each at the uniform start, in the selection and at the uniform end; free: the score
    table filled by the pools' own full passes, max age 10 refreshes, so rows are scored both ways),
    the mean full-pass term and the mean gradient on two directions each lie within a 99% normal
    interval of the full-data values (no clipping); the interval is narrow enough to catch a bias."""
    model, params, directions, values = truth
    trainer = trainer_for(prepared, model, free_score_max_age=10, record_passes=True, **variant_keys(variant))
    parts = ms.MCLEARN_VARIANTS[variant]
    progress = (0.1, 0.5, 0.95) if "anneal" in parts else (0.5,)  # uniform start, selection, uniform end
    est = variant_estimates(trainer, params, directions, 160, progress)
    mean, se = est.mean(0), est.std(0, ddof=1) / math.sqrt(len(est))
    for name, m, s, t in zip(("loss", "grad·v1", "grad·v2"), mean, se, values):
        print(f"{variant} {name}: mean {m:.5f}, full-data {t:.5f}, |diff| / se {abs(m - t) / s:.2f}, se / |t| {s / abs(t):.4f}")
        assert abs(m - t) <= Z99 * s, f"{variant} {name}: mean {m:.5f} vs full-data {t:.5f} (99% half-width {Z99 * s:.5f})"
        assert s < 0.1 * abs(t) + 1e-3, f"{variant} {name}: interval too wide to catch a bias ({s:.5f})"
    if "free" in parts:
        counts = trainer.variant_counts
        assert counts["stored_score_rows"] > 0.3 * counts["head_scored_rows"] > 0  # both paths were taken


# ------------------------------------------------------------------------------ every row once before any twice
def test_systematic_counts_are_unbiased_floor_or_ceil_and_exact_in_sum():
    """E[n_i] = e_i within 4 standard errors over 20,000 draws, n_i in {floor e_i, ceil e_i}, sum n = sum e."""
    rng = np.random.default_rng(0)
    expected = rng.dirichlet(np.full(40, 0.5)) * 25  # some rows above one pass, most below
    expected = np.minimum(expected, 2.5)
    expected *= 25 / expected.sum()
    draws = np.array([mc.systematic_counts(expected, rng) for _ in range(20_000)])
    assert (draws.sum(1) == 25).all()
    assert ((draws == np.floor(expected)) | (draws == np.ceil(expected))).all()
    se = draws.std(0, ddof=1) / math.sqrt(len(draws))
    assert (np.abs(draws.mean(0) - expected) <= 4 * se + 1e-12).all()


def test_once_draw_probs_cap_at_one_pass_and_floor_each_row():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.full(64, 0.3))  # a very uneven draw distribution
    probs = mc.once_draw_probs(p, draws=32, floor=0.1)
    expected = 32 * probs
    assert probs.sum() == pytest.approx(1.0) and expected.max() <= 1 + 1e-9 and expected.min() >= 0.1 - 1e-9
    inside = (expected > 0.1 + 1e-6) & (expected < 1 - 1e-6)  # unclipped rows keep their ratios
    assert np.allclose(probs[inside] / p[inside], (probs[inside] / p[inside])[0])
    # more passes than rows: every row gets at least one, none more than its share
    assert np.allclose(mc.once_draw_probs(p[:8], draws=32, floor=0.1) * 32, 4.0)


def test_once_draws_give_no_row_two_passes_in_a_pass_over_the_data(prepared):
    """Under once_draws the full passes of a whole pass over the training set (the pools cover it without
    replacement) are all distinct rows, every pool row's chance is at least the floor, and each step's
    width holds its rows; mclearn-v1's draws with replacement repeat rows."""
    def full_rows_of_one_pass(trainer):
        trainer.policy.class_weights = np.full(4, 0.25)  # pools by class frequency: the classes' passes end together
        rows, pools = [], 0
        while trainer.stream.drawn + trainer.pool_size(0.5) <= len(prepared.train):
            trainer.refresh(0.5)
            rows.append(trainer.pool["rows"][trainer.plan.kept_pos[:, : trainer.full_rows]].ravel())
            lengths = prepared.train.host_lengths.numpy()[rows[-1].reshape(trainer.ctx.cfg.refresh_every, -1)]
            assert (lengths <= np.array(trainer.plan.widths)[:, None]).all()
            pools += 1
        return np.concatenate(rows), pools

    once = trainer_for(prepared, once_draws=True, once_floor=0.2)
    rows, pools = full_rows_of_one_pass(once)
    assert pools >= 5 and len(np.unique(rows)) == len(rows) == pools * 4 * 8
    p = mc.once_draw_probs(mc.mix_replay(once.pool["candidate_prob"], once.pool["replay_share"]), 32, 0.2)
    assert (32 * p >= 0.2 - 1e-9).all() and (32 * p <= 1 + 1e-9).all()
    plain, _ = full_rows_of_one_pass(trainer_for(prepared, once_draws=False))  # mclearn-v1's draws
    assert len(np.unique(plain)) < 0.9 * len(plain)


# ------------------------------------------------------------------------------------------ scores for free
def test_free_scores_take_the_full_pass_losses_and_the_head_scores_the_rest(prepared):
    """After a pool's steps, the score table holds the full-pass loss of each row that had one (stamped
    with the refresh); a later pool takes those rows' difficulty 1 - exp(-loss) from it and the cheap head scores
    only the others (features, labels); a loss older than free_score_max_age refreshes is scored again."""
    trainer = trainer_for(prepared, free_scores=True, free_score_max_age=3)
    trainer.refresh(0.5)
    steps, full = trainer.ctx.cfg.refresh_every, trainer.full_rows
    rows = trainer.pool["rows"][trainer.plan.kept_pos[:, :full]]
    stats = np.stack([np.zeros((steps, full)), np.arange(steps * full).reshape(steps, full) / 10.0 + 0.05,
                      np.ones((steps, full))], axis=1)  # [steps, 3, full]: cheap, full loss, weight
    trainer.after_pool(stats)
    stamped = trainer.refreshes
    last = {int(r): loss for r, loss in zip(rows.ravel(), stats[:, 1].ravel())}  # a row drawn twice keeps its last
    assert all(trainer.score_table[r] == pytest.approx(v) for r, v in last.items())
    assert (trainer.score_refresh[list(last)] == stamped).all()
    # Put those rows in the next pool: they are read from the table, the head scores the rest.
    stream_rows = np.array(list(last))
    trainer.stream.next_pool = lambda size, weights: (np.concatenate([stream_rows, np.arange(400, 420)]),
                                                      np.full(len(stream_rows) + 20, 0.5))
    scored_before = trainer.variant_counts["head_scored_rows"]
    trainer.refresh(0.5)
    pool = trainer.pool
    known = np.isin(pool["rows"], stream_rows)
    assert (~pool["scored"] == known).all()
    np.testing.assert_allclose(pool["difficulty"][known], 1 - np.exp(-trainer.score_table[pool["rows"][known]]))
    assert trainer.variant_counts["head_scored_rows"] - scored_before == (~known).sum()
    labels = trainer.pool_labels[: len(pool["rows"])].numpy()
    assert (labels[known] == -100).all() and (labels[~known] == prepared.train.labels.numpy()[pool["rows"][~known]]).all()
    assert (trainer.pool_has_feats[: len(pool["rows"])].numpy() == ~known).all()
    # Three refreshes later the stored losses are stale: the head scores every row again.
    trainer.refreshes = stamped + 4
    trainer.refresh(0.5)
    assert trainer.pool["scored"].all()


def test_rows_the_head_did_not_score_give_it_no_loss_and_no_distillation(prepared):
    """In a free-scores pool, the cheap head's loss and distillation come only from rows it scored."""
    trainer = trainer_for(prepared, free_scores=True)
    trainer.score_table[:] = 0.3  # every row has a stored loss: the head scores nothing
    trainer.refresh(0.5)
    assert not trainer.pool["scored"].any()
    inputs = {name: value[0] for name, value in trainer.plan_device.items()}
    parts = {k: v.detach() for k, v in trainer.objective(inputs, trainer.plan.widths[0]).items()}
    assert float(parts["head"]) == 0.0 and float(parts["distill"]) == 0.0 and float(parts["full"]) > 0


# -------------------------------------------------------------------------------------------- uniform phases
def test_uniform_start_and_end_draw_uniformly_and_the_end_scores_nothing(prepared):
    """uniform_start 0.25 / uniform_end 0.125: pools before 25 % and from 87.5 % of the run are stratified
    by class frequency (the policy's tilted class weights ignored), hold one step-set of rows and are
    drawn uniformly; the start is scored (the head learns), the end is not; between them, selection.
    A uniform pool leaves the replay share and the class weights as they were."""
    trainer = trainer_for(prepared, uniform_start=0.25, uniform_end=0.125)
    assert [trainer.uniform_phase(p) for p in (0.0, 0.249, 0.25, 0.874, 0.875, 0.99)] == \
        [True, True, False, False, True, True]
    freq = np.bincount(prepared.train.labels.numpy()) / len(prepared.train)
    for progress, scored in ((0.1, True), (0.9, False)):
        trainer.refresh(progress)
        pool = trainer.pool
        assert pool["uniform"] and np.allclose(pool["candidate_prob"], 1 / len(pool["rows"]))
        assert abs(len(pool["rows"]) - 4 * 8) <= 4  # the full passes of its steps (quotas round per class)
        shares = np.bincount(pool["labels_host"], minlength=4) / len(pool["rows"])
        assert np.abs(shares - freq).max() < 0.05
        assert pool["scored"].all() == scored and pool["scored"].any() == scored
        rho, weights = trainer.policy.replay_share, trainer.policy.class_weights.copy()
        trainer.step_stats = [torch.rand(3, 8) for _ in range(4)]
        trainer._update_policy()
        assert trainer.policy.replay_share == rho and np.array_equal(trainer.policy.class_weights, weights)
    trainer.refresh(0.5)
    assert not trainer.pool["uniform"] and np.ptp(trainer.pool["candidate_prob"]) > 0
    assert trainer.variant_counts["uniform_pools"] == 2


def test_variant_keys_out_of_range_are_refused_naming_the_key(prepared):
    for changes, key in ((dict(uniform_start=0.6, uniform_end=0.4), "uniform_start"), (dict(uniform_end=-0.1), "uniform_end"),
                         (dict(once_floor=1.5), "once_floor"), (dict(free_score_max_age=-1), "free_score_max_age")):
        with pytest.raises(ValueError, match=key) as err:
            trainer_for(prepared, **changes)
        assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------- what it draws, end to end
def test_pass_count_summary_by_hand():
    counts = np.array([0, 1, 1, 2, 0, 3])
    out = mc.pass_count_summary(counts, np.array([3, 4]))
    assert out == {"rows": 6, "passes": 7, "distinct_rows": 4, "histogram": [2, 2, 1, 1],
                   "flipped": {"rows": 2, "data_share": round(2 / 6, 6), "passes": 2, "pass_share": round(2 / 7, 6),
                               "distinct_rows": 1}}
    assert "flipped" not in mc.pass_count_summary(counts)


def test_a_variant_run_records_its_full_passes_and_the_flipped_rows(prepared, smoke_cfg):
    """train_method of the all-parts variant: every step's full passes are counted in the run file
    (histogram over all training rows), with the flipped rows' share of them, and its variant counts."""
    flipped = np.arange(0, len(prepared.train), 5)
    noisy = dataclasses.replace(prepared, flipped_rows=flipped)
    record = ms.train_method("mclearn-free-once-anneal", smoke_cfg, noisy, 42, progress=False)
    passes = record["telemetry"]["full_passes"]
    ran = record["telemetry"]["budget"]["steps_run"]  # a re-plan at a refresh may end the run before its first plan
    assert ran <= record["steps"]
    assert passes["passes"] == ran * record["telemetry"]["full_rows"] == record["examples_backward"]
    assert sum(passes["histogram"]) == passes["rows"] == len(prepared.train)
    assert passes["distinct_rows"] == len(prepared.train) - passes["histogram"][0]
    assert passes["flipped"]["rows"] == len(flipped) and passes["flipped"]["data_share"] == pytest.approx(0.2)
    assert 0 < passes["flipped"]["pass_share"] < 1
    variant = record["telemetry"]["variant"]
    assert variant["free_scores"] and variant["once_draws"] and variant["uniform_pools"] >= 1
    uncounted = ms.with_explicit(smoke_cfg, record_passes=False)
    assert "full_passes" not in ms.train_method("mclearn", uncounted, prepared, 42, progress=False)["telemetry"]


def test_the_full_pass_count_includes_the_steps_of_the_pool_in_use(prepared, monkeypatch):
    """variant_telemetry counts the steps since the last refresh too (a refresh folds a pool's steps
    into the counts; the run's last pool has none after it): two steps into a 4-step pool, the run
    file's full passes are 2 x full_rows. The end-to-end test above reaches this only when its run
    ends between refreshes, which its measured step costs decide; here the clock stands still."""
    monkeypatch.setattr(time, "perf_counter", lambda: 0.0)  # setup and steps take no time
    trainer = trainer_for(prepared, record_passes=True, time_budget=1.0)
    cfg = trainer.ctx.cfg
    trainer.ctx.step_costs = mc.StepCosts(seconds={(rows, cfg.max_length): 1e-3 for rows in ms.calibration_rows(cfg, 8)},
                                          graphed=False, capture_seconds=0.0, measure_seconds=0.0, warnings=[])
    trainer.setup()
    ms.build_optimization(trainer.ctx, trainer)
    assert trainer.num_steps() > 4 and cfg.refresh_every == 4
    for i in range(2):
        trainer.step(i)
    assert trainer.steps_run == len(trainer.step_stats) == 2  # no refresh yet: nothing folded in
    passes = trainer.variant_telemetry()["full_passes"]
    assert passes["passes"] == 2 * trainer.full_rows == 16 and sum(passes["histogram"]) == len(prepared.train)


# ------------------------------------------------------------------------------------------------ method presets
def test_mclearn_is_the_ablations_choice_and_v1_keeps_the_previous_preset():
    cfg = ms.make_config("cpu-smoke")
    plain, v1 = ms.config_for_method(cfg, "mclearn"), ms.config_for_method(cfg, "mclearn-v1")
    assert all(getattr(ms.Config(), k) == v for k, v in ms.MCLEARN_V1.items())  # the defaults are mclearn
    assert plain == ms.config_for_method(cfg, "mclearn-once-switch")  # the switch's ablation chose it
    assert all(getattr(plain, k) == getattr(ms.Config(), k) for k in (*VARIANT_KEYS, "record_passes"))
    assert dataclasses.replace(v1, once_draws=True, select_switch=True) == plain  # v1: the parts off
    assert ms.METHODS["mclearn-v1"] is ms.MCLearnMethod


@pytest.mark.parametrize("variant", list(ms.MCLEARN_VARIANTS))
def test_each_variant_turns_on_exactly_its_parts(variant):
    cfg = ms.config_for_method(ms.make_config("cpu-smoke"), variant)
    parts = ms.MCLEARN_VARIANTS[variant]
    assert variant == "-".join(("mclearn",) + parts) or (variant == "mclearn-v1" and not parts)
    assert cfg.free_scores == ("free" in parts) and cfg.once_draws == ("once" in parts)
    assert (cfg.uniform_start, cfg.uniform_end) == ((0.25, 0.125) if "anneal" in parts else (0.0, 0.0))
    assert cfg.select_switch == ("switch" in parts)
    assert cfg.record_passes and cfg.time_budget == 0 and variant in ms.METHODS
    assert ms.plan_time_budget(variant, 0.5, cfg, {}).knobs == {}
    explicit = ms.config_for_method(ms.with_explicit(ms.make_config("cpu-smoke"), once_draws=True), variant)
    assert explicit.once_draws  # a key the caller set wins over the variant's preset


# -------------------------------------------------------------------------------------------- the ablation rule
def _record(method, study, budget, accuracy, seed=42, label=None):
    return {"method": method, "study": study, "time_budget": budget, "accuracy": accuracy, "seed": seed,
            "run_label": label or ms.run_label(method, budget), "train_seconds": 1.0, "train_examples": 100,
            "examples_backward": 64, "steps": 4, "telemetry": {}}


def test_ablation_table_ranks_per_cell_and_ties_go_to_the_simpler():
    """Two datasets x two budgets: v1 ranks 1, 3, 1, 3 (mean 2), free 2, 1, 2, 2 (mean 1.75), once 3, 2, 3, 1
    (mean 2.25): free is chosen. Then free-once matches free's ranks exactly but has two parts: free stays.
    A missing or diverged run ranks last; lr-tuning runs and the short schedule do not count."""
    accuracies = {"mclearn-v1": (0.90, 0.80, 0.70, 0.60), "mclearn-free": (0.85, 0.85, 0.65, 0.62),
                  "mclearn-once": (0.80, 0.82, 0.60, 0.65)}
    cells = [("sst2-mpnet-h200-ablation", 1 / 3), ("sst2-mpnet-h200-ablation", 0.5),
             ("clinc150-mpnet-h200-ablation", 1 / 3), ("clinc150-mpnet-h200-ablation", 0.5)]
    records = [_record(m, s, b, a) for m, accs in accuracies.items() for (s, b), a in zip(cells, accs)]
    records += [_record("short-schedule", s, b, 0.99) for s, b in cells]
    records += [_record("mclearn-once", cells[0][0], 0.5, 0.99, label="mclearn-once-b0.50-lr8e-05")]
    table = ms.ablation_table(records)
    assert table.attrs["chosen"] == "mclearn-free" and table.attrs["rule"] == ms.ABLATION_RULE
    assert list(table["variant"]) == ["mclearn-v1", "mclearn-free", "mclearn-once", "short-schedule"]
    assert list(table["mean rank"])[:3] == [2.0, 1.75, 2.25]
    assert table.loc[1, "sst2 1/3"] == "85.00 (2)" and table.loc[1, "chosen"] == "chosen"
    tie = records + [_record("mclearn-free-once", s, b, a) for (s, b), a in zip(cells, accuracies["mclearn-free"])]
    tied = ms.ablation_table(tie)
    assert tied.attrs["chosen"] == "mclearn-free"
    assert tied.loc[tied["variant"] == "mclearn-free", "mean rank"].item() == \
        tied.loc[tied["variant"] == "mclearn-free-once", "mean rank"].item()
    diverged = [dict(r, accuracy=float("nan")) if r["method"] == "mclearn-free" and r["time_budget"] == 0.5 else r
                for r in records]
    ranks = ms.ablation_table(diverged).set_index("variant")["sst2 1/2"]
    assert ranks["mclearn-free"] == "— (3)" and ranks["mclearn-v1"] == "80.00 (2)"
    assert ms.ablation_table([]).attrs["chosen"] is None


def test_the_short_schedule_is_a_reference_row_never_ranked_or_chosen():
    """short-schedule, 99 % in every cell, would rank first if it were ranked: its row comes last with its
    accuracy per cell, rank and mean rank "—" and no "chosen"; the variants' ranks are those without it
    (v1 first at sst2 1/3). A cell it has no run in shows "— (—)"; without its runs there is no such row."""
    cells = [("sst2-mpnet-h200-ablation", 1 / 3), ("sst2-mpnet-h200-ablation", 0.5)]
    records = [_record("mclearn-v1", s, b, a) for (s, b), a in zip(cells, (0.90, 0.80))]
    records += [_record("mclearn-once", s, b, a) for (s, b), a in zip(cells, (0.85, 0.85))]
    table = ms.ablation_table(records + [_record("short-schedule", cells[0][0], 1 / 3, 0.99)])
    reference = table.iloc[-1]
    assert reference["variant"] == "short-schedule" and len(table) == 3
    assert (reference["sst2 1/3"], reference["sst2 1/2"]) == ("99.00 (—)", "— (—)")
    assert reference["mean rank"] == "—" and reference["chosen"] == ""
    assert table.loc[0, "sst2 1/3"] == "90.00 (1)" and table.loc[1, "sst2 1/3"] == "85.00 (2)"
    assert table.attrs["chosen"] == "mclearn-v1" and list(table["mean rank"])[:2] == [1.5, 1.5]  # a tie: the simpler
    assert "short-schedule" not in set(ms.ablation_table(records)["variant"])


def test_ablation_script_writes_the_table_from_a_cpu_budget_study(prepared, smoke_cfg):
    """The GPU ablation's Python part on the CPU smoke preset: the budget study notebook 04 runs for
    gpu_ablation.sh (the baseline, the short schedule and variants at one budget, one seed), then
    benchmarks/ablation.py writes the table and the diagnostics from its run files."""
    cfg = ms.replace_config(smoke_cfg, study="smoke-ablation")
    ms.run_budget_study(cfg, ["baseline", "short-schedule", "mclearn-v1", "mclearn-free-once-anneal"], (0.5,),
                        seeds=[42], prepared=prepared, progress=False)
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "benchmarks" / "ablation.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--results", cfg.results_dir]) == 0
    text = (Path(cfg.results_dir) / "ablation" / "ablation_table.md").read_text()
    assert ms.ABLATION_RULE in text and "mclearn-free-once-anneal" in text and "smoke 1/2" in text
    assert "distinct rows" in text and "short-schedule" in text


# ---------------------------------------------------------------------- the ablation's paragraphs (results/README.md)
def _diagnosed(method, study, budget, accuracy, steps, seconds, backward, distinct=None, passes=None, ranks=(),
               score=None, update=None, flipped=None, seed=42, capture=None, ran=None):
    """A budgeted ablation run with the telemetry ablation_diagnostics reads (1,000 training rows);
    `ran`: the steps MC-Learn's budget let run of the `steps` it planned (telemetry.budget.steps_run)."""
    record = _record(method, study, budget, accuracy, seed=seed)
    telemetry = {"steps": [{"rank_corr": r} for r in ranks],
                 **({"graph_capture_seconds": capture} if capture is not None else {}),
                 **({"budget": {"steps": steps, "steps_run": ran}} if ran is not None else {})}
    if passes is not None:
        telemetry["full_passes"] = {"passes": passes, "distinct_rows": distinct,
                                    **({"flipped": flipped} if flipped else {})}
        telemetry["measured_seconds"] = {"score": score, "update": update, "update_warmup": 0.5}
    return {**record, "steps": steps, "train_seconds": seconds, "train_examples": 1000, "examples_backward": backward,
            "telemetry": telemetry}


def _diagnosed_study(study="sst2-mpnet-h200-ablation", flipped=False):
    """One dataset at 1/3 and 1/2: mclearn-once beats mclearn-v1 in both cells (it is chosen); at 1/3 it is
    0.77 pt behind short-schedule (81.23 % against 82.00 %), at 1/2 0.40 pt ahead (85.40 % against 85.00 %)."""
    def flips(share):
        return {"rows": 200, "data_share": 0.2, "passes": 1, "pass_share": share} if flipped else None

    return [
        _diagnosed("short-schedule", study, 1 / 3, 0.8200, 30, 2.0512, 1920),
        _diagnosed("mclearn-once", study, 1 / 3, 0.8123, 31, 2.1049, 0, distinct=812, passes=864,
                   ranks=(0.1, 0.49834999999999996, 0.9), score=0.04237, update=1.54311, flipped=flips(0.23116),
                   ran=27),
        _diagnosed("mclearn-v1", study, 1 / 3, 0.8010, 26, 2.0133, 0, distinct=655, passes=832,
                   ranks=(0.3, 0.7), score=0.05111, update=1.44444, flipped=flips(0.21)),
        _diagnosed("short-schedule", study, 0.5, 0.8500, 45, 3.1, 2880),
        _diagnosed("mclearn-once", study, 0.5, 0.8540, 46, 3.2, 0, distinct=1000, passes=1472,
                   ranks=(0.6,), score=0.05, update=2.5, flipped=flips(0.19)),
        _diagnosed("mclearn-v1", study, 0.5, 0.8300, 44, 3.0, 0, distinct=900, passes=1408,
                   ranks=(0.5,), score=0.06, update=2.4, flipped=flips(0.2)),
    ]


def test_ablation_diagnostics_give_accuracy_its_difference_and_a_rounded_rank_agreement():
    """The diagnostics' accuracy is the validation accuracy in %, its difference is against the short
    schedule's run of the same cell and seed, and the median rank agreement is rounded to 3 decimals."""
    frame = ms.ablation_diagnostics(_diagnosed_study()).set_index(["budget", "method"])
    once = frame.loc[("1/3", "mclearn-once")]
    assert once["accuracy (%)"] == 81.23 and once["vs short (pt)"] == -0.77
    assert once["rank agreement"] == 0.498 and frame.loc[("1/3", "mclearn-v1"), "rank agreement"] == 0.5
    assert frame.loc[("1/2", "mclearn-once"), "vs short (pt)"] == 0.4
    assert frame.loc[("1/3", "short-schedule"), "vs short (pt)"] == 0.0
    assert once["distinct share"] == 0.812 and frame.loc[("1/3", "short-schedule"), "distinct rows"] == 1000


def test_ablation_paragraphs_state_the_diagnostics_numbers():
    """Each dataset's paragraph says where the chosen variant wins or loses against short-schedule and
    mclearn-v1 at each budget, with the numbers of ablation_diagnostics (worked out by hand here too), and
    on noisy data the flipped rows' share of its full passes against their share of the data."""
    records = _diagnosed_study() + _diagnosed_study("sst2-noisy20-mpnet-h200-ablation", flipped=True)
    paragraphs = mr.ablation_paragraphs(records)
    assert set(paragraphs) == {"sst2", "sst2-noisy20"}
    text = paragraphs["sst2"]
    frame = ms.ablation_diagnostics(records)
    row = frame[(frame["study"] == "sst2") & (frame["budget"] == "1/3")].set_index("method")
    once, v1, short = row.loc["mclearn-once"], row.loc["mclearn-v1"], row.loc["short-schedule"]
    assert (f"At 1/3 it is behind `short-schedule` ({once['vs short (pt)']:+.2f} pt: {once['accuracy (%)']:.2f} % "
            f"against {short['accuracy (%)']:.2f} %) and ahead of `mclearn-v1` (+1.13 pt: "
            f"{v1['accuracy (%)']:.2f} %, {v1['vs short (pt)']:+.2f} pt against `short-schedule`).") in text
    assert "At 1/3 it is behind `short-schedule` (-0.77 pt: 81.23 % against 82.00 %)" in text  # by hand
    assert text.startswith("`mclearn-once` against `short-schedule` and `mclearn-v1` on sst2 (seed 42, one run each, "
                           "so no verdict; validation accuracy):")
    assert (f"In {once['train s']:.2f} s (`short-schedule` {short['train s']:.2f} s, `mclearn-v1` {v1['train s']:.2f} s)"
            f" it ran fewer updates than `short-schedule` ({once['updates']} against {short['updates']}; `mclearn-v1` "
            f"{v1['updates']}) and gave {once['full passes']} full passes to fewer distinct rows than `short-schedule`'s "
            f"one pass each ({once['distinct rows']}, {once['distinct share'] * 100:.2f} % of the training set, against "
            f"{short['distinct rows']:,}, {short['distinct share'] * 100:.2f} %), more distinct rows than "
            f"`mclearn-v1`'s {v1['full passes']} full passes ({v1['distinct rows']}, "
            f"{v1['distinct share'] * 100:.2f} %).") in text
    # by hand: the updates that ran (27 of its 31 planned steps), not the steps planned
    assert "In 2.10 s (`short-schedule` 2.05 s, `mclearn-v1` 2.01 s) it ran fewer updates than `short-schedule` " \
           "(27 against 30; `mclearn-v1` 26)" in text
    assert (f"Its scorer's median rank agreement was {once['rank agreement']:.3f} (`mclearn-v1` "
            f"{v1['rank agreement']:.3f}); scoring took {once['score s']:.3f} s against {once['update s']:.3f} s of "
            f"updates (`mclearn-v1` {v1['score s']:.3f} s against {v1['update s']:.3f} s).") in text
    assert "rank agreement was 0.498 (`mclearn-v1` 0.500); scoring took 0.042 s against 1.543 s" in text
    assert "At 1/2 it is ahead of `short-schedule` (+0.40 pt: 85.40 % against 85.00 %) and ahead of " \
           "`mclearn-v1` (+2.40 pt" in text
    assert "flipped" not in text
    noisy = paragraphs["sst2-noisy20"]
    assert "The flipped rows, 20.00 % of the data, took 23.12 % of its full passes, more than their share " \
           "(`mclearn-v1`: 21.00 %)." in noisy
    assert "took 19.00 % of its full passes, less than their share (`mclearn-v1`: 20.00 %)." in noisy
    assert mr.ablation_paragraphs([]) == {}


def _equal_time_run(method, budget, seed, test, **config):
    """An equal-time study's run (test split) with the variant keys of its stored config."""
    keys = {"free_scores": False, "once_draws": False, "uniform_start": 0.0, "uniform_end": 0.0, **config}
    return {"method": method, "study": "sst2-mpnet-h200-equal-time", "time_budget": budget, "seed": seed,
            "accuracy": test, "test_accuracy": test, "train_seconds": 10.0 * (budget or 1), "config": keys,
            "run_label": ms.run_label(method, budget)}


def test_the_five_seed_sentence_appears_only_where_the_chosen_presets_runs_exist():
    """ablation_confirmation reads the chosen variant's preset in the equal-time study: the runs of method
    `mclearn` whose config has exactly its parts on (here once), else the runs under its own id. mclearn is
    0.8, 1.0, 1.2, 1.0, 1.0 points above short-schedule at 1/3 over seeds 1..5 (mean 1.00, sd 0.1414: 95 % half
    width 2.7764 x 0.1414 / sqrt 5 = 0.176) and 1 point below at 1/2 (sd 0): the sentence states both.
    Runs of `mclearn` with once off (the previous preset), or fewer than 5 seeds, are not the result."""
    seeds, above = (1, 2, 3, 4, 5), (0.008, 0.010, 0.012, 0.010, 0.010)
    base = [_equal_time_run("baseline", 0.0, s, 0.95) for s in seeds]
    short = [_equal_time_run("short-schedule", b, s, 0.90) for b in (1 / 3, 0.5) for s in seeds]
    ours = [_equal_time_run("mclearn", 1 / 3, s, 0.90 + d, once_draws=True) for s, d in zip(seeds, above)]
    ours += [_equal_time_run("mclearn", 0.5, s, 0.89, once_draws=True) for s in seeds]
    sentence = mr.ablation_confirmation(base + short + ours, "mclearn-once", "sst2", "sst2-mpnet-h200-equal-time",
                                        [1 / 3, 0.5])
    assert sentence == ("In `sst2-mpnet-h200-equal-time` (5 seeds, test split), the chosen preset (`mclearn`) against "
                        "`short-schedule`: +1.00 pt [+0.82, +1.18] at 1/3 (better) and -1.00 pt [-1.00, -1.00] at 1/2 "
                        "(worse), paired 95 % intervals, verdicts on the Holm-adjusted p over 2 comparisons.")
    # runs without full-pass telemetry: no why sentence
    previous = [dict(r, config={**r["config"], "once_draws": False}) for r in ours]  # mclearn-v1's config
    assert mr.ablation_confirmation(base + short + previous, "mclearn-once", "sst2", "x", [1 / 3, 0.5]) == \
        "5 seeds of the chosen preset not yet run on sst2."
    own_id = [dict(r, method="mclearn-once") for r in ours]  # the chosen variant's own id
    assert "the chosen preset (`mclearn-once`) against `short-schedule`: +1.00 pt [+0.82, +1.18] at 1/3" in \
        mr.ablation_confirmation(base + short + own_id, "mclearn-once", "sst2", "x", [1 / 3, 0.5])
    assert mr.ablation_confirmation(base + short + ours[:3] + ours[5:], "mclearn-once", "sst2", "x", [1 / 3, 0.5]) == \
        "5 seeds of the chosen preset not yet run on sst2 (`mclearn` in `x` has 3 at 1/3, 5 at 1/2)."
    assert mr.ablation_confirmation([], "mclearn-once", "sst2", "x", [1 / 3]) == \
        "5 seeds of the chosen preset not yet run on sst2."
    paragraph = mr.ablation_paragraphs(_diagnosed_study(), {"sst2": ("sst2-mpnet-h200-equal-time", base + short + ours)})
    assert paragraph["sst2"].endswith(sentence)


def test_the_five_seed_sentence_says_why_in_the_means_over_the_seeds():
    """After the verdict, ablation_confirmation gives the 5 seeds' means of the diagnostics against the short
    schedule's, worked out by hand: mclearn trains 1.6, 1.7, 1.8, 1.7, 1.7 s (mean 1.70) and runs 48..56
    updates (mean 52.0) of the 50..58 steps it planned (the sentence gives the updates that ran), reaches 700..780 distinct rows of 1,000 (mean 740, 74.00 %), its per-run median rank agreement
    is 0.51..0.55 (mean 0.530), scoring 0.03, 0.04, 0.05, 0.04, 0.04 s (0.040), 0.8 s of replayed updates,
    0.5 s of warm-up with 0.2 s of captures (short-schedule's captures 0.07..0.11 s: 0.090), and the
    flipped rows (20 % of the data) take 21..25 % of its passes (23.00 %); short-schedule trains 1.71..1.75 s
    (1.73) in 60 steps and passes all 1,000 rows (1,920 examples, capped at the training set)."""
    study, seeds = "sst2-noisy20-mpnet-h200-equal-time", (1, 2, 3, 4, 5)
    base = [_equal_time_run("baseline", 0.0, s, 0.95) for s in seeds]
    short = [dict(_diagnosed("short-schedule", study, 1 / 3, 0.90, 60, 1.70 + 0.01 * k, 1920, seed=k,
                             capture=0.06 + 0.01 * k), test_accuracy=0.90) for k in seeds]
    ours = [dict(_diagnosed("mclearn", study, 1 / 3, 0.89, 48 + 2 * k, seconds, 0, distinct=680 + 20 * k, passes=900,
                            ran=46 + 2 * k,
                            ranks=(0.1 * k, 0.5 + 0.01 * k, 0.9), score=score, update=0.8,
                            flipped={"rows": 200, "data_share": 0.2, "passes": 1, "pass_share": 0.2 + 0.01 * k}, seed=k,
                            capture=0.2),
                 test_accuracy=0.89, config={"once_draws": True})
            for k, seconds, score in zip(seeds, (1.6, 1.7, 1.8, 1.7, 1.7), (0.03, 0.04, 0.05, 0.04, 0.04))]
    sentence = mr.ablation_confirmation(base + short + ours, "mclearn-once", "sst2-noisy20", study, [1 / 3])
    assert sentence == (f"In `{study}` (5 seeds, test split), the chosen preset (`mclearn`) against `short-schedule`: "
                        "-1.00 pt [-1.00, -1.00] at 1/3 (worse), paired 95 % intervals, verdicts on the Holm-adjusted p "
                        "over 1 comparison. At 1/3, in the means over its "
                        "seeds, it trained 1.70 s against `short-schedule`'s 1.73 s, ran 52.0 updates against 60.0, and "
                        "gave full passes to 740 distinct rows (74.00 % of the training set) against 1,000 (100.00 %); "
                        "its scorer's median rank agreement was 0.530; of its seconds, scoring took 0.040 s, updates "
                        "replayed through graphs 0.800 s and the eager warm-up steps and captures of new update shapes "
                        "0.500 s (the captures alone 0.200 s, `short-schedule`'s 0.090 s); the flipped rows, 20.00 % of "
                        "the data, took 23.00 % of its full passes.")
