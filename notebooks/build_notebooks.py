"""Generate the MC-Learn notebooks (nbformat v4, kernel python3, no outputs)."""
import ast
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]  # the repository root


def md(text):
    return new_markdown_cell(text.strip("\n"))


def code(text, tags=()):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def with_parameter_check(cells):
    """Return `cells` with the parameters cell between two cells: before it, one that notes the names
    defined so far; after it (and after papermill's injected cell), ms.check_notebook_parameters
    over the names it assigns, so a misspelt name, a wrong type or a value out of range stops Run
    All with one line before anything loads or trains."""
    at = next(i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", []))
    names = [t.id for node in ast.parse(cells[at].source).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)]
    before = code('names_before_parameters = {*globals(), "names_before_parameters"}  # for the check after them')
    listed = textwrap.fill(", ".join(f'"{name}"' for name in names), 96, initial_indent="    ",
                           subsequent_indent="    ")
    check = code("import mcstudy as ms\n\n# the same checks as the command line's: names, types, ranges\n"
                 f"ms.check_notebook_parameters(globals(), names_before_parameters, [\n{listed}])")
    return [*cells[:at], before, cells[at], check, *cells[at + 1:]]


def write(cells, path):
    nb = new_notebook(cells=with_parameter_check(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids keep diffs small
        cell["id"] = f"{path.stem[:20].lower().replace('_', '-')}-{i:02d}"
    nbformat.validate(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    print("wrote", path)


FIND_REPO = '''
# Make mclearn_core and mcstudy importable from the repository root or from notebooks/.
%matplotlib inline
import sys, pathlib
REPO = next((p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents] if (p / "mclearn_core.py").exists()), None)
if REPO is None:
    raise FileNotFoundError("mclearn_core.py is not in this folder or above it: start the notebook "
                            "from the repository (its root or notebooks/).")
sys.path.insert(0, str(REPO))
'''

RESOLVE = '''
import dataclasses, pprint
import mcstudy as ms

# Relative paths resolve against the repository root, not the notebook's folder.
results_dir = str(ms.REPO_ROOT / results_dir)
if dataset and (ms.REPO_ROOT / dataset).is_dir():
    dataset = str(ms.REPO_ROOT / dataset)
if model_name and (ms.REPO_ROOT / model_name).is_dir():
    model_name = str(ms.REPO_ROOT / model_name)
study = study or ms.study_name(STUDY_BASE, preset)  # e.g. "flagship-t4": each device keeps its own runs
figures = pathlib.Path(results_dir) / "figures" / study
'''

TRAINING_PARAMETERS = '''
Parameters: `preset` (`"auto"` picks from the device; CI uses `"cpu-smoke"`), `dataset` / `model_name`
(`None` = the preset's), `seeds`, `methods`, `study`, `results_dir` (relative to the repository root),
`progress` (progress bars while training).
'''

MAKE_CONFIG = '''
cfg = ms.make_config(preset, dataset=dataset, model_name=model_name, study=study, results_dir=results_dir,
                     **({"seeds": tuple(seeds)} if seeds else {}))
print(f"preset {cfg.preset} on {ms.resolve_device(cfg)}: {cfg.model_name} on {cfg.dataset}, seeds {cfg.seeds}")
print(f"results -> {results_dir}, figures -> {figures}")
'''

# -----------------------------------------------------------------------------------------------
# Flagship: Monte_Carlo_Learn.ipynb
# -----------------------------------------------------------------------------------------------
flagship = [
    md('''
# MC-Learn: adaptive Monte Carlo sampling for fine-tuning transformers

[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mclearn-study/mc-learn/blob/main/Monte_Carlo_Learn.ipynb)

MC-Learn fine-tunes a transformer classifier while running the full forward and backward pass on only
part of the data:

1. **Cheap scorer.** A small head on early-layer features (the first `score_layer` encoder blocks; 0: the
   embeddings) scores a pool of candidate examples by difficulty, 1 − p(true class).
2. **Sampler with known probabilities.** A soft top-k inside each class plus a uniform replay share
   draws the pool members each step trains on; every draw's probability is known.
3. **Weighted full-pass loss.** `mclearn` trains on the full-pass term Σ_S w_j l_full(x_j): the drawn
   members' full-model losses, weighted by their draw probabilities (Hansen–Hurwitz weights, clipped at
   `w_clip` times the uniform weight), an unbiased estimate of the training set's mean loss and the only
   term with a gradient into the model; the cheap head learns from its own loss and from the full pass
   (distillation). The control-variate estimate (the cheap loss on every kept member plus the
   full-minus-cheap gap on the full-pass subset) is only logged. `mclearn-paper`, the method as
   published, minimises that control-variate objective instead.
4. **Budget.** `mclearn` plans its whole run to `budget_ratio` of the optimized baseline's measured time
   (steps priced from measured costs, re-planned at each pool refresh); `mclearn-paper` holds each step to
   `step_budget_ratio` of a baseline step, as published.

What `mclearn` changes from the published method, and why: `docs/deviations.md`. MC-Learn lives in
`mclearn_core.py`, the study around it in `mcstudy/`; the cells below only call them.

**Run All trains on your device.** The Configuration cell prints what this copy trains: methods, data,
model, preset and device, study and folder. By default the runs go to the study `flagship-<preset>`
(`flagship-t4`, `flagship-h100`, `flagship-cpu`, ...) in `runs-local/`, a git-ignored folder that holds
no committed run, so nothing trained on another machine is read back as yours; the committed studies
under `results/` are read only for "the answer so far". The outputs saved in this copy come from the
device and folder its Configuration cell prints.
'''),
    md('''
## Setup

Checks that the packages the cells below import are there, and installs from `requirements.txt` only
what is missing, keeping the installed torch (Colab's is built for its GPU): when all are there it says
so in one line and needs no network. On Colab, outside a checkout, it clones the repository first and
works inside it.
'''),
    code('''
import importlib, importlib.metadata, importlib.util, os, pathlib, re, subprocess, sys, tempfile, warnings

REPO_URL = "https://github.com/mclearn-study/mc-learn"  # the same owner/repo as the Colab badge above
if not pathlib.Path("mclearn_core.py").exists() and importlib.util.find_spec("google.colab") is not None:
    checkout = pathlib.Path("/content") / REPO_URL.rsplit("/", 1)[-1]
    if not checkout.exists():
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, str(checkout)], check=True)
    os.chdir(checkout)
    print("working in", checkout)
if not pathlib.Path("requirements.txt").exists():
    raise FileNotFoundError("requirements.txt is not here: start the notebook in the repository root.")

# requirement -> the module the cells below import (the rest of requirements.txt runs tests and batch
# jobs); the OPTIONAL ones only where the note says.
IMPORTED = {"torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers", "scikit-learn": "sklearn",
            "pandas": "pandas", "pyarrow": "pyarrow", "matplotlib": "matplotlib", "seaborn": "seaborn",
            "tqdm": "tqdm", "tabulate": "tabulate", "datasets": "datasets", "ipywidgets": "ipywidgets"}
OPTIONAL = {"datasets": "only a dataset from the hub needs it", "ipywidgets": "the progress bars are plain text"}


def name_of(requirement):
    return re.split(r"[<>=!~;\\[ ]", requirement)[0].lower()


def unmet(requirement):
    """True when the requirement's module does not import, or its installed version is known and does
    not satisfy the requirement."""
    try:
        with warnings.catch_warnings():  # tqdm.auto, which transformers imports, warns in a kernel without
            warnings.filterwarnings("ignore", message="IProgress not found")  # ipywidgets: bars are text there
            importlib.import_module(IMPORTED[name_of(requirement)])
    except ImportError:
        return True
    try:
        installed = importlib.metadata.version(name_of(requirement))
        from packaging.requirements import Requirement
    except (importlib.metadata.PackageNotFoundError, ImportError):  # it imports: no version to compare
        return False
    return not Requirement(requirement).specifier.contains(installed, prereleases=True)


have_torch = importlib.util.find_spec("torch") is not None
offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")  # a machine without network
lines = [line.split("#")[0].strip() for line in pathlib.Path("requirements.txt").read_text().splitlines()]
missing = [r for r in lines if r and name_of(r) in IMPORTED and not (have_torch and name_of(r) == "torch")
           and unmet(r)]
install = [r for r in missing if not (offline and name_of(r) in OPTIONAL)]
absent = "".join(f"; {name_of(r)} is not ({OPTIONAL[name_of(r)]})" for r in missing if r not in install)
if install:
    command = [sys.executable, "-m", "pip", "install", "-q", *install]
    if have_torch:  # pinned as a constraint, so no requirement can replace the installed torch
        pin = pathlib.Path(tempfile.mkdtemp()) / "keep-torch.txt"
        pin.write_text(f"torch=={importlib.metadata.version('torch')}\\n")
        command += ["-c", str(pin)]
    print("installing from requirements.txt:", " ".join(install))
    result = subprocess.run(command + ["--retries", "1", "--timeout", "15"], capture_output=True, text=True)
    if result.returncode:  # e.g. no network: say so in one line, not pip's retry log
        last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        needed = [name_of(r) for r in install if name_of(r) not in OPTIONAL]
        print(f"pip could not install {' '.join(install)} ({last}): " + (
              f"the cells below fail without {', '.join(needed)}" if needed else
              "; ".join(f"{name_of(r)}: {OPTIONAL[name_of(r)]}" for r in install)))
else:
    print(f"already installed: every package the cells below import (torch {importlib.metadata.version('torch')} "
          f"kept){absent}")
'''),
    code(FIND_REPO),
    md('''
## Parameters

- `preset`: `"auto"` picks `t4`, `a100`, `h100` or `cpu` from the visible device (the environment
  variable `MCLEARN_PRESET`, e.g. `t4`, overrides the pick); CI uses `"cpu-smoke"`.
- `dataset`, `model_name`: `None` keeps the preset's choice; otherwise a hub name or a local folder
  (relative folders resolve against the repository root).
- `seeds`: `None` keeps the preset's seeds.
- `methods`: the runs to train; every run is written to its own file as soon as it ends, so re-running
  the notebook resumes and retrains nothing that is already there.
- `budget_ratio`: `mclearn`'s train time as a fraction of the baseline's (`None` keeps the default, 1/3;
  `mclearn-paper` budgets each step instead, by its own `step_budget_ratio`).
- `progress`: progress bars while training (`False` keeps saved outputs short).
- `study`, `results_dir`: where run files, `summary.csv` and figures go (`results_dir` relative to the
  repository root). `study = None` names it after the notebook and the preset (`flagship-t4`,
  `flagship-cpu`, ...); `runs-local` is git-ignored and holds only the runs made in this checkout. Runs
  already in the study are reused; a stored run trained with other key settings (model, data, batch,
  ...) stops the notebook with a message instead of being mixed in.
'''),
    code('''
preset = "auto"
dataset = None
model_name = None
seeds = None
methods = ["baseline", "mclearn"]
budget_ratio = None
study = None  # None: "flagship-<preset>"
results_dir = "runs-local"  # git-ignored: only the runs made in this checkout
progress = True
''', tags=["parameters"]),
    md('''
## Configuration

What this notebook trains, on which device and where its runs go, then the base config of the runs;
each method's preset is applied on top of it when that method trains. The effective `budget_ratio` of
each MC-Learn method is printed (`mclearn` and its variants: 1/3 of the baseline's time unless you pass
one); `mclearn-paper` prints its per-step `step_budget_ratio` (0.55, or 0.70 on A100-class GPUs).
'''),
    code('STUDY_BASE = "flagship"\n' + RESOLVE + '''
cfg = ms.make_config(preset, dataset=dataset, model_name=model_name, study=study, results_dir=results_dir,
                     budget_ratio=budget_ratio, **({"seeds": tuple(seeds)} if seeds else {}))
print(f"trains {', '.join(methods)} on {ms.portable_path(cfg.dataset)} with {ms.portable_path(cfg.model_name)}, "
      f"seeds {', '.join(map(str, cfg.seeds))}")
print(f"preset {cfg.preset} on {ms.device_name(ms.resolve_device(cfg))}")
print(f"study {cfg.study}: runs in {ms.portable_path(results_dir)}/runs/{cfg.study}/, figures in "
      f"{ms.portable_path(str(figures))}/\\n")
pprint.pprint(dataclasses.asdict(cfg), width=110, compact=True, sort_dicts=False)
print("effective budget_ratio:", {m: ms.config_for_method(cfg, m).budget_ratio for m in methods
                                  if m.startswith("mclearn") and m != "mclearn-paper"})
if "mclearn-paper" in methods:
    print("mclearn-paper step_budget_ratio:", ms.config_for_method(cfg, "mclearn-paper").step_budget_ratio)
'''),
    md('''
## The answer so far

The committed studies' answer for the data this notebook trains, from `results/summary.csv` (the
committed runs, not this notebook's folder) by `ms.headline`: the largest study (on a GPU if any) that
trained this dataset with both the baseline and `mclearn`, in two sentences, then the table they come
from. Your own runs follow.
'''),
    code('''
from IPython.display import Markdown

Markdown(ms.headline(ms.REPO_ROOT / "results", dataset=cfg.dataset, label_noise=cfg.label_noise))
'''),
    md('''
## Data

Loads the dataset, builds or downloads the model and tokenizes both splits once; every run starts
from this copy (each seed re-initialises the classification head).
'''),
    code('''
prepared = ms.prepare(cfg)
print(f"{prepared.source}: {len(prepared.train)} train / {len(prepared.eval)} eval examples, "
      f"classes {prepared.label_names}, device {prepared.device}")
'''),
    md('''
## Baseline and MC-Learn

The baseline is the optimized full fine-tune (length-bucketed batches, every example once per epoch).
Runs whose result file already exists in this study are read back, not retrained.
'''),
    code('''
records = ms.run_sweep(cfg, methods, prepared=prepared, progress=progress)
'''),
    md('''
## Report table

Mean ± std over seeds. The speed-up counts against the optimized baseline measured in the same run on
the same device; "examples seen (backward)" counts the examples that had a backward pass (every
method alike), "examples scored (forward only)" the forward-only passes of the full model that
Selective Backprop and RHO-LOSS spend choosing them, and the last column is the training time until accuracy first reached the baseline's final accuracy minus
0.5 points ("never" when it did not).
'''),
    code('''
table = ms.summarize(results_dir, study, show=False)
display(table)
display(ms.comparison_table(records))
'''),
    md('''
## Diagnostics of the first MC-Learn run

**Confusion matrix.** Where the errors fall among the classes.
'''),
    code('''
import mclearn_core as mc  # MC-Learn and its diagnostics

run = next((r for r in records if r["method"].startswith("mclearn")), records[0])
print(f"diagnostics for {run['method']} seed {run['seed']} ({run['device']})")
mc.plot_confusion_matrix(run, figures / "confusion_matrix.png");
'''),
    md('''
**Difficulty.** The scorer's difficulty (1 − p(true class) from the cheap head) of each evaluation
example, split by whether the trained model got it right. If the scorer is informative, incorrect
predictions sit at higher difficulty; two overlapping curves mean it cannot tell hard from easy
examples and the sampler is close to uniform.
'''),
    code('''
mc.plot_difficulty(run, figures / "difficulty.png");
'''),
    md('''
**Sampler telemetry.** Kept and full-pass examples per step, the effective sample size as a fraction
of the kept set with the replay share (replay rises when ESS falls under its target), and the
per-class full-pass probability q with the temperature tau. Telemetry is logged at the first step and
every `log_every` steps, so a run shorter than that (the CI smoke run) shows a single point.
'''),
    code('''
mc.plot_telemetry(run, figures / "telemetry.png");
'''),
    md('''
## Time to accuracy

Evaluation accuracy against training seconds (evaluation excluded), one line per run. A method is
faster where its line reaches a given accuracy further left.
'''),
    code('''
ms.plot_time_to_accuracy(records, figures / "time_to_accuracy.png");
'''),
    md('''
## Final report

Accuracy (mean ± std over seeds), training seconds, speed-up against the baseline of the same study on
the same device, and the accuracy change in points. The device column names the hardware that
produced these numbers.
'''),
    code('''
table[["method", "seeds", "accuracy (%)", "train seconds", "speed-up vs baseline", "accuracy change (pt)",
       "device"]]
'''),
]

# -----------------------------------------------------------------------------------------------
# 01_three_seeds
# -----------------------------------------------------------------------------------------------
three_seeds = [
    md('''
# 01 · Three seeds: baseline vs MC-Learn vs MC-Learn as published

Trains the optimized baseline, the corrected `mclearn` and the published `mclearn-paper` for each seed
and reports mean ± std. Every run is written to its own file as it ends; re-running resumes and trains
only what is missing.
'''),
    code(FIND_REPO),
    md(TRAINING_PARAMETERS),
    code('''
preset = "auto"
dataset = None
model_name = None
seeds = [42, 43, 44]
methods = ["baseline", "mclearn", "mclearn-paper"]
study = None  # None: "three_seeds-<preset>"
results_dir = "results"
progress = True
''', tags=["parameters"]),
    code('STUDY_BASE = "three_seeds"\n' + RESOLVE + MAKE_CONFIG),
    md('''
## Runs

Reads back finished runs and trains the missing ones (data and model are prepared only if a run is
missing).
'''),
    code('''
records = ms.run_sweep(cfg, methods, progress=progress)
'''),
    md('''
## Mean ± std over seeds

Speed-up and accuracy change are against the baseline of this study on the same device.
'''),
    code('''
display(ms.summarize(results_dir, study, show=False))
display(ms.comparison_table(records))
'''),
    md('''
## Time to accuracy

One line per run; the spread between seeds of one method shows how much of a difference between
methods is noise.
'''),
    code('''
ms.plot_time_to_accuracy(records, figures / "time_to_accuracy.png");
'''),
    md('''
## Accuracy vs training time

Mean ± std over seeds per method: up and to the left is better.
'''),
    code('''
ms.plot_pareto(records, figures / "pareto.png");
'''),
]

# -----------------------------------------------------------------------------------------------
# 02_diagnostics
# -----------------------------------------------------------------------------------------------
diagnostics = [
    md('''
# 02 · Diagnostics of one finished run

Reads one run's result file and draws its confusion matrix, difficulty distributions and sampler
telemetry; it trains nothing, unless the file is missing and `run_if_missing` is set, in which case it
trains that one run first (with `preset`, `dataset`, `model_name`).
'''),
    code(FIND_REPO),
    md('''
Parameters: which run (`study`, `method`, `seed`, `results_dir` relative to the repository root), and
`run_if_missing` with the settings used to train it when its file does not exist yet. The defaults read
the first MC-Learn run of notebook 01.
'''),
    code('''
preset = "auto"
dataset = None
model_name = None
study = None  # None: "three_seeds-<preset>", the runs of notebook 01
method = "mclearn"
seed = 42
results_dir = "results"
run_if_missing = True
progress = True
''', tags=["parameters"]),
    code('STUDY_BASE = "three_seeds"\n' + RESOLVE + '''
path = ms.run_path(results_dir, study, method, seed)
if not path.exists():
    if not run_if_missing:
        raise FileNotFoundError(f"{path} does not exist: run notebook 01 (or set run_if_missing=True).")
    cfg = ms.make_config(preset, dataset=dataset, model_name=model_name, study=study, results_dir=results_dir)
    ms.run_sweep(cfg, [method], [seed], progress=progress)
record = ms.read_run(path)
print(path)
print({k: record.get(k) for k in ("study", "method", "seed", "preset", "device", "model", "dataset", "accuracy",
                              "train_seconds", "steps", "examples_backward", "examples_scored")})
'''),
    md('''
## Confusion matrix
'''),
    code('''
import mclearn_core as mc  # MC-Learn and its diagnostics

prefix = f"{method}-seed{seed}"
mc.plot_confusion_matrix(record, figures / f"{prefix}_confusion_matrix.png");
'''),
    md('''
## Difficulty of correct vs incorrect predictions

For MC-Learn the difficulty is the cheap scorer's 1 − p(true class); for methods without a scorer it is
the trained model's own. If the scorer is informative, incorrect predictions sit at higher difficulty.
'''),
    code('''
mc.plot_difficulty(record, figures / f"{prefix}_difficulty.png");
'''),
    md('''
## Sampler telemetry

Kept and full-pass examples per step, ESS / |K| with the replay share, and q per class with tau (empty
for methods without a sampler).
'''),
    code('''
mc.plot_telemetry(record, figures / f"{prefix}_telemetry.png");
'''),
    md('''
## Study summary

Refreshes `summary.csv` and shows this study's mean ± std table.
'''),
    code('''
ms.summarize(results_dir, study, show=False)
'''),
]

# -----------------------------------------------------------------------------------------------
# 03_estimator_checks
# -----------------------------------------------------------------------------------------------
estimator = [
    md('''
# 03 · Estimator checks: bias and variance on a synthetic pool

Simulates MC-Learn's sampler on a fixed synthetic pool whose full and cheap losses are known, and
measures the empirical bias and variance of the two loss estimators of `mclearn_paper` over `draws`
independent draws:

- `cv_estimate`: Σ_K w l_cheap + Σ_S w (l_full − l_cheap) / q, the control-variate estimate;
- `ht_estimate`: Σ_S w l_full / q, plain Horvitz–Thompson.

Both target the pool's mean full loss. Without clipping both are unbiased at every q and the control
variate has the lower variance when the cheap loss tracks the full loss; clipping the weights
(`w_clip`) trades a bias for less variance. This is what the unit tests assert, shown.
'''),
    code(FIND_REPO),
    md('''
Parameters: `draws` per setting (CI uses a few hundred), the synthetic pool's `seed`, the full-pass
probabilities q (`full_probs`) and `w_clip` values swept, and where the figures and table go (`results_dir` relative to the repository
root).
'''),
    code('''
draws = 5000
seed = 0
full_probs = [0.05, 0.1, 0.2, 0.33, 0.5, 0.75, 1.0]  # the full-pass probabilities q swept
w_clip_values = [None, 2, 5, 10]
clip_sweep_full_prob = 0.25  # q while w_clip is swept
study = "estimator_checks"
results_dir = "results"
''', tags=["parameters"]),
    code('''
import mcstudy as ms

results_dir = str(ms.REPO_ROOT / results_dir)
figures = pathlib.Path(results_dir) / "figures" / study
'''),
    md('''
## Simulation

A pool of 512 examples in 4 classes; full losses are Gamma-distributed, the cheap loss is the full loss
plus noise (a useful but imperfect control variate). Each draw keeps a soft top-k by cheap loss plus a
5% replay share (about 128 examples), weights them with `ht_weights`, sends a Bernoulli(q) subset to
the "full model" and evaluates both estimators. Every setting reuses the same random draws, so the
differences between settings are not sampling noise (and the bias estimates of different settings
move together).
'''),
    code('''
study_table = ms.estimator_study(full_probs, w_clip_values, draws, seed, clip_sweep_full_prob)
figures.mkdir(parents=True, exist_ok=True)
study_table.to_csv(figures / "estimator_checks.csv", index=False)
study_table
'''),
    md('''
## Against q (no clipping)

Bias should stay within about two standard errors (shaded) of zero for both estimators at every q;
variance grows as q falls, and less for the control variate. At q = 1 the two coincide.
'''),
    code('''
fig_q, fig_clip = ms.plot_estimator_study(study_table, figures / "estimator_vs_q.png",
                                          figures / "estimator_vs_w_clip.png")
fig_q
'''),
    md('''
## Against w_clip (q fixed)

Unclipped weights are unbiased; a tighter clip (smaller `w_clip`) caps the weights of rarely kept
examples (here those kept only through the replay draw), which biases the estimate downward and
lowers its variance.
'''),
    code('''
fig_clip
'''),
    md('''
## Summary file

Refreshes `summary.csv` for the training studies in `results_dir` (this notebook adds no runs).
'''),
    code('''
ms.summarize(results_dir, show=False);
'''),
]

# -----------------------------------------------------------------------------------------------
# 04_compare_methods
# -----------------------------------------------------------------------------------------------
compare = [
    md('''
# 04 · MC-Learn against other data-selection methods: budget studies

Does anything beat simply training for less time? The reference is `short-schedule`: the optimized
baseline on all the data for a share of its time, its warmup and cosine schedule ending with it
(what a practitioner does with less time; the full baseline is its budget 1). Against it, at the
same wall-clock budgets (shares of the tuned baseline's train seconds): a uniform fixed-subset
control, InfoBatch and MC-Learn by default (Selective Backprop and RHO-LOSS when listed; VCAS and the
published MC-Learn have no wall-clock knob and run once at their defaults when listed), on the same
data, model and device.

The fair protocol: every budgeted run gets the same seconds, budget x the full baseline's (its lr
sweep's median), and trains until its clock has spent them, its lr following the elapsed share so
that the schedule ends at its last update (No Train No Gain's budgeted runs). One tuning rule for
every method: the baseline's lr from a sweep (`lrs`, one seed), then every budgeted method's own lr
at every budget (one seed, on the eval split) from the baseline's times `lr_factors`, a grid grown
by factors of 2 past whichever edge holds the best. Final numbers are on the test split when there
is one (no choice was made on it); time to target is read off the eval split. Finished runs are
read back; only missing ones train.
'''),
    code(FIND_REPO),
    md(TRAINING_PARAMETERS + '''
`time_budgets`: the shares of the tuned baseline's train seconds the methods target;
`method_budgets` / `method_seeds`: other budgets, or fewer seeds (the first ones), for the methods
they name (Selective Backprop and RHO-LOSS starve below 1/2); `lrs`: the baseline's learning-rate
sweep (empty: no sweep, the preset's lr); `lr_factors`: the first grid of each method's own lr at each
budget, as multiples of the baseline's tuned lr, grown past its edges (empty: every method uses the
baseline's); `epochs`, `batch_size`, `eval_points` (evaluations per run: time to target is read off them),
`eval_split`, `test_split` (a held-out split, reported as test accuracy), `test_holdout` (rows carved
out of train as the test split, for data without one) and `label_noise` (training-label noise):
`None` = the config's default.
'''),
    code('''
preset = "auto"
dataset = None
model_name = None
seeds = [42, 43, 44, 45, 46]
methods = ["baseline", "short-schedule", "uniform", "infobatch", "mclearn"]
time_budgets = [1/3, 1/2]
method_budgets = {}  # e.g. {"selective-backprop": [0.5], "rho-loss": [0.5]}: they starve below 1/2
method_seeds = {}
lrs = []  # empty: no sweep, the preset's lr
lr_factors = [0.5, 1, 2]  # grown by factors of 2 past whichever edge holds the best
epochs = None
batch_size = None
eval_points = 20
eval_split = None
test_split = None
test_holdout = None
label_noise = None
study = None  # None: "compare_methods-<preset>"
results_dir = "results"
progress = True
''', tags=["parameters"]),
    code('STUDY_BASE = "compare_methods"\n' + RESOLVE + MAKE_CONFIG + '''
# this notebook's own keys, only those set (None: the config's default); they count as set explicitly
extra = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, eval_points=eval_points, eval_split=eval_split,
                               test_split=test_split, test_holdout=test_holdout,
                               label_noise=label_noise).items() if v is not None}
cfg = ms.with_explicit(cfg, **extra)
print(f"epochs {cfg.epochs}, batch {cfg.batch_size}, {cfg.eval_points} evaluations a run, "
      f"eval split {cfg.eval_split!r}, time budgets "
      f"{', '.join(ms.format_budget(b) for b in time_budgets) or 'none'}, lr sweep {lrs or 'none'}, "
      f"each method's lr at each budget: x{lr_factors or 'none'}, grown past its edges")
'''),
    md('''
## Runs

Every budgeted run trains until its clock has spent budget x the full baseline's seconds (its run
file's `time_target`); its own knob shapes what it does with them: `short-schedule` runs the
baseline's plan; `uniform` a data share equal to the budget; MC-Learn plans its steps with its
budget solver; InfoBatch prunes epoch after epoch at its own ratio, its anneal in the last share of
the seconds; Selective Backprop and RHO-LOSS select at the rate their plan gives. Whether a run did
spend its budget is the "reaches budget" column of the tables below.
'''),
    code('''
result = ms.run_budget_study(cfg, methods, time_budgets, lrs, progress=progress, lr_factors=lr_factors,
                             method_budgets=method_budgets, method_seeds=method_seeds)
records = result.records
ms.summarize(results_dir, study, show=False);
'''),
    md('''
## Learning rates

The baseline at each lr of `lrs` (study `<study>-lr`, one seed): the most accurate (ties: the
smaller lr) is the baseline's. Then each budgeted method at each budget at that lr times each of
`lr_factors`, the grid grown by factors of 2 past whichever edge holds the best until the best is
interior or the next lr up diverged; each keeps its most accurate. "where" says where the choice sits
in its grid: at an edge, a better lr may lie outside it.
'''),
    code('''
if result.lr_records or result.tune_records:
    display(ms.budget_study_lr_table([*result.lr_records, *result.tune_records]))
print(f"reference: {result.reference_seconds:.2f} s of training (the full baseline's), lr {result.lr:g}")
'''),
    md('''
## Equal time: every method against the short schedule

One row per budget and method: accuracy (test split when there is one) as mean ± std over seeds,
measured seconds over the full baseline's, and the paired difference against `short-schedule` at
the same budget over the same seeds, with its 95 % t-interval, its p-value and the p-value adjusted
by Holm's method over every comparison of the table (with its simultaneous interval). "better" or
"worse" only where the adjusted p is below 0.05; otherwise "tie". A run of the fair protocol is at
equal time within 3 % of its own target seconds: a cell over it gets no verdict ("over time").
'''),
    code('''
display(ms.equal_time_table(records))
ms.plot_equal_time(records, figures / "equal_time.png");
'''),
    md('''
## Time to target

AlgoPerf style: the target is the full baseline's median final eval accuracy minus 1 point (and
minus 0.5); a method's time is, per seed, the least train seconds at which any of its runs first
evaluated at or above it, then the median over seeds ("never" when most seeds never did), with a
bootstrap interval over the seeds. Speed-up is `short-schedule`'s time over the method's, with its
interval from the same resamples of the seeds, and the seeds on which the method was faster.
'''),
    code('''
for drop in (1.0, 0.5):
    display(ms.time_to_target(records, drop).drop(columns=["median_seconds"]))
'''),
    md('''
## Every run against the baseline

The report table: training seconds as median [min–max], their ratio to the baseline's median,
whether the run reached its budget ("no (r)": its median took r times the budget's seconds),
examples with a full backward pass, and whether the update ran as CUDA graphs.
'''),
    code('''
display(ms.comparison_table(records))
ms.plot_pareto(records, figures / "pareto.png");
'''),
    md('''
## Time to accuracy
'''),
    code('''
ms.plot_time_to_accuracy(records, figures / "time_to_accuracy.png");
'''),
    md('''
## Where MC-Learn's time goes: its pool scoring

MC-Learn's pool scoring runs eagerly (its run files say `scoring_graphed: false`). Per budget: its
refreshes, the seconds its scoring took and their share of the train seconds, the seconds of one
CUDA-graph capture, and how many times the run's whole scoring one capture costs.
'''),
    code('''
display(ms.pool_scoring_table(records))
'''),
]

# `python notebooks/build_notebooks.py 04_` writes only the notebooks whose file name holds one of the
# arguments (the flagship is committed with the outputs of its last GPU run: rewrite it only to change it).
import sys

for cells, path in [(flagship, ROOT / "Monte_Carlo_Learn.ipynb"), (three_seeds, ROOT / "notebooks" / "01_three_seeds.ipynb"),
                    (diagnostics, ROOT / "notebooks" / "02_diagnostics.ipynb"),
                    (estimator, ROOT / "notebooks" / "03_estimator_checks.ipynb"),
                    (compare, ROOT / "notebooks" / "04_compare_methods.ipynb")]:
    if len(sys.argv) < 2 or any(key in path.name for key in sys.argv[1:]):
        write(cells, path)
