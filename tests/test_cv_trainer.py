"""Section 8: the control-variate estimator (unbiasedness, gradient, clipping bias, variance)
and the MC-Learn trainer end to end."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mclearn_core as mc
from conftest import read_jsonl

Z99 = 2.576  # two-sided 99% normal quantile


def _design(scores, labels, expected_kept=24.0, rho=0.2, kappa=0.5, tau=1.0):
    """The sampler's per-step design on a pool: soft top-k candidates plus replay."""
    q_cand = mc.candidate_probs(scores, labels, kappa, tau, (1 - rho) * expected_kept)
    q_rep = rho * expected_kept / len(scores)
    return q_cand, q_rep, mc.inclusion_probs(q_cand, q_rep)


def _draw(design, q_full, rng, w_clip=None):
    """One step: kept set K, HT weights for the pool mean (population = pool size), S ~ Bern(q)."""
    q_cand, q_rep, pi = design
    kept = np.flatnonzero(mc.draw_kept(q_cand, q_rep, rng))
    weights = mc.ht_weights(pi[kept], len(pi), w_clip, float(pi.sum()))
    full = rng.random(len(kept)) < q_full[kept]
    return torch.as_tensor(kept), torch.as_tensor(weights), torch.as_tensor(full)


def _estimates(l_f, l_h, design, q_full, draws, seed, w_clip=None):
    rng = np.random.default_rng(seed)
    lf, lh, q = (torch.as_tensor(a, dtype=torch.float64) for a in (l_f, l_h, q_full))
    cv, ht = np.empty(draws), np.empty(draws)
    for r in range(draws):
        k, w, full = _draw(design, q_full, rng, w_clip)
        cv[r] = mc.cv_estimate(lh[k], w, full, lf[k][full], q[k])
        ht[r] = mc.ht_estimate(w, full, lf[k][full], q[k])
    return cv, ht


@pytest.fixture(scope="module")
def pool():
    """A fixed pool of 200 per-example losses: heavy-tailed full losses (lognormal, sd > mean,
    like CE losses), a correlated cheap loss, an informative scorer, 4 classes, q = 0.25."""
    rng = np.random.default_rng(0)
    size = 200
    l_f = np.exp(rng.normal(-1.0, 1.2, size))
    return {
        "l_f": l_f,
        "l_h": l_f * np.exp(rng.normal(0.0, 0.2, size)),  # corr ~0.98 with l_f
        "scores": l_f * np.exp(rng.normal(0.0, 0.5, size)),
        "labels": np.arange(size) % 4,
        "q": np.full(size, 0.25),
    }


def test_cv_estimate_by_hand():
    w = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    l_h = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    full = torch.tensor([True, False, True])
    l_f = torch.tensor([1.5, 2.0], dtype=torch.float64)  # full losses of S, in K order
    q = torch.tensor([0.5, 0.5, 0.25], dtype=torch.float64)
    # sum_K w l_h = 0.5 + 0.5 + 0.75; corrections (1.5-1)*0.5/0.5 + (2-3)*0.25/0.25
    assert float(mc.cv_estimate(l_h, w, full, l_f, q)) == pytest.approx(1.75 + 0.5 - 1.0)
    assert float(mc.ht_estimate(w, full, l_f, q)) == pytest.approx(1.5 + 2.0)
    # with q = 1 and S = K the estimate is exactly sum_K w l_f, whatever the cheap loss is
    all_full = torch.ones(3, dtype=torch.bool)
    lf3 = torch.tensor([1.0, 4.0, 2.0], dtype=torch.float64)
    ones = torch.ones(3, dtype=torch.float64)
    assert float(mc.cv_estimate(l_h, w, all_full, lf3, ones)) == pytest.approx(float((w * lf3).sum()))


