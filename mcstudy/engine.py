"""Step-cost measurement: the seconds of one update of each shape, measured on a throwaway RunContext
and GraphedUpdate, which price every method's budget, and the seconds of a no-grad scoring forward."""
from __future__ import annotations

import copy
import time
from typing import Sequence

import numpy as np
import torch
from torch import nn

import mclearn_core as core


def measure_step_costs(cfg: core.Config, model: nn.Module, data: core.EncodedSplit, device: torch.device,
                       rows: Sequence[int], graphed: bool | None = None, widths: Sequence[int] | None = None,
                       repeats: int = 5) -> core.StepCosts:
    """Return StepCosts for updates of each row count in `rows` at each padded width of the data
    (or `widths`), on a throwaway copy of the model with the baseline's optimizer: graphed
    (capturable fused AdamW, one captured graph per shape, median of `repeats` replays) when
    `graphed` (default: graphs_enabled(cfg) on CUDA), else eager steps (median of `repeats`).
    `model` itself is not touched (a copy trains, at learning rate 0)."""
    graphed = core.graphs_enabled(cfg) and device.type == "cuda" if graphed is None else graphed
    cap = data.input_ids.shape[1]
    widths = sorted(set(widths or {core.padded_length(w, cfg.pad_multiple, cap) for w in range(1, cap + 1)}))
    rows = sorted({min(int(r), len(data)) for r in rows})
    core._sync(device)
    start = time.perf_counter()
    model = copy.deepcopy(model).to(device).train()
    run_cfg = core.replace_config(cfg, cuda_graphs=graphed)
    ctx = core.RunContext(cfg=run_cfg, model=model, train=data, eval=data, num_labels=model.config.num_labels,
                     device=device, generator=torch.Generator(), device_generator=torch.Generator(device=device))
    if cfg.precision == "fp16" and device.type == "cuda":
        ctx.scaler = torch.amp.GradScaler("cuda")
    ctx.graphs = graphed
    ctx.optimizer = core.build_optimizer(model, run_cfg, device, capturable=graphed)
    for group in ctx.optimizer.param_groups:  # measure the work, move no weight far
        group["lr"] = torch.tensor(0.0, device=device) if graphed else 0.0
    updater = core.GraphedUpdate(ctx, lambda inputs, key: core.plain_update(ctx, data, inputs["rows"], key[1]))
    seconds: dict[tuple[int, int], float] = {}
    for _ in range(3):  # a cold first shape would otherwise look dearer than larger ones
        updater.step((rows[0], widths[0]), {"rows": core.to_device(torch.arange(rows[0]), device)})
    for width in widths:
        for count in rows:
            key, inputs = (count, width), {"rows": core.to_device(torch.arange(count), device)}
            for _ in range(cfg.graph_warmup_steps + 1 if updater.capture else 1):  # warm-up, then capture
                updater.step(key, inputs)
            times = []
            for _ in range(repeats):
                core._sync(device)
                t0 = time.perf_counter()
                updater.step(key, inputs)
                core._sync(device)
                times.append(time.perf_counter() - t0)
            seconds[key] = float(np.median(times))
    warnings = core.cost_warnings(seconds)
    if updater.capture_error:
        warnings.append(f"graph capture failed, costs are eager: {updater.capture_error}")
    n_graphs = len(updater.graphs)
    capture = updater.capture_seconds / n_graphs if n_graphs else 0.0
    del updater, ctx, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    core._sync(device)
    return core.StepCosts(seconds=seconds, graphed=graphed and n_graphs > 0, capture_seconds=capture,
                     measure_seconds=time.perf_counter() - start, warnings=warnings)


@torch.no_grad()
def measure_forward_seconds(cfg: core.Config, model: nn.Module, data: core.EncodedSplit, device: torch.device,
                            rows: int, width: int, repeats: int = 5, graphed: bool = False) -> float:
    """Return the median seconds of a no-grad forward (train mode, autocast) of `rows` rows at
    `width` tokens on a throwaway copy of `model`: the scoring pass of Selective Backprop and
    RHO-LOSS, run as they run it (ScoredBatches.score): through a forward-only GraphedUpdate,
    replayed as a CUDA graph when `graphed`, else eager."""
    model = copy.deepcopy(model).to(device).train()
    ctx = core.RunContext(cfg=cfg, model=model, train=data, eval=data, num_labels=model.config.num_labels, device=device,
                     generator=torch.Generator(), device_generator=torch.Generator(device=device), graphs=graphed)
    batch = core.make_batch(data, torch.arange(min(rows, len(data))), width)
    scorer = core.GraphedUpdate(ctx, lambda inputs, key: {"logits": ctx.forward(batch)}, trains=False)
    times = []
    for k in range(cfg.graph_warmup_steps + 1 + repeats + 2):  # warm-up and capture (graphed), two more warm-ups
        core._sync(device)
        t0 = time.perf_counter()
        scorer.step((rows, width), {})
        core._sync(device)
        if k >= cfg.graph_warmup_steps + 3:
            times.append(time.perf_counter() - t0)
    del scorer, ctx, model
    return float(np.median(times))


def calibration_rows(cfg: core.Config, full_rows: int | None = None) -> list[int]:
    """Return the row counts a step-cost table measures: eighth, quarter, half and whole batch,
    and MC-Learn's full-pass rows."""
    sizes = {max(1, cfg.batch_size // d) for d in (8, 4, 2, 1)}
    return sorted(sizes | ({full_rows} if full_rows else set()))
