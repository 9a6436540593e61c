"""Check on a CUDA machine that one process running many training runs keeps its GPU memory flat:
each run's CUDA graphs (one shared memory pool per run) must be freed before the next run, as in a
budget study (a Banking77 study ran the H200 out of memory when they were not).

Runs, in one process, each method at a time budget of the baseline's time through its own knob
(plan_time_budget, as run_budget_study does) and prints per run: train seconds, CUDA graphs, the
peak memory reserved during the run and the memory allocated and reserved after it. Exits 1 when
the memory reserved after the last run exceeds that after the first by more than --slack GiB.

    python benchmarks/graph_memory_check.py --model /tmp/all-mpnet-base-v2 --dataset data/banking77
"""
import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mcstudy as ms  # noqa: E402

GIB = 2 ** 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--time-budget", type=float, default=1 / 3)
    parser.add_argument("--methods", default="baseline,uniform,mclearn,selective-backprop,rho-loss,infobatch,baseline")
    parser.add_argument("--slack", type=float, default=2.0, help="GiB the memory after a run may grow by")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 2
    cfg = ms.make_config("auto", dataset=args.dataset, model_name=args.model, epochs=args.epochs,
                         results_dir=tempfile.mkdtemp(), study="graph-memory-check")
    cfg = ms.with_explicit(cfg, epochs=args.epochs)
    prepared = ms.prepare(cfg)
    costs = ms.measure_relative_costs(prepared)
    after = []
    print(f"{'run':<28}{'train s':>9}{'graphs':>8}{'peak reserved GiB':>19}{'allocated GiB':>15}{'reserved GiB':>14}")
    for i, method in enumerate(args.methods.split(",")):
        plan = None if method == "baseline" else ms.plan_time_budget(method, args.time_budget, cfg, costs)
        run_cfg = cfg if plan is None else ms.with_explicit(cfg, time_budget=plan.time_budget, **plan.knobs)
        torch.cuda.reset_peak_memory_stats()
        record = ms.train_method(method, run_cfg, prepared, seed=42 + i, progress=False, budget=plan)
        after.append(torch.cuda.memory_reserved() / GIB)
        print(f"{record['run_label']:<28}{record['train_seconds']:>9.2f}{record['telemetry'].get('cuda_graphs', 0):>8}"
              f"{torch.cuda.max_memory_reserved() / GIB:>19.2f}{torch.cuda.memory_allocated() / GIB:>15.2f}"
              f"{after[-1]:>14.2f}", flush=True)
    growth = after[-1] - after[0]
    print(f"memory reserved after the last run minus after the first: {growth:+.2f} GiB (slack {args.slack} GiB)")
    return 0 if growth <= args.slack else 1


if __name__ == "__main__":
    sys.exit(main())
