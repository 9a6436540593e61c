"""Section 6, `mclearn-paper` (MCLearnPaper): each mechanism of the published algorithm on a tiny
constructed case (docs/deviations.md, "Deviations from the published MC-Learn", names these tests)."""
import math
from copy import deepcopy

import numpy as np
import pytest
import torch

import mclearn_core as mc
import mclearn_paper as mp
import mcstudy as ms


class ZeroUniforms:
    """A numpy generator stand-in whose uniforms are all 0 (every Bernoulli draw with p > 0 fires)."""

    def __init__(self, seed=0):
        self.inner = np.random.default_rng(seed)

    def random(self, size):
        return np.zeros(size)

    def choice(self, *args, **kwargs):
        return self.inner.choice(*args, **kwargs)

    def integers(self, *args, **kwargs):
        return self.inner.integers(*args, **kwargs)


def paper_trainer(prepared, **changes):
    """An MCLearnPaper on the cpu-smoke data (480 rows, 4 classes, batch 16) with a fresh model copy."""
    cfg = ms.replace_config(ms.config_for_method(prepared.cfg, "mclearn-paper"), **changes)
    ctx = ms.RunContext(cfg=cfg, model=deepcopy(prepared.base_model).train(), train=prepared.train,
                        eval=prepared.eval, num_labels=len(prepared.label_names), device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0), device_generator=torch.Generator().manual_seed(0))
    return ms.MCLearnPaperMethod(ctx)


# ----------------------------------------------------------------------------- replay
def test_fifo_replay_keeps_the_last_rows_per_class():
    replay = mp.FifoReplay(num_classes=2, capacity=6)  # 3 rows per class
    assert len(replay.pool()) == 0  # empty before the first refresh
    replay.add(np.array([1, 2, 3]), np.array([0, 0, 1]))
    replay.add(np.array([4, 5, 2]), np.array([0, 0, 0]))  # row 2 again: held twice, listed once
    replay.add(np.array([6, 7]), np.array([0, 1]))
    # class 0 queue after [1, 2, 4, 5, 2, 6]: its last three, 5, 2, 6; class 1: 3, 7
    assert replay.pool().tolist() == [2, 3, 5, 6, 7]
    assert mp.replay_count(0.1, 480, 5) == 5 and mp.replay_count(0.001, 480, 5) == 0  # R = min(round(rho n), |P|)
    assert mp.replay_count(0.002, 480, 5) == 1  # 0.96 rounds to 1 (truncating would give 0)


def test_replay_pool_after_three_refreshes(prepared):
    """The pool P a refresh draws replay rows from holds the kept rows of the earlier refreshes
    (empty at the first), and with rho n >= |P| every row of P is kept."""
    trainer = paper_trainer(prepared)
    trainer.setup()
    kept_sets, pools = [], []
    for _ in range(3):
        kept = trainer.refresh(0.0, pool_hint=16)
        pools.append(set(trainer.pool["replay"].tolist()))
        kept_sets.append(set(kept["rows"].tolist()))
        assert kept["replay"] == len(pools[-1])  # rho n = 48 > |P|: R = |P|
        assert pools[-1] <= kept_sets[-1]
    assert pools[0] == set()
    assert pools[1] == kept_sets[0]
    assert pools[2] == kept_sets[0] | kept_sets[1]


# ----------------------------------------------------------------------------- weights
def test_weight_clip_is_absolute(prepared):
    """A kept candidate with keep probability 1e-7 (floored at 1e-6) has raw HT weight
    n_c / (n quota 1e-6) = 120 / (480 * 5 * 1e-6) = 5e4; the published clip caps it at 10 itself."""
    trainer = paper_trainer(prepared)
    trainer.rng = ZeroUniforms()
    rows = np.concatenate([trainer.by_class[c][:5] for c in range(4)])
    keep_prob = np.ones(20)
    keep_prob[0] = 1e-7
    trainer.pool = {"rows": rows, "labels": trainer.labels_host[rows], "quotas": np.full(4, 5),
                    "keep_prob": keep_prob, "replay": np.zeros(0, dtype=np.int64)}
    kept = trainer.draw(fallback=int(rows[0]))
    assert kept["rows"].tolist() == sorted(rows.tolist())
    first = kept["rows"].tolist().index(int(rows[0]))
    assert kept["w_raw"][first] == pytest.approx(120 / (480 * 5 * 1e-6))
    assert kept["w"][first] == 10.0  # the clip binds at an absolute 10
    others = np.delete(kept["w"], first)
    assert others == pytest.approx(np.full(19, 120 / (480 * 5)))  # 1 / (n q): q = quota / n_c
    assert np.array_equal(others, np.delete(kept["w_raw"], first))


