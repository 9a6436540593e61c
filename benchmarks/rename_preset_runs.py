"""Rename the stored runs whose method id changed meaning with issue 24 (mclearn_core.rename_preset_runs):
runs stored as "mclearn" with once_draws off become "mclearn-v1" (the preset before the ablation), and
outside an ablation study runs of "mclearn-once" become "mclearn" (the preset since, the same config).
Only the files' names and their records' method, run_label and renamed_from change.

    python3 benchmarks/rename_preset_runs.py [RESULTS_DIR] [--dry-run]

Then `python make_readme.py` re-summarizes results/summary.csv from the renamed files.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mclearn_core as mc  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default=str(mc.REPO_ROOT / "results"), help="results folder (default: results)")
    parser.add_argument("--dry-run", action="store_true", help="print what would move, move nothing")
    args = parser.parse_args(argv)
    if not Path(args.results, "runs").is_dir():
        print(f"error: {Path(args.results, 'runs')} is not a folder: name the results folder that holds runs/",
              file=sys.stderr)
        return 2
    moves = mc.rename_preset_runs(args.results, dry_run=args.dry_run)
    for old, new in moves:
        print(f"{'would move' if args.dry_run else 'moved'} {old} -> {new.name}")
    print(f"{len(moves)} run files {'to rename' if args.dry_run else 'renamed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
