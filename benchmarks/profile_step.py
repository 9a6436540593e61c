"""Where does a training step's time go? Profiles MC-Learn steps and plain updates on exactly the
batches its full passes saw (the bench workload: DistilBERT-base, AG-News lengths, batch 64), and
prints torch.profiler tables: host time per op (what the Python side costs) and device time per
kernel, plus wall ms per step without the profiler.

    python benchmarks/profile_step.py                    # GPU
    python benchmarks/profile_step.py --n 4096 --tiny    # CPU smoke
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_step  # noqa: E402
import mclearn_core as mc  # noqa: E402
import mcstudy as ms  # noqa: E402


def ms_per_step(trainer, steps: range, device: torch.device) -> float:
    """Return wall ms per step over `steps`."""
    return bench_step.timed_seconds(trainer, steps, device) * 1000 / max(len(steps), 1)


def profiled(trainer, steps: range, device: torch.device, title: str, rows: int) -> None:
    """Print the profiler's tables for `steps`."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in steps:
            trainer.step(i)
        mc.sync_device(device)
    averages = prof.key_averages()
    print(f"\n=== {title}: {len(steps)} steps, host time by op (self) ===")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=60))
    if device.type == "cuda":
        print(f"\n=== {title}: device time by kernel (self) ===")
        print(averages.table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32_000)
    parser.add_argument("--variant", default="bf16+fused+buckets+static32")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=40, help="profiled steps per method")
    parser.add_argument("--rows", type=int, default=25, help="table rows")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    base_model, device, data = bench_step.bench_workload(args)
    changes = bench_step.VARIANTS[args.variant]

    ctx = bench_step.variant_context(changes, "mclearn", args, data, device, base_model)
    trainer = ms.METHODS["mclearn"](ctx)
    trainer.setup()
    ms.build_optimization(ctx, trainer)
    passes = bench_step.record_full_passes(trainer)
    total = trainer.num_steps()
    warm, prof_steps = range(args.warmup), range(args.warmup, args.warmup + args.steps)
    timed = range(prof_steps.stop, total)
    for i in warm:
        trainer.step(i)
    profiled(trainer, prof_steps, device, "mclearn", args.rows)
    mclearn_ms = ms_per_step(trainer, timed, device)

    plain = bench_step.replay_trainer(passes, changes, args, data, device, base_model)  # shapes warmed up
    profiled(plain, prof_steps, device, "plain updates on mclearn's full-pass batches", args.rows)
    plain_ms = ms_per_step(plain, range(prof_steps.stop, len(passes)), device)
    print(f"\nwall ms per step without the profiler ({ms.device_name(device)}): mclearn {mclearn_ms:.2f}, "
          f"plain updates on its full-pass batches {plain_ms:.2f}, overhead {1 - plain_ms / mclearn_ms:.1%}")


if __name__ == "__main__":
    main()
