"""Step-cost curve: how long does one update take for a given number of rows,
eager and as a CUDA-graph replay, at each padded width of a real data set with a real encoder?
It decides how MC-Learn turns fewer full passes into less time: if an update of 32 rows costs
nearly what one of 256 rows costs, fewer rows per step saves nothing and only fewer steps can.

    python benchmarks/step_cost_curve.py --model .gpu/models/all-MiniLM-L6-v2 --dataset .gpu/data/sst2
    python benchmarks/step_cost_curve.py --preset cpu-smoke --rows 4 8 16       # CPU smoke

Writes results/bench/step-cost-<model>-<device>.json (one row per mode, rows, width: seconds)
and a PNG beside it (plot_step_costs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mclearn_core as mc  # noqa: E402
import mcstudy as ms  # noqa: E402


def plot_step_costs(curve: dict[str, Any], path: str | Path | None = None):
    """Plot a step-cost curve: milliseconds per update against rows per update, one line per
    width, eager dashed and graphed solid; return the figure (saved as PNG when `path` is given)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = curve["rows"]
    widths = sorted({r["width"] for r in rows})
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(widths)))
    for mode, style in (("eager", "--"), ("graphed", "-")):
        for width, color in zip(widths, colors):
            points = sorted((r["rows"], r["seconds"] * 1e3) for r in rows if r["mode"] == mode and r["width"] == width)
            if points:
                ax.plot(*zip(*points), style, marker="o", color=color, label=f"{mode}, {width} tokens")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rows per update")
    ax.set_ylabel("ms per update (forward, backward, AdamW)")
    ax.set_title(f"{curve['model']} on {curve['device']}", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return mc.figure_out(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--model", default=None, help="local folder or hub name (default: the preset's)")
    parser.add_argument("--dataset", default=None, help="local folder or hub name (default: the preset's)")
    parser.add_argument("--rows", nargs="+", type=int, default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=str(ms.REPO_ROOT / "results" / "bench"))
    args = parser.parse_args()
    cfg = ms.make_config(args.preset, model_name=args.model, dataset=args.dataset)
    prepared = ms.prepare(ms.replace_config(cfg, cuda_graphs=False))  # no calibration yet
    rows = []
    for graphed in ([False, True] if prepared.device.type == "cuda" else [False]):
        costs = ms.measure_step_costs(ms.replace_config(cfg, cuda_graphs=graphed), prepared.base_model,
                                      prepared.train, prepared.device, rows=args.rows, graphed=graphed,
                                      repeats=args.repeats)
        for item in costs.record()["update_seconds"]:
            rows.append({"mode": "graphed" if costs.graphed else "eager", **item})
        for message in costs.warnings:
            print(f"warning ({'graphed' if graphed else 'eager'}): {message}")
    device = ms.device_name(prepared.device)
    model = Path(cfg.model_name).name
    slug = "".join(c if c.isalnum() else "-" for c in f"{model}-{device}".lower()).strip("-")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"model": model, "dataset": ms.portable_path(prepared.source), "device": device,
               "precision": cfg.precision, "commit": os.environ.get("MCLEARN_COMMIT") or ms.environment_versions()["git_commit"],
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows}
    ms.write_json_atomic(out / f"step-cost-{slug}.json", payload)
    plot_step_costs(payload, out / f"step-cost-{slug}.png")
    for row in rows:
        print(f"{row['mode']:>8} rows {row['rows']:>4} width {row['width']:>4}: {row['seconds'] * 1e3:8.2f} ms")
    print(json.dumps({k: v for k, v in payload.items() if k != "rows"}))


if __name__ == "__main__":
    main()
