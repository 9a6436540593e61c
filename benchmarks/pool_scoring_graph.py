"""Would a CUDA graph make MC-Learn's pool scoring cheaper?

MC-Learn's refresh scores a pool with the cheap head on early-layer features (MCLearn.early_features:
the first `score_layer` encoder blocks over the first `score_max_length` tokens, mean-pooled, then the
head). This measures, on the prepared data and model of a real config, in one process after the
device warm-up: the product's eager refresh scoring (early_features + head, as MCLearn.refresh runs
it), the same forward on one static pool-sized batch eagerly, and that batch as a CUDA-graph replay,
with the seconds of its capture. It prints and writes a JSON object (results/pool_scoring/pool_scoring_graph-<gpu>.json
on a GPU): per-refresh seconds of each, the saving per refresh, and `break_even_refreshes`: how many
refreshes a run needs before one capture pays back (a run makes 5-15; see pool_scoring_table).

    python benchmarks/pool_scoring_graph.py --preset auto --param dataset=glue/sst2 model_name=...   # GPU
    python benchmarks/pool_scoring_graph.py --preset cpu-smoke --refreshes 3                         # CPU smoke
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mclearn_core as mc  # noqa: E402
import mcstudy as ms  # noqa: E402


def scoring_trainer(prepared: ms.Prepared, seed: int = 42) -> mc.MCLearn:
    """Return an MCLearn trainer as a run starts it (ms.start_run: a copy of the prepared model)."""
    return ms.start_run("mclearn", ms.config_for_method(prepared.cfg, "mclearn"), prepared, seed)[1]


def timed(fn, device: torch.device, repeats: int) -> float:
    """Return the mean seconds of `fn()` over `repeats` calls, between device syncs."""
    mc.sync_device(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    mc.sync_device(device)
    return (time.perf_counter() - start) / repeats


def measure(prepared: ms.Prepared, refreshes: int) -> dict:
    """Return the measurements described in the module docstring (seconds per refresh)."""
    trainer = scoring_trainer(prepared)
    ctx, cfg = trainer.ctx, trainer.ctx.cfg
    size = trainer.pool_size(trainer.policy.kappa(0.0))
    pools = [trainer.stream.next_pool(size, trainer.policy.class_weights)[0] for _ in range(refreshes)]
    n = min(len(p) for p in pools)
    pools = [p[:n] for p in pools]
    width = max(mc.batch_width(ctx.train, p, cfg.pad_multiple, min(cfg.score_max_length, ctx.train.input_ids.shape[1]))
                for p in pools)

    def product(rows: np.ndarray) -> torch.Tensor:  # what MCLearn.refresh times under "score"
        feats = trainer.early_features(ctx.train, rows)
        labels = ctx.train.labels[mc.to_device(rows, ctx.device)]
        probs = torch.softmax(trainer.cheap_head(feats).float(), -1)
        return 1.0 - probs.gather(1, labels[:, None]).squeeze(1)

    static_rows = mc.to_device(pools[0], ctx.device)

    def static_pass() -> torch.Tensor:  # one pool-sized batch at one width: the graphable form
        with torch.no_grad(), mc.truncated_encoder(ctx.model, cfg.score_layer) as encoder, ctx.autocast():
            batch = mc.make_batch(ctx.train, static_rows, width)
            hidden = encoder(**mc.model_inputs(encoder, batch)).last_hidden_state
            feats = mc.mean_pool(hidden.float(), batch["attention_mask"])
            probs = torch.softmax(trainer.cheap_head(feats).float(), -1)
            return 1.0 - probs.gather(1, batch["labels"][:, None]).squeeze(1)

    ctx.model.eval()
    with torch.no_grad():
        for rows in pools[:2]:  # warm-up: allocator, cuBLAS, kernels
            product(rows), static_pass()
        it = iter(range(10 ** 9))
        eager_product = timed(lambda: product(pools[next(it) % len(pools)]), ctx.device, refreshes)

        def eager_static():
            static_rows.copy_(mc.to_device(pools[next(it) % len(pools)], ctx.device))
            return static_pass()
        eager_batch = timed(eager_static, ctx.device, refreshes)
        out = {"device": ms.device_name(ctx.device), "model": cfg.model_name, "dataset": cfg.dataset,
               "score_layer": cfg.score_layer, "score_max_length": cfg.score_max_length, "pool_rows": n,
               "width": width, "refreshes": refreshes, "product_eager_seconds": round(eager_product, 6),
               "static_eager_seconds": round(eager_batch, 6), **ms.code_provenance()}
        if ctx.device.type != "cuda":
            return {**out, "graphed": False, "note": "no CUDA device: the eager forms only"}
        side = torch.cuda.Stream(ctx.device)
        side.wait_stream(torch.cuda.current_stream(ctx.device))
        with torch.cuda.stream(side):
            static_pass()
        torch.cuda.current_stream(ctx.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        mc.sync_device(ctx.device)
        start = time.perf_counter()
        with torch.cuda.graph(graph):
            graphed_out = static_pass()
        mc.sync_device(ctx.device)
        capture = time.perf_counter() - start
        static_rows.copy_(mc.to_device(pools[1], ctx.device))
        graph.replay()
        check = float((graphed_out - product(pools[1])).abs().max())  # the replay scores what eager scores

        def replay():
            static_rows.copy_(mc.to_device(pools[next(it) % len(pools)], ctx.device))
            graph.replay()
        replayed = timed(replay, ctx.device, refreshes)
    saving = eager_product - replayed
    return {**out, "graphed": True, "replay_seconds": round(replayed, 6), "capture_seconds": round(capture, 4),
            "saving_per_refresh_seconds": round(saving, 6),
            "break_even_refreshes": round(capture / saving, 1) if saving > 0 else None,
            "replay_max_abs_difference": check}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--param", nargs="*", default=[], help="config overrides KEY=VALUE")
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--out", default=None, help="JSON path (default results/pool_scoring/pool_scoring_graph-<gpu>.json on CUDA)")
    args = parser.parse_args()
    cfg = ms.make_config(args.preset, **ms.parse_overrides(args.param))
    result = measure(ms.prepare(cfg), args.refreshes)
    print(json.dumps(result, indent=1))
    out = args.out or (f"results/pool_scoring/pool_scoring_graph-{result['device'].split()[-1].lower()}.json"
                       if result["graphed"] else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
