"""Section 5: what MC-Learn's draw prefers, with fixed seeds and stated tolerances. The unbiasedness
tests (test_cv_trainer.py, test_variants.py) hold for any known draw probability; these hold the
draw to its design: how the temperature sharpens the soft top-k, how systematic (once) draws spread
over a pool, and how many full passes a plan's once-draws give against the plan's own count."""
import math
from copy import deepcopy

import numpy as np
import pytest
import torch

import mclearn_core as mc
import mcstudy as ms


def soft_topk_by_hand(scores: np.ndarray, labels: np.ndarray, kappa: float, tau: float) -> np.ndarray:
    """The soft top-k membership inside each class: sigmoid((s - t_c) / (0.05 tau)), t_c the k-th largest
    score of class c, k = round(kappa x class size)."""
    keep = np.empty(len(scores))
    for c in np.unique(labels):
        s = scores[labels == c]
        threshold = np.sort(s)[::-1][round(kappa * len(s)) - 1]
        keep[labels == c] = 1.0 / (1.0 + np.exp(-(s - threshold) / (0.05 * tau)))
    return keep


# ------------------------------------------------------------------------------------- the temperature
@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0])
def test_soft_topk_by_hand_values(tau):
    """k = 3 of 5 scores: the threshold is the third largest, 0.5; a score d = 0.05 tau ln 3 above it
    gets sigmoid(ln 3) = 3/4, one d below 1/4, the threshold itself 1/2 (to 1e-12)."""
    d = 0.05 * tau * math.log(3)
    scores = np.array([0.5 + d, 0.5, 0.5 - d, 0.05, 0.95])
    keep = mc.soft_topk_keep_prob(scores, k=3, tau=tau)
    np.testing.assert_allclose(keep[:3], [0.75, 0.5, 0.25], rtol=1e-12)
    np.testing.assert_allclose(keep[3:], 1 / (1 + np.exp(-np.array([-0.45, 0.45]) / (0.05 * tau))), rtol=1e-12)


