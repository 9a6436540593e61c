"""Section 5, `mclearn`: the policy learner (ESS, tau, rho, class weights, kappa schedule)."""
import math
from copy import deepcopy

import numpy as np
import pytest
import torch

import mclearn_core as mc
import mcstudy as ms


@pytest.fixture
def cfg():
    return ms.Config()  # tau (0.5, 4.0), rho (0.05, 0.5), class weights (0.5, 2.0), guard 0.8


def test_effective_sample_size():
    assert mc.effective_sample_size(np.full(10, 0.3)) == pytest.approx(10.0)
    assert mc.effective_sample_size(np.array([0, 0, 2.5, 0])) == pytest.approx(1.0)
    assert mc.effective_sample_size(np.array([1.0, 1.0, 2.0])) == pytest.approx(16 / 6)
    assert mc.effective_sample_size(np.zeros(3)) == 0.0
    # ESS is scale-free
    w = np.random.default_rng(0).random(50)
    assert mc.effective_sample_size(7 * w) == pytest.approx(mc.effective_sample_size(w))


def test_spearman():
    a = np.arange(10.0)
    assert mc.spearman(a, a ** 3) == pytest.approx(1.0)
    assert mc.spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(mc.spearman(a[:2], a[:2])) and math.isnan(mc.spearman(a, np.ones(10)))
    from scipy.stats import spearmanr

    x, y = np.random.default_rng(1).random((2, 40))
    assert mc.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)


def test_tau_widens_below_the_rank_guard_and_stays_in_bounds(cfg):
    pl = mc.PolicyLearner(cfg, 4)
    assert pl.update_tau(0.5) == pytest.approx(1.25)  # below guard 0.8: x1.25
    assert pl.update_tau(float("nan")) == pytest.approx(1.5625)  # no rank info: widen too
    for _ in range(50):
        pl.update_tau(0.0)
    assert pl.tau == cfg.tau_bounds[1]
    assert pl.update_tau(0.95) == pytest.approx(0.9 * cfg.tau_bounds[1])  # above guard: sharpen
    for _ in range(100):
        pl.update_tau(0.95)
    assert pl.tau == cfg.tau_bounds[0]


def test_rho_rises_when_ess_is_low_and_stays_in_bounds(cfg):
    pl = mc.PolicyLearner(cfg, 4)
    assert pl.update_replay_share(0.3) == pytest.approx(cfg.replay_share_init * 1.25)  # 0.3 < target 0.7
    for _ in range(50):
        pl.update_replay_share(0.1)
    assert pl.replay_share == cfg.replay_share_bounds[1]
    assert pl.update_replay_share(0.9) == pytest.approx(0.95 * cfg.replay_share_bounds[1])
    for _ in range(200):
        pl.update_replay_share(0.9)
    assert pl.replay_share == cfg.replay_share_bounds[0]


def test_kappa_schedule(cfg):
    pl = mc.PolicyLearner(cfg, 4)  # schedule (0.6, 0.5, 0.4), switching at progress 0.4 and 0.8
    expected = {0.0: 0.6, 0.39: 0.6, 0.4: 0.5, 0.79: 0.5, 0.8: 0.4, 1.0: 0.4}
    assert {p: pl.kappa(p) for p in expected} == expected
    short = mc.PolicyLearner(ms.replace_config(cfg, kappa_schedule=(0.7,)), 4)
    assert short.kappa(0.0) == short.kappa(0.9) == 0.7  # a shorter schedule holds its last value


# ------------------------------------------ class shares that minimise the full-pass term's variance
def _population(seed=0):
    """Four classes with different sizes and loss scales; inside each class an informative,
    unequal draw distribution g (as the soft top-k gives)."""
    rng = np.random.default_rng(seed)
    sizes, scales = [200, 100, 60, 40], [0.3, 1.0, 2.0, 0.6]
    labels = np.repeat(np.arange(4), sizes)
    y = np.concatenate([np.exp(rng.normal(np.log(s), 0.5, n)) for n, s in zip(sizes, scales)])
    g = np.concatenate([(lambda a: a / a.sum())(y[labels == c] ** 0.5) for c in range(4)])
    return labels, y, g