def test_empty_kept_draw_keeps_the_fallback_row(prepared):
    trainer = paper_trainer(prepared)
    rows = trainer.by_class[0][:4]
    trainer.pool = {"rows": rows, "labels": trainer.labels_host[rows], "quotas": np.array([4, 1, 1, 1]),
                    "keep_prob": np.zeros(4), "replay": np.zeros(0, dtype=np.int64)}
    kept = trainer.draw(fallback=int(rows[2]))
    assert kept["rows"].tolist() == [int(rows[2])]


# ----------------------------------------------------------------------------- sampler
def test_soft_topk_is_the_raw_sigmoid():
    """k = round(0.5 * 4) = 2, threshold = the 0.5 quantile = 0.25 (interpolated), so the values
    are sigmoid((s - 0.25) / 0.05) = sigmoid(-3, -1, 1, 3): no rescaling to an expected size."""
    probs = mp.published_soft_topk(np.array([0.1, 0.2, 0.3, 0.4]), kappa=0.5, tau=1.0)
    expected = 1 / (1 + np.exp(-np.array([-3.0, -1.0, 1.0, 3.0])))
    assert probs == pytest.approx(expected, rel=1e-12)
    assert mp.published_soft_topk(np.array([0.4, 0.1]), kappa=0.6, tau=2.0) == pytest.approx(
        1 / (1 + np.exp(-np.array([0.15, -0.15]) / 0.1)))  # k = 1: threshold at the 0.5 quantile 0.25


def test_refresh_keeps_the_raw_soft_topk_per_class(prepared):
    trainer = paper_trainer(prepared)
    trainer.refresh(0.0, pool_hint=16)
    pool = trainer.pool
    for c in range(4):
        rows = pool["labels"] == c
        assert pool["keep_prob"][rows] == pytest.approx(
            mp.published_soft_topk(pool["difficulty"][rows], 0.6, trainer.policy.tau))


def test_pool_is_at_least_one_batch():
    assert mp.published_pool_size(pool_hint=4, batch_size=32) == 32
    assert mp.published_pool_size(pool_hint=1000, batch_size=32) == 40
    cfg = ms.config_for_method(ms.make_config("h100"), "mclearn-paper")  # min_pool_mult 1.5: 320 rows
    costs = {"score": 1e-6, "head": 1e-3, "full": 1.0}  # a tiny budget: the floor decides
    hint = mp.published_pool_hint(cfg, costs, 32, 0.5, np.full(2, 0.5), np.full(2, 0.2), 0.1, 1e-3)
    assert hint == 384 and mp.published_pool_size(hint, cfg.batch_size) == 320


def test_first_refresh_draws_one_and_a_quarter_batches(prepared):
    trainer = paper_trainer(prepared)
    trainer.setup()
    ms.build_optimization(trainer.ctx, trainer)
    trainer.step(0)  # costs not measured yet: hint 1.5 B, pool min(1.25 B, 1.5 B) = 20
    assert len(trainer.pool["rows"]) == 20
    assert np.bincount(trainer.pool["labels"]).tolist() == [5, 5, 5, 5]  # a_c M per class


def test_full_pass_draw_forces_one_row():
    rng = np.random.default_rng(0)
    for _ in range(20):
        full = mp.published_full_draw(np.zeros(6), rng)
        assert full.sum() == 1
    assert mp.published_full_draw(np.ones(6), rng).all()


