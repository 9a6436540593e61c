"""Execute every MC-Learn notebook and write clean executed copies, then check the results files they
must write.

    python run_notebooks.py --preset cpu-smoke --out /tmp/nb_out --results /tmp/nb_results

Runs, in order: Monte_Carlo_Learn.ipynb (cwd = repository root), then notebooks/01..04 (cwd =
notebooks/), writing the executed copies to --out (the notebooks in the repository are left
untouched). Exits non-zero if any cell fails or an expected file (run JSON, summary.csv, figure PNG)
is missing.

The copies are ready to commit: the parameters are written into each notebook's `parameters` cell
(papermill's convention, but no separate `injected-parameters` cell), paths inside the repository are
written relative to it, and no output names a folder of the machine that ran it (`clean_notebook`).
Needs nbformat, nbclient and an ipykernel kernelspec named "python3" (installed with
`python -m ipykernel install --user --name python3` when absent); not papermill.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import tempfile
import time
from fractions import Fraction
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
    ("notebooks/04_compare_methods.ipynb", REPO / "notebooks", ["equal_time.png", "pareto.png", "time_to_accuracy.png"],
     True),
]

# Parameters of a cpu-smoke run (--preset cpu-smoke), applied before --seeds and --param: the
# smallest run of each notebook that still takes every code path. Notebook 01: two seeds (a mean ±
# std over seeds) instead of three. Notebook 04, the budget study: one seed, one budget (every
# method's clock and plan), and a two-lr sweep, which its defaults (lrs=[]) skip, so that the smoke
# run also takes the sweep (grown past its edge) and the lr table; no per-method grids (lr_factors
# []: each grows to three lrs or more, four times over; tests/test_equal_time.py covers them).
SMOKE_PARAMETERS = {
    "notebooks/01_three_seeds.ipynb": {"seeds": [42, 43]},
    "notebooks/03_estimator_checks.ipynb": {"draws": 300},
    # the code paths of a budget study: the baseline's sweep, the short schedule and every method at one
    # budget on its clock, a test split carved from train
    "notebooks/04_compare_methods.ipynb": {"seeds": [42], "time_budgets": [1 / 2], "lrs": [1e-3, 3e-3],
                                           "lr_factors": [], "eval_points": 4, "test_holdout": 60},
}

# The study a notebook writes to when its `study` parameter is None (see mcstudy.config.study_name).
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


class UsageError(ValueError):
    """A command line that cannot run as given: main prints it as one line "error: ..." (exit 2)."""


def parse_params(pairs: list[str]) -> dict:
    """Return {name: value} from NAME=VALUE strings (a Python literal where one parses, else the string)."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param expects NAME=VALUE, got {pair!r}")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    return params


PARAMETERS_TAG, INJECTED_TAG = "parameters", "injected-parameters"
# An absolute path in text: /a/b not preceded by a word character, '.', ':' or '/' (URLs, fractions,
# relative paths), or a Windows drive path.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[\w.-]+/[\w.-]+|\b[A-Za-z]:\\[\w.-]")
INSTALL_PATH = re.compile(r"(?<![\w.-])(?:/|[A-Za-z]:\\)[^\s\"']*?[/\\]((?:site|dist)-packages)[/\\]")
TQDM_WIDGET_WARNING = "IProgress not found"


def _cells_tagged(nb, tag: str) -> list[int]:
    return [i for i, cell in enumerate(nb.cells) if tag in cell.get("metadata", {}).get("tags", [])]


def _assignments(source: str) -> dict:
    """Return {name: value} of the top-level `name = literal` lines of a cell (the source text where
    the value is not a literal)."""
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                values[node.targets[0].id] = ast.get_source_segment(source, node.value)
    return values


def declared_parameters(nb) -> dict:
    """Return the notebook's parameter defaults: the assignments of its `parameters` cell."""
    found = _cells_tagged(nb, PARAMETERS_TAG)
    if not found:
        raise ValueError("the notebook has no cell tagged 'parameters': add the tag to the cell that sets "
                         "its parameters (notebooks/build_notebooks.py does).")
    return _assignments(nb.cells[found[0]].source)


def _literal(value) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def apply_parameters(source: str, params: dict) -> str:
    """Return the `parameters` cell's source with each top-level assignment of a name in `params` set to
    its value (a comment after it is kept); names the cell does not assign are appended."""
    lines = source.splitlines()
    done = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in params and node.lineno == node.end_lineno:
            name, row = node.targets[0].id, node.lineno - 1
            line = lines[row]
            lines[row] = f"{line[:node.col_offset]}{name} = {_literal(params[name])}{line[node.value.end_col_offset:]}"
            done.add(name)
    lines += [f"{name} = {_literal(value)}" for name, value in params.items() if name not in done]
    return "\n".join(lines)


