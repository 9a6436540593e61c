"""The uniform subset: the baseline's loop on a uniform random share of the training set (a control)."""
from __future__ import annotations

from typing import Any

import torch

from mcstudy.config import Config
from mcstudy.data import subset_split
from mcstudy.engine import BudgetPlan, RunContext
from .baseline import FullPass


class Uniform(FullPass):
    """Control: the baseline loop on a uniform random subset of uniform_fraction of the data
    (run_sweep sets the fraction to match another method's measured time when it is None)."""

    name = "uniform"
    own_fields = ("uniform_fraction", "uniform_match")

    @classmethod
    def plan_budget(cls, name: str, time_budget: float, cfg: Config, costs: dict[str, Any]) -> BudgetPlan:
        """Return the data share uniform_fraction = time_budget."""
        return BudgetPlan(name, time_budget, {"uniform_fraction": time_budget}, time_budget)

    def __init__(self, ctx: RunContext):
        if ctx.cfg.uniform_fraction is None:
            raise ValueError("uniform needs uniform_fraction=, or run it through run_sweep after "
                             f"'baseline' and {ctx.cfg.uniform_match!r} so it can match their times.")
        n = len(ctx.train)
        keep = torch.randperm(n, generator=ctx.generator)[: max(1, round(ctx.cfg.uniform_fraction * n))]
        super().__init__(ctx, data=subset_split(ctx.train, keep))
