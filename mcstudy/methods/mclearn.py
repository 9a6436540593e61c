"""MC-Learn in the study: MCLearnMethod (`mclearn` and its ablation variants, mclearn_core.MCLearn)
and MCLearnPaperMethod (`mclearn-paper`, mclearn_paper.MCLearnPaper) as Methods of the training loop:
CUDA-graph updates, step costs measured as every method's are, the variant keys checked, and the
end-of-run variance check of selection at the model's last layer."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import mclearn_core as core
import mclearn_paper as paper
from mcstudy.config import autocast_context, Config
from mcstudy.data import plan_epoch
from mcstudy.engine import (BudgetPlan, calibration_rows, GRAPH_MIN_USES, GraphedUpdate, graphs_enabled,
                            measure_step_costs, Method, RunContext)


def check_variant_keys(cfg: Config) -> None:
    """Raise a one-line ValueError naming the key when an MC-Learn variant key is out of range."""
    start, end = cfg.uniform_start, cfg.uniform_end
    if not (0 <= start < 1 and 0 <= end < 1 and start + end < 1):
        raise ValueError(f"uniform_start={start} and uniform_end={end} must be shares in [0, 1) that leave "
                         f"selection part of the run (their sum under 1), e.g. uniform_start=0.25 uniform_end=0.125")
    if not 0 <= cfg.once_floor <= 1:
        raise ValueError(f"once_floor={cfg.once_floor} must be a probability in [0, 1], e.g. once_floor=0.1")
    if cfg.free_score_max_age < 0:
        raise ValueError(f"free_score_max_age={cfg.free_score_max_age} must be >= 0 refreshes (0 = a stored loss "
                         f"never goes stale), e.g. free_score_max_age=0")


def last_linear(model: nn.Module, num_labels: int) -> tuple[str, nn.Linear]:
    """Return (name, module) of the model's last nn.Linear with num_labels outputs: the layer whose
    output is the logits (DistilBERT's and BERT's classifier, MPNet's classifier.out_proj)."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not found:
        raise core.TrainingError(f"{type(model).__name__} has no linear layer with {num_labels} outputs to measure "
                            f"gradients at: use a sequence classifier whose last layer gives the logits")
    return found[-1]


@torch.no_grad()
def last_layer_gradients(model: nn.Module, data: core.EncodedSplit, rows: np.ndarray, cfg: Config, device: torch.device,
                         mean_weights: np.ndarray) -> dict[str, Any]:
    """Return, for each of `rows`, the squared norm of the gradient of its loss (cross-entropy with
    the run's label smoothing) with respect to the last layer's weight and bias (last_linear):
    with h its input and dz = softmax(z) - target the loss's gradient at the logits z = W h + b,
    dL/dW = dz h^T and dL/db = dz, so |g|^2 = |dz|^2 (|h|^2 + 1). Also the rows' losses and the
    squared norm of sum_k mean_weights_k g_k (a Horvitz-Thompson mean gradient). The model runs in
    eval mode (no dropout), without autograd: the layer's input and output are read by a forward
    hook, and its output must be the logits."""
    name, layer = last_linear(model, model.config.num_labels)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = layer.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output)))
    was_training = model.training
    model.eval()
    smoothing, classes = cfg.label_smoothing, model.config.num_labels
    weights = torch.as_tensor(np.asarray(mean_weights, dtype=np.float32), device=device)
    mean_w = torch.zeros(classes, layer.in_features, device=device)
    mean_b = torch.zeros(classes, device=device)
    sq, losses = [], []
    try:
        start = 0
        for idx in torch.as_tensor(rows).split(cfg.eval_batch_size):
            batch = core.make_batch(data, idx, core.batch_width(data, idx, cfg.pad_multiple))
            with autocast_context(cfg, device):
                logits = model(**core.model_inputs(model, batch)).logits.float()
            h, out = seen.pop()
            if h.dim() != 2 or not torch.allclose(out.float(), logits, atol=1e-4, rtol=1e-3):
                raise core.TrainingError(f"the output of {name} is not the model's logits: no last-layer gradient to measure")
            h = h.float()
            target = F.one_hot(batch["labels"], classes).float() * (1.0 - smoothing) + smoothing / classes
            dz = torch.softmax(logits, -1) - target
            sq.append((dz ** 2).sum(1) * ((h ** 2).sum(1) + (1.0 if layer.bias is not None else 0.0)))
            losses.append(F.cross_entropy(logits, batch["labels"], reduction="none", label_smoothing=smoothing))
            w = weights[start:start + len(idx), None]
            mean_w += (dz * w).T @ h
            mean_b += (dz * w).sum(0)
            start += len(idx)
    finally:
        hook.remove()
        model.train(was_training)
    mean_square = float((mean_w ** 2).sum() + ((mean_b ** 2).sum() if layer.bias is not None else 0.0))
    return {"layer": name, "second_moment": torch.cat(sq).cpu().numpy().astype(np.float64),
            "loss": torch.cat(losses).cpu().numpy().astype(np.float64), "mean_square": mean_square}