def relative_text(text: str, root: str) -> str:
    """Return `text` with paths under `root` written relative to it and a Python installation's
    `.../site-packages/` prefix cut to `site-packages/`."""
    root = re.escape(root.rstrip("/"))
    text = re.sub(rf"{root}/|{root}(?![\w-]|\.\w)", lambda hit: "" if hit.group(0).endswith("/") else ".", text)
    return INSTALL_PATH.sub(r"\1/", text)


def _relative_value(value, root: str):
    if isinstance(value, str):
        return relative_text(value, root)
    if isinstance(value, list):
        return [_relative_value(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _relative_value(v, root) for k, v in value.items()}
    return value


def _text_outputs(cell):
    """Yield (holder, key) of each text an output of `cell` holds (images and widget state excluded)."""
    for output in cell.get("outputs", []):
        if "text" in output:
            yield output, "text"
        if "traceback" in output:
            yield output, "traceback"
        for mime in output.get("data", {}):
            if mime.startswith("text/"):
                yield output["data"], mime


def clean_notebook(nb, root: str | Path):
    """Return `nb` (changed in place) ready to commit: papermill's `injected-parameters` cells removed and
    their values written into the `parameters` cell, and every path under `root` (the repository the
    notebook ran in) made relative in cell sources, text outputs and notebook metadata. Computed values
    are not touched."""
    root = str(root)
    injected = _cells_tagged(nb, INJECTED_TAG)
    params = {}
    for i in injected:
        params.update(_assignments(nb.cells[i].source))
    nb.cells = [cell for i, cell in enumerate(nb.cells) if i not in injected]
    found = _cells_tagged(nb, PARAMETERS_TAG)
    if params and found:
        cell = nb.cells[found[0]]
        cell.source = apply_parameters(cell.source, _relative_value(params, root))
    for cell in nb.cells:
        cell.source = relative_text(cell.source, root)
        for holder, key in _text_outputs(cell):
            holder[key] = _relative_value(holder[key], root)
    if "papermill" in nb.metadata:
        nb.metadata["papermill"] = _relative_value(nb.metadata["papermill"], root)
    return nb


def _texts(cell) -> list[str]:
    """Return a cell's source and the texts its outputs hold."""
    return [cell.source] + ["".join(holder[key]) if isinstance(holder[key], list) else holder[key]
                            for holder, key in _text_outputs(cell)]


def portability_problems(nb) -> list[str]:
    """Return why `nb` would not Run All as it is on another machine: an `injected-parameters` cell, or
    an absolute path (a folder of the machine that ran it) in a cell's source or text outputs."""
    problems = [f"an {INJECTED_TAG!r} cell (cell {i})" for i in _cells_tagged(nb, INJECTED_TAG)]
    for i, cell in enumerate(nb.cells):
        hits = [hit.group(0) for text in _texts(cell) for hit in [ABSOLUTE_PATH.search(text)] if hit]
        problems += [f"an absolute path {hit!r} (cell {i})" for hit in hits]
    return problems


def shows_widget_warning(nb) -> bool:
    """Return whether an output holds tqdm's "IProgress not found" warning (no ipywidgets, no fallback)."""
    return any(TQDM_WIDGET_WARNING in text for cell in nb.cells for text in _texts(cell)[1:])


def portable_value(value, root: Path = REPO):
    """Return a parameter value with a path inside `root` written relative to it (notebooks resolve
    relative results_dir, dataset and model_name against the repository root)."""
    if isinstance(value, str) and Path(value).is_absolute() and Path(value).resolve().is_relative_to(root):
        return os.path.relpath(Path(value).resolve(), root)
    return value


def kernel_config(folder: str):
    """Return the traitlets config of the kernels run here: on POSIX their sockets are files in
    `folder` (IPC transport), so the kernel does not listen on TCP ports and says nothing of TCP
    without encryption; Windows has no IPC transport and keeps the default (TCP on localhost)."""
    from traitlets.config import Config

    if os.name == "nt":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "kernel")}})