def test_estimators_are_unbiased_for_the_pool_mean(pool):
    """Mean over R=20,000 draws of cv_estimate and ht_estimate vs (1/P) sum l_f, within the
    99% CI mean +- 2.576 sd / sqrt(R). No clipping (w_clip=None), population = pool size."""
    design = _design(pool["scores"], pool["labels"])
    truth = pool["l_f"].mean()
    draws = 20_000
    cv, ht = _estimates(pool["l_f"], pool["l_h"], design, pool["q"], draws, seed=1)
    for name, est in (("cv", cv), ("ht", ht)):
        half_width = Z99 * est.std(ddof=1) / math.sqrt(draws)
        print(f"{name}: mean {est.mean():.5f}, truth {truth:.5f}, 99% half-width {half_width:.5f}")
        assert abs(est.mean() - truth) <= half_width, name


def test_clipping_biases_the_estimate(pool):
    """With w_clip=1.5 the expectation is sum_i pi_i min(1/(P pi_i), 1.5/E[|K|]) l_i != mean l.
    The exact bias is computed, printed and must be nonzero; the simulated mean (R=5,000) must
    match the clipped expectation within its 99% CI and miss the true mean."""
    design = _design(pool["scores"], pool["labels"])
    pi, l_f, size = design[2], pool["l_f"], len(pool["l_f"])
    truth = l_f.mean()
    cap = 1.5 / pi.sum()
    clipped_mean = float(np.sum(pi * np.minimum(1.0 / (size * pi), cap) * l_f))
    bias = clipped_mean - truth
    print(f"clipping bias at w_clip=1.5: {bias:+.5f} ({bias / truth:+.1%} of the mean {truth:.4f})")
    assert abs(bias) > 0.01 * truth  # clipping does bias (here by -7.5%)
    draws = 5_000
    cv, ht = _estimates(l_f, pool["l_h"], design, pool["q"], draws, seed=2, w_clip=1.5)
    for est in (cv, ht):
        half_width = Z99 * est.std(ddof=1) / math.sqrt(draws)
        assert abs(est.mean() - clipped_mean) <= half_width
        assert abs(est.mean() - truth) > half_width


@pytest.mark.parametrize("cheap", ["correlated", "independent"])
def test_control_variate_variance(pool, cheap):
    """Over R=4,000 draws (same K and S for both estimators), Var(CV) < Var(HT) when the cheap
    loss tracks the full loss (analytic ratio 0.27), and Var(CV) > Var(HT) when it is
    independent noise of the same scale (a permutation of l_f; analytic ratio 2.5: for losses
    with sd > mean, E(l_f - l_h)^2 = 2 sd^2 exceeds E l_f^2 = mean^2 + sd^2)."""
    l_f = pool["l_f"]
    l_h = pool["l_h"] if cheap == "correlated" else np.random.default_rng(3).permutation(l_f)
    design = _design(pool["scores"], pool["labels"])
    pi, q, size = design[2], pool["q"], len(l_f)
    cv, ht = _estimates(l_f, l_h, design, q, 4_000, seed=4)
    ratio = cv.var(ddof=1) / ht.var(ddof=1)
    # analytic variances of the two-phase design (independent Bernoulli K, then S)
    stage1 = np.sum(pi * (1 - pi) * (l_f / (size * pi)) ** 2)
    stage2 = lambda d: np.sum((1 - q) / (q * size ** 2 * pi) * d ** 2)  # noqa: E731
    exact_cv, exact_ht = stage1 + stage2(l_f - l_h), stage1 + stage2(l_f)
    print(f"{cheap}: Var(CV)/Var(HT) simulated {ratio:.3f}, analytic {exact_cv / exact_ht:.3f}")
    # simulated variances within 15% of the analytic ones (R=4,000 heavy-tailed draws)
    assert cv.var(ddof=1) == pytest.approx(exact_cv, rel=0.15)
    assert ht.var(ddof=1) == pytest.approx(exact_ht, rel=0.15)
    if cheap == "correlated":
        assert ratio < 0.5
    else:
        assert ratio > 1.5


