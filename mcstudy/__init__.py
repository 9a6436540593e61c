"""The MC-Learn study: config and presets, data, model, update machinery, the peer methods, the
training loop and run store, budget studies, tables, verdicts and the command line, around the
method in mclearn_core.py and the published one in mclearn_paper.py (which import nothing from here).

Notebooks use the names in `__all__` (`import mcstudy as ms`; `import mclearn_core as mc` for the
method and its diagnostics); every module's own names are importable from it as well."""
import importlib

# Modules in dependency order: each imports only modules before it (tests/test_layout.py).
LAYERS = ("config", "data", "model", "engine", "methods", "train", "runs", "budget", "tables",
          "equal_time", "ablation", "cli")

# The notebooks' surface, by the module that defines each name (tests/test_notebooks.py holds every
# `ms.NAME` of the built notebooks to this list).
__all__ = [
    # config
    "REPO_ROOT", "config_for_method", "make_config", "resolve_device", "study_name",
    # train
    "device_name", "format_budget", "portable_path", "prepare",
    # runs
    "read_run", "run_path", "run_sweep",
    # budget
    "budget_study_lr_table", "run_budget_study", "with_explicit",
    # tables
    "comparison_table", "estimator_study", "plot_estimator_study", "plot_pareto", "plot_time_to_accuracy",
    "summarize",
    # equal_time
    "equal_time_table", "headline", "plot_equal_time", "time_to_target",
    # ablation
    "pool_scoring_table",
    # cli
    "check_notebook_parameters",
]


def __getattr__(name: str):
    """Return the layer `name`, else `name` from the first study module (in LAYERS order) that has it
    (PEP 562); a Python probe (a dunder name) reaches no study module."""
    if name in LAYERS:
        return importlib.import_module(f"{__name__}.{name}")
    if not name.startswith("__"):
        for layer in LAYERS:
            found = vars(importlib.import_module(f"{__name__}.{layer}"))
            if name in found:
                return found[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