def execute_notebook(source: Path, target: Path, params: dict, cwd: Path, timeout: int | None) -> str | None:
    """Execute `source` with `params` written into its parameters cell (kernel cwd `cwd`), write the
    cleaned copy to `target` (also when a cell fails) and return the error, or None."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(source, as_version=4)
    cell = nb.cells[_cells_tagged(nb, PARAMETERS_TAG)[0]]
    cell.source = apply_parameters(cell.source, params)
    error = None
    try:
        with tempfile.TemporaryDirectory(prefix="mclearn-kernel-") as sockets:
            NotebookClient(nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(cwd)}},
                           config=kernel_config(sockets)).execute()
    except CellExecutionError as err:
        error = f"{err.ename}: {err.evalue}"
    except Exception as err:  # kernel died, timeout, missing kernelspec...
        error = f"{type(err).__name__}: {err}"
    nbformat.write(clean_notebook(nb, REPO), target)
    return error


def notebook_parameters(path: Path, overrides: dict) -> dict:
    """Return the notebook's parameter defaults (from its `parameters` cell) updated with `overrides`."""
    import nbformat

    return {**declared_parameters(nbformat.read(path, as_version=4)), **overrides}


def expected_files(params: dict, figures: list[str], trains: bool, results: Path) -> tuple[list[Path], list[Path]]:
    """Return (run files, other files) a notebook must leave in `results`."""
    import mcstudy as ms

    runs: list[Path] = []
    if trains:
        seeds = params.get("seeds") or ms.make_config(params["preset"]).seeds
        runs = [ms.run_path(results, params["study"], m, s) for s in seeds for m in params["methods"]]
        if "time_budgets" in params:  # a budget study (notebook 04): one run per method, budget and seed
            budgets = params["time_budgets"]
            if isinstance(budgets, str):  # the notebook's own default, e.g. "[1/3, 1/2]", read as text
                budgets = [float(Fraction(x.strip())) for x in budgets.strip("[]").split(",") if x.strip()]
            planned = ms.budget_study_runs(params["methods"], budgets, seeds, params.get("method_budgets"),
                                           params.get("method_seeds"))
            runs = [ms.run_path(results, params["study"], ms.run_label(m, b), s) for m, b, s in planned]
    elif "method" in params:
        runs = [ms.run_path(results, params["study"], params["method"], params["seed"])]
    folder = results / "figures" / params["study"]
    others = [folder / name.format(method=params.get("method"), seed=params.get("seed")) for name in figures]
    return runs, others


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks (or clean executed ones) as the command line asks; return the exit code: 0
    when every notebook ran and wrote its files, 1 when one did not, 2 for a command line that
    cannot run as given (--only matching no notebook, --clean of a file that is not a notebook, a
    --param that no notebook run declares or that is not NAME=VALUE), said in one line "error: ..."."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="auto", help="preset passed to every notebook (CI: cpu-smoke)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "mclearn-notebooks"),
                        help="folder for the executed notebooks (default: a folder in the temp dir)")
    parser.add_argument("--results", default=str(REPO / "results"), help="results_dir passed to every notebook")
    parser.add_argument("--draws", type=int, default=None,
                        help="draws for 03_estimator_checks (default: SMOKE_PARAMETERS' 300 for cpu-smoke, else the "
                             "notebook's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds for the training notebooks (default: each notebook's own)")
    parser.add_argument("--only", nargs="+", default=None,
                        help="run only notebooks whose file name contains one of these strings")
    parser.add_argument("--no-progress", action="store_true", help="pass progress=False (shorter saved outputs)")
    parser.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (default: none)")
    parser.add_argument("--param", nargs="+", default=[], metavar="NAME=VALUE",
                        help="a parameter for every notebook that declares it, e.g. dataset=.gpu/data/sst2 "
                             "study=sst2-minilm-h100 (values are Python literals, else strings)")
    parser.add_argument("--clean", nargs="+", default=None, metavar="NOTEBOOK",
                        help="only clean these already executed notebooks in place (clean_notebook), then exit")
    parser.add_argument("--executed-in", default=str(REPO),
                        help="with --clean: the repository folder the notebooks were executed in")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def selected(only: list[str] | None) -> list[tuple]:
    """Return the NOTEBOOKS rows whose file name contains one of `only` (all when None); raise
    UsageError naming the notebooks when none does (a run of nothing would report success)."""
    rows = [row for row in NOTEBOOKS if not only or any(key in row[0] for key in only)]
    if not rows:
        raise UsageError(f"--only {' '.join(only)} matches no notebook: give part of one of their names "
                         f"({', '.join(Path(name).name for name, *_ in NOTEBOOKS)})")
    return rows


