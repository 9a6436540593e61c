"""Execute every MC-Learn notebook with papermill, then check the results files they must write.

    python run_notebooks.py --preset cpu-smoke --out /tmp/nb_out --results /tmp/nb_results

Runs, in order: Monte_Carlo_Learn.ipynb (cwd = repository root), then notebooks/01..04 (cwd =
notebooks/), writing the executed copies to --out (the notebooks in the repository are left
untouched). Exits non-zero if any cell fails or an expected file (run JSON, summary.csv, figure PNG)
is missing. Needs papermill and an ipykernel kernelspec named "python3" (installed with
`python -m ipykernel install --user --name python3` when absent).
"""
from __future__ import annotations

import argparse
import ast
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent

# notebook, working directory, figure files it writes under <results>/figures/<study>/ ({method}/{seed}
# are filled from the notebook's parameters), and whether it trains runs for methods x seeds.
NOTEBOOKS = [
    ("Monte_Carlo_Learn.ipynb", REPO,
     ["confusion_matrix.png", "difficulty.png", "telemetry.png", "time_to_accuracy.png"], True),
    ("notebooks/01_three_seeds.ipynb", REPO / "notebooks", ["time_to_accuracy.png", "pareto.png"], True),
    ("notebooks/02_diagnostics.ipynb", REPO / "notebooks",
     ["{method}-seed{seed}_confusion_matrix.png", "{method}-seed{seed}_difficulty.png",
      "{method}-seed{seed}_telemetry.png"], False),
    ("notebooks/03_estimator_checks.ipynb", REPO / "notebooks",
     ["estimator_vs_q.png", "estimator_vs_w_clip.png", "estimator_checks.csv"], False),
    ("notebooks/04_compare_methods.ipynb", REPO / "notebooks", ["pareto.png", "time_to_accuracy.png"], True),
]

# The study a notebook writes to when its `study` parameter is None (see mclearn_core.study_name).
STUDY_BASES = {"Monte_Carlo_Learn.ipynb": "flagship", "notebooks/01_three_seeds.ipynb": "three_seeds",
               "notebooks/02_diagnostics.ipynb": "three_seeds", "notebooks/04_compare_methods.ipynb": "compare_methods"}


def ensure_kernel() -> None:
    """Make sure a `python3` kernelspec exists (install one for this interpreter if not)."""
    import subprocess

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        print("no 'python3' kernelspec: installing one for", sys.executable)
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "python3"], check=True)


