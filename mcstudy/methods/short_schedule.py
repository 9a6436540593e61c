"""The short schedule: the baseline cut to the leading share of its plan whose priced seconds fit
a time budget (the reference of every budgeted comparison)."""
from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from mcstudy.config import Config
from mcstudy.engine import BudgetPlan, GRAPH_MIN_USES, graphs_enabled
from .baseline import FullPass


def short_schedule_length(step_seconds: Sequence[float], shapes: Sequence[tuple], time_budget: float,
                          capture_seconds: float, min_uses: int = GRAPH_MIN_USES) -> tuple[int, dict[str, float]]:
    """Return (n, prices): the most leading steps of a plan whose priced seconds fit `time_budget`
    times the whole plan's, and the seconds behind that choice.

    A prefix of n steps is priced as the sum of its steps' `step_seconds` plus one capture
    (`capture_seconds`, 0 when eager) per update shape that the prefix uses at least `min_uses`
    times (GraphedUpdate leaves rarer shapes uncaptured); the whole plan likewise, so the budget is
    time_budget x (its steps + its captures). The price only grows with n, so the first n whose
    price passes the budget ends the scan. At least one step."""
    uses: collections.Counter = collections.Counter(shapes)
    captured_full = sum(1 for count in uses.values() if count >= min_uses)
    full_seconds = float(np.sum(step_seconds)) + captured_full * capture_seconds
    budget_seconds = time_budget * full_seconds
    seen: collections.Counter = collections.Counter()
    prices, spent, captured = [], 0.0, 0  # prices[k]: the price of the first k + 1 steps
    for seconds, shape in zip(step_seconds, shapes):
        seen[shape] += 1
        spent, captured = spent + seconds, captured + (seen[shape] == min_uses)
        prices.append(spent + captured * capture_seconds)
    n = max(1, int(np.searchsorted(prices, budget_seconds * (1 + 1e-9), side="right")))  # an exact fit stays in
    return n, {"full_steps": len(step_seconds), "full_seconds": round(full_seconds, 4),
               "budget_seconds": round(budget_seconds, 4), "planned_seconds": round(prices[n - 1], 4)}


class ShortSchedule(FullPass):
    """The reference of every budgeted comparison: what a practitioner does with less time. The
    baseline on the whole training set, cut to the leading share of its own plan (shuffled length
    buckets, epoch after epoch, so no example repeats before every one has been seen) whose priced
    seconds fit cfg.time_budget of the whole plan's (short_schedule_length, from the measured step
    costs the budget solver uses); its warmup and cosine schedule span the shortened run, so its lr
    decays to zero inside the budget. Clock-driven (cfg.budget_seconds), it runs the same plan
    until the clock stops it, with the lr following the clock, and the priced prefix is the steps it
    plans for. time_budget 0 (or 1) is the full baseline."""

    @classmethod
    def plan_budget(cls, name: str, time_budget: float, cfg: Config, costs: dict[str, Any]) -> BudgetPlan:
        """Return no knobs: its own solver cuts its plan to time_budget (short_schedule_length)."""
        return BudgetPlan(name, time_budget, {}, time_budget)

    name = "short-schedule"
    priced = True  # train_method hands it the measured step costs
    planned_steps: int | None = None  # clock-driven: the priced prefix's steps (the plan itself stays whole)

    def setup(self) -> None:
        cfg, costs = self.ctx.cfg, self.ctx.step_costs
        self.schedule: dict[str, Any] = {"time_budget": cfg.time_budget, "full_steps": len(self.plan),
                                         "steps": len(self.plan)}
        if not 0 < cfg.time_budget < 1:
            return
        seconds = [costs.at(len(rows), width) for rows, width in self.plan]
        shapes = [self.update_shape(len(rows), width, False) for rows, width in self.plan]
        capture = costs.capture_seconds if costs.graphed and graphs_enabled(cfg) else 0.0
        n, prices = short_schedule_length(seconds, shapes, cfg.time_budget, capture)
        if self.ctx.clock is None:
            self.plan = self.plan[:n]
        else:  # the clock ends the run; the priced prefix is the steps it plans (capture policy, bar)
            self.planned_steps = n
        self.schedule.update(steps=n, epochs_covered=round(n / max(prices["full_steps"], 1) * cfg.epochs, 4),
                             **prices)

    def num_steps(self) -> int:
        return self.planned_steps or len(self.plan)

    def priced_seconds(self) -> float | None:
        """Return time_budget x the whole plan's priced seconds (None for the full baseline)."""
        return self.schedule.get("budget_seconds")

    def planned_update_shapes(self) -> dict[tuple, int]:
        return dict(collections.Counter(self.update_shape(len(rows), width, False)
                                        for rows, width in self.plan[:self.num_steps()]))

    def telemetry(self) -> dict[str, Any]:
        return {"short_schedule": self.schedule, **self.graph_telemetry()}
