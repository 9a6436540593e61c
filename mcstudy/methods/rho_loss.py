"""RHO-LOSS (Mindermann et al. 2022): train on the candidates with the highest reducible loss."""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch

from mcstudy.config import Config, replace_config
from mcstudy.data import subset_split
from mcstudy.engine import BudgetPlan, RunContext, build_optimization, predict
from .baseline import FullPass
from .scored import ScoredBatches, selection_rate_plan


class RhoLoss(ScoredBatches):
    """RHO-LOSS (Mindermann et al. 2022): an irreducible-loss model trained on a holdout split;
    each step scores a candidate batch rho_candidate_mult x larger without gradients and trains on
    the top rho_select_fraction by reducible loss = training loss - irreducible loss."""

    name = "rho-loss"
    own_fields = ("candidate_share", "rho_holdout", "rho_candidate_mult", "rho_select_fraction", "rho_il_epochs")

    @classmethod
    def plan_budget(cls, name: str, time_budget: float, cfg: Config, costs: dict[str, Any]) -> BudgetPlan:
        """Return the selection-rate plan (selection_rate_plan) with rho_select_fraction = s: its
        fixed cost is the irreducible-loss model (holdout x il_epochs / epochs) and one scoring pass
        of the training set (forward_share / epochs); the holdout is never offered."""
        f = costs["forward_share"]
        fixed, offered = (cfg.rho_holdout * cfg.rho_il_epochs + f) / cfg.epochs, 1 - cfg.rho_holdout
        return selection_rate_plan(name, time_budget, f, fixed, offered, lambda rate: {"rho_select_fraction": rate})

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        cfg = ctx.cfg
        n = len(ctx.train)
        order = torch.randperm(n, generator=ctx.generator)
        n_hold = max(cfg.batch_size, round(cfg.rho_holdout * n))
        self.holdout, self.pool_rows = order[:n_hold], order[n_hold:]
        self.candidates = cfg.batch_size * cfg.rho_candidate_mult
        self.selected = max(1, round(self.candidates * cfg.rho_select_fraction))
        self.irreducible: torch.Tensor | None = None
        self.il_seconds = 0.0

    def setup(self) -> None:
        """Train the irreducible-loss model on the holdout (timed as part of training), then
        record its loss on every training example."""
        self.irreducible = irreducible_losses(self.ctx, self.holdout, self.ctx.cfg.rho_il_epochs)

    def steps_per_epoch(self) -> int:
        """Candidate batches per epoch: candidate_share of the pool, in batches of `candidates`."""
        return max(1, math.ceil(len(self.pool_rows) * self.ctx.cfg.candidate_share / self.candidates))

    def num_steps(self) -> int:
        return self.steps_per_epoch() * self.ctx.cfg.epochs

    def select(self, train_loss: torch.Tensor, irreducible: torch.Tensor) -> torch.Tensor:
        """Return positions of the top `selected` candidates by reducible loss."""
        return torch.topk(train_loss - irreducible, min(self.selected, len(train_loss))).indices

    def step(self, i: int) -> dict[str, Any]:
        per_epoch = self.steps_per_epoch()
        if i % per_epoch == 0:
            self.order = self.pool_rows[torch.randperm(len(self.pool_rows), generator=self.ctx.generator)]
        j = i % per_epoch
        idx = self.order[j * self.candidates:(j + 1) * self.candidates]
        losses = self.score(self.ctx.train, idx)
        chosen = self.select(losses, self.irreducible[idx.to(self.irreducible.device)]).cpu()
        loss, _ = self.train_rows(idx[chosen], i)
        return {"loss": loss}

    def telemetry(self) -> dict[str, Any]:
        return {"holdout": len(self.holdout), "candidates_per_step": self.candidates,
                "selected_per_step": self.selected, **self.graph_telemetry()}


def irreducible_losses(ctx: RunContext, holdout: torch.Tensor, epochs: int) -> torch.Tensor:
    """Return per-example losses on the whole training set of a copy of the model fine-tuned on
    `holdout` rows for `epochs` epochs (the RHO-LOSS irreducible-loss model)."""
    cfg = replace_config(ctx.cfg, epochs=epochs)
    il_model = copy.deepcopy(ctx.model).train()
    il_ctx = dataclasses.replace(ctx, cfg=cfg, model=il_model, train=subset_split(ctx.train, holdout),
                                 examples_forward=0, examples_backward=0)
    trainer = FullPass(il_ctx)
    build_optimization(il_ctx, trainer)
    for step in range(trainer.num_steps()):
        trainer.step(step)
    logits = predict(il_model, ctx.train, cfg, ctx.device)
    return il_ctx.per_example_loss(logits, ctx.train.labels.to(ctx.device))