def test_estimator_gradient_is_unbiased():
    """Linear softmax model on fixed features; the cheap loss comes from a separate fixed head
    (no gradient w.r.t. the model), so grad(cv_estimate) = sum_S w grad l_f / q. Over R=4,000
    draws the mean gradient matches the full-pool mean gradient: relative error within
    3 sqrt(tr Cov / R) / |g| and cosine > 0.99."""
    gen = torch.Generator().manual_seed(0)
    size, dim, classes = 64, 5, 3
    x = torch.randn(size, dim, generator=gen, dtype=torch.float64)
    y = (x @ torch.randn(dim, classes, generator=gen, dtype=torch.float64)).argmax(1)
    weight = (0.1 * torch.randn(dim, classes, generator=gen, dtype=torch.float64)).requires_grad_()
    cheap_head = weight.detach() + 0.3 * torch.randn(dim, classes, generator=gen, dtype=torch.float64)
    l_h = F.cross_entropy(x @ cheap_head, y, reduction="none")
    assert not l_h.requires_grad
    truth = torch.autograd.grad(F.cross_entropy(x @ weight, y), weight)[0].flatten().numpy()

    design = _design(l_h.numpy(), y.numpy(), expected_kept=16.0)
    q_full = np.full(size, 0.3)
    q_t = torch.as_tensor(q_full)
    rng = np.random.default_rng(0)
    draws = 4_000
    grads = np.empty((draws, dim * classes))
    for r in range(draws):
        k, w, full = _draw(design, q_full, rng)
        rows = k[full]
        loss_full = F.cross_entropy(x[rows] @ weight, y[rows], reduction="none")
        estimate = mc.cv_estimate(l_h[k], w, full, loss_full, q_t[k])
        grads[r] = torch.autograd.grad(estimate, weight, retain_graph=r == 0)[0].flatten().numpy()
        if r == 0 and len(rows):  # exact identity on one draw: the cheap term carries no gradient
            manual = torch.autograd.grad((w[full] / q_t[k][full] * loss_full).sum(), weight)[0]
            np.testing.assert_allclose(grads[0], manual.flatten().numpy(), rtol=1e-10, atol=1e-12)
    mean = grads.mean(0)
    norm = np.linalg.norm(truth)
    rel_err = np.linalg.norm(mean - truth) / norm
    bound = 3 * math.sqrt(grads.var(0, ddof=1).sum() / draws) / norm
    cosine = float(mean @ truth / (np.linalg.norm(mean) * norm))
    print(f"gradient: relative error {rel_err:.4f} (bound {bound:.4f}), cosine {cosine:.5f}")
    assert rel_err <= bound
    assert cosine > 0.99


def test_drop_tokens_keeps_first_token_and_input():
    mask = torch.ones(64, 40, dtype=torch.long)
    batch = {"input_ids": torch.ones(64, 40, dtype=torch.long), "attention_mask": mask}
    out = mc.drop_tokens(batch, 0.3, torch.Generator().manual_seed(0))
    assert torch.all(out["attention_mask"][:, 0] == 1) and torch.all(mask == 1)  # input untouched
    dropped = 1 - out["attention_mask"][:, 1:].float().mean().item()
    assert abs(dropped - 0.3) < 0.03  # 2,496 Bernoulli(0.3) draws: sd 0.009
    assert out["input_ids"] is batch["input_ids"]


def test_frozen_layers_schedule():
    from types import SimpleNamespace

    def frozen(n_layers, points, progress):
        stub = SimpleNamespace(ctx=SimpleNamespace(cfg=SimpleNamespace(unfreeze_schedule=points)),
                               parts=SimpleNamespace(layers=[None] * n_layers))
        return mc.MCLearn._frozen_layers(stub, progress)

    assert [frozen(6, (0.3, 0.7), p) for p in (0.0, 0.29, 0.3, 0.69, 0.7, 1.0)] == [4, 4, 3, 3, 0, 0]
    assert frozen(6, (), 0.0) == 0 and frozen(2, (0.3, 0.7), 0.0) == 0


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def mc_runs(prepared, tmp_path_factory):
    cfg = mc.replace_config(prepared.cfg, results_dir=str(tmp_path_factory.mktemp("mc-results")))
    records = mc.run_sweep(cfg, ["mclearn", "mclearn-paper"], [42], prepared=prepared, progress=False)
    return cfg, {r["method"]: r for r in records}


