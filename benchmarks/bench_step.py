"""Step benchmark: how fast is one epoch of the training loop, and what does MC-Learn's
own machinery cost?

Workload: N sequences whose lengths are resampled from the tokenized AG News test split
(benchmarks/ag_news_test_lengths.npy, bert-base-uncased WordPiece, max 128), random token ids,
DistilBERT-base with random weights (only timing matters), 4 labels, data already on the device.
Each variant first runs `--warmup` steps (compilation, cuBLAS handles and allocator warm-up; their
seconds are reported apart as `warmup_seconds`), then one timed epoch. Prints a table and writes
results/bench/<device>.json: a list of objects with keys variant, method, device, batch_size,
train_seconds, tokens_per_s, mfu (plus a few extra keys).

    python benchmarks/bench_step.py                      # GPU: the full 120,000-sequence epoch
    python benchmarks/bench_step.py --n 512 --tiny       # CPU smoke: a tiny model, seconds
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mclearn_core as mc  # noqa: E402
import mcstudy as ms  # noqa: E402

# Dense bf16/fp16 tensor-core peaks from the vendors' datasheets (FLOP/s), for MFU.
PEAK_FLOPS = {"h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12, "t4": 65e12}

# Each variant sets every knob it depends on (the h100 preset turns graphs on by default).
PLAIN = dict(cuda_graphs=False, compile_mode="")
VARIANTS = {
    # A loop like the published one: fp16 + GradScaler, unfused AdamW, random batch order.
    "published-like": dict(precision="fp16", optimizer_fused=False, bucket_mult=1, batch_size=64,
                           pad_multiple=8, **PLAIN),
    "bf16+fused": dict(precision="bf16", optimizer_fused=True, bucket_mult=1, batch_size=64, pad_multiple=8, **PLAIN),
    "bf16+fused+buckets": dict(precision="bf16", optimizer_fused=True, bucket_mult=50, batch_size=64,
                               pad_multiple=8, **PLAIN),
    "bf16+fused+buckets+static32": dict(precision="bf16", optimizer_fused=True, bucket_mult=50, batch_size=64,
                                        pad_multiple=32, **PLAIN),
    # The whole update (gather, fwd, bwd, clip, AdamW) as one CUDA graph per batch shape.
    "bf16+fused+buckets+static32+graphs": dict(precision="bf16", bucket_mult=50, batch_size=64,
                                               pad_multiple=32, cuda_graphs=True, compile_mode=""),
    "bf16+fused+buckets+static32+compile+graphs": dict(precision="bf16", bucket_mult=50, batch_size=64,
                                                       pad_multiple=32, cuda_graphs=True,
                                                       compile_mode="default"),
    "bf16+fused+buckets+static32+graphs b256": dict(precision="bf16", bucket_mult=50, batch_size=256,
                                                    pad_multiple=32, cuda_graphs=True, compile_mode=""),
}


# What a GPU run measures, in this order: the graphed baseline and the graphed MC-Learn step (with
# a graphed replay of its own full passes), then the eager ones for the same-device reference.
DEFAULT_RUNS = [
    "bf16+fused+buckets+static32+graphs:baseline",
    "bf16+fused+buckets+static32+graphs:mclearn",
    "bf16+fused+buckets+static32+graphs b256:baseline",
    "bf16+fused+buckets+static32+graphs b256:mclearn",
    "bf16+fused+buckets+static32:baseline",
    "bf16+fused+buckets+static32:mclearn",
]


def synthetic_split(n: int, vocab: int, max_length: int, seed: int) -> mc.EncodedSplit:
    """Return n random-token sequences with AG-News-test lengths (resampled), padded to max_length."""
    rng = np.random.default_rng(seed)
    source = np.load(Path(__file__).with_name("ag_news_test_lengths.npy")).astype(np.int64)
    lengths = np.minimum(rng.choice(source, size=n, replace=True), max_length)
    ids = rng.integers(1000, vocab, size=(n, max_length))
    ids[:, 0] = 101  # [CLS]
    ids[np.arange(max_length)[None, :] >= lengths[:, None]] = 0
    return mc.EncodedSplit(torch.as_tensor(ids), torch.as_tensor(lengths), torch.as_tensor(rng.integers(0, 4, n)))


def bench_workload(args) -> tuple[torch.nn.Module, torch.device, mc.EncodedSplit]:
    """Return the benchmark's base model (DistilBERT-base with random weights, seed 0, or a 2-layer
    width-64 one with --tiny), the device, and `args.n` synthetic sequences already on it."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(num_labels=4) if not args.tiny else \
        DistilBertConfig(num_labels=4, dim=64, n_layers=2, n_heads=2, hidden_dim=256)
    base_model = DistilBertForSequenceClassification(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return base_model, device, synthetic_split(args.n, config.vocab_size, args.max_length, seed=0).to(device)


def warmup_steps(trainer, count: int) -> list[int]:
    """Return the step indices to run before timing: the first `count` steps, plus, for a graphed
    baseline, enough steps of every batch shape that each shape's graph is captured before timing."""
    steps = list(range(min(count, trainer.num_steps())))
    plan = getattr(trainer, "plan", None)
    cfg = trainer.ctx.cfg
    if plan is not None and ms.graphs_enabled(cfg):
        seen: dict[tuple[int, int], int] = {}
        for i, (rows, width) in enumerate(plan):
            key = (len(rows), width)
            if seen.get(key, 0) <= cfg.graph_warmup_steps:
                seen[key] = seen.get(key, 0) + 1
                if i not in steps:
                    steps.append(i)
    return steps


def model_flops_per_token(model: torch.nn.Module, mean_length: float) -> float:
    """Return training FLOPs per token: 6 x non-embedding parameters + attention (12 L d T)."""
    parts = mc.encoder_parts(model)
    params = sum(p.numel() for p in parts.layers.parameters())
    hidden = getattr(model.config, "dim", None) or model.config.hidden_size
    return 6 * params + 12 * len(parts.layers) * hidden * mean_length


def variant_context(changes: dict, method: str, args, data: mc.EncodedSplit, device: torch.device,
                    base_model: torch.nn.Module) -> ms.RunContext:
    """Return a fresh RunContext (a copy of the model) for `method` under the variant's knobs."""
    cfg = ms.make_config("cpu" if device.type == "cpu" else "h100", model_name="bench", dataset="bench",
                         epochs=1, max_length=args.max_length, **changes)
    if device.type == "cpu":
        cfg = ms.replace_config(cfg, precision="fp32", compile_mode="")
    cfg = ms.config_for_method(cfg, method)
    model = mc.copy.deepcopy(base_model).to(device).train()
    ctx = ms.RunContext(cfg=cfg, model=model, train=data, eval=data, num_labels=4, device=device,
                        generator=torch.Generator().manual_seed(0),
                        device_generator=torch.Generator(device=device).manual_seed(0))
    if cfg.precision == "fp16" and device.type == "cuda":
        ctx.scaler = torch.amp.GradScaler("cuda")
    return ctx


class PlainUpdates(ms.Method):
    """The baseline's plain update (forward, loss, backward, clip, AdamW) on a given list of
    (device rows, width) passes, replayed as CUDA graphs when the variant has graphs on."""

    graphable = True

    def __init__(self, ctx: ms.RunContext, passes: list[tuple[torch.Tensor, int]]):
        super().__init__(ctx)
        self.passes = passes
        self.graphed: ms.GraphedUpdate | None = None  # built at the first step, once ctx.graphs is set

    def num_steps(self) -> int:
        return len(self.passes)

    def step(self, i: int) -> dict:
        rows, width = self.passes[i]
        if self.graphed is None:
            ctx = self.ctx
            self.graphed = ms.GraphedUpdate(ctx, lambda inputs, key: ms.plain_update(ctx, ctx.train, inputs["rows"], key[1]))
        out = self.graphed.step((len(rows), width), {"rows": rows})
        self.ctx.scheduler.step()
        return out


def record_full_passes(trainer: mc.MCLearn) -> list[tuple[torch.Tensor, int]]:
    """Return a list that collects, from now on, the (full-pass rows on the device, width) of each
    update `trainer` (an MCLearn) makes: its step is wrapped to read them from the step plan it
    ran (the rows of plan position step - plan_start, after the step's refresh and re-plan)."""
    passes: list[tuple[torch.Tensor, int]] = []
    step = trainer.step

    def logged(i: int):
        before = trainer.steps_run
        out = step(i)
        if trainer.steps_run > before:  # the step made an update (a re-planned run's last steps do not)
            j = i - trainer.plan_start
            passes.append((trainer.plan_device["full_rows"][j], trainer.plan.widths[j]))
        return out

    trainer.step = logged
    return passes


def first_of_each_shape(passes: list[tuple[torch.Tensor, int]], count: int) -> list[int]:
    """Return the indices of the first `count` passes of each shape (rows, width)."""
    seen: dict[tuple[int, int], int] = {}
    out = []
    for i, (rows, width) in enumerate(passes):
        key = (len(rows), width)
        if seen.get(key, 0) < count:
            seen[key] = seen.get(key, 0) + 1
            out.append(i)
    return out


def timed_seconds(trainer: ms.Method, steps: Sequence[int], device: torch.device) -> float:
    """Return the wall seconds of trainer.step over `steps`, between device syncs."""
    mc.sync_device(device)
    start = time.perf_counter()
    for i in steps:
        trainer.step(i)
    mc.sync_device(device)
    return time.perf_counter() - start


def replay_trainer(passes: list[tuple[torch.Tensor, int]], changes: dict, args, data, device,
                   base_model) -> PlainUpdates:
    """Return plain updates on `passes` in a fresh context (a new copy of the model, the variant's
    knobs, graphed when it is) with every shape warmed up and captured (untimed)."""
    ctx = variant_context(changes, "baseline", args, data, device, base_model)
    plain = PlainUpdates(ctx, passes)
    warm = first_of_each_shape(passes, ctx.cfg.graph_warmup_steps + 1)
    ms.build_optimization(ctx, plain, extra_steps=len(warm))
    for i in warm:
        plain.step(i)
    return plain


def replay_seconds(passes: list[tuple[torch.Tensor, int]], changes: dict, args, data, device, base_model) -> float:
    """Return the seconds of plain updates (graphed when the variant is) on exactly the passes
    MC-Learn's full passes made: the work MC-Learn cannot avoid. What its steps take beyond this
    is its own overhead (scoring, cheap head, sampling, refreshes, host waits)."""
    plain = replay_trainer(passes, changes, args, data, device, base_model)
    return timed_seconds(plain, range(len(passes)), device)


def git_commit() -> str:
    """Return the checked-out commit (short hash, "+dirty" with uncommitted changes), or
    $MCLEARN_COMMIT where the tree was copied without its .git (the GPU machine), or "unknown"."""
    import os
    import subprocess

    if os.environ.get("MCLEARN_COMMIT"):
        return os.environ["MCLEARN_COMMIT"]

    try:
        root = ms.REPO_ROOT
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_variant(name: str, method: str, changes: dict, args, data: mc.EncodedSplit, device: torch.device,
                base_model: torch.nn.Module) -> dict:
    """Time one epoch of `method` under the variant's config; return the result row."""
    ctx = variant_context(changes, method, args, data, device, base_model)
    cfg, model = ctx.cfg, ctx.model
    trainer = ms.METHODS[method](ctx)
    if getattr(trainer, "priced", False):  # untimed, once per process in a study (prepare)
        ctx.step_costs = ms.measure_step_costs(cfg, model, data, device, rows=ms.calibration_rows(cfg))
    mc.sync_device(device)
    t0 = time.perf_counter()
    trainer.setup()
    steps = trainer.num_steps()
    # The baseline re-runs its warm-up steps timed (its plan is fixed); MC-Learn's steps follow
    # its pools, so it times the steps after its warm-up.
    warm_steps = warmup_steps(trainer, args.warmup) if method == "baseline" else list(range(min(args.warmup, steps - 1)))
    timed = range(steps) if method == "baseline" else range(len(warm_steps), steps)
    ms.build_optimization(ctx, trainer, extra_steps=len(warm_steps) if method == "baseline" else 0)
    setup_seconds = time.perf_counter() - t0
    warm = time.perf_counter()
    for i in warm_steps:
        trainer.step(i)
    mc.sync_device(device)
    warmup_seconds = time.perf_counter() - warm
    tokens_before = ctx.examples_backward
    capture_before = trainer.graphed.capture_seconds if getattr(trainer, "graphed", None) else 0.0
    if method != "baseline":
        full_passes = record_full_passes(trainer)  # for the replay
    seconds = timed_seconds(trainer, timed, device)
    n_backward = ctx.examples_backward - tokens_before
    extra = {"cuda_graphs": ctx.graphs}
    if getattr(trainer, "graphed", None):
        extra["graph_capture_seconds_in_timed_epoch"] = round(trainer.graphed.capture_seconds - capture_before, 3)
        extra["graph_capture_seconds"] = round(trainer.graphed.capture_seconds, 3)
    if method != "baseline":  # MC-Learn's time breakdown: device seconds inside each timed region
        measured = trainer.telemetry().get("measured_seconds", {})
        extra["measured_seconds"] = {k: round(v, 3) for k, v in measured.items()}
        plain = replay_seconds(full_passes, changes, args, data, device, base_model)
        extra["timed_steps"] = len(timed)
        extra["budget"] = {k: v for k, v in trainer.budget.items() if k != "step_costs"}
        extra["full_pass_replay_seconds"] = round(plain, 3)
        extra["overhead_fraction"] = round(1 - plain / seconds, 4)
    tokens = n_backward * float(data.lengths.float().mean())
    device_name = ms.device_name(device)
    peak = next((v for k, v in PEAK_FLOPS.items() if k in device_name.lower()), float("nan"))
    flops = model_flops_per_token(model, float(data.lengths.float().mean())) * tokens
    return {"variant": name, "method": method, "device": device_name, "batch_size": cfg.batch_size,
            "commit": git_commit(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "train_seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "mfu": round(flops / seconds / peak, 4) if peak == peak else None,
            "steps": steps, "examples_backward": n_backward, "warmup_seconds": round(warmup_seconds, 3),
            "setup_seconds": round(setup_seconds, 3), "n_sequences": len(data), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120_000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer width-64 model (CPU smoke)")
    parser.add_argument("--runs", nargs="*", default=DEFAULT_RUNS,
                        help="variant:method pairs, in order (the file is rewritten after each)")
    parser.add_argument("--out", default=str(ms.REPO_ROOT / "results" / "bench"))
    parser.add_argument("--append", action="store_true",
                        help="keep the rows already in the device's file, replacing those re-measured")
    args = parser.parse_args()
    base_model, device, data = bench_workload(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in ms.device_name(device).lower()).strip("-")
    path = out / f"{slug}{'-tiny' if args.tiny else ''}.json"
    runs = [tuple(run.rsplit(":", 1)) for run in args.runs]
    kept = [r for r in (json.loads(path.read_text()) if args.append and path.exists() else [])
            if (r["variant"], r["method"]) not in runs]
    rows = []
    print(f"{'variant':<44} {'method':<9} {'train s':>9} {'tokens/s':>12} {'mfu':>7} {'overhead':>8}")
    for name, method in runs:
        row = run_variant(name, method, VARIANTS[name], args, data, device, base_model)
        rows.append(row)
        ms.write_json_atomic(path, kept + rows)  # a run cut short keeps the rows measured so far
        overhead = row.get("overhead_fraction")
        print(f"{row['variant']:<44} {row['method']:<9} {row['train_seconds']:>9.2f} "
              f"{row['tokens_per_s']:>12.0f} {row['mfu'] if row['mfu'] is not None else float('nan'):>7.3f} "
              f"{'' if overhead is None else f'{overhead:.1%}':>8}", flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
