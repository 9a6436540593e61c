"""Section 5: the policy learner (ESS, tau, rho, class weights, kappa schedule)."""
import math

import numpy as np
import pytest

import mclearn_core as mc


@pytest.fixture
def cfg():
    return mc.Config()  # tau (0.5, 4.0), rho (0.05, 0.5), class weights (0.5, 2.0), guard 0.8


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
    assert pl.update_rho(0.3) == pytest.approx(cfg.rho_init * 1.25)  # 0.3 < target 0.7
    for _ in range(50):
        pl.update_rho(0.1)
    assert pl.rho == cfg.rho_bounds[1]
    assert pl.update_rho(0.9) == pytest.approx(0.95 * cfg.rho_bounds[1])
    for _ in range(200):
        pl.update_rho(0.9)
    assert pl.rho == cfg.rho_bounds[0]


def test_class_weights_move_toward_more_variance_per_cost(cfg):
    pl = mc.PolicyLearner(cfg, 4)
    var_cheap, var_gap, q = np.ones(4), np.ones(4), np.full(4, 0.25)
    var_gap[2] = 4.0  # class 2: more estimator variance at the same cost
    w = pl.update_class_weights(var_cheap, var_gap, q, cost_head=0.1, cost_full=1.0)
    assert w.sum() == pytest.approx(1.0)
    assert w[2] > 0.25 and np.all(w[[0, 1, 3]] < 0.25) and w[2] == w.max()
    # same variance, higher cost per example (higher q_c) -> less weight
    pl2 = mc.PolicyLearner(cfg, 3)
    w2 = pl2.update_class_weights(np.ones(3), np.zeros(3), np.array([0.1, 0.1, 0.9]), 0.1, 1.0)
    assert w2[2] < w2[0] == pytest.approx(w2[1])
    # equal gains leave the weights uniform
    pl3 = mc.PolicyLearner(cfg, 4)
    np.testing.assert_allclose(pl3.update_class_weights(np.ones(4), np.ones(4), q, 0.1, 1.0), 0.25)


def test_class_weights_stay_normalized_and_in_bounds_for_moderate_updates(cfg):
    pl = mc.PolicyLearner(cfg, 4)
    rng = np.random.default_rng(0)
    lo, hi = cfg.class_weight_bounds
    for _ in range(30):
        w = pl.update_class_weights(rng.random(4) + 0.5, rng.random(4) + 0.5, np.full(4, 0.25), 0.1, 1.0)
        assert w.sum() == pytest.approx(1.0)
        assert np.all(w >= lo / 4 - 1e-12) and np.all(w <= hi / 4 + 1e-12)


@pytest.mark.parametrize("num_classes", [2, 4])
def test_class_weights_in_bounds_under_persistent_pressure(cfg, num_classes):
    pl = mc.PolicyLearner(cfg, num_classes)
    lo, hi = cfg.class_weight_bounds
    var_gap = np.ones(num_classes)
    var_gap[0] = 100.0  # class 0 always has by far the most variance per cost
    for _ in range(200):
        w = pl.update_class_weights(np.ones(num_classes), var_gap, np.full(num_classes, 0.25), 1.0, 1.0)
    assert w.sum() == pytest.approx(1.0)
    assert w.min() >= lo / num_classes - 1e-9 and w.max() <= hi / num_classes + 1e-9, w


def test_kappa_schedule(cfg):
    pl = mc.PolicyLearner(cfg, 4)  # schedule (0.6, 0.5, 0.4), switching at progress 0.4 and 0.8
    expected = {0.0: 0.6, 0.39: 0.6, 0.4: 0.5, 0.79: 0.5, 0.8: 0.4, 1.0: 0.4}
    assert {p: pl.kappa(p) for p in expected} == expected
    short = mc.PolicyLearner(mc.replace_config(cfg, kappa_schedule=(0.7,)), 4)
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
    policy = mc.PolicyLearner(mc.replace_config(cfg, class_weight_lr=1.0), 4)
    shares = np.full(4, 0.25)
    out = policy.move_class_weights(shares, np.array([0.35, 0.3, 0.2, 0.15]))
    np.testing.assert_allclose(out, [0.35, 0.3, 0.2, 0.15], atol=1e-9)  # a full step lands on the target
    half = mc.PolicyLearner(mc.replace_config(cfg, class_weight_lr=0.5), 4)
    out = half.move_class_weights(shares, np.array([0.35, 0.3, 0.2, 0.15]))
    assert np.all(np.diff(out) < 0) and out[0] < 0.35 and out.sum() == pytest.approx(1.0)
    lo, hi = cfg.class_weight_bounds
    extreme = policy.move_class_weights(np.full(4, 0.25), np.array([0.97, 0.01, 0.01, 0.01]))
    assert np.all(extreme >= lo / 4 - 1e-9) and np.all(extreme <= hi / 4 + 1e-9)