@pytest.mark.parametrize("method", ["mclearn", "mclearn-paper"])
def test_mclearn_end_to_end(mc_runs, method):
    cfg, records = mc_runs
    path = mc.run_path(cfg.results_dir, cfg.study, method, 42)
    record = mc.read_run(path)  # the result JSON exists and round-trips
    assert record["method"] == method and math.isfinite(record["accuracy"])
    assert record["config"]["unfreeze_schedule"] == ([0.3, 0.7] if method == "mclearn-paper" else [])
    telemetry = record["telemetry"]
    assert len(telemetry["steps"]) >= 1 and telemetry["refreshes"] >= 1
    lo_q = record["config"]["q_bounds"][0]  # the run's effective config
    for step in telemetry["steps"]:
        # mclearn: S may be empty (forcing a row would bias); mclearn-paper forces one, as published
        assert step["kept"] >= 1 and (method == "mclearn-paper") <= step["full"] <= step["kept"]
        assert all(lo_q - 1e-9 <= q <= 1.0 for q in step["q"])
        assert sum(step["class_weights"]) == pytest.approx(1.0, abs=1e-3)
    # MC-Learn does fewer full forwards than the baseline's one per example per epoch
    assert 0 < record["examples_seen"] < record["train_examples"] * cfg.epochs
    assert len(record["eval_difficulty"]) == record["eval_examples"]
    logs = read_jsonl(path.with_suffix(".jsonl"))
    assert len(logs) >= 1
    for line in logs:
        for key, value in line.items():
            if isinstance(value, float):
                assert math.isfinite(value), (key, value)


def test_mclearn_logs_the_nonnegative_ht_estimate(mc_runs):
    cfg, _ = mc_runs
    logs = read_jsonl(mc.run_path(cfg.results_dir, cfg.study, "mclearn", 42).with_suffix(".jsonl"))
    assert all(line["loss"] >= 0 for line in logs), [line["loss"] for line in logs]
    assert all(line["loss"] == pytest.approx(line["loss_ht"]) for line in logs)
    paper = read_jsonl(mc.run_path(cfg.results_dir, cfg.study, "mclearn-paper", 42).with_suffix(".jsonl"))
    assert all(line["loss"] == pytest.approx(line["loss_cv"] + line["distill"], rel=1e-5) for line in paper)


def test_padded_full_pass_gives_the_same_losses_and_gradients(prepared):
    """row_multiple pads the full pass with repeats of its first row (static shapes on a GPU):
    the losses and the gradient of their sum must be those of the unpadded rows alone (fp32,
    dropout off; tolerance 1e-5 relative, the batched matmuls may round differently)."""
    rows = np.array([5, 17, 3, 42, 99])  # 5 rows: padded to 16
    results = {}
    for multiple in (1, 16):
        cfg = mc.replace_config(prepared.cfg, row_multiple=multiple)
        model = mc.copy.deepcopy(prepared.base_model).eval()
        ctx = mc.RunContext(cfg=cfg, model=model, train=prepared.train, eval=prepared.eval, num_labels=4,
                            device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                            device_generator=torch.Generator().manual_seed(0))
        trainer = mc.MCLearn(ctx)
        forwarded = []
        forward = ctx.forward
        ctx.forward = lambda batch: (forwarded.append(len(batch["labels"])), forward(batch))[1]
        logits, losses = trainer._full_pass(rows, 0.0)
        losses.sum().backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[multiple] = (forwarded[0], logits.detach(), losses.detach(), grad)
    assert results[1][0] == 5 and results[16][0] == 16  # the padded pass really ran 16 rows
    for plain, padded in zip(results[1][1:], results[16][1:]):
        assert plain.shape == padded.shape
        torch.testing.assert_close(padded, plain, rtol=1e-5, atol=1e-6)