# Config keys both MC-Learn trainers read and no other method does.
MCLEARN_FIELDS = (
    "score_layer", "score_max_length", "head_lr", "distill_gamma", "distill_temperature", "kappa_schedule",
    "tau_init", "tau_bounds", "rank_guard", "replay_share_init", "replay_share_bounds", "ess_target", "class_weight_bounds",
    "class_weight_lr", "w_clip", "refresh_every", "refresh_bounds", "min_pool_mult", "replay_max", "full_prob_bounds",
    "full_rows", "full_prob", "cost_ema", "unfreeze_schedule", "row_multiple")


class MCLearnMethod(core.MCLearn, Method):
    """`mclearn` and its ablation variants (their presets' keys) as a study Method: MCLearn's update
    replayed as one CUDA graph per shape (GraphedUpdate), the captures held back from its budget,
    its step costs measured as every method's are (measure_step_costs), the baseline priced by its
    own bucketed plan, the variant keys checked, and selection's variance measured once at the end
    of the run (finish)."""

    graphable = True
    priced = True  # the budget solver needs the baseline's measured step costs
    own_fields = (*MCLEARN_FIELDS, "free_scores", "free_score_max_age", "once_draws", "once_floor",
                  "uniform_start", "uniform_end", "record_passes", "select_switch")

    @classmethod
    def plan_budget(cls, name: str, time_budget: float, cfg: Config, costs: dict[str, Any]) -> BudgetPlan:
        """Return no knobs: MC-Learn reads the run's time_budget itself (time_budget) and its budget
        solver prices the run (every variant too)."""
        return BudgetPlan(name, time_budget, {}, time_budget)

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        check_variant_keys(ctx.cfg)
        self.graphed: GraphedUpdate | None = None  # built at the first update
        self.measured_variance: dict[str, Any] | None = None  # variance_check's, once

    def time_budget(self) -> float:
        """Return the share of the baseline's train seconds the run may spend: the budget study's
        time_budget, or, outside one (time_budget 0), MC-Learn's default share (MCLearnConfig)."""
        return self.ctx.cfg.time_budget or core.MCLearnConfig.time_budget

    def baseline_widths(self) -> list[int]:
        """Return the padded width of each of the baseline's batches: its own bucketed plan (seed 0)."""
        cfg = self.ctx.cfg
        return [w for _, w in plan_epoch(self.ctx.train, cfg, torch.Generator().manual_seed(0))] * cfg.epochs

    def ctx_step_costs(self) -> core.StepCosts:
        """Return the step-cost table this run is priced with: the one train_method took from
        the prepared data (measured once per process, untimed), or, when none was given, one
        measured here, inside the timed region."""
        ctx = self.ctx
        if ctx.step_costs is None:
            ctx.step_costs = measure_step_costs(ctx.cfg, ctx.model, ctx.train, ctx.device,
                                                rows=calibration_rows(ctx.cfg, self.full_rows))
        return ctx.step_costs

    def capture_reserve(self, solve: Callable[[float], dict[str, Any]]) -> float:
        """Return the captures a run of the steps `solve` allows is expected to make at the first pool's
        width mix (expected_captures), not one per width in the data (a run captures only the widths
        it draws): solved once with every width of the mix, then the captures expected over the
        steps that allows (a little conservative: it is the larger step count's), of the widths the
        run plans to use at least GRAPH_MIN_USES times (the others run eagerly, the capture policy of
        every method: GraphedUpdate.worth_capturing). 0.0 when the update does not capture."""
        if not self.will_capture():
            return 0.0
        upper = solve(float(np.count_nonzero(self.plan.bucket_prob)))["steps"]
        frequent = self.plan.bucket_prob * upper >= GRAPH_MIN_USES
        return core.expected_captures(np.where(frequent, self.plan.bucket_prob, 0.0), upper, self.ctx.cfg.graph_warmup_steps)

    def will_capture(self) -> bool:
        """Return True when this run's update is (or will be) captured as CUDA graphs: its
        GraphedUpdate captures, or before it exists, graphs are on for this config on a CUDA device
        and the step costs were measured graphed."""
        if self.graphed is not None:
            return self.graphed.capture
        ctx = self.ctx
        return ctx.device.type == "cuda" and graphs_enabled(ctx.cfg) and \
            ctx.step_costs is not None and ctx.step_costs.graphed

    def captures_expected(self, steps: float) -> float:
        """Return the graph captures expected in the next `steps` steps at the current pool's width
        mix: the widths not captured yet that the run plans to use at least GRAPH_MIN_USES times,
        each with the eager uses it has had (expected_captures); 0 when the update does not capture."""
        plan, graphed = self.plan, self.graphed
        if not self.will_capture():
            return 0.0
        keys = [(self.full_rows, int(w)) for w in plan.bucket_widths]
        done = graphed.graphs if graphed is not None else {}
        used = graphed.eager_steps if graphed is not None else {}
        prob = [p if key not in done and self.planned_uses.get(key, 0) >= GRAPH_MIN_USES else 0.0
                for key, p in zip(keys, plan.bucket_prob)]
        return core.expected_captures(prob, steps, self.ctx.cfg.graph_warmup_steps, [used.get(k, 0) for k in keys])

    def priced_seconds(self) -> float | None:
        """Return the seconds the budget solver gave the run (solve_budget's budget_seconds)."""
        return self.budget["budget_seconds"] if self.budget else None

    def planned_update_shapes(self) -> dict[tuple, int]:
        """Return the uses of each (full_rows, width) update the run plans: its planned steps at the
        first pool's width mix (set by setup)."""
        return self.planned_uses

    def updater(self) -> GraphedUpdate:
        """Return the run's GraphedUpdate of MCLearn's update, built at the first step with the
        planned uses of each shape (its capture policy)."""
        if self.graphed is None:
            self.graphed = GraphedUpdate(self.ctx, self._update, self.planned_update_shapes() if self.budget else None)
        return self.graphed

    def replayed(self, key: tuple) -> bool:
        """Return True unless an update of shape `key` is an eager warm-up before its capture."""
        graphed = self.updater()
        return not graphed.capture or key in graphed.graphs

    def run_update(self, key: tuple, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run one update of shape `key`: a CUDA-graph replay, or eagerly (GraphedUpdate.step)."""
        return self.updater().step(key, inputs)

    def telemetry(self) -> dict[str, Any]:
        """Return MCLearn's telemetry and the graphed update's (graphs captured, their seconds)."""
        return {**super().telemetry(), **self.graph_telemetry()}

    def selection_telemetry(self) -> dict[str, Any]:
        """Return MCLearn's selection record and variance_check's measurement at the end (finish; None
        before it)."""
        return {**super().selection_telemetry(), "variance_check": self.measured_variance}

    def finish(self) -> None:
        """Measure selection's variance reduction once the run is over (variance_check)."""
        self.variance_check()

    def variance_check(self) -> dict[str, Any]:
        """Return selection's variance reduction measured once, at the end of the run (finish: after
        training and evaluation, untimed), against uniform draws on the same pool: a pool drawn and
        scored as a selected pool would be then (the policy's class weights, temperature and replay
        share, the last kappa; the head's difficulties, and stored losses with free_scores), the
        probability p of each of its refresh_every x full_rows full-pass draws (full_pass_draw_probs)
        and each row's gradient at the last layer (last_layer_gradients: the full model, eval mode).
        "measured" is variance_reduction of those gradients, their squared mean included;
        "gradient_bound" the same without it, as the estimates are; "loss" with the scores
        1 - exp(-loss) of the same rows (judge_pool's proxy); "scores" with the pool's own
        difficulties (what a draw by them expects of itself). Where the model has no last layer to
        read, the error is printed and recorded instead."""
        if self.measured_variance is not None:
            return self.measured_variance
        cfg, ctx = self.ctx.cfg, self.ctx
        start = time.perf_counter()
        kappa = self.policy.kappa(1.0)
        rows, pool_prob = self.stream.next_pool(self.pool_size(kappa), self.policy.class_weights)
        stored = self.stored_rows(rows)
        difficulty = np.full(len(rows), np.nan)
        if stored.any():
            difficulty[stored] = 1.0 - np.exp(-self.score_table[rows[stored]])
        if (~stored).any():
            difficulty[~stored] = self.head_difficulty(rows[~stored])[2].cpu().numpy()
        candidate = core.candidate_draw_probs(difficulty, self.labels_host[rows], kappa, self.policy.tau)
        draw = core.full_pass_draw_probs(candidate, self.policy.replay_share, cfg.refresh_every * self.full_rows,
                                    cfg.once_floor if cfg.once_draws else None)
        sample = len(ctx.train) * pool_prob / len(rows)  # a_k: the pool is a sample of the training set
        share = sample * len(rows) * draw  # Q_k = N pi_k p_k
        try:
            grads = last_layer_gradients(ctx.model, ctx.train, rows, cfg, ctx.device, 1.0 / (len(rows) * sample))
        except core.TrainingError as err:
            core.say(f"warning (mclearn): no variance check at the end of the run: {err}")
            self.measured_variance = {"error": str(err)}
            return self.measured_variance
        second, proxy = grads["second_moment"], 1.0 - np.exp(-grads["loss"])
        agreement = core.spearman(difficulty, second)

        def tau(m: np.ndarray, mean_square: float = 0.0) -> float | None:
            value = core.variance_reduction(m, share, sample, mean_square)
            return round(value, 4) if math.isfinite(value) else None

        self.measured_variance = {
            "rows": len(rows), "kappa": kappa, "layer": grads["layer"],
            "measured": tau(second, grads["mean_square"]), "gradient_bound": tau(second),
            "loss": tau(proxy ** 2), "scores": tau(difficulty ** 2),
            "scores_rank_agreement": None if math.isnan(agreement) else round(agreement, 4),
            "seconds": round(time.perf_counter() - start, 4)}
        return self.measured_variance


class MCLearnPaperMethod(paper.MCLearnPaper, Method):
    """`mclearn-paper` as a study Method (eager: its kept set changes size every step)."""

    own_fields = (*MCLEARN_FIELDS, "step_budget_ratio")
    wall_clock_note = ("no wall-clock knob: its budget ratio prices each step against the baseline's over as many "
                       "steps as the baseline takes; it runs once per seed at its defaults")

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.graphed: GraphedUpdate | None = None