def _hh_variance(shares, labels, y, g, draws):
    """The exact variance of the Hansen-Hurwitz estimate of sum(y) / N with per-draw probability
    r_i = s_c g_i: (1/n)(sum y^2 / r - Y^2) / N^2."""
    r = np.asarray(shares)[labels] * g
    return (np.sum(y ** 2 / r) - y.sum() ** 2) / draws / len(y) ** 2


def test_variance_optimal_shares_minimise_the_variance_of_the_full_pass_term():
    """variance_optimal_shares, fed the RMS of w*y per class over simulated draws, returns the
    shares that minimise the exact variance: it matches the analytic optimum sqrt(A_c) /
    sum sqrt(A_c') within 0.02 (40,000 draws), no random point of the simplex does better, and
    it beats the current (proportional) shares."""
    labels, y, g = _population()
    n_draws, population = 40_000, len(y)
    shares = np.bincount(labels) / len(labels)  # current shares: proportional to class size
    rng = np.random.default_rng(1)
    r = shares[labels] * g
    drawn = rng.choice(population, size=n_draws, p=r)
    w = 1.0 / (population * n_draws * r[drawn])  # draw_weights with pool_prob = 1
    rms = np.array([np.sqrt(np.mean((w * y[drawn])[labels[drawn] == c] ** 2)) for c in range(4)])
    new = mc.variance_optimal_shares(rms, shares)
    a = np.array([np.sum(y[labels == c] ** 2 / g[labels == c]) for c in range(4)])
    optimum = np.sqrt(a) / np.sqrt(a).sum()
    np.testing.assert_allclose(new, optimum, atol=0.02)
    best = _hh_variance(optimum, labels, y, g, 64)
    for point in rng.dirichlet(np.ones(4), size=2000):
        assert _hh_variance(point, labels, y, g, 64) >= best * (1 - 1e-9)
    assert _hh_variance(new, labels, y, g, 64) < 0.9 * _hh_variance(shares, labels, y, g, 64)


def test_move_class_weights_steps_toward_the_target_in_bounds(cfg):
    policy = mc.PolicyLearner(ms.replace_config(cfg, class_weight_lr=1.0), 4)
    shares = np.full(4, 0.25)
    out = policy.move_class_weights(shares, np.array([0.35, 0.3, 0.2, 0.15]))
    np.testing.assert_allclose(out, [0.35, 0.3, 0.2, 0.15], atol=1e-9)  # a full step lands on the target
    half = mc.PolicyLearner(ms.replace_config(cfg, class_weight_lr=0.5), 4)
    out = half.move_class_weights(shares, np.array([0.35, 0.3, 0.2, 0.15]))
    assert np.all(np.diff(out) < 0) and out[0] < 0.35 and out.sum() == pytest.approx(1.0)
    lo, hi = cfg.class_weight_bounds
    extreme = policy.move_class_weights(np.full(4, 0.25), np.array([0.97, 0.01, 0.01, 0.01]))
    assert np.all(extreme >= lo / 4 - 1e-9) and np.all(extreme <= hi / 4 + 1e-9)


# -------------------------------------------------- MC-Learn's policy update: its inputs, by hand
def _spy(monkeypatch, owner, name, calls):
    """Record each call's arguments of owner.name in `calls` (under its name) and pass it on."""
    original = getattr(owner, name)

    def spy(*args):
        calls.append((name, [np.array(a, dtype=float) if np.ndim(a) else float(a) for a in args]))
        return original(*args)

    monkeypatch.setattr(owner, name, spy)


