"""`mclearn-paper`: MC-Learn as published, a sibling of MC-Learn's own method (mclearn_core.py).
The published notebook's algorithm (its code cell), knob for knob: its Bernoulli kept set and
full-pass draw with Horvitz-Thompson weights, its budget rule, its class and its own helpers.
README "Deviations from the published MC-Learn" lists what is matched and the readings taken.

`MCLearnPaper` takes the run context `MCLearn` takes (mclearn_core.TrainContext, e.g. a PlainContext)
and the same three calls: setup(), num_steps(), step(i).

Its numbered sections follow the call order (tests/test_module_order.py: none uses a later one).
It imports torch, numpy, the standard library and mclearn_core (the batches, encoder access, knobs,
cost meter and policy learner it shares with `mclearn`), never a study module (tests/test_layout.py).
"""
from __future__ import annotations

import collections
import copy
import math
import time
import types
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mclearn_core import (CostMeter, EncodedSplit, MCLearnConfig, PolicyLearner, TrainContext, batch_width,
                          effective_sample_size, encoder_parts, make_batch, mean_pool, model_inputs, seeded_rng,
                          sync_device, to_device)


# =============================================================================
# 1. The published draw and its weights: the kept set, Horvitz-Thompson weights, the estimate
# =============================================================================
def inclusion_probs(cand_prob: np.ndarray, replay_prob: np.ndarray | float) -> np.ndarray:
    """Return the probability of being kept through the candidate or the replay path:
    1 - (1 - cand_prob)(1 - replay_prob), the two paths drawn independently."""
    return 1.0 - (1.0 - np.asarray(cand_prob)) * (1.0 - np.asarray(replay_prob))


