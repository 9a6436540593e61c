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


BUILT = [ROOT / "Monte_Carlo_Learn.ipynb", *sorted(ROOT.glob("notebooks/*.ipynb"))]  # build_notebooks.py's


def surface_used(notebooks, alias: str) -> dict[str, set[str]]:
    """Return {NAME: the notebooks whose code cells use `alias.NAME`}."""
    import re

    used: dict[str, set[str]] = {}
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                for name in re.findall(rf"(?<![\w.]){alias}\.(\w+)", cell.source):
                    used.setdefault(name, set()).add(path.name)
    return used


def core_definitions() -> set[str]:
    """Return the names mclearn_core.py defines at its top level (functions, classes, constants)."""
    import ast

    found = set()
    for node in ast.parse((ROOT / "mclearn_core.py").read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found |= {t.id for t in targets if isinstance(t, ast.Name)}
    return found


def test_notebooks_use_the_study_surface_and_mc_learn_itself():
    """The built notebooks read the study only through mcstudy.__all__ (`ms.NAME`) and MC-Learn only
    through what mclearn_core.py defines (`mc.NAME`); __all__ lists exactly what they use."""
    import mcstudy

    assert len(BUILT) == 5 and all(path.exists() for path in BUILT)
    study, core = surface_used(BUILT, "ms"), surface_used(BUILT, "mc")
    outside = {name: where for name, where in study.items() if name not in mcstudy.__all__}
    assert not outside, f"notebook cells use study names outside mcstudy.__all__: {outside}"
    assert set(mcstudy.__all__) == set(study), f"__all__ lists names no notebook uses: {set(mcstudy.__all__) - set(study)}"
    assert all(getattr(mcstudy, name) is not None for name in mcstudy.__all__)
    not_core = {name: where for name, where in core.items() if name not in core_definitions()}
    assert not not_core, f"notebook cells use mc.NAME that mclearn_core.py does not define: {not_core}"
    assert core, "no notebook cell uses MC-Learn's diagnostics (mc.plot_...)"


# ----------------------------------------------------------------------------- the flagship
FLAGSHIP = ROOT / "Monte_Carlo_Learn.ipynb"


def _flagship_cell(nb, marker: str) -> str:
    """Return the source of the flagship's one code cell holding `marker` (a tag, or else a piece of code)."""
    found = [c.source for c in nb.cells if marker in c.get("metadata", {}).get("tags", [])] or \
        [c.source for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(found) == 1, (marker, len(found))
    return found[0]


def _committed_flagship_studies(root):
    """Copy the committed run files of every study a flagship wrote (its name holds "flagship") and
    summary.csv into root/results, as a checkout has them; return the files copied."""
    import shutil
    import subprocess

    listed = subprocess.run(["git", "ls-files", "results/summary.csv", "results/runs"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    copied = [p for p in listed if p == "results/summary.csv" or "flagship" in p.split("/")[2]]
    for path in copied:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, root / path)
    return copied


def test_the_flagship_trains_fresh_into_its_own_study_on_any_device(tmp_path, monkeypatch, capsys):
    """Run All of the committed flagship on a T4 stopped on the H200's stored runs (another config), on
    an A100 on their preset, and on an H100 read them back as the user's own. Its committed defaults,
    run here as each device's preset (MCLEARN_PRESET; a tiny model on a few rows, on the CPU), train
    every run fresh into a study named for the device, in a folder that holds no committed run, and
    read no committed run file (the copies of the committed flagship studies sit where a checkout has
    them)."""
    import subprocess

    import mcstudy as ms
    import mcstudy.runs
    import mcstudy.tables

    nb = nbformat.read(FLAGSHIP, as_version=4)
    declared = rn.declared_parameters(nb)
    for tracked_or_not in (["git", "ls-files", "--", declared["results_dir"]],
                           ["git", "check-ignore", "--no-index", "-q", f"{declared['results_dir']}/runs/x/a.json"]):
        done = subprocess.run(tracked_or_not, cwd=ROOT, capture_output=True, text=True)
        if tracked_or_not[1] == "ls-files":
            assert done.stdout == "", f"the flagship's results_dir {declared['results_dir']!r} holds committed files"
        else:
            assert done.returncode == 0, f"the flagship's results_dir {declared['results_dir']!r} is not git-ignored"
    committed = [tmp_path / p for p in _committed_flagship_studies(tmp_path)]
    assert any("flagship" in p.parent.name for p in committed)
    for module in ("mcstudy.config", "mcstudy.train"):  # paths resolve against it and print relative to it
        monkeypatch.setattr(f"{module}.REPO_ROOT", tmp_path)
    read, trained = [], []
    real_read, real_train = ms.read_run, ms.train_method
    for reader in (mcstudy.runs, mcstudy.tables):  # the run store's reads and the tables'
        monkeypatch.setattr(reader, "read_run", lambda path: read.append(Path(path)) or real_read(path))
    monkeypatch.setattr("mcstudy.runs.train_method", lambda method, *a, **k: trained.append(method) or real_train(method, *a, **k))
    tiny = {**ms.PRESETS["cpu-smoke"], "max_train_examples": 64, "max_eval_examples": 32, "eval_points": 1}
    cells = [_flagship_cell(nb, m) for m in ('STUDY_BASE = "flagship"', "ms.prepare(cfg)", "ms.run_sweep(")]
    for device in ("t4", "a100", "h100", "cpu"):
        monkeypatch.setenv(ms.PRESET_ENV, device)
        monkeypatch.setitem(ms.PRESETS, device, {**ms.PRESETS[device], **tiny})
        params = {**declared, "dataset": None, "model_name": None, "progress": False}  # the preset's tiny model
        namespace = {"pathlib": __import__("pathlib"), "__name__": "flagship"}
        exec(rn.apply_parameters(_flagship_cell(nb, "parameters"), params), namespace)
        trained.clear()
        for source in cells:
            exec(source, namespace)
        cfg, records = namespace["cfg"], namespace["records"]
        assert cfg.preset == device and cfg.study == f"flagship-{device}"
        assert len(records) == len(trained) == len(declared["methods"]) * len(cfg.seeds) > 0  # all trained here
        assert all(p.exists() for r in records for p in [ms.run_path(cfg.results_dir, cfg.study, r["method"], r["seed"])])
        assert [p for p in read if tmp_path / "results" in p.parents] == []
        printed = capsys.readouterr().out.splitlines()
        assert printed[:3] == [
            f"trains {', '.join(declared['methods'])} on {ms.portable_path(cfg.dataset)} with tiny, seeds 42",
            f"preset {device} on {ms.device_name(ms.resolve_device(cfg))}",
            f"study flagship-{device}: runs in {declared['results_dir']}/runs/flagship-{device}/, "
            f"figures in {declared['results_dir']}/figures/flagship-{device}/"]


def test_the_flagship_answers_for_the_data_it_trains(monkeypatch):
    """The committed flagship trained SST-2 and showed the Banking77 headline (the largest study): its
    answer cell, after the configuration, names a committed study of the dataset it trains."""
    import mcstudy as ms

    source = _flagship_cell(nbformat.read(FLAGSHIP, as_version=4), "ms.headline(")
    shown = []
    namespace = {"ms": ms, "cfg": ms.make_config("h100", dataset="glue/sst2")}
    monkeypatch.setitem(__import__("sys").modules, "IPython.display", type("display", (), {"Markdown": shown.append}))
    exec(source, namespace)
    study = shown[0].split("`")[1]
    assert shown[0].startswith("In study `") and ms.study_data(ROOT / "results", study) == ("glue/sst2", 0.0), study


def test_the_flagship_says_what_it_trains_and_that_its_packages_are_there(monkeypatch, capsys):
    """The committed flagship's setup cell showed a pip failure for packages the run did not need, and
    its intro described the control-variate objective, which `mclearn` only logs. With every package
    there, the setup cell prints one line; the intro names the objective `mclearn` trains."""
    nb = nbformat.read(FLAGSHIP, as_version=4)
    monkeypatch.chdir(ROOT)
    exec(_flagship_cell(nb, "requirements.txt"), {"__name__": "setup"})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith("already installed: every package the cells below import")
    intro = nb.cells[0].source
    assert "`mclearn` trains on the full-pass term" in intro and "control-variate estimate" in intro
    assert "is only logged" in intro and "minimises that control-variate objective" in intro
    assert not any(word in cell.source for cell in nb.cells if cell.cell_type == "markdown"
                   for word in ("executed on an H100", "executed on an H200", "results/runs/flagship/"))


def test_the_flagships_package_check_shows_no_widget_warning_in_a_kernel_without_ipywidgets(monkeypatch, recwarn):
    """The flagship executed on a GPU host without ipywidgets showed tqdm's "IProgress not found"
    under its setup cell: checking that transformers imports imports tqdm.auto, which warns in a
    kernel without ipywidgets (the bars are then plain text, as the cell's note says). Its check of a
    module whose import warns so stays silent, and still finds the module there."""
    import sys
    import types

    import IPython

    class KernelShell:
        config = {"IPKernelApp": {}}

    monkeypatch.chdir(ROOT)
    namespace = {"__name__": "setup"}
    exec(_flagship_cell(nbformat.read(FLAGSHIP, as_version=4), "requirements.txt"), namespace)  # all there
    for name in ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))  # "a kernel"
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    monkeypatch.setattr(IPython, "get_ipython", lambda: KernelShell())
    monkeypatch.setitem(namespace["IMPORTED"], "tqdm", "tqdm.auto")  # a module whose import warns there
    recwarn.clear()
    assert namespace["unmet"]("tqdm") is False
    assert not [w for w in recwarn if "IProgress" in str(w.message)]


def _carry_uncommitted_changes(clone):
    """Bring the checkout's uncommitted changes (tracked files, and untracked ones git does not ignore)
    into `clone`, a clone of its HEAD, so the clone holds what a commit of the checkout would."""
    import shutil
    import subprocess

    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=ROOT, capture_output=True, check=True).stdout
    if diff:
        subprocess.run(["git", "apply", "--whitespace=nowarn"], cwd=clone, input=diff, check=True)
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split("\0")
    for path in filter(None, untracked):
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, clone / path)
    if diff or any(untracked):  # committed there, so the clone's own status is clean before the smoke lines
        subprocess.run(["git", "add", "-A"], cwd=clone, check=True)
        subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q",
                        "-m", "uncommitted changes of the checkout"], cwd=clone, check=True)


