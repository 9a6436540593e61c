"""Committed notebooks Run All anywhere, and run_notebooks.py writes clean executed copies."""
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import run_notebooks as rn

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted([*ROOT.glob("*.ipynb"), *ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("results/notebooks/**/*.ipynb")])


def test_the_notebooks_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in COMMITTED}
    assert {"Monte_Carlo_Learn.ipynb", "notebooks/01_three_seeds.ipynb"} <= names


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_committed_notebook_runs_anywhere(path):
    """No injected-parameters cell and no absolute path (a folder of the machine that ran it)."""
    assert rn.portability_problems(nbformat.read(path, as_version=4)) == []


def _executed_by_papermill(root: str):
    """A notebook as papermill leaves it when run from `root`: injected cell, absolute paths in outputs."""
    params = new_code_cell('preset = "auto"\nresults_dir = "results"  # relative to the repository\n'
                           'progress = True', metadata={"tags": ["parameters"]})
    injected = new_code_cell(f'# Parameters\npreset = "cpu"\nresults_dir = "{root}/results"\nprogress = False\n'
                             f'study = "s1"\n', metadata={"tags": ["injected-parameters"]})
    run = new_code_cell("print(results_dir)", outputs=[
        new_output("stream", name="stdout", text=f"results -> {root}/results, data local:{root}\n"),
        new_output("stream", name="stderr", text="/opt/venv/lib/python3.12/site-packages/tqdm/auto.py:21: W\n"),
        new_output("execute_result", data={"text/plain": f"'{root}/results/figures'", "image/png": "iVBO/ab/cd"},
                   execution_count=3)])
    nb = new_notebook(cells=[new_markdown_cell("# T\n[badge](https://colab.research.google.com/github/o/r)"),
                             params, injected, run])
    nb.metadata["papermill"] = {"input_path": f"{root}/x.ipynb", "parameters": {"results_dir": f"{root}/results"}}
    return nb


def test_clean_notebook_applies_parameters_and_makes_paths_relative():
    nb = _executed_by_papermill("/home/someone/mc-learn")
    assert len(rn.portability_problems(nb)) >= 3  # injected cell + paths in its source and the outputs
    rn.clean_notebook(nb, "/home/someone/mc-learn")
    assert rn.portability_problems(nb) == []
    assert [c.metadata.get("tags") for c in nb.cells if c.cell_type == "code"] == [["parameters"], None]
    assert nb.cells[1].source == ('preset = "cpu"\nresults_dir = "results"  # relative to the repository\n'
                                  'progress = False\nstudy = "s1"')
    outputs = nb.cells[2].outputs
    assert outputs[0].text == "results -> results, data local:.\n"
    assert outputs[1].text.startswith("site-packages/tqdm/auto.py")
    assert outputs[2].data["text/plain"] == "'results/figures'" and outputs[2].data["image/png"] == "iVBO/ab/cd"
    assert nb.metadata.papermill == {"input_path": "x.ipynb", "parameters": {"results_dir": "results"}}


@pytest.mark.parametrize("text, found", [
    ("results -> /tmp/nb/results", True), ('"/work/main/data"', True), (r"C:\Users\me", True),
    ("see https://colab.research.google.com/github/a/b", False), ("1/2 of results/runs/x/", False),
    ("fp16/bf16 and mean / std", False)])
def test_portability_problems_flags_absolute_paths(text, found):
    nb = new_notebook(cells=[new_code_cell("x = 1", outputs=[new_output("stream", name="stdout", text=text)])])
    assert bool(rn.portability_problems(nb)) == found


def test_apply_parameters_keeps_comments_and_appends_undeclared():
    source = 'preset = "auto"  # the device\nseeds = [42, 43]\nstudy = None'
    assert rn.apply_parameters(source, {"seeds": [1], "study": "a/b", "draws": 300}) == \
        'preset = "auto"  # the device\nseeds = [1]\nstudy = "a/b"\ndraws = 300'
    assert rn.declared_parameters(new_notebook(cells=[new_code_cell(source, metadata={"tags": ["parameters"]})])) \
        == {"preset": "auto", "seeds": [42, 43], "study": None}


def test_portable_value_relative_inside_the_repository_only(tmp_path):
    assert rn.portable_value(str(ROOT / "results")) == "results"
    assert rn.portable_value(str(tmp_path)) == str(tmp_path)
    assert rn.portable_value(7) == 7


def test_execute_notebook_writes_a_clean_copy(tmp_path, capfd):
    """A real kernel run: the parameters land in the parameters cell and the repository path in the
    output is written relative; the kernel runs over IPC, so it does not warn of TCP without encryption
    (a line per notebook in every run of run_notebooks.py)."""
    source = tmp_path / "in.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell('results_dir = "nowhere"\nn = 1', metadata={"tags": ["parameters"]}),
        new_code_cell("import pathlib\nprint(pathlib.Path.cwd() / results_dir, n * 2)")]), source)
    target = tmp_path / "out.ipynb"
    error = rn.execute_notebook(source, target, {"results_dir": "results", "n": 21}, rn.REPO, timeout=120)
    assert error is None
    nb = nbformat.read(target, as_version=4)
    assert nb.cells[0].source == 'results_dir = "results"\nn = 21'
    assert nb.cells[1].outputs[0].text == "results 42\n"
    assert rn.portability_problems(nb) == [] and not rn.shows_widget_warning(nb)
    assert "Kernel is running over TCP" not in capfd.readouterr().err


def test_smoke_parameters_are_declared_by_their_notebooks():
    """run_notebooks passes a notebook only the parameters it declares: a smoke parameter renamed in
    the notebook would be dropped without a word and the smoke run would grow back to full size."""
    for name, params in rn.SMOKE_PARAMETERS.items():
        declared = rn.declared_parameters(nbformat.read(ROOT / name, as_version=4))
        assert set(params) <= set(declared), (name, sorted(set(params) - set(declared)))
    assert set(rn.SMOKE_PARAMETERS) <= {name for name, *_ in rn.NOTEBOOKS}