def draw_kept(cand_prob: np.ndarray, replay_prob: np.ndarray | float, rng: np.random.Generator,
              uniforms: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Return a boolean mask: kept if the candidate or the replay draw fires (`uniforms`: the
    caller's (u_cand, u_rep), e.g. antithetic 1 - u of the last step)."""
    u_cand, u_rep = uniforms if uniforms is not None else (rng.random(len(cand_prob)), rng.random(len(cand_prob)))
    return (u_cand < cand_prob) | (u_rep < replay_prob)


def ht_weights(inclusion: np.ndarray, population: float, w_clip: float | None,
               expected_kept: float | None = None) -> np.ndarray:
    """Return Horvitz-Thompson weights 1 / (population pi) of kept examples; with `w_clip`, capped
    at w_clip times uniform sampling's of the same expected size (1 / expected_kept): a small bias
    for less variance."""
    weights = 1.0 / (population * np.asarray(inclusion, dtype=np.float64))
    if w_clip is not None and expected_kept:
        weights = np.minimum(weights, w_clip / expected_kept)
    return weights


def cv_estimate(loss_cheap: torch.Tensor, weights: torch.Tensor, full_mask: torch.Tensor,
                loss_full: torch.Tensor, full_prob: torch.Tensor) -> torch.Tensor:
    """Return the control-variate estimate sum_K w l_h + sum_S w (l_f - l_h) / q, q = `full_prob`,
    unbiased for sum_K w l_f over S ~ Bern(q): `loss_cheap`, `weights`, `full_prob` over the kept
    set K, `full_mask` marking S in K (a boolean mask, or S's positions in K: no host sync),
    `loss_full` the full losses of S (in K order)."""
    correction = (loss_full - loss_cheap[full_mask]) * weights[full_mask] / full_prob[full_mask]
    return (weights * loss_cheap).sum() + correction.sum()


def ht_estimate(weights: torch.Tensor, full_mask: torch.Tensor, loss_full: torch.Tensor,
                full_prob: torch.Tensor) -> torch.Tensor:
    """Return the plain Horvitz-Thompson estimate sum_S w l_f / q (non-negative for l_f >= 0)."""
    return (loss_full * weights[full_mask] / full_prob[full_mask]).sum()


def optimal_full_prob(var_gap: np.ndarray, var_cheap: np.ndarray, cost_head: float, cost_full: float,
                      bounds: tuple[float, float]) -> np.ndarray:
    """Return q* = sqrt(var_gap c_h / (var_cheap c_f)) per class, clipped to `bounds`: the
    variance-per-cost optimum of the control-variate estimator's full-pass rate."""
    ratio = np.asarray(var_gap) * cost_head / (np.maximum(np.asarray(var_cheap), 1e-12) * max(cost_full, 1e-12))
    return np.clip(np.sqrt(ratio), *bounds)


# =============================================================================
# 2. The published model: the mean-pooled classifier
# =============================================================================
def apply_head(head: dict[str, nn.Module], pooled: torch.Tensor) -> torch.Tensor:
    """Return classification-head modules applied to pooled features [B, H]
    (DistilBERT: pre_classifier, ReLU, classifier; BERT: pooler dense + tanh, classifier)."""
    if "pre_classifier" in head:
        return head["classifier"](F.relu(head["pre_classifier"](pooled)))
    if "pooler" in head:
        return head["classifier"](torch.tanh(head["pooler"].dense(pooled)))
    classifier = head["classifier"]
    if hasattr(classifier, "out_proj"):  # MPNet/RoBERTa: dense + tanh + out_proj on the first token's features
        return classifier.out_proj(torch.tanh(classifier.dense(pooled)))
    return classifier(pooled)


class MeanPooledClassifier(nn.Module):
    """The published classifier: the whole encoder, a mask-weighted mean of its last layer and the
    model's own head without dropout (apply_head); called like the model, it returns `.logits`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config
        self.parts = encoder_parts(model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        # model_inputs may hand over the 4-D SDPA mask [B, 1, L, L]; its row 0 is the padding mask
        tokens = attention_mask if attention_mask.dim() == 2 else attention_mask[:, 0, 0, :]
        hidden = self.parts.base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = apply_head(self.parts.head, mean_pool(hidden, tokens.to(hidden.dtype)))
        return types.SimpleNamespace(logits=logits)


# =============================================================================
# 3. The published rules: pool, class weights, refresh, cadence, replay, distillation
# =============================================================================
def published_soft_topk(scores: np.ndarray, kappa: float, tau: float) -> np.ndarray:
    """Return the published keep probabilities of one class's candidates, raw (not rescaled):
    sigmoid((s - t) / (0.05 tau)), with t the (1 - k/n) quantile of the n scores (linear
    interpolation, as torch.quantile) and k = min(max(1, round(kappa n)), n)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    k = min(max(1, round(kappa * scores.size)), scores.size)
    threshold = np.quantile(scores, 1.0 - k / scores.size)
    z = (scores - threshold) / max(1e-6, 0.05 * tau)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow


def published_class_quotas(class_weights: np.ndarray, pool_size: int, rng: np.random.Generator) -> np.ndarray:
    """Return candidates per class: max(1, floor(a_c M)), then +1 for a class drawn at random
    until the quotas sum to M (the published refresh)."""
    quotas = np.maximum(1, (np.asarray(class_weights) * pool_size).astype(int))
    while quotas.sum() < pool_size:
        quotas[rng.integers(len(quotas))] += 1
    return quotas


def published_pool_size(pool_hint: float, batch_size: int) -> int:
    """Return the published candidate pool size min(1.25 B, max(B, M_hint)): at least one batch."""
    return min(int(1.25 * batch_size), max(batch_size, int(pool_hint)))


def published_pool_hint(cfg: MCLearnConfig, costs: dict[str, float], cadence: int, kappa: float,
                        class_weights: np.ndarray, full_prob: np.ndarray, replay_share: float, base_step_seconds: float) -> int:
    """Return the published budget solver's M* = step_budget_ratio (baseline step seconds) /
    (L_s c_s / N + kappa (1 + r) sum_c a_c (c_h + q_c c_f)), floored at B max(1, min_pool_mult):
    r the replay share, q_c `full_prob`, c_s seconds per scored token, c_h, c_f per example."""
    per_refresh = cfg.score_max_length * costs["score"] / max(1, cadence)
    mix = float(np.sum(class_weights * (costs["head"] + full_prob * costs["full"])))
    raw = cfg.step_budget_ratio * base_step_seconds / max(1e-9, per_refresh + kappa * (1 + replay_share) * mix)
    return int(max(cfg.batch_size, raw, cfg.batch_size * max(1.0, cfg.min_pool_mult)))


def published_class_weights(class_weights: np.ndarray, var_cheap: np.ndarray, var_gap: np.ndarray,
                            full_prob: np.ndarray, cost_head: float, cost_full: float, eta: float) -> np.ndarray:
    """Return the published class-weight update a_c exp(eta (g_c - mean g)), floored at 1e-6 and
    normalised to sum 1, with the gain g_c = (var_h + var_gap / q_c) / (c_h + q_c c_f) (q_c
    `full_prob`) in raw units (no normalising, no bounds). Where exp overflows (the published code
    gives NaN) its limit: a_c exp(eta (g_c - max g)) normalised (the floor's share vanishes)."""
    gain = (np.maximum(var_cheap, 1e-12) + np.maximum(var_gap, 1e-12) / np.maximum(full_prob, 1e-6)) / \
        (cost_head + full_prob * cost_full + 1e-12)
    exponent = eta * (gain - gain.mean())
    with np.errstate(over="ignore"):
        weights = class_weights * np.exp(exponent)
    if np.all(np.isfinite(weights)):
        weights = np.maximum(weights, 1e-6)
    else:
        weights = class_weights * np.exp(exponent - exponent.max())
    return weights / weights.sum()


def published_refresh_due(step: int, cadence: int, ess_raw: float, kept: int, ess_target: float) -> bool:
    """Return the published refresh gate: on 1-based step numbers with step % N == 1, and only
    when the ESS of the raw (unclipped) weights of the current kept set is below ess_target |K|."""
    return step % cadence == 1 and ess_raw < ess_target * kept


def published_cadence(cadence: int, rank_corr: float, guard: float, bounds: tuple[int, int]) -> int:
    """Return the next refresh cadence N: x0.85 when the rank agreement is under the guard, else
    x1.10 (truncated to an integer, within `bounds`)."""
    lo, hi = bounds
    return max(lo, int(0.85 * cadence)) if rank_corr < guard else min(hi, int(1.10 * cadence))


def published_full_draw(full_prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return the full-pass mask over the kept set: Bernoulli(full_prob) per row; when none fires, one
    row drawn uniformly is forced in (its full_prob is left as it was), as published."""
    full = rng.random(len(full_prob)) < full_prob
    if not full.any():
        full[rng.integers(len(full_prob))] = True
    return full


def replay_count(replay_share: float, population: int, pool_size: int) -> int:
    """Return the published replay draw size R = min(round(replay_share n), |P|)."""
    return min(int(round(replay_share * population)), pool_size)


def teacher_confidence(teacher_probs: torch.Tensor) -> torch.Tensor:
    """Return the published distillation weight per row, 1 - H(p_T) / log C: 1 for a one-hot
    teacher, 0 for a uniform one (H the entropy of the teacher's tempered probabilities)."""
    entropy = -(teacher_probs * teacher_probs.clamp_min(1e-8).log()).sum(-1)
    return 1.0 - entropy / math.log(teacher_probs.shape[-1])


def frozen_layer_count(progress: float, n_layers: int, points: Sequence[float]) -> int:
    """Return how many bottom blocks progressive unfreezing keeps frozen: L-2 before points[0],
    L-3 before points[1], none after (no points: none)."""
    if not points:
        return 0
    return [max(n_layers - 2, 0), max(n_layers - 3, 0), 0][min(sum(progress >= p for p in points), 2)]


class FifoReplay:
    """The published replay buffer: one FIFO queue per class of capacity // C rows. A refresh
    appends its kept rows after drawing them; the replay pool P is the set of rows held."""

    def __init__(self, num_classes: int, capacity: int):
        self.queues = [collections.deque(maxlen=max(capacity // num_classes, 1)) for _ in range(num_classes)]

    def add(self, rows: np.ndarray, labels: np.ndarray) -> None:
        for row, label in zip(rows, labels):
            self.queues[int(label)].append(int(row))

    def pool(self) -> np.ndarray:
        """Return P: the rows held, sorted, each once."""
        return np.array(sorted(set().union(*self.queues)), dtype=np.int64)


# =============================================================================
# 4. The trainer: `mclearn-paper`
# =============================================================================
class MCLearnPaper:
    """MC-Learn as published. Each step: refresh the candidate pool when the gate fires (score ~1.25
    B class-stratified candidates by the model's head on the mean-pooled hidden state of layer
    `score_layer`, keep a raw soft top-k plus a replay draw from a FIFO buffer), else redraw the
    kept set from the cached pool; run a Bernoulli(q) subset S (at least one row) through the
    mean-pooled model; minimise the control-variate objective with absolute-clipped HT weights plus
    confidence-weighted distillation from an EMA copy of the head; update the replay share and the
    class weights (every step) and, at a refresh, tau and the cadence N."""

    name = "mclearn-paper"
    teacher_decay = 0.999  # EMA of the head that teaches it (hard-coded in the published code)
    first_pool_batches = 1.5  # pool hint, in batches, before every cost has been measured

    def __init__(self, ctx: TrainContext):
        self.ctx = ctx
        cfg, num_classes = ctx.cfg, ctx.num_labels
        self.parts = encoder_parts(ctx.model)
        self.published = MeanPooledClassifier(ctx.model)
        self.num_classes = num_classes
        self.rng = seeded_rng(ctx.generator)
        self.labels_host = ctx.train.labels.cpu().numpy()
        self.by_class = [np.flatnonzero(self.labels_host == c) for c in range(num_classes)]
        self.class_sizes = np.array([len(rows) for rows in self.by_class], dtype=np.float64)
        self.policy = PolicyLearner(cfg, num_classes)
        self.costs = CostMeter(ctx.device, cfg.cost_ema)  # "score" per token, "head"/"full" per example
        self.replay = FifoReplay(num_classes, cfg.replay_max)
        self.teacher = {k: copy.deepcopy(m).requires_grad_(False) for k, m in self.parts.head.items()}
        self.var_cheap = np.full(num_classes, np.nan)  # EMAs of the loss variances; nan = not seen yet
        self.var_gap = np.full(num_classes, np.nan)
        self.full_prob = np.full(num_classes, 0.25)
        self.cadence = cfg.refresh_every
        self.pool: dict[str, Any] | None = None
        self.cache: dict[str, Any] | None = None
        self.base_step_seconds = 0.0
        self.total_steps = 0
        self.refreshes = 0
        self.refresh_steps: list[int] = []
        self.records: list[dict[str, Any]] = []

    def eval_model(self) -> nn.Module:
        return self.published

    def extra_param_groups(self) -> list[dict]:
        """Return the optimizer groups beyond the model's: none (the head it scores with is the model's)."""
        return []

    def num_steps(self) -> int:
        return self.total_steps

    # -- costs and statistics ------------------------------------------------------------------
    def cost(self, kind: str) -> float:
        """Return the EMA seconds of `kind`, or the published default before its first measurement."""
        return self.costs.ema.get(kind, {"score": 1e-6, "head": 1e-5, "full": 1e-4}[kind])

    def observe_variance(self, store: np.ndarray, value: float, classes: np.ndarray) -> None:
        """EMA-update `store` with `value` for every class present (the published proxy is one
        variance over the whole set, written to each class seen in it)."""
        decay = self.ctx.cfg.cost_ema
        for c in np.unique(classes):
            store[c] = value if np.isnan(store[c]) else decay * store[c] + (1 - decay) * value

    def setup(self) -> None:
        """Plan the steps (one per baseline batch) and time one full update of one batch: the
        published budget solver divides the baseline's measured seconds per step."""
        cfg, ctx = self.ctx.cfg, self.ctx
        self.total_steps = math.ceil(len(ctx.train) / cfg.batch_size) * cfg.epochs
        rows = self.rng.choice(len(ctx.train), min(cfg.batch_size, len(ctx.train)), replace=False)
        sync_device(ctx.device)
        start = time.perf_counter()
        batch = make_batch(ctx.train, rows, batch_width(ctx.train, rows, cfg.pad_multiple))
        with ctx.autocast():
            logits = self.published(**model_inputs(ctx.model, batch)).logits
        ctx.per_example_loss(logits, batch["labels"]).mean().backward()
        sync_device(ctx.device)
        self.base_step_seconds = time.perf_counter() - start
        ctx.model.zero_grad(set_to_none=True)

    # -- scoring and sampling ------------------------------------------------------------------
    @torch.no_grad()
    def score(self, data: EncodedSplit, rows: np.ndarray, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mean-pooled hidden state of layer `score_layer` [n, H], head probabilities
        [n, C]) of `rows`: the whole encoder runs (output_hidden_states), every row padded to
        score_max_length tokens, in fp32 (the published scorer runs outside autocast)."""
        cfg, model = self.ctx.cfg, self.ctx.model
        width = min(cfg.score_max_length, data.input_ids.shape[1])
        was_training = model.training
        model.train(training)
        feats = []
        try:
            for idx in torch.as_tensor(rows).split(max(cfg.eval_batch_size, 256)):
                batch = make_batch(data, idx, width)
                hidden = self.parts.base(**model_inputs(model, batch), output_hidden_states=True).hidden_states
                layer = hidden[min(cfg.score_layer, len(hidden) - 1)]
                feats.append(mean_pool(layer.float(), batch["attention_mask"]))
        finally:
            model.train(was_training)
        feats = torch.cat(feats)
        return feats, torch.softmax(apply_head(self.parts.head, feats).float(), -1)

    def refresh(self, progress: float, pool_hint: float) -> dict[str, Any]:
        """Draw and score a new candidate pool, keep a soft top-k plus replay; return the kept set."""
        cfg, ctx = self.ctx.cfg, self.ctx
        pool_size = published_pool_size(pool_hint, cfg.batch_size)
        quotas = published_class_quotas(self.policy.class_weights, pool_size, self.rng)
        rows = np.concatenate([self.rng.choice(self.by_class[c], min(quotas[c], len(self.by_class[c])), replace=False)
                               for c in range(self.num_classes)])
        labels = self.labels_host[rows]
        width = min(cfg.score_max_length, ctx.train.input_ids.shape[1])
        # the model is in eval mode at the first published refresh (from_pretrained), in train mode after
        with self.costs.timed("score", len(rows) * width):
            feats, probs = self.score(ctx.train, rows, training=self.refreshes > 0)
        true_class = to_device(labels, probs.device)[:, None]
        difficulty = (1.0 - probs.gather(1, true_class).squeeze(1)).cpu().numpy()
        kappa = self.policy.kappa(progress)
        keep_prob = np.concatenate([published_soft_topk(difficulty[labels == c], kappa, self.policy.tau)
                                    for c in range(self.num_classes)])  # rows are grouped by class
        self.pool = {"rows": rows, "labels": labels, "quotas": quotas, "keep_prob": keep_prob, "feats": feats,
                     "difficulty": difficulty,
                     "replay": self.replay.pool(), "hardest": rows[int(np.argmax(difficulty))]}
        kept = self.draw(self.pool["hardest"])
        self.replay.add(kept["rows"], self.labels_host[kept["rows"]])  # after the draw: empty at the first
        self.refreshes += 1
        return kept

    def draw(self, fallback: int) -> dict[str, Any]:
        """Return the kept set drawn from the cached pool: candidates by their keep probabilities,
        plus R replay rows drawn from P without replacement (one `fallback` row if both are empty),
        with inclusion probabilities, raw HT weights and weights clipped at w_clip (absolute)."""
        cfg, pool, n = self.ctx.cfg, self.pool, len(self.ctx.train)
        drawn = pool["rows"][self.rng.random(len(pool["rows"])) < pool["keep_prob"]]
        replay_pool = pool["replay"]
        count = replay_count(self.policy.replay_share, n, len(replay_pool))
        picked = self.rng.choice(replay_pool, count, replace=False) if count > 0 else replay_pool[:0]
        rows = np.union1d(drawn, picked).astype(np.int64)
        if len(rows) == 0:
            rows = np.array([fallback], dtype=np.int64)
        position = {int(r): j for j, r in enumerate(pool["rows"])}
        cand_pos = np.array([position.get(int(r), -1) for r in rows])
        in_cand = cand_pos >= 0
        labels = self.labels_host[rows]
        cand_prob = np.zeros(len(rows))
        cand_prob[in_cand] = pool["quotas"][labels[in_cand]] / self.class_sizes[labels[in_cand]] * \
            np.maximum(1e-6, pool["keep_prob"][cand_pos[in_cand]])
        replay_prob = np.where(np.isin(rows, replay_pool), count / max(1, len(replay_pool)), 0.0)
        raw = ht_weights(inclusion_probs(cand_prob, replay_prob), n, None)
        return {"rows": rows, "labels": labels, "in_cand": in_cand, "cand_pos": cand_pos[in_cand],
                "w_raw": raw, "w": np.minimum(raw, cfg.w_clip), "replay": int(count)}

    # -- one step ------------------------------------------------------------------------------
    def step(self, i: int) -> dict[str, Any]:
        cfg, ctx = self.ctx.cfg, self.ctx
        step_no = i + 1  # the published loop counts steps from 1 (its gate reads step % N == 1)
        progress = step_no / max(self.total_steps, 1)
        frozen = frozen_layer_count(progress, len(self.parts.layers), cfg.unfreeze_schedule)
        for depth, layer in enumerate(self.parts.layers):
            layer.requires_grad_(depth >= frozen)
        self.costs.flush()
        ess_raw = effective_sample_size(self.cache["w_raw"]) if self.cache else math.inf
        if self.cache is None or published_refresh_due(step_no, self.cadence, ess_raw, len(self.cache["w"]),
                                                       cfg.ess_target):
            ready = all(kind in self.costs.ema for kind in ("score", "head", "full"))
            hint = published_pool_hint(cfg, {k: self.cost(k) for k in ("score", "head", "full")}, self.cadence,
                                       self.policy.kappa(progress), self.policy.class_weights, self.full_prob,
                                       self.policy.replay_share, self.base_step_seconds) \
                if ready else int(self.first_pool_batches * cfg.batch_size)
            self.cache = self.refresh(progress, hint)
            self.refresh_steps.append(step_no)
            self.policy.update_tau(1.0)  # the published code feeds its rank guard a constant 1.0
            self.cadence = published_cadence(self.cadence, 1.0, cfg.rank_guard, cfg.refresh_bounds)
        else:
            self.cache = self.draw(self.pool["rows"][0])
        self.policy.update_replay_share(ess_raw / max(1, len(self.cache["w"])))  # every step
        losses, counts = self.update(i)
        self.costs.flush()
        var_cheap = np.nan_to_num(self.var_cheap, nan=1e-6)
        var_gap = np.nan_to_num(self.var_gap, nan=1e-6)
        self.policy.class_weights = published_class_weights(  # every step
            self.policy.class_weights, var_cheap, var_gap, self.full_prob, self.cost("head"), self.cost("full"),
            cfg.class_weight_lr)
        return self.log(i, losses, counts, progress)

    def update(self, i: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Draw S, build the published loss on the kept set (control variate with absolute-clipped
        weights, plus distillation) and take one optimizer step; return the detached loss terms
        and the step's counts."""
        cfg, ctx, kept, device = self.ctx.cfg, self.ctx, self.cache, self.ctx.device
        var_cheap = np.nan_to_num(self.var_cheap, nan=1e-6).clip(1e-12)  # the published default: 1e-6
        var_gap = np.nan_to_num(self.var_gap, nan=1e-6).clip(1e-12)
        self.full_prob = optimal_full_prob(var_gap, var_cheap, max(1e-9, self.cost("head")),
                                           max(1e-9, self.cost("full")), cfg.full_prob_bounds)
        full_prob_kept = self.full_prob[kept["labels"]]
        full = published_full_draw(full_prob_kept, self.rng)
        labels = ctx.train.labels[to_device(kept["rows"], device)]
        weights = to_device(kept["w"], device, torch.float32)
        full_prob_t = to_device(full_prob_kept, device, torch.float32)
        full_t = to_device(np.flatnonzero(full), device)
        cand_t = to_device(np.flatnonzero(kept["in_cand"]), device)
        n_cand = len(kept["cand_pos"])
        feats = self.pool["feats"][to_device(kept["cand_pos"], device)]
        loss_cheap = torch.zeros(len(kept["rows"]), device=device)  # replay-only rows have no cheap term
        cheap_logits = None
        if n_cand:
            with self.costs.timed("head", n_cand), ctx.autocast():
                cheap_logits = apply_head(self.parts.head, feats)  # with gradient: the head is shared
            loss_cheap = loss_cheap.index_put((cand_t,), ctx.per_example_loss(cheap_logits, labels[cand_t]))
        with self.costs.timed("full", int(full.sum())):  # the published c_f times the forward only
            full_logits = self.full_logits(kept["rows"][full])
        loss_full = ctx.per_example_loss(full_logits, labels[full_t])
        estimate_cv = cv_estimate(loss_cheap, weights, full_t, loss_full, full_prob_t)
        distill = self.distill_loss(feats, cheap_logits, weights[cand_t]) if n_cand else loss_full.sum() * 0.0
        ctx.optimizer_step(estimate_cv + distill, i)
        with torch.no_grad():
            for name, teacher in self.teacher.items():
                for pt, ps in zip(teacher.parameters(), self.parts.head[name].parameters()):
                    pt.lerp_(ps, 1 - self.teacher_decay)
        if n_cand:
            cheap_host = loss_cheap.detach()[cand_t].cpu().numpy()
            self.observe_variance(self.var_cheap, float(np.var(cheap_host)), kept["labels"][kept["in_cand"]])
        gap = (loss_full - loss_cheap[full_t]).detach().cpu().numpy()  # l_f alone for replay-only rows
        self.observe_variance(self.var_gap, float(np.var(gap)), kept["labels"][full])
        n_full = int(full.sum())
        ctx.examples_forward += n_full
        ctx.examples_backward += n_full
        losses = {"loss": (estimate_cv + distill).detach(), "loss_cv": estimate_cv.detach(),
                  "distill": distill.detach(), "negative_cv": (estimate_cv.detach() < 0).float()}
        return losses, {"kept": len(kept["rows"]), "full": n_full}

    def full_logits(self, rows: np.ndarray) -> torch.Tensor:
        """Return the mean-pooled model's logits on training rows `rows` (padded to their longest;
        on GPU presets the row count is padded to row_multiple with repeats, which get no logits)."""
        cfg, ctx = self.ctx.cfg, self.ctx
        count = len(rows)
        width = batch_width(ctx.train, rows, cfg.pad_multiple)
        if cfg.row_multiple > 1:
            rows = np.concatenate([rows, np.repeat(rows[:1], -count % cfg.row_multiple)])
        batch = make_batch(ctx.train, rows, width)
        with ctx.autocast():
            return self.published(**model_inputs(ctx.model, batch)).logits[:count]

    def distill_loss(self, feats: torch.Tensor, cheap_logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Return gamma * sum_K w * conf * T^2 KL(teacher || head) over the kept candidates: the
        teacher is the EMA copy of the head on the same features, `conf` = teacher_confidence."""
        cfg = self.ctx.cfg
        temp = cfg.distill_temperature
        with torch.no_grad(), self.ctx.autocast():
            teacher_logits = apply_head(self.teacher, feats)
        teacher = torch.softmax(teacher_logits.float() / temp, -1)
        student = torch.log_softmax(cheap_logits.float() / temp, -1)
        kl = F.kl_div(student, teacher, reduction="none").sum(-1) * temp ** 2
        return cfg.distill_gamma * (weights * teacher_confidence(teacher) * kl).sum()

    def log(self, i: int, losses: dict[str, torch.Tensor], counts: dict[str, Any], progress: float) -> dict[str, Any]:
        """Return the step's log entry; keep about 100 of them as telemetry."""
        cfg = self.ctx.cfg
        record = {"step": i + 1, **counts, "pool": len(self.pool["rows"]), "replay": self.cache["replay"],
                  "replay_pool": len(self.pool["replay"]),
                  "ess_fraction": round(effective_sample_size(self.cache["w_raw"]) / len(self.cache["w_raw"]), 4),
                  "replay_share": round(self.policy.replay_share, 4), "tau": round(self.policy.tau, 4), "cadence": self.cadence,
                  "full_prob": np.round(self.full_prob, 4).tolist(),
                  "class_weights": np.round(self.policy.class_weights, 4).tolist(),
                  "kappa": self.policy.kappa(progress), "refreshes": self.refreshes}
        every = max(1, min(cfg.log_every, self.total_steps // 100))
        if (i + 1) % every == 0 or i == 0:
            self.records.append({**record, "costs": dict(self.costs.ema)})
        return {**losses, **record}

    def telemetry(self) -> dict[str, Any]:
        return {"steps": self.records, "refreshes": self.refreshes, "refresh_steps": self.refresh_steps,
                "final_costs": self.costs.flush(), "base_step_seconds": self.base_step_seconds,
                "measured_seconds": dict(self.costs.seconds)}

    def eval_difficulty(self) -> np.ndarray:
        """Return the scorer's difficulty 1 - p_head(true class) on every eval example (eval mode)."""
        data = self.ctx.eval
        _, probs = self.score(data, np.arange(len(data)), training=False)
        return (1.0 - probs.gather(1, data.labels[:, None].to(probs.device)).squeeze(1)).cpu().numpy()
