"""Sections 5-6: soft top-k, candidate/inclusion probabilities, draws, HT weights, candidate stream."""
import numpy as np
import pytest

import mclearn_core as mc
import mclearn_paper as mp


def test_draw_kept_matches_inclusion_probs():
    """Empirical inclusion over 20,000 draws (numpy seed 0) vs 1-(1-cand_prob)(1-replay_prob):
    within 3 binomial sigmas + 1e-3 for every candidate."""
    rng = np.random.default_rng(0)
    cand_prob = np.concatenate([[0.0, 1.0], rng.random(38)])
    replay_prob = 0.15
    draws = 20_000
    counts = np.zeros(len(cand_prob))
    for _ in range(draws):
        counts += mp.draw_kept(cand_prob, replay_prob, rng)
    freq = counts / draws
    pi = mp.inclusion_probs(cand_prob, replay_prob)
    sigma = np.sqrt(pi * (1 - pi) / draws)
    assert np.all(np.abs(freq - pi) <= 3 * sigma + 1e-3), np.max(np.abs(freq - pi) / (sigma + 1e-12))
    # the check has power: the candidate path alone (cand_prob) is clearly wrong
    assert np.sum(np.abs(freq - cand_prob) > 5 * sigma + 1e-3) > 30


def test_inclusion_probs_per_example_replay():
    cand_prob, replay_prob = np.array([0.2, 0.5]), np.array([0.5, 0.0])
    np.testing.assert_allclose(mp.inclusion_probs(cand_prob, replay_prob), [0.6, 0.5])


def test_draw_kept_with_given_uniforms():
    cand_prob, replay_prob = np.array([0.3, 0.3, 0.3, 0.0]), 0.2
    u_c, u_r = np.array([0.1, 0.5, 0.5, 0.0]), np.array([0.9, 0.1, 0.9, 0.1])
    keep = mp.draw_kept(cand_prob, replay_prob, np.random.default_rng(0), uniforms=(u_c, u_r))
    assert keep.tolist() == [True, True, False, True]
    # antithetic partner (1 - u): each example's marginal inclusion is unchanged
    rng = np.random.default_rng(5)
    pi = mp.inclusion_probs(np.full(4000, 0.3), 0.2)
    u = (rng.random(4000), rng.random(4000))
    anti = mp.draw_kept(np.full(4000, 0.3), 0.2, rng, uniforms=(1 - u[0], 1 - u[1]))
    assert abs(anti.mean() - pi[0]) < 4 * np.sqrt(pi[0] * (1 - pi[0]) / 4000)


def test_soft_topk_monotone_and_half_at_threshold():
    rng = np.random.default_rng(0)
    scores = rng.random(101)
    k = 30
    probs = mc.soft_topk_keep_prob(scores, k, tau=1.0)
    order = np.argsort(scores)
    assert np.all(np.diff(probs[order]) >= 0)  # monotone in the score
    threshold = np.sort(scores)[-k]  # the k-th largest score
    assert probs[scores == threshold][0] == pytest.approx(0.5)
    assert np.all(probs[scores > threshold] > 0.5) and np.all(probs[scores < threshold] < 0.5)
    # a smaller temperature is sharper
    sharp = mc.soft_topk_keep_prob(scores, k, tau=0.1)
    assert sharp[order[-1]] >= probs[order[-1]] and sharp[order[0]] <= probs[order[0]]
    assert np.sum(sharp > 0.99) >= k - 3 and np.sum(sharp > 0.99) <= k
    assert mc.soft_topk_keep_prob(np.array([]), 3, 1.0).size == 0


def test_candidate_probs_sum_and_per_class_topk():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 50)
    scores = rng.random(200) + labels  # classes on different score scales
    probs = mc.candidate_probs(scores, labels, kappa=0.4, tau=1.0, expected_kept=30.0)
    assert probs.sum() == pytest.approx(30.0)  # no cap at 1 is hit at this size
    assert np.all((probs >= 0) & (probs <= 1))
    for c in range(4):  # the top-k is per class, so every class keeps a share
        rows = labels == c
        assert probs[rows].sum() == pytest.approx(30.0 / 4, rel=0.05)
    # a large expected size is capped at 1 per example (documented: the mass lost to the cap is
    # not redistributed, so the sum falls short of expected_kept; here 91.5 of 150)
    big = mc.candidate_probs(scores, labels, kappa=0.4, tau=1.0, expected_kept=150.0)
    assert big.max() == 1.0 and 80.0 < big.sum() < 150.0


def test_ht_weights_and_clipping():
    pi = np.array([0.5, 0.1, 0.01, 1.0])
    w = mp.ht_weights(pi, population=100, w_clip=None)
    np.testing.assert_allclose(w, 1.0 / (100 * pi))
    expected_kept = 20.0
    clipped = mp.ht_weights(pi, population=100, w_clip=1.5, expected_kept=expected_kept)
    cap = 1.5 / expected_kept
    assert clipped.max() == pytest.approx(cap)
    np.testing.assert_allclose(clipped, np.minimum(w, cap))
    assert clipped[0] == w[0] and clipped[2] == cap  # only the large weights change


def test_candidate_stream_covers_classes_and_reports_pool_prob():
    labels = np.repeat(np.arange(3), [60, 30, 10])
    stream = mc.CandidateStream(labels, np.random.default_rng(0))
    weights = np.ones(3) / 3
    seen = []
    for _ in range(5):
        rows, prob = stream.next_pool(20, weights)
        assert len(set(rows.tolist())) == len(rows)  # no repeats inside a pool
        quotas = stream.quotas(20, weights)
        assert np.bincount(labels[rows], minlength=3).tolist() == quotas.tolist()
        np.testing.assert_allclose(prob, (quotas / np.bincount(labels))[labels[rows]])
        seen.extend(rows.tolist())
    # five pools of 20 from 100 examples: one full pass, each example exactly once
    assert sorted(seen) == list(range(100))
    # tilting toward class 2 raises its quota
    assert stream.quotas(20, np.array([0.2, 0.2, 0.6]))[2] > stream.quotas(20, weights)[2]
