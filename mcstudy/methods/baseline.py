"""The reference method, Baseline: the optimized full fine-tune, and FullPass, the fixed plan of
bucketed batches it trains on, which the short schedule, the uniform subset, VCAS and RHO-LOSS's
irreducible-loss model also train on."""
from __future__ import annotations

import collections
from typing import Any

import torch

from mclearn_core import EncodedSplit, to_device
from mcstudy.data import plan_epoch
from mcstudy.engine import Method, RunContext


class FullPass(Method):
    """A full fine-tune on a fixed plan: bucketed batches of `data` (the training set unless given),
    every example once per epoch, each step a plain update (so CUDA graphs may replay it). The base
    of the reference method (Baseline) and of the short schedule, the uniform subset and VCAS."""

    name = "full-pass"
    graphable = True

    def __init__(self, ctx: RunContext, data: EncodedSplit | None = None):
        super().__init__(ctx)
        self.data = data if data is not None else ctx.train
        self.plan: list[tuple[torch.Tensor, int]] = []
        for _ in range(ctx.cfg.epochs):
            self.plan.extend(plan_epoch(self.data, ctx.cfg, ctx.generator))
        self.device_rows: list[torch.Tensor] = []

    def num_steps(self) -> int:
        return len(self.plan)

    def planned_update_shapes(self) -> dict[tuple, int]:
        return dict(collections.Counter(self.update_shape(len(rows), width, False) for rows, width in self.plan))

    def step(self, i: int) -> dict[str, Any]:
        if i >= len(self.plan):  # a clock-driven run outlasts its plan: one more epoch
            self.plan.extend(plan_epoch(self.data, self.ctx.cfg, self.ctx.generator))
        if len(self.device_rows) <= i:  # the plan's row indices (the rest of it) go to the device in one copy
            rest = self.plan[len(self.device_rows):]
            self.device_rows += to_device(torch.cat([rows for rows, _ in rest]), self.ctx.device).split(
                [len(rows) for rows, _ in rest])
        loss, _ = self.update(self.data, self.device_rows[i], i, self.plan[i][1])
        return {"loss": loss}

    def telemetry(self) -> dict[str, Any]:
        return self.graph_telemetry()


class Baseline(FullPass):
    """The reference method, "baseline": the optimized full fine-tune (FullPass on the whole training
    set for `epochs` epochs) that every other method is compared with."""

    name = "baseline"
    reference = True
