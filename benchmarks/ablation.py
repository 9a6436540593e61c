"""Write the MC-Learn ablation table (the variants', or the switch's) from the run files of
the ablation studies: the rule (mcstudy.ablation.ABLATION_RULE) above the table (ablation_table: each
variant's validation accuracy and rank per dataset and budget, its mean rank, the chosen one, and the
short schedule's reference row), then the diagnostics of every run (ablation_diagnostics: accuracy and
its difference from the short schedule, steps, distinct rows seen, full passes, rank agreement, scoring
seconds, the flipped rows' share of the full passes, the share of steps from selected pools and the
variance reduction estimated and measured). benchmarks/gpu_ablation.sh runs the studies.

    python3 benchmarks/ablation.py [--results results] [--studies STUDY ...] [--out DIR]

Studies: those named, else those of the latest ablation under <results>/runs (ms.latest_ablation: the
switch's, named <DATASET>-<model>-<gpu>-fair-ablation by gpu_ablation.sh, once there are any; else the
variants', <DATASET>-<model>-<gpu>-ablation). Writes <out>/ablation_table.md and <out>/ablation_table.csv
(default out: <results>/ablation/fair for the switch's, <results>/ablation for the variants': ms.ablation_folder)
and prints the markdown.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mcstudy as ms  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ms.REPO_ROOT / "results"), help="results folder (default: results)")
    parser.add_argument("--studies", nargs="+", default=None, help="studies (default: every *-ablation study)")
    parser.add_argument("--out", default=None, help="folder for ablation_table.md/.csv (default: <results>/ablation)")
    args = parser.parse_args(argv)
    runs = Path(args.results) / "runs"
    studies = args.studies or ms.latest_ablation(p.name for p in runs.glob(f"*{ms.ABLATION_SUFFIX}") if p.is_dir())
    if not studies:
        print(f"no ablation study under {runs} (names ending in {ms.ABLATION_SUFFIX}): run benchmarks/gpu_ablation.sh, "
              f"or name them with --studies", file=sys.stderr)
        return 1
    records = [r for study in studies for r in ms.load_runs(args.results, study)]
    table, diagnostics = ms.ablation_table(records, ms.ABLATION_SETS), ms.ablation_diagnostics(records)
    if table.empty:
        print(f"no budgeted MC-Learn variant runs in {', '.join(studies)}", file=sys.stderr)
        return 1
    text = "\n\n".join([f"# MC-Learn ablation: {', '.join(studies)}", ms.ABLATION_RULE,
                        table.to_markdown(index=False, disable_numparse=True),
                        ms.choice_sentence(table, ms.preset_before(records)), "## Every run",
                        diagnostics.astype(object).fillna("—").to_markdown(index=False, disable_numparse=True)]) + "\n"
    out = Path(args.out) if args.out else Path(args.results) / ms.ablation_folder(studies)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation_table.md").write_text(text)
    table.to_csv(out / "ablation_table.csv", index=False)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
