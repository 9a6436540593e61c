"""Carve the embedded offline sample from the AG News *test* split (deterministic, stratified).

Run once by a maintainer: python data/make_ag_news_sample.py ../shared/data/ag_news/test.parquet
The output is committed; the study never needs the source file at run time.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TRAIN_PER_CLASS, EVAL_PER_CLASS, SEED = 1500, 400, 20261123


def carve(source: Path, out_dir: Path) -> None:
    frame = pd.read_parquet(source)[["text", "label"]]
    rng = np.random.default_rng(SEED)
    train_parts, eval_parts = [], []
    for label in sorted(frame["label"].unique()):
        rows = frame[frame["label"] == label]
        order = rng.permutation(len(rows))
        train_parts.append(rows.iloc[order[:TRAIN_PER_CLASS]])
        eval_parts.append(rows.iloc[order[TRAIN_PER_CLASS:TRAIN_PER_CLASS + EVAL_PER_CLASS]])
    for name, parts in (("train", train_parts), ("test", eval_parts)):
        split = pd.concat(parts).sample(frac=1.0, random_state=SEED).reset_index(drop=True)
        split.to_parquet(out_dir / f"{name}.parquet", index=False, compression="zstd")
        print(name, len(split), split["label"].value_counts().sort_index().tolist())


if __name__ == "__main__":
    carve(Path(sys.argv[1]), Path(__file__).resolve().parent / "ag_news_sample")