# ----------------------------------------------------------------------------- policy
def test_class_weight_update_by_hand():
    """g = (1 + 0.5/0.25)/(1 + 0.25*2) = 2 and (1 + 0.1/0.25)/1.5 = 0.9333; a_0 = 0.5 exp(0.2 (g_0 -
    mean g)) normalised = sigmoid(0.2 (2 - 0.9333)) = 0.55313 (raw gains: no division by the mean,
    no bounds)."""
    weights = mp.published_class_weights(np.array([0.5, 0.5]), np.array([1.0, 1.0]), np.array([0.5, 0.1]),
                                         np.array([0.25, 0.25]), 1.0, 2.0, eta=0.2)
    first = 1 / (1 + math.exp(-0.2 * (2.0 - 1.4 / 1.5)))
    assert weights == pytest.approx([first, 1 - first], rel=1e-9)
    # raw gains of seconds-scale costs move the weights far past the corrected bounds [0.5, 2] / C
    moved = mp.published_class_weights(np.full(4, 0.25), np.array([1.0, 0.1, 0.1, 0.1]), np.full(4, 0.1),
                                       np.full(4, 0.2), 1e-5, 1e-4, eta=0.2)
    assert np.isfinite(moved).all() and moved.sum() == pytest.approx(1.0)
    assert moved[0] == pytest.approx(1.0) and (moved[1:] < 1e-12).all()  # exp overflows: its limit, not NaN
    # g = 100 and ~0, eta 0.4: 0.5 exp(+-20), the second under the 1e-6 floor before normalising
    floored = mp.published_class_weights(np.array([0.5, 0.5]), np.array([1.0, 0.0]), np.array([0.0, 0.0]),
                                         np.array([1.0, 1.0]), 0.01, 0.0, eta=0.4)
    assert floored[1] == pytest.approx(1e-6 / (0.5 * math.exp(20) + 1e-6), rel=1e-6)


def test_ess_gate_cadence():
    due = [s for s in range(1, 50) if mp.published_refresh_due(s, 16, ess_raw=5.0, kept=10, ess_target=0.7)]
    assert due == [1, 17, 33, 49]  # step % N == 1 ...
    assert not any(mp.published_refresh_due(s, 16, ess_raw=7.0, kept=10, ess_target=0.7) for s in range(50))  # ... and ESS low
    assert [mp.published_cadence(n, 1.0, 0.8, (8, 32)) for n in (16, 20, 30, 32)] == [17, 22, 32, 32]
    assert [mp.published_cadence(n, 0.5, 0.8, (8, 32)) for n in (16, 9)] == [13, 8]


def test_refreshes_follow_the_adaptive_gate_and_rho_moves_every_step(prepared, monkeypatch):
    """With the ESS forced under target every step, refreshes fire where step % N == 1 with N
    growing x1.1 at each refresh from 16 (worked by hand: 1 -> N 17, 18 -> 18, 19 -> 19, 20 -> 20,
    21 -> 22, 23 -> 24, ..., 31 -> 32, 33 -> 32). Rho rises x1.25 every step (to its cap 0.9) and
    the class weights move every step, refresh or not."""
    monkeypatch.setattr(mp, "effective_sample_size", lambda weights: 0.0)
    trainer = paper_trainer(prepared, refresh_every=16)
    trainer.setup()
    ms.build_optimization(trainer.ctx, trainer, extra_steps=10)
    rhos, class_weights = [], []
    for i in range(40):
        trainer.step(i)
        rhos.append(trainer.policy.replay_share)
        class_weights.append(trainer.policy.class_weights.copy())
    assert trainer.refresh_steps == [1, 18, 19, 20, 21, 23, 25, 27, 29, 31, 33]
    assert trainer.cadence == 32
    # step 1 sees no kept set yet (ESS inf: rho decays once), then rises every step
    assert rhos[:4] == pytest.approx([0.095, 0.095 * 1.25, 0.095 * 1.25 ** 2, 0.095 * 1.25 ** 3])
    assert rhos[-1] == pytest.approx(0.9)
    assert all(not np.array_equal(a, b) for a, b in zip(class_weights[1:10], class_weights[2:11]))


def test_ess_gate_reads_the_raw_weights(prepared):
    """Raw weights [10, 10, 10, 1000] (ESS 1.06) are under the target 0.7 * 4, their clipped
    values [10, 10, 10, 10] (ESS 4) are not: on a step with step % N == 1 the pool refreshes."""
    trainer = paper_trainer(prepared)
    trainer.setup()
    ms.build_optimization(trainer.ctx, trainer)
    trainer.step(0)
    trainer.cadence = 2
    trainer.cache = {**trainer.cache, "w_raw": np.array([10.0, 10.0, 10.0, 1000.0]), "w": np.full(4, 10.0)}
    trainer.step(2)  # step 3: 3 % 2 == 1
    assert trainer.refresh_steps == [1, 3]