@pytest.fixture
def small_mclearn(prepared):
    """MC-Learn on cpu-smoke (4 classes, mclearn preset: class_weight_lr 0.5) with 3 full-pass
    rows of 6 draws per step, every pool selected (the switch off: its pools are tests/test_switch.py's)."""
    cfg = ms.replace_config(ms.config_for_method(prepared.cfg, "mclearn"), full_rows=3, full_prob=0.5,
                            record_passes=False, select_switch=False)  # the by-hand pool has no rows to count
    ctx = ms.RunContext(cfg=cfg, model=deepcopy(prepared.base_model), train=prepared.train,
                        eval=prepared.eval, num_labels=4, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0), device_generator=torch.Generator().manual_seed(0))
    return ms.MCLearnMethod(ctx)


def test_policy_update_feeds_each_rule_the_statistics_of_the_pool_by_hand(small_mclearn, monkeypatch):
    """A pool of 5 members (classes 0, 0, 1, 2, 3) served 2 steps; each step's full passes went to
    pool positions (0, 2, 3) and (1, 2, 0), with (cheap loss, full loss, weight) per pass
    step 1: (0.5, 0.6, 0.2) (1.0, 1.2, 0.3) (2.0, 1.5, 0.1); step 2: (0.3, 0.2, 0.25)
    (0.8, 0.9, 0.15) (1.1, 1.6, 0.4). By hand:
      rank guard (update_tau): Spearman of the 6 pairs = 1 - 6 * 2 / (6 * 35) = 33/35;
      replay share (update_replay_share): the plan's ESS fraction, as the draw left it;
      class shares (variance_optimal_shares): per class the RMS of weight * full loss over its
        passes: class 0 (0.12, 0.05, 0.64), class 1 (0.36, 0.135), class 2 (0.15), class 3 none
        (nan: it keeps its share), with the pool's class shares of the draws (0.4, 0.3, 0.2, 0.1);
      class weights (move_class_weights): those shares and the optimal shares
        s_c RMS_c / sum (class 3 at the mean RMS), a step of (target / share) ** 0.5 from uniform.
    The statistics are read once and cleared."""
    trainer = small_mclearn
    trainer.pool = {"labels_host": np.array([0, 0, 1, 2, 3]), "class_share": np.array([0.4, 0.3, 0.2, 0.1])}
    kept = np.array([[0, 2, 3, 4, 4, 1], [1, 2, 0, 3, 3, 3]])  # the first 3 of each step had a full pass
    trainer.plan = mc.StepPlan(kept_pos=kept, kept_weight=np.zeros((2, 6)), full_weight=np.zeros((2, 3)),
                               widths=[8, 8], bucket_widths=np.array([8]), bucket_prob=np.array([1.0]),
                               draw_prob=np.full(5, 0.2))
    trainer.ess_fraction = 0.63
    trainer.step_stats = [torch.tensor([[0.5, 1.0, 2.0], [0.6, 1.2, 1.5], [0.2, 0.3, 0.1]]),
                          torch.tensor([[0.3, 0.8, 1.1], [0.2, 0.9, 1.6], [0.25, 0.15, 0.4]])]
    calls = []
    for name in ("update_tau", "update_replay_share", "move_class_weights"):
        _spy(monkeypatch, trainer.policy, name, calls)
    _spy(monkeypatch, mc, "variance_optimal_shares", calls)
    tau, rho = trainer.policy.tau, trainer.policy.replay_share
    trainer._update_policy()
    got = dict(calls)
    assert [name for name, _ in calls] == ["update_tau", "update_replay_share", "variance_optimal_shares", "move_class_weights"]
    assert got["update_tau"][0] == pytest.approx(33 / 35, rel=1e-6)
    assert got["update_replay_share"][0] == pytest.approx(0.63)
    rms = np.sqrt([np.mean(np.square([0.12, 0.05, 0.64])), np.mean(np.square([0.36, 0.135])), 0.15 ** 2])
    shares = [0.4, 0.3, 0.2, 0.1]
    scaled, given_shares = got["variance_optimal_shares"]
    np.testing.assert_allclose(scaled[:3], rms, rtol=1e-6)
    assert np.isnan(scaled[3])
    np.testing.assert_allclose(given_shares, shares)
    target = np.array(shares) * np.append(rms, rms.mean())
    target /= target.sum()
    np.testing.assert_allclose(got["move_class_weights"][0], shares)
    np.testing.assert_allclose(got["move_class_weights"][1], target, rtol=1e-6)
    moved = 0.25 * np.sqrt(target / shares)
    np.testing.assert_allclose(trainer.policy.class_weights, moved / moved.sum(), rtol=1e-6)  # inside the bounds
    assert trainer.policy.tau == pytest.approx(0.9 * tau) and trainer.policy.replay_share == pytest.approx(1.25 * rho)
    assert trainer.step_stats == []