def test_the_share_of_draws_on_high_score_rows_follows_the_temperature():
    """A pool of 2 classes x 60 rows on different score scales, kappa 0.25 (the top 15 of each class are
    the high rows), replay share 0.2. For each tau in the policy's range the draw probabilities are
    (1 - 0.2) x soft top-k / its sum + 0.2 / 120 (to 1e-12), and over 400 steps x 32 draws (12,800,
    one width: independent draws) the share on the high rows lies within 4 binomial sd (<= 0.0045) of
    that formula's share. The shares fall as tau rises (0.78, 0.68, 0.53, 0.41), each step by over
    20 sd, so a temperature applied the other way, or left out, is seen."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    scores = np.r_[rng.random(60), 0.3 + 0.4 * rng.random(60)]
    high = np.zeros(120, dtype=bool)
    for c in (0, 1):
        rows = np.flatnonzero(labels == c)
        high[rows[np.argsort(scores[rows])[-15:]]] = True
    shares = []
    for tau in (0.5, 1.0, 2.0, 4.0):
        keep = soft_topk_by_hand(scores, labels, 0.25, tau)
        by_hand = 0.8 * keep / keep.sum() + 0.2 / 120
        candidate = mc.candidate_draw_probs(scores, labels, kappa=0.25, tau=tau)
        np.testing.assert_allclose(mc.mix_replay(candidate, 0.2), by_hand, rtol=1e-12, atol=1e-15)
        plan = mc.draw_step_plan(candidate, 0.2, np.full(120, 0.5), np.full(120, 20), population=240, steps=400,
                                 kept=32, full=16, rng=np.random.default_rng(1), pad_multiple=8, cap=64, w_clip=None)
        share = by_hand[high].sum()
        sd = math.sqrt(share * (1 - share) / plan.kept_pos.size)
        assert high[plan.kept_pos].mean() == pytest.approx(share, abs=4 * sd), tau
        shares.append(share)
    assert np.all(np.diff(shares) < -20 * 0.0045)


# --------------------------------------------------------------------------- systematic (once) draws
def test_systematic_points_fall_on_the_rows_in_random_order():
    """40 rows of expected count 1/2 (20 points): no row gets two, and the rows are laid out in a random
    order, so every pair of rows is drawn together equally often, (n - 2) / (n - 1) / 4 = 0.2436. In
    index order each pair of neighbours would hold one point (together 0) and rows two apart would
    go together half the time. 4,000 draws; the mean over the 39 (38) pairs within 0.02 (sd 0.001)."""
    rng = np.random.default_rng(0)
    counts = np.array([mc.systematic_counts(np.full(40, 0.5), rng) for _ in range(4000)])
    assert counts.max() == 1 and (counts.sum(1) == 20).all()
    together = 38 / 39 / 4
    assert (counts[:, :-1] * counts[:, 1:]).mean() == pytest.approx(together, abs=0.02)
    assert (counts[:, :-2] * counts[:, 2:]).mean() == pytest.approx(together, abs=0.02)


def test_once_positions_mix_the_rows_of_a_step_and_shuffle_the_steps():
    """A pool of 4 classes x 32 rows, stored class by class (as CandidateStream.next_pool returns them),
    uniform draw probabilities, 8 steps of 8 full passes (64 of 128 rows, each expected 1/2):
    - one width: every step's full rows are distinct rows of the pool, from 3.3 or more classes on
      average over 200 plans (a random split gives about 3.7; rows taken in index order give about 1);
    - widths 16-40 by row: the steps come in random order of width (the correlation of step index and
      width near 0: |mean| < 0.1 over 200 plans, sd of the mean about 0.03), not narrowest first (0.9)."""
    rng = np.random.default_rng(0)
    classes = np.repeat(np.arange(4), 32)
    p = np.full(128, 1 / 128)
    mixed, rank = [], []
    for _ in range(200):
        bucket, positions = mc.once_positions(p, np.full(128, 16), np.array([16]), steps=8, kept=12, full=8, rng=rng)
        full = positions[:, :8]
        assert len(np.unique(full)) == 64 and (bucket == 0).all()
        mixed.append(np.mean([len(np.unique(classes[step])) for step in full]))
        widths = 16 + 8 * (np.arange(128) % 4)
        bucket, _ = mc.once_positions(p, widths, np.array([16, 24, 32, 40]), steps=8, kept=12, full=8, rng=rng)
        rank.append(np.corrcoef(np.arange(8), bucket)[0, 1])
    assert np.mean(mixed) > 3.3
    assert abs(np.mean(rank)) < 0.1


# ----------------------------------------------------------------- full passes against the plan's count
def once_trainer(prepared) -> mc.MCLearn:
    """An MCLearn (once_draws) on the cpu-smoke training set (480 rows, 4 classes): 8 full-pass rows of 16
    draws per step, pools serving 4 steps at kappa 0.5, replay share 0.2, once_floor 0.1."""
    cfg = ms.replace_config(prepared.cfg, full_rows=8, full_prob=0.5, refresh_every=4, w_clip=0.0, kappa_schedule=(0.5,),
                            replay_share_init=0.2, replay_share_bounds=(0.2, 0.2), once_draws=True, once_floor=0.1)
    ctx = ms.RunContext(cfg=cfg, model=deepcopy(prepared.base_model).eval(), train=prepared.train,
                        eval=prepared.eval, num_labels=4, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0), device_generator=torch.Generator().manual_seed(0))
    return ms.MCLearnMethod(ctx)


def test_once_draws_give_the_plans_own_count_of_full_passes(prepared):
    """A pool is sized so that its steps' full passes, refresh_every x full_rows, reach kappa of it (to a
    rounding of the pool size). With an uneven candidate distribution (Dirichlet 0.3) set on a real pool,
    each row's expected count is c_i = D p'_i, p' = once_draw_probs(mix_replay(...), D, once_floor) sized
    from the plan's own count D = refresh_every x full_rows (here 32 of a 64-row pool): counts sum to
    D, none above 1 (the high rows' pass is certain), none below the floor. Over 300 plans of
    MCLearn.draw each plan's full passes are D distinct rows, a row with c_i = 1 is in every plan, and
    each row's mean count lies within 4 sd (sqrt(c (1 - c) / 300)) of c_i."""
    trainer = once_trainer(prepared)
    cfg, full = trainer.ctx.cfg, trainer.full_rows
    draws = cfg.refresh_every * full
    for kappa in (0.6, 0.5, 0.4):
        assert abs(trainer.pool_size(kappa) * kappa - draws) <= kappa / 2 + 1e-9
    trainer.refresh(0.5)
    pool = trainer.pool
    size = len(pool["rows"])
    assert size == trainer.pool_size(0.5) == 64
    pool["candidate_prob"] = np.random.default_rng(5).dirichlet(np.full(size, 0.3))
    expected = draws * mc.once_draw_probs(mc.mix_replay(pool["candidate_prob"], pool["replay_share"]), draws,
                                          cfg.once_floor)
    assert expected.sum() == pytest.approx(draws) and expected.max() == pytest.approx(1.0)
    assert expected.min() >= cfg.once_floor - 1e-9
    sure = expected > 1 - 1e-9
    assert 3 <= sure.sum() < draws  # the cap binds on some rows, not on all
    counts = np.zeros(size)
    for _ in range(300):
        trainer.draw()
        taken = trainer.plan.kept_pos[:, :full].ravel()
        assert len(taken) == draws and len(np.unique(taken)) == draws
        counts += np.bincount(taken, minlength=size)
    mean = counts / 300
    assert (mean[sure] == 1.0).all()
    sd = np.sqrt(expected * (1 - expected) / 300)
    assert np.all(np.abs(mean - expected) <= 4 * sd + 1e-9)