# ----------------------------------------------------------------------------- model paths
def test_scorer_runs_the_whole_encoder(prepared):
    """The scorer reads the hidden state of layer score_layer with every block run (published:
    output_hidden_states of the whole encoder), mean-pooled over the first score_max_length tokens."""
    trainer = paper_trainer(prepared, score_layer=1)
    model = trainer.ctx.model.eval()
    calls = []
    top = trainer.parts.layers[-1].register_forward_hook(lambda *args: calls.append(1))
    rows = np.arange(6)
    feats, probs = trainer.score(prepared.train, rows, training=False)
    top.remove()
    assert calls, "the top block did not run"
    batch = mc.make_batch(prepared.train, rows, trainer.ctx.cfg.score_max_length)
    with torch.no_grad():
        hidden = model.base_model(**mc.model_inputs(model, batch), output_hidden_states=True).hidden_states[1]
    assert feats == pytest.approx(mc.mean_pool(hidden, batch["attention_mask"]), abs=1e-6)
    assert probs.sum(-1) == pytest.approx(torch.ones(6))


def test_full_pass_and_eval_mean_pool_the_last_layer(prepared):
    trainer = paper_trainer(prepared)
    model = trainer.ctx.model.eval()
    rows = np.arange(8)
    batch = mc.make_batch(prepared.train, rows, mc.batch_width(prepared.train, rows, 8))
    with torch.no_grad():
        logits = trainer.full_logits(rows)
        hidden = model.base_model(**mc.model_inputs(model, batch)).last_hidden_state
        expected = mp.apply_head(trainer.parts.head, mc.mean_pool(hidden, batch["attention_mask"]))
        cls_path = model(**mc.model_inputs(model, batch)).logits
    assert logits == pytest.approx(expected, abs=1e-5)
    assert not torch.allclose(logits, cls_path, atol=1e-3)  # not the Hugging Face [CLS] path
    assert trainer.eval_model() is trainer.published
    assert ms.predict(trainer.eval_model(), prepared.eval, trainer.ctx.cfg, torch.device("cpu")).shape == (160, 4)


def test_distillation_is_weighted_by_teacher_confidence(prepared):
    """gamma T^2 sum w (1 - H(p_T)/log C) KL(p_T || p_S): a confident teacher row counts, a
    uniform teacher row (confidence 0) does not."""
    trainer = paper_trainer(prepared)
    assert mp.teacher_confidence(torch.tensor([[1.0, 0, 0, 0], [0.25] * 4])) == pytest.approx(torch.tensor([1.0, 0.0]))
    feats = torch.randn(2, trainer.ctx.model.config.dim)
    cheap = torch.randn(2, 4)
    weights = torch.tensor([0.3, 0.7])
    loss = trainer.distill_loss(feats, cheap, weights)
    temp, gamma = trainer.ctx.cfg.distill_temperature, trainer.ctx.cfg.distill_gamma
    with torch.no_grad():
        teacher = torch.softmax(mp.apply_head(trainer.teacher, feats) / temp, -1)
    student = torch.log_softmax(cheap / temp, -1)
    kl = (teacher * (teacher.log() - student)).sum(-1)
    confidence = 1 - (-(teacher * teacher.log()).sum(-1)) / math.log(4)
    assert float(loss) == pytest.approx(float(gamma * temp ** 2 * (weights * confidence * kl).sum()), rel=1e-5)
    assert float(confidence.min()) < 0.5  # an untrained head: the weight really is below 1


def test_frozen_layer_count():
    assert [mp.frozen_layer_count(p, 6, (0.3, 0.7)) for p in (0.0, 0.29, 0.3, 0.69, 0.7, 1.0)] == [4, 4, 3, 3, 0, 0]
    assert mp.frozen_layer_count(0.0, 6, ()) == 0 and mp.frozen_layer_count(0.0, 2, (0.3, 0.7)) == 0


def test_paper_lr_on_a100_class_presets():
    for preset in ("a100", "h100"):
        cfg = ms.make_config(preset)
        paper = ms.config_for_method(cfg, "mclearn-paper")
        assert paper.lr == 2e-5 and cfg.lr == 4e-5 and ms.config_for_method(cfg, "mclearn").lr == 4e-5
        assert paper.refresh_bounds == (16, 64) and paper.min_pool_mult == 1.5
    assert ms.config_for_method(ms.make_config("cpu"), "mclearn-paper").lr == 1e-3  # CPU presets: the preset's