def test_a_refresh_updates_the_policy_from_the_last_pool_then_draws_the_next_with_it(small_mclearn, monkeypatch):
    """Real steps on cpu-smoke: at the step that starts a new pool, the policy is updated first,
    from the statistics of the steps the last pool served and that pool's labels, ESS fraction
    and class shares (recomputed here from what the steps returned), and the refresh comes after:
    the new pool is drawn with the updated class weights (its class quotas), its draw mixes in
    the updated replay share, its class shares are the draw probabilities summed per class, its
    ESS fraction is the mean over its steps of ESS / full_rows, and it starts the statistics anew."""
    trainer = small_mclearn
    ctx, every = trainer.ctx, trainer.ctx.cfg.refresh_every
    trainer.refresh(0.0)
    ms.build_optimization(ctx, trainer)
    for i in range(every):
        trainer.step(i)
    old_pool, old_plan, ess = trainer.pool, trainer.plan, trainer.ess_fraction
    stats = torch.stack(trainer.step_stats).numpy()  # [steps, 3, full]
    cheap, full, weight = (stats[:, k].ravel() for k in range(3))
    labels = old_pool["labels_host"][old_plan.kept_pos[:, : trainer.full_rows]].ravel()
    calls = []
    for name in ("update_tau", "update_replay_share", "move_class_weights", "refresh"):
        _spy(monkeypatch, trainer.policy if name != "refresh" else trainer, name, calls)
    trainer.step(every)
    assert [name for name, _ in calls] == ["update_tau", "update_replay_share", "move_class_weights", "refresh"]
    got = dict(calls)
    assert got["update_tau"][0] == pytest.approx(mc.spearman(cheap, full), abs=1e-9)
    assert got["update_replay_share"][0] == pytest.approx(ess)
    np.testing.assert_allclose(got["move_class_weights"][0], old_pool["class_share"])
    rms = np.array([np.sqrt(np.mean((weight * full)[labels == c] ** 2)) for c in range(4)])
    target = old_pool["class_share"] * np.where(np.isfinite(rms), rms, np.nanmean(rms))
    np.testing.assert_allclose(got["move_class_weights"][1], target / target.sum(), rtol=1e-5)
    pool = trainer.pool  # the next pool, drawn with the updated policy
    assert pool is not old_pool and pool["replay_share"] == trainer.policy.replay_share
    quotas = trainer.stream.quotas(trainer.pool_size(trainer.policy.kappa(every)), trainer.policy.class_weights)
    assert np.bincount(pool["labels_host"], minlength=4).tolist() == quotas.tolist()
    draw = (1 - pool["replay_share"]) * pool["candidate_prob"] + pool["replay_share"] / len(pool["rows"])
    np.testing.assert_allclose(pool["class_share"], np.bincount(pool["labels_host"], weights=draw, minlength=4))
    w = trainer.plan.full_weight
    assert trainer.ess_fraction == pytest.approx(np.mean(w.sum(1) ** 2 / (w ** 2).sum(1)) / trainer.full_rows)
    assert len(trainer.step_stats) == 1  # the new pool's first step
