"""InfoBatch (Qin et al. 2024): prune low-loss examples each epoch and rescale the kept ones."""
from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np
import torch

from mclearn_core import to_device
from mcstudy.config import Config
from mcstudy.data import plan_epoch, subset_split
from mcstudy.engine import BudgetPlan, RunContext, host_rng
from .scored import ScoredBatches


def infobatch_anneal_start(epochs: int, anneal: float) -> int:
    """Return the first epoch (counted from 0) that InfoBatch trains on all data: the reference's
    rule (Qin et al. 2024, its code's sampler) prunes in epoch t (counted from 1) only while
    t <= (1 - anneal) x epochs, so the last ceil(anneal x epochs) epochs use all data. The product
    is rounded to 9 decimals first, so that 10 x (1 - 0.9) counts as the 1 it stands for."""
    return math.floor(round(epochs * (1 - anneal), 9))


class InfoBatch(ScoredBatches):
    """InfoBatch (Qin et al. 2024): each epoch, prune a random infobatch_prune share of the
    examples whose last loss is below the mean and scale up the kept ones' losses by
    1 / (1 - prune) so the expected gradient is unchanged; the epochs from infobatch_anneal_start
    on (the last infobatch_anneal share, rounded up to whole epochs) use all data. Unseen examples
    have no score and are never pruned, so a one-epoch run prunes nothing; `telemetry()` reports
    the pruned counts."""

    name = "infobatch"
    own_fields = ("infobatch_prune", "infobatch_anneal")

    @classmethod
    def plan_budget(cls, name: str, time_budget: float, cfg: Config, costs: dict[str, Any]) -> BudgetPlan:
        """Return no knobs: its epochs run on until the run's clock (cfg.budget_seconds) ends them,
        at its own prune ratio, its anneal starting at the clock's share (InfoBatch.annealing)."""
        return BudgetPlan(name, time_budget, {}, time_budget)

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        n = len(ctx.train)
        self.scores = torch.full((n,), float("nan"), device=ctx.device)
        self.rng = host_rng(ctx)
        self.plan: list[tuple[torch.Tensor, int, torch.Tensor]] = []
        self.pruned: list[int] = []
        self.epoch = -1
        self.steps_per_epoch = len(plan_epoch(ctx.train, ctx.cfg, torch.Generator().manual_seed(0)))

    def num_steps(self) -> int:
        # An upper bound: pruned epochs end early and the remaining steps do nothing.
        return self.steps_per_epoch * self.ctx.cfg.epochs

    def planned_update_shapes(self) -> dict[tuple, int]:
        """Return the update shapes of its epochs as planned on all the data (a pruned epoch runs
        fewer of the same batches; the partial batches pruning leaves are rare and run eagerly)."""
        epoch = plan_epoch(self.ctx.train, self.ctx.cfg, torch.Generator().manual_seed(0))
        return {shape: uses * self.ctx.cfg.epochs for shape, uses in collections.Counter(
            self.update_shape(len(rows), width, True) for rows, width in epoch).items()}

    def schedule_progress(self) -> float:
        """Return the share of its epochs done when the next step starts, each epoch's share of the
        warmup and cosine schedule compressed into the steps that epoch runs (InfoBatch's reference
        code builds its schedule per epoch from the pruned epoch's length), so the lr reaches the
        schedule's end at the last update of the last epoch."""
        epochs = self.ctx.cfg.epochs
        if self.epoch < 0:
            return 0.0
        return min(1.0, (self.epoch + self.cursor / max(len(self.plan), 1)) / epochs)

    def prune_weights(self, scores: np.ndarray, anneal: bool) -> np.ndarray:
        """Return per-example loss weights for an epoch: 0 = pruned, 1/(1-p) = kept low-loss, 1 = rest."""
        weights = np.ones(len(scores))
        seen = ~np.isnan(scores)
        if anneal or not seen.any():
            return weights
        low = seen & (scores < np.nanmean(scores))
        prune = low & (self.rng.random(len(scores)) < self.ctx.cfg.infobatch_prune)
        weights[low] = 1.0 / (1.0 - self.ctx.cfg.infobatch_prune)
        weights[prune] = 0.0
        return weights

    def annealing(self) -> bool:
        """Return True when the epoch starting now uses all the data: an epoch from
        infobatch_anneal_start on, or, in a clock-driven run (its epochs are open-ended), one that
        starts in the last infobatch_anneal share of the budget's seconds."""
        cfg, clock = self.ctx.cfg, self.ctx.clock
        if clock is not None:
            return clock.progress >= 1 - cfg.infobatch_anneal
        return self.epoch >= infobatch_anneal_start(cfg.epochs, cfg.infobatch_anneal)

    def _new_epoch(self) -> None:
        self.epoch += 1
        cfg = self.ctx.cfg
        weights = self.prune_weights(self.scores.cpu().numpy(), self.annealing())
        keep = np.flatnonzero(weights > 0)
        self.pruned.append(int(len(weights) - len(keep)))
        sub = subset_split(self.ctx.train, keep)
        device = self.ctx.device
        keep_t = to_device(keep, device)
        weight_t = to_device(weights, device, torch.float32)
        self.plan = []
        for idx, width in plan_epoch(sub, cfg, self.ctx.generator):
            rows = keep_t[to_device(idx, device)]
            self.plan.append((rows, width, weight_t[rows]))
        self.cursor = 0

    def step(self, i: int) -> dict[str, Any]:
        if self.epoch < 0 or self.cursor >= len(self.plan):
            if self.ctx.clock is None and self.epoch + 1 >= self.ctx.cfg.epochs:  # all epochs done: pruning ended them early
                return {}
            self._new_epoch()
        idx, width, weights = self.plan[self.cursor]
        self.cursor += 1
        loss, losses = self.update(self.ctx.train, idx, i, width, weights)
        self.scores[idx] = losses.float()  # idx is already on the device
        return {"loss": loss}

    def telemetry(self) -> dict[str, Any]:
        return {"pruned_per_epoch": self.pruned, **self.graph_telemetry()}
