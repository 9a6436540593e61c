"""Section 5, `mclearn`: cost meter and budget solver (q* and the kept size M*)."""

import time

import numpy as np
import pytest
import torch

import mclearn_core as mc
import mclearn_paper as mp


def test_optimal_full_prob_formula_and_bounds():
    bounds = (0.12, 0.33)
    var_gap = np.array([0.04, 0.09, 1.0, 1e-6])
    var_cheap = np.array([1.0, 1.0, 1.0, 1.0])
    q = mp.optimal_full_prob(var_gap, var_cheap, cost_head=0.5, cost_full=2.0, bounds=bounds)
    raw = np.sqrt(var_gap * 0.5 / (var_cheap * 2.0))  # 0.1, 0.15, 0.5, 0.0005
    np.testing.assert_allclose(q[1], raw[1])  # inside the bounds: exactly the formula
    assert q[0] == bounds[0] and q[3] == bounds[0] and q[2] == bounds[1]
    assert np.all((q >= bounds[0]) & (q <= bounds[1]))
    # zero cheap variance does not divide by zero
    assert mp.optimal_full_prob(np.ones(1), np.zeros(1), 1.0, 1.0, bounds)[0] == bounds[1]


def test_optimal_full_prob_random_inputs_inside_bounds():
    rng = np.random.default_rng(0)
    for _ in range(100):
        vg, vc = rng.exponential(size=(2, 5))
        ch, cf = rng.exponential(size=2)
        q = mp.optimal_full_prob(vg, vc, ch, cf, (0.1, 0.3))
        raw = np.sqrt(vg * ch / (vc * cf))
        inside = (raw > 0.1) & (raw < 0.3)
        np.testing.assert_allclose(q[inside], raw[inside])
        assert np.all((q >= 0.1) & (q <= 0.3))


COSTS = {"score": 0.01, "head": 0.002, "full": 0.1, "fixed": 0.5}


def test_cost_meter_ema_and_cpu_timing(monkeypatch):
    """The EMA weighs the newest observation 1 - decay; a timed CPU region of 4 examples records its
    seconds per example, read from time.perf_counter (a fake clock here: 0.02 s pass inside)."""
    meter = mc.CostMeter(torch.device("cpu"), decay=0.9)
    meter.observe("full", 1.0)
    meter.observe("full", 2.0)
    assert meter.ema["full"] == pytest.approx(0.9 * 1.0 + 0.1 * 2.0)
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    with meter.timed("score", count=4):
        now[0] += 0.02
    assert meter.flush()["score"] == pytest.approx(0.005) and meter.seconds["score"] == pytest.approx(0.02)


def test_steps_within_pays_a_refresh_before_every_refresh_every_steps():
    """n steps at 1 s with a 2.5 s refresh before steps 1, 5, 9, ... cost n + 2.5 ceil(n / 4)."""
    assert mc.steps_within(13.5, 1.0, 2.5, 4, most=100) == 8  # 8 + 5 = 13; 9 steps: 9 + 7.5
    assert mc.steps_within(12.9, 1.0, 2.5, 4, most=100) == 7  # 8 steps would cost 13
    assert mc.steps_within(3.4, 1.0, 2.5, 4, most=100) == 0  # not even the first refresh and step
    assert mc.steps_within(-1.0, 1.0, 2.5, 4, most=100) == 0
    assert mc.steps_within(1e9, 1.0, 2.5, 4, most=10) == 10  # never more than `most`