def parse_params(pairs: list[str]) -> dict:
    """Return {name: value} from NAME=VALUE strings (a Python literal where one parses, else the string)."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--param expects NAME=VALUE, got {pair!r}")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    return params


def notebook_parameters(path: Path, overrides: dict) -> dict:
    """Return the notebook's parameter defaults (from its `parameters` cell) updated with `overrides`."""
    import papermill

    values = {}
    for name, info in papermill.inspect_notebook(str(path)).items():
        try:
            values[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            values[name] = info["default"]
    values.update(overrides)
    return values


def expected_files(params: dict, figures: list[str], trains: bool, results: Path) -> tuple[list[Path], list[Path]]:
    """Return (run JSONs, other files) a notebook must leave in `results`."""
    import mclearn_core as mc

    runs: list[Path] = []
    if trains:
        seeds = params.get("seeds") or mc.make_config(params["preset"]).seeds
        runs = [mc.run_path(results, params["study"], m, s) for s in seeds for m in params["methods"]]
    elif "method" in params:
        runs = [mc.run_path(results, params["study"], params["method"], params["seed"])]
    folder = results / "figures" / params["study"]
    others = [folder / name.format(method=params.get("method"), seed=params.get("seed")) for name in figures]
    return runs, others


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="auto", help="preset passed to every notebook (CI: cpu-smoke)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "mclearn-notebooks"),
                        help="folder for the executed notebooks (default: a folder in the temp dir)")
    parser.add_argument("--results", default=str(REPO / "results"), help="results_dir passed to every notebook")
    parser.add_argument("--draws", type=int, default=None,
                        help="draws for 03_estimator_checks (default: 300 for cpu-smoke, else the notebook's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds for the training notebooks (default: each notebook's own)")
    parser.add_argument("--only", nargs="+", default=None,
                        help="run only notebooks whose file name contains one of these strings")
    parser.add_argument("--no-progress", action="store_true", help="pass progress=False (shorter saved outputs)")
    parser.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (default: none)")
    parser.add_argument("--param", nargs="+", default=[], metavar="NAME=VALUE",
                        help="a parameter for every notebook that declares it, e.g. dataset=.gpu/data/sst2 "
                             "study=sst2-minilm-h100 (values are Python literals, else strings)")
    args = parser.parse_args(argv)

    import papermill
    from papermill.exceptions import PapermillExecutionError

    sys.path.insert(0, str(REPO))
    import mclearn_core as mc

    ensure_kernel()
    out, results = Path(args.out).resolve(), Path(args.results).resolve()
    out.mkdir(parents=True, exist_ok=True)
    preset = mc.detect_preset() if args.preset == "auto" else args.preset
    draws = args.draws if args.draws is not None else (300 if preset == "cpu-smoke" else None)
    started = time.time()
    report, failed, all_runs = [], False, []
    for name, cwd, figures, trains in NOTEBOOKS:
        if args.only and not any(key in name for key in args.only):
            continue
        source = REPO / name
        declared = papermill.inspect_notebook(str(source))
        passed = {"preset": preset, "results_dir": str(results)}
        if "draws" in declared and draws is not None:
            passed["draws"] = draws
        if args.no_progress:
            passed["progress"] = False
        if "seeds" in declared and args.seeds:
            passed["seeds"] = list(args.seeds)
        passed.update(parse_params(args.param))
        passed = {k: v for k, v in passed.items() if k in declared}
        target = out / Path(name).name
        print(f"--> {name} {passed}", flush=True)
        t0 = time.time()
        error = None
        try:
            papermill.execute_notebook(str(source), str(target), parameters=passed, kernel_name="python3",
                                       cwd=str(cwd), progress_bar=False, execution_timeout=args.cell_timeout)
        except PapermillExecutionError as err:
            error = f"cell {err.exec_count}: {err.ename}: {err.evalue}"
        except Exception as err:  # kernel died, timeout, missing kernelspec...
            error = f"{type(err).__name__}: {err}"
        seconds = time.time() - t0
        problems = [error] if error else []
        if not error:
            params = notebook_parameters(source, passed)
            if params.get("study") is None:  # the notebook's default: "<base>-<preset>"
                params["study"] = mc.study_name(STUDY_BASES[name], params["preset"])
            runs, others = expected_files(params, figures, trains, results)
            all_runs += runs
            problems += [f"missing run {p}" for p in runs if not p.exists()]
            problems += [f"run {p.name} is from preset {mc.read_run(p)['preset']!r}, not {preset!r} "
                         f"(stale results dir?)" for p in runs if p.exists() and mc.read_run(p)["preset"] != preset]
            problems += [f"missing {p}" for p in others if not p.exists() or p.stat().st_size == 0]
            problems += [f"stale {p} (not written by this run)" for p in others
                         if p.exists() and p.stat().st_mtime < t0]
            report.append((name, seconds, len(runs), len(others), problems))
        else:
            report.append((name, seconds, 0, 0, problems))
        failed |= bool(problems)
        print(f"    {'FAILED' if problems else 'ok'} in {seconds:.0f}s" + "".join(f"\n    - {p}" for p in problems),
              flush=True)

    summary = results / "summary.csv"
    summary_problem = None
    if not summary.exists():
        summary_problem = f"missing {summary}"
    else:
        import pandas as pd

        rows = pd.read_csv(summary)
        listed = {(str(s), str(m), str(k)) for s, m, k in zip(rows["study"], rows["method"], rows["seed"])}
        absent = [p for p in all_runs if p.exists() and (p.parent.name, *p.stem.rsplit("-seed", 1)) not in listed]
        if absent:
            summary_problem = f"{summary} lacks {len(absent)} run(s), e.g. {absent[0]}"
    failed |= summary_problem is not None

    print(f"\nnotebooks executed into {out}; results in {results}")
    print(f"{'notebook':<40} {'seconds':>8} {'runs':>5} {'files':>6}  status")
    for name, seconds, n_runs, n_files, problems in report:
        print(f"{name:<40} {seconds:>8.0f} {n_runs:>5} {n_files:>6}  {'FAILED' if problems else 'ok'}")
    print(f"summary.csv: {summary_problem or 'ok'}")
    print(f"total {time.time() - started:.0f}s: {'FAILED' if failed else 'all notebooks ran and wrote their files'}")
    n_failed = sum(1 for *_, problems in report if problems)
    print(f"notebooks: {len(report) - n_failed} passed, {n_failed} failed; "
          f"summary.csv check: {'failed' if summary_problem is not None else 'passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