def check_params(params: dict, notebooks: list[tuple]) -> None:
    """Raise UsageError naming a --param that none of `notebooks` declares (each notebook is passed
    only its own parameters, so it would change nothing)."""
    import nbformat

    declared = {name for path, *_ in notebooks
                for name in declared_parameters(nbformat.read(REPO / path, as_version=4))}
    unknown = sorted(set(params) - declared)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], declared, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"--param {unknown[0]}: no notebook run here declares it{hint}; their parameters: "
                         f"{', '.join(sorted(declared))}")


def clean(paths: list[str], executed_in: str) -> int:
    """Clean executed notebooks in place (clean_notebook) and name what would still not Run All
    elsewhere; raise UsageError for a path that is not a notebook file."""
    import nbformat

    for path in paths:
        if not Path(path).is_file():
            raise UsageError(f"--clean {path}: no such file; give executed notebooks (.ipynb)")
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as err:  # nbformat raises JSON, validation and schema errors alike
            why = " ".join(str(err).split())[:200]
            raise UsageError(f"--clean {path}: not a notebook ({type(err).__name__}: {why})")
        nbformat.write(clean_notebook(nb, executed_in), path)
        print("cleaned", path, "".join(f"\n  - {p}" for p in portability_problems(nbformat.read(path, as_version=4))))
    return 0


def run(args) -> int:
    """Do what the parsed command line asks (see main); return the exit code."""
    import nbformat

    if args.clean:
        return clean(args.clean, args.executed_in)
    notebooks = selected(args.only)
    extra = parse_params(args.param)
    check_params(extra, notebooks)

    sys.path.insert(0, str(REPO))
    import mcstudy as ms

    ensure_kernel()
    out, results = Path(args.out).resolve(), Path(args.results).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # "auto" is passed on as "auto" (the kernel picks, as on Colab; MCLEARN_PRESET forces a preset);
    # the checks below use the preset it resolves to.
    preset = ms.detect_preset() if args.preset == "auto" else args.preset
    started = time.time()
    report, failed, all_runs = [], False, []
    for name, cwd, figures, trains in notebooks:
        source = REPO / name
        declared = declared_parameters(nbformat.read(source, as_version=4))
        passed = {"preset": args.preset, "results_dir": str(results)}
        if source.parent == REPO:  # the flagship is committed executed: its parameters cell names the data,
            # model and study of its last GPU run; a run of this tool uses the preset's unless --param names them
            passed.update(dataset=None, model_name=None, study=None)
        if preset == "cpu-smoke":
            passed.update(SMOKE_PARAMETERS.get(name, {}))
        if args.draws is not None:
            passed["draws"] = args.draws
        if args.no_progress:
            passed["progress"] = False
        if "seeds" in declared and args.seeds:
            passed["seeds"] = list(args.seeds)
        passed.update(extra)
        passed = {k: portable_value(v) for k, v in passed.items() if k in declared}
        target = out / Path(name).name
        print(f"--> {name} {passed}", flush=True)
        t0 = time.time()
        error = execute_notebook(source, target, passed, cwd, args.cell_timeout)
        seconds = time.time() - t0
        problems = [error] if error else []
        if not error:
            params = {**notebook_parameters(source, passed), "preset": preset}
            if params.get("study") is None:  # the notebook's default: "<base>-<preset>"
                params["study"] = ms.study_name(STUDY_BASES[name], params["preset"])
            runs, others = expected_files(params, figures, trains, results)
            all_runs += runs
            problems += [f"missing run {p}" for p in runs if not p.exists()]
            problems += [f"run {p.name} is from preset {ms.read_run(p)['preset']!r}, not {preset!r} "
                         f"(stale results dir?)" for p in runs if p.exists() and ms.read_run(p)["preset"] != preset]
            problems += [f"missing {p}" for p in others if not p.exists() or p.stat().st_size == 0]
            problems += [f"stale {p} (not written by this run)" for p in others
                         if p.exists() and p.stat().st_mtime < t0]
            if shows_widget_warning(nbformat.read(target, as_version=4)):
                problems.append(f"an output shows tqdm's {TQDM_WIDGET_WARNING!r} warning")
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
        rows = ms.read_summary(summary)
        listed = {(str(s), str(m), str(k)) for s, m, k in zip(rows["study"], rows["method"], rows["seed"])}
        absent = [p for p in all_runs if p.exists() and
                  (p.parent.name, ms.read_run(p)["method"], ms.RUN_FILE_NAME.fullmatch(p.name)["seed"]) not in listed]
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
