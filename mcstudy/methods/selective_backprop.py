"""Selective Backprop (Jiang et al. 2019): backprop only the examples a loss percentile keeps."""
from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np
import torch

from mcstudy.config import Config
from mcstudy.data import plan_epoch
from mcstudy.engine import BudgetPlan, RunContext, host_rng
from .scored import ScoredBatches, selection_rate_plan


class SelectiveBackprop(ScoredBatches):
    """Selective Backprop (Jiang et al. 2019): forward every batch, keep each example with
    probability (percentile of its loss among recent losses)^beta, backprop once a full batch of
    kept examples has gathered; no reweighting, as published."""

    name = "selective-backprop"
    own_fields = ("candidate_share", "sb_beta", "sb_history")

    @classmethod
    def plan_budget(cls, name: str, time_budget: float, cfg: Config, costs: dict[str, Any]) -> BudgetPlan:
        """Return the selection-rate plan (selection_rate_plan, no fixed cost, every example offered),
        the rate s set through sb_beta = 1 / s - 1 (E[U^beta] = 1 / (beta + 1))."""
        return selection_rate_plan(name, time_budget, costs["forward_share"], 0.0, 1.0,
                                   lambda rate: {"sb_beta": 1 / rate - 1})

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.plan = []
        for _ in range(ctx.cfg.epochs):
            self.extend_plan()
        self.history = np.empty(0)
        self.pending: list[torch.Tensor] = []
        self.updates = 0
        self.rng = host_rng(ctx)

    def extend_plan(self) -> None:
        """Add an epoch's candidate batches (its leading candidate_share) to the plan."""
        epoch = plan_epoch(self.ctx.train, self.ctx.cfg, self.ctx.generator)
        self.plan.extend(epoch[:max(1, math.ceil(len(epoch) * self.ctx.cfg.candidate_share))])

    def num_steps(self) -> int:
        return len(self.plan)

    def planned_score_shapes(self) -> dict[tuple, int]:
        return dict(collections.Counter((len(idx), width) for idx, width in self.plan))

    def optimizer_steps(self) -> int:
        # E[U^beta] = 1 / (beta + 1) for a uniform percentile U.
        return max(1, round(len(self.plan) / (self.ctx.cfg.sb_beta + 1)))

    def select(self, losses: np.ndarray) -> np.ndarray:
        """Return the kept mask: Bernoulli(percentile(loss | recent history)^beta)."""
        cfg = self.ctx.cfg
        self.history = np.concatenate([self.history, losses])[-cfg.sb_history:]
        percentile = np.searchsorted(np.sort(self.history), losses, side="right") / len(self.history)
        return self.rng.random(len(losses)) < percentile ** cfg.sb_beta

    def step(self, i: int) -> dict[str, Any]:
        if i >= len(self.plan):  # a clock-driven run outlasts its plan
            self.extend_plan()
        idx, _ = self.plan[i]
        losses = self.score(self.ctx.train, idx).float().cpu().numpy()  # selection needs the host
        self.pending.append(idx[torch.as_tensor(self.select(losses))])
        gathered = torch.cat(self.pending)
        info: dict[str, Any] = {"kept_fraction": float(len(self.pending[-1]) / len(idx))}
        if len(gathered) >= self.ctx.cfg.batch_size or (i == len(self.plan) - 1 and len(gathered)):
            batch, rest = gathered[: self.ctx.cfg.batch_size], gathered[self.ctx.cfg.batch_size:]
            self.pending = [rest]
            info["loss"], _ = self.train_rows(batch, self.updates)
            self.updates += 1
        return info
