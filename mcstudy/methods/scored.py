"""What the peers that score examples with a no-grad forward share (Selective Backprop, RHO-LOSS,
InfoBatch): graphed scoring and updates, and the selection-rate plan by which Selective Backprop
and RHO-LOSS meet a time budget."""
from __future__ import annotations

from typing import Any, Callable

import torch

import mclearn_core as core
from mclearn_core import EncodedSplit, batch_width, to_device
from mcstudy.engine import BudgetPlan, GraphedUpdate, Method


class ScoredBatches(Method):
    """Shared machinery of peers that score examples with a no-grad forward before training.
    Their updates are graphed as the baseline's (Method.update), and so are their scoring forwards
    (`score`: one CUDA graph per (rows, width), in a GraphedUpdate of its own); the selection
    between them runs on the host."""

    graphable = True
    scorer: GraphedUpdate | None = None  # the graphed scoring forward, built on the first score()

    def planned_score_shapes(self) -> dict[tuple, int] | None:
        """Return how many scoring forwards of each (rows, width) the run will make, when the
        method knows its plan up front (rare shapes then stay uncaptured); else None."""
        return None

    def train_rows(self, idx: torch.Tensor, step: int, weights: torch.Tensor | None = None,
                   width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Update on training rows `idx` (host or device indices), padded to `width` (or their
        longest); return (mean loss, per-example losses), detached."""
        train = self.ctx.train
        width = width or batch_width(train, idx.cpu() if idx.is_cuda else idx, self.ctx.cfg.pad_multiple)
        return self.update(train, to_device(idx, self.ctx.device), step, width, weights)

    def graph_telemetry(self) -> dict[str, Any]:
        """Return the graphed update's telemetry and the scoring forward's, under "scoring"
        (its graphs, capture seconds and any capture error), with "scoring_graphed"."""
        if self.scorer is None:  # InfoBatch scores with its updates' own losses: no scoring forward
            return super().graph_telemetry()
        scoring = self.scorer.telemetry()
        graphed = bool(scoring.get("cuda_graphs")) and "graph_capture_error" not in scoring
        return {**super().graph_telemetry(), "scoring_graphed": graphed, "scoring": scoring}

    def telemetry(self) -> dict[str, Any]:
        return self.graph_telemetry()

    def score(self, data: EncodedSplit, idx: torch.Tensor) -> torch.Tensor:
        """Return per-example training losses (no gradients, train mode as the update sees them)
        of rows `idx` (host indices) of `data`: a CUDA-graph replay per (rows, width) when the
        update is graphed (ctx.graphs), else an eager forward."""
        ctx = self.ctx
        width = batch_width(data, idx, ctx.cfg.pad_multiple)
        ctx.examples_scored += len(idx)
        if self.scorer is None:
            self.scored_data = data
            self.scorer = GraphedUpdate(ctx, lambda inputs, key: self._score_pass(data, inputs["rows"], key[1]),
                                        self.planned_score_shapes(), trains=False)
        if data is not self.scored_data:
            raise ValueError("ScoredBatches.score scores one split per run (its graphs hold that split's rows)")
        return self.scorer.step((len(idx), width), {"rows": to_device(idx, ctx.device)})["losses"]

    def _score_pass(self, data: EncodedSplit, rows: torch.Tensor, width: int) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            batch = core.make_batch(data, rows, width)
            return {"losses": self.ctx.per_example_loss(self.ctx.forward(batch), batch["labels"])}


MIN_SELECTION_RATE = 0.1  # Selective Backprop and RHO-LOSS never keep fewer candidates than this


def selection_rate_plan(name: str, time_budget: float, forward_share: float, fixed: float, offered: float,
                        rate_knobs: Callable[[float], dict[str, Any]]) -> BudgetPlan:
    """Return the BudgetPlan of a scoring peer whose cost, in baseline updates, is
    fixed + offered x d x (forward_share + s): every candidate scored, a share s of them trained,
    candidates a share d of each epoch's `offered` share of the data. s is solved at d = 1; below
    MIN_SELECTION_RATE, s stays there and d is solved instead (floor 0.05; the note says so).
    `rate_knobs` turns s into the method's own knobs; candidate_share is d."""
    r, f = time_budget, forward_share
    rate, share, note = (r - fixed) / offered - f, 1.0, None
    if rate < MIN_SELECTION_RATE:
        rate = MIN_SELECTION_RATE
        share = (r - fixed) / (offered * (f + rate))
        note = (f"the selection rate alone cannot reach {r:.2f}: scoring every candidate costs "
                f"{fixed + offered * f:.2f} of the baseline; candidates cut to {max(share, 0.05):.2f} of each epoch")
        if share < 0.05:
            share = 0.05
            note = (f"cannot reach {r:.2f}: the fixed costs alone take {fixed:.2f} of the baseline; runs at "
                    f"selection rate {rate} on 5% of each epoch")
    rate = min(rate, 1.0)
    predicted = fixed + offered * share * (f + rate)
    return BudgetPlan(name, r, {**rate_knobs(rate), "candidate_share": min(share, 1.0)}, predicted, note)