def test_the_readme_smoke_lines_run_offline_from_a_clean_clone(tmp_path):
    """The README's smoke line failed offline (the committed flagship names the hub's SST-2) and left
    out.ipynb in the checkout. Its notebook smoke lines, run as written by bash in a clean clone with
    the hub off, pass and write nothing into the checkout (Python's ignored __pycache__ aside)."""
    import os
    import re
    import subprocess

    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    smoke = [block for block in blocks if "papermill Monte_Carlo_Learn.ipynb" in block]
    assert len(smoke) == 1 and "run_notebooks.py --preset cpu-smoke" in smoke[0]
    clone, temp = tmp_path / "clone", tmp_path / "temp"
    temp.mkdir()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    _carry_uncommitted_changes(clone)
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", smoke[0]], cwd=clone, capture_output=True, text=True,
                          env={**os.environ, **offline, "TMPDIR": str(temp)}, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "all notebooks ran and wrote their files" in done.stdout
    status = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert [line for line in status if "__pycache__/" not in line] == []
    assert any(temp.rglob("flagship.ipynb")) and any(temp.rglob("summary.csv"))


def test_every_study_key_of_the_gpu_script_sets_only_parameters_notebook_04_declares():
    """gpu_budget_study.sh hands each dataset key's settings (params=(name=value ...)) to notebook 04
    through run_notebooks.py, which refuses a name the notebook does not declare: a key with an
    undeclared setting (sst2-long's batch_size) stops its study on the GPU after the model is
    staged. Every name the script sets, and the names it always adds, are parameters of notebook 04."""
    import re

    script = (ROOT / "benchmarks" / "gpu_budget_study.sh").read_text()
    names = set()
    for group in re.findall(r"params=\(([^)]*)\)", script):
        names |= set(re.findall(r"(?:^|\s)([a-z_]+)=", group))
    assert {"dataset", "epochs", "batch_size", "label_noise"} <= names  # the case statement was read
    names |= {"model_name", "study", "lrs"}
    declared = rn.declared_parameters(nbformat.read(ROOT / "notebooks" / "04_compare_methods.ipynb", as_version=4))
    assert sorted(names - set(declared)) == []
