"""A/B of the baseline's pooling: the Hugging Face classification path our `baseline`
uses ([CLS] token, dropout before the classifier) against the published model's mean pooling of the
last layer (mclearn_paper.MeanPooledClassifier), same preset, data and seeds, trained and evaluated
each through its own path.

    python benchmarks/pooling_ab.py --preset cpu

Prints accuracy and train seconds per seed and their means; writes nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mclearn_core as mc  # noqa: E402
import mclearn_paper as mp  # noqa: E402
import mcstudy as ms  # noqa: E402


class MeanPooledBaseline(ms.Baseline):
    """The baseline trained and evaluated through the published mean-pooled head (eager steps)."""

    name = "baseline-meanpool"
    graphable = False

    def __init__(self, ctx: ms.RunContext):
        super().__init__(ctx)
        self.published = mp.MeanPooledClassifier(ctx.model)
        ctx.forward = self.forward  # every training forward of this run goes through mean pooling

    def forward(self, batch):
        with self.ctx.autocast():
            return self.published(**mc.model_inputs(self.ctx.model, batch)).logits

    def eval_model(self):
        return self.published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    args = parser.parse_args()
    ms.register_method(MeanPooledBaseline.name, MeanPooledBaseline)
    cfg = ms.make_config(args.preset, study="pooling-ab")
    prepared = ms.prepare(cfg)
    table = {}
    for method in ("baseline", MeanPooledBaseline.name):
        for seed in args.seeds:
            record = ms.train_method(method, cfg, prepared, seed, progress=False)
            table.setdefault(method, []).append((record["accuracy"], record["train_seconds"]))
            print(f"{method:>18} seed {seed}: accuracy {record['accuracy']:.4f}, train {record['train_seconds']:.2f}s",
                  flush=True)
    for method, rows in table.items():
        acc, secs = np.array(rows).T
        print(f"{method:>18} mean: accuracy {100 * acc.mean():.2f} ± {100 * acc.std(ddof=1):.2f} %, "
              f"train {secs.mean():.2f}s")


if __name__ == "__main__":
    main()
