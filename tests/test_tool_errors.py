"""The tools around the study fail loudly: make_readme.py, run_notebooks.py and the
notebooks' parameter check give one line "error: ..." and a non-zero exit code (or a failed cell)
where they would have written a stale, partial or borrowed result, or nothing at all."""
import dataclasses
import gzip
import shutil

import nbformat
import pandas as pd
import pytest

import make_readme as mr
import mcstudy as ms
import run_notebooks as rn
from test_readme import _write_equal_time_studies

ROOT = ms.REPO_ROOT
TEMPLATES = sorted(ROOT.glob("notebooks/*.ipynb"))  # generated without outputs (build_notebooks.py)


def one_error(capsys) -> str:
    """Return the one line a tool printed on stderr, after checking it is one line "error: ..."."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# ----------------------------------------------------------------------------- make_readme.py
@pytest.fixture
def published(tmp_path, capsys):
    """A results folder published once by make_readme.py (two equal-time studies, 3 seeds) and its
    README; return (results, readme, argv)."""
    results, readme = tmp_path / "results", tmp_path / "README.md"
    _write_equal_time_studies(results)
    readme.write_text("intro\n<!-- answer:start -->\nold\n<!-- answer:end -->\n")
    argv = ["--results", str(results), "--readme", str(readme)]
    assert mr.main(argv) == 0
    capsys.readouterr()
    return results, readme, argv


def _files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and "figures" not in p.parts}


@pytest.mark.parametrize("fault, message", [
    ("no results", "runs holds no run files, and make_readme.py writes every table from them: restore them "
                   "(git checkout -- "),
    ("truncated run", "runs/clinc150-mpnet-h200-equal-time/mclearn-b0.50-seed2.json.gz is not a readable run file "
                      "(JSONDecodeError: "),
    ("non-run JSON", "runs/clinc150-mpnet-h200-equal-time/notes.json is not a run file (its name is not "
                     "<run label>-seed<k>.json.gz)"),
    ("copied run", "runs/clinc150-mpnet-h200-equal-time/mclearn-b0.50-seed4.json.gz holds the run of mclearn "
                   "(run label mclearn-b0.50) seed 2"),
    ("fewer runs", "1 run(s) that "),
    ("no markers", "README.md lacks the markers <!-- answer:start --> ... <!-- answer:end -->: put them back"),
])
def test_make_readme_refuses_to_publish_from_a_missing_or_partial_results_folder(capsys, published, fault, message):
    """No results folder (it wrote an empty answer, exit 0), a truncated run file (it moved it aside and
    wrote the answer from one seed fewer), a JSON that is no run or a run under another seed's name (a
    table counted it), runs gone that summary.csv published, a README without its markers (a
    traceback): one line naming the file and the fix, exit 1, and nothing written."""
    results, readme, argv = published
    study = results / "runs" / "clinc150-mpnet-h200-equal-time"
    run = study / "mclearn-b0.50-seed2.json.gz"
    if fault == "no results":
        shutil.rmtree(results)
    if fault == "truncated run":
        run.write_bytes(gzip.compress(gzip.decompress(run.read_bytes())[:40]))
    if fault == "non-run JSON":
        (study / "notes.json").write_text('{"note": "to self"}')
    if fault == "copied run":
        shutil.copy(run, run.with_name("mclearn-b0.50-seed4.json.gz"))
    if fault == "fewer runs":
        run.unlink()
    if fault == "no markers":
        readme.write_text("no markers here\n")
    before = _files(readme.parent)
    assert mr.main(argv) == 1
    line = one_error(capsys)
    assert message in line, line
    if fault == "fewer runs":
        assert f"{results / 'summary.csv'} publishes are gone from {results / 'runs'} (clinc150-mpnet-h200-equal-" \
               f"time/mclearn-b0.50-seed2): restore them (git checkout -- {results / 'runs'}), or pass " \
               f"--allow-fewer" in line
    assert _files(readme.parent) == before  # nothing moved, rewritten or written


def test_make_readme_publishes_fewer_runs_only_when_told_and_says_so(capsys, published):
    results, readme, argv = published
    published_rows = len(pd.read_csv(results / "summary.csv"))
    (results / "runs" / "clinc150-mpnet-h200-equal-time" / "mclearn-b0.50-seed2.json.gz").unlink()
    assert mr.main([*argv, "--allow-fewer"]) == 0
    assert capsys.readouterr().out == ("note: publishing without 1 run(s) that summary.csv listed: "
                                       "clinc150-mpnet-h200-equal-time/mclearn-b0.50-seed2\n")
    assert len(pd.read_csv(results / "summary.csv")) == published_rows - 1
    assert mr.main(argv) == 0  # published: the next run compares with what it now lists


def test_the_committed_results_publish_as_they_are():
    """make_readme.py's checks hold on the committed results/: every run file is the run its name
    says and summary.csv lists no run that is gone."""
    rows = ms.summary_rows(ROOT / "results", unreadable="refuse")
    assert mr.fewer_runs(ROOT / "results" / "summary.csv", rows) == []


# ----------------------------------------------------------------------------- run_notebooks.py
@pytest.mark.parametrize("argv, message", [
    (["--only", "zzz"], "error: --only zzz matches no notebook: give part of one of their names "
                        "(Monte_Carlo_Learn.ipynb, 01_three_seeds.ipynb"),
    (["--clean", "no/such.ipynb"], "error: --clean no/such.ipynb: no such file; give executed notebooks (.ipynb)"),
    (["--only", "03_", "--draws", "2", "--param", "seedz=[7]"],
     "error: --param seedz: no notebook run here declares it (did you mean seed?)"),
    (["--only", "03_", "--draws", "2", "--param", "seeds=[7]"], "error: --param seeds: no notebook run here declares it"),
    (["--param", "seeds"], "error: --param expects NAME=VALUE, got 'seeds'"),
])
def test_run_notebooks_exits_2_when_it_would_run_nothing_or_drop_a_parameter(capsys, tmp_path, argv, message):
    """--only matching nothing reported "all notebooks ran"; --clean of a missing file was a traceback;
    a --param that no notebook declares was dropped without a word. Nothing is executed (the cases
    name the smallest notebook run, so that with a check removed they still end in seconds)."""
    code = rn.main([*argv, "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")])
    assert code == 2
    line = one_error(capsys)
    assert line.startswith(message), line
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


def test_run_notebooks_clean_refuses_a_file_that_is_no_notebook(capsys, tmp_path):
    path = tmp_path / "x.ipynb"
    path.write_text("{not json")
    assert rn.main(["--clean", str(path)]) == 2
    assert one_error(capsys).startswith(f"error: --clean {path}: not a notebook (")
    assert path.read_text() == "{not json"


# ----------------------------------------------------------------------------- notebook parameters
@pytest.mark.parametrize("values, message", [
    ({"seeds": 42}, "seeds=42 is an int: seeds expects a list of ints, e.g. seeds=[42, 43, 44]"),
    ({"seedz": [7]}, "seedz is no parameter of this notebook: did you mean seeds? (its parameters: "),
    ({"time_budgets": "half"}, "time_budgets='half' is a str: time_budgets expects a list of floats, "
                               "e.g. time_budgets=[1/3, 1/2]"),
    ({"time_budgets": [0.5, 1.5]}, "time_budgets=[0.5, 1.5] has 1.5 out of range: each value must be in (0, 1]"),
    ({"draws": 0}, "draws=0 is out of range: draws must be >= 2, e.g. draws=5000"),
    ({"full_probs": [1.5, -1]}, "full_probs=[1.5, -1] has 1.5, -1 out of range: each value must be in (0, 1]"),
    ({"w_clip_values": [None, 0]}, "w_clip_values=[None, 0] has 0 out of range: each value must be > 0"),
    ({"study": ""}, "study='' must be one folder name inside results_dir/runs"),
    ({"results_dir": None}, "results_dir=None is None: results_dir expects str, e.g. results_dir='results'"),
    ({"epochs": 2.5}, "epochs=2.5 is a float: epochs expects int, e.g. epochs=1"),
    ({"label_noise": 1.0}, "label_noise=1.0 is out of range: label_noise must be in [0, 1)"),
    ({"seeds": [1, 1]}, "seeds=[1, 1] lists a seed more than once"),
    ({"methods": ["baseline", "mclearnn"]}, "methods=['baseline', 'mclearnn']: Unknown method(s) ['mclearnn']"),
    ({"methods": ["baseline", "rho_loss"]}, "Method 'rho_loss' is now 'rho-loss'"),
    ({"method_seeds": {"rho-loss": 0}}, "method_seeds={'rho-loss': 0} has 0: each value must be an int >= 1"),
    ({"progress": "no"}, "progress='no' is a str: progress expects a bool, e.g. progress=True"),
    ({"preset": "h200"}, "preset='h200' is not a preset: choose one of auto, t4"),
])
def test_notebook_parameters_are_checked_as_the_command_line_checks_them(values, message):
    """Notebook 04's parameters (the widest set) with one bad value each: one line naming it."""
    nb = nbformat.read(ROOT / "notebooks" / "04_compare_methods.ipynb", as_version=4)
    declared = rn.declared_parameters(nb)
    namespace = {**{k: v for k, v in declared.items() if not isinstance(v, str) or k in ("preset", "results_dir")},
                 "time_budgets": [1 / 3, 1 / 2], "draws": 5000, "full_probs": [0.5], "w_clip_values": [None]}
    ms.check_notebook_parameters(namespace, set(), [*declared, "draws", "full_probs", "w_clip_values"])  # all good
    namespace.update(values)
    with pytest.raises(ms.ConfigError) as err:
        ms.check_notebook_parameters(namespace, set(), [*declared, "draws", "full_probs", "w_clip_values"])
    assert message in str(err.value), str(err.value)
    assert err.value._render_traceback_() == [f"error: {err.value}"]  # a notebook cell shows this line only


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_each_notebook_checks_every_parameter_it_declares_right_after_them(path):
    """The cell after the parameters cell checks exactly the names the parameters cell assigns, each a
    Config key or in NOTEBOOK_RULES, and the cell before it notes the names defined so far."""
    nb = nbformat.read(path, as_version=4)
    at = rn._cells_tagged(nb, rn.PARAMETERS_TAG)[0]
    declared = list(rn.declared_parameters(nb))
    assert nb.cells[at - 1].source.startswith("names_before_parameters = {*globals(), ")
    check = nb.cells[at + 1].source
    assert "ms.check_notebook_parameters(globals(), names_before_parameters, [" in check
    assert check.split("[", 1)[1].replace("\n", " ").replace(" ", "").rstrip("])").split(",") == \
        [f'"{name}"' for name in declared]
    fields = {f.name for f in dataclasses.fields(ms.Config)}
    assert [name for name in declared if name not in fields and name not in ms.NOTEBOOK_RULES] == []


