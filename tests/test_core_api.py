"""MC-Learn outside the study: its own config, a plain PyTorch loop's context (PlainContext), and
the README's plain-loop example run as written."""
import copy
import dataclasses
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

import mclearn_core as mc
import mclearn_paper as mp
import mcstudy as ms


def test_mclearn_config_defaults_are_the_study_configs():
    """Every MCLearnConfig field is a study Config field with the same default, so a trainer reads
    the same knob values from either (MCLearn and MCLearnPaper read their config by attribute).
    The one exception is time_budget: the study's 0 means "no budget study", where the study's
    MC-Learn (MCLearnMethod.time_budget) trains at MC-Learn's default share."""
    study = {f.name: f.default for f in dataclasses.fields(ms.Config)}
    for field in dataclasses.fields(mc.MCLearnConfig):
        assert field.name in study, f"MCLearnConfig.{field.name} is not a Config field"
        if field.name == "time_budget":
            assert study["time_budget"] == 0 and field.default == 1 / 3
            for share, read in ((0.0, 1 / 3), (0.5, 0.5)):  # a budget study's share, else the default
                run = SimpleNamespace(ctx=SimpleNamespace(cfg=ms.Config(time_budget=share)))
                assert ms.MCLearnMethod.time_budget(run) == read
            continue
        assert field.default == study[field.name], field.name


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_loop() -> str:
    """Return the Python block of README.md's "Use MC-Learn in your own loop" section, as written."""
    section = README.read_text().split("## Use MC-Learn in your own loop", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run_plain_loop(prepared, code: str) -> dict:
    """Run `code` with a fresh copy of the cpu-smoke tiny model and its training rows as `model`,
    `ids`, `lengths` and `labels`; return its namespace."""
    train = prepared.train
    namespace = {"model": copy.deepcopy(prepared.base_model).train(), "ids": train.input_ids,
                 "lengths": train.lengths, "labels": train.labels}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_the_readmes_plain_loop_trains_the_model_with_mclearn_alone(prepared, capsys):
    """The README's loop, run as written: MCLearn on a PlainContext prices its budget by timing
    updates (and says so), trains every step it planned through the model's own optimizer, and
    moves the model's weights; it names nothing of the study."""
    code = readme_loop()
    assert "mcstudy" not in code and len(code.strip().splitlines()) <= 12
    before = [p.detach().clone() for p in prepared.base_model.parameters()]
    ns = run_plain_loop(prepared, code)
    trainer, ctx = ns["trainer"], ns["ctx"]
    assert type(trainer) is mc.MCLearn and isinstance(ctx, mc.PlainContext)
    assert "no step_costs in the context" in capsys.readouterr().out
    assert not ctx.step_costs.graphed and ctx.step_costs.seconds
    steps = trainer.steps_run
    assert steps >= 1 and steps == min(trainer.num_steps(), trainer.total_steps)
    assert ctx.examples_backward == steps * trainer.full_rows
    assert math.isfinite(float(ns["logs"]["loss"]))
    moved = [not torch.equal(a, b) for a, b in zip(before, ns["model"].parameters())]
    assert sum(moved) > len(moved) // 2
    assert trainer.telemetry()["budget"]["steps_run"] == steps
    trained = {id(p) for group in ctx.optimizer.param_groups for p in group["params"]}
    assert id(trainer.cheap_head.weight) in trained  # the scorer's head learns with the model


def test_mclearn_paper_runs_in_the_same_plain_loop(prepared):
    """The README's loop with MCLearnPaper in place of MCLearn trains its published number of steps
    (one per batch of the epoch)."""
    ns = run_plain_loop(prepared, readme_loop().replace("trainer = mc.MCLearn(ctx)",
                                                   "import mclearn_paper as mp\ntrainer = mp.MCLearnPaper(ctx)"))
    trainer = ns["trainer"]
    assert type(trainer) is mp.MCLearnPaper
    assert trainer.num_steps() == math.ceil(len(prepared.train) / 32) and trainer.refreshes >= 1
    assert ns["ctx"].examples_backward > 0


# ------------------------------------------------------------------ diagnostics without the study's libraries
def test_the_confusion_matrix_is_drawn_by_matplotlib_alone(monkeypatch):
    """plot_confusion_matrix needs no scikit-learn: each cell's count is written on it (light on the
    dark cells), true labels by row and predicted by column."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setitem(sys.modules, "sklearn", None)  # importing it raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    record = {"confusion_matrix": [[30, 2, 0], [5, 20, 1], [0, 3, 40]], "label_names": ["a", "b", "c"],
              "method": "mclearn", "seed": 42, "accuracy": 0.9}
    ax = mc.plot_confusion_matrix(record).axes[0]
    texts = [(t.get_position(), t.get_text()) for t in ax.texts]
    assert texts == [((c, r), str(v)) for r, row in enumerate(record["confusion_matrix"]) for c, v in enumerate(row)]
    dark = {t.get_text(): t.get_color() for t in ax.texts}
    assert dark["40"] != dark["0"] and dark["30"] == dark["40"] and dark["2"] == dark["0"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"] == \
        [t.get_text() for t in ax.get_yticklabels()]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted label", "True label")
    assert ax.get_ylim() == (2.5, -0.5) and "accuracy 0.900" in ax.get_title()


def test_the_telemetry_plot_needs_no_pandas(monkeypatch):
    """plot_telemetry draws each telemetry series over the steps with matplotlib alone: rows per step;
    ESS fraction, replay share and the rank agreement (left out where no step has one); per-class
    weights and tau on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setitem(sys.modules, "pandas", None)
    steps = [{"step": s, "kept": 32, "full": 16, "ess_fraction": 0.5 + s / 100, "replay_share": 0.2,
              "rank_corr": None, "tau": 1.0 + s / 10, "class_weights": [0.25 + s / 100, 0.75 - s / 100]}
             for s in (1, 2, 3)]
    fig = mc.plot_telemetry({"telemetry": {"steps": steps}, "method": "mclearn", "seed": 0})
    first, health, per_class = fig.axes
    assert [line.get_label() for line in first.lines] == ["kept", "full"]
    assert [line.get_label() for line in health.lines] == ["ess_fraction", "replay_share"]
    assert [line.get_label() for line in per_class.lines] == ["class_weights class 0", "class_weights class 1", "tau"]
    assert list(per_class.lines[1].get_ydata()) == [0.74, 0.73, 0.72] and per_class.get_yscale() == "log"
    assert list(health.lines[0].get_xdata()) == [1, 2, 3] and health.get_xlabel() == "step"


def test_running_the_module_prints_its_use():
    """`python3 mclearn_core.py` trains nothing (it is a library): it prints the module's docstring,
    with the three calls of a plain loop and the README section that shows them, and exits 0."""
    import subprocess

    done = subprocess.run([sys.executable, mc.__file__], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trainer.step(step)" in done.stdout and 'README "Use MC-Learn in your own loop"' in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 100