@pytest.mark.parametrize("notebook, params, message", [
    ("03_estimator_checks.ipynb", {"draws": 0}, "error: draws=0 is out of range: draws must be >= 2, e.g. draws=5000"),
    ("01_three_seeds.ipynb", {"seedz": [7], "preset": "cpu-smoke", "seeds": [42], "methods": ["baseline"]},
     "error: seedz is no parameter of this notebook: did you mean seeds?"),  # a small run, should it run
])
def test_a_bad_notebook_parameter_stops_run_all_with_one_line(tmp_path, notebook, params, message):
    """Executed for real (a kernel): the check cell's output is one line and no cell after it runs,
    so nothing is trained or written (a misspelt name ran the defaults; draws=0 gave tables of NaN)."""
    target = tmp_path / notebook
    error = rn.execute_notebook(ROOT / "notebooks" / notebook, target, {**params, "results_dir": str(tmp_path / "r")},
                                ROOT / "notebooks", timeout=300)
    assert error is not None and error.startswith("ConfigError: ")
    nb = nbformat.read(target, as_version=4)
    at = rn._cells_tagged(nb, rn.PARAMETERS_TAG)[0]
    outputs = nb.cells[at + 1].outputs
    assert len(outputs) == 1 and outputs[0].output_type == "error" and len(outputs[0].traceback) == 1
    assert outputs[0].traceback[0].startswith(message), outputs[0].traceback
    assert all(cell.get("execution_count") is None for cell in nb.cells[at + 2:])
    assert not (tmp_path / "r").exists()
