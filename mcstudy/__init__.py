"""The MC-Learn study: config and presets, data, model, update machinery, the peer methods, the
training loop and run store, budget studies, tables, verdicts and the command line, around the
method in mclearn_core.py (which imports nothing from here).

Notebooks use the names in `__all__`; every module's own names are importable from it."""
import importlib

# Modules in dependency order: each imports only modules before it (tests/test_layout.py).
LAYERS = ("config", "data", "model", "engine", "methods", "train", "runs", "budget", "tables",
          "equal_time", "ablation", "cli")


def __getattr__(name: str):
    """Return `name` from the first study module that defines it, else from mclearn_core (PEP 562)."""
    import importlib.util

    for layer in LAYERS:
        if importlib.util.find_spec(f"{__name__}.{layer}") is not None:
            found = vars(importlib.import_module(f"{__name__}.{layer}"))
            if name in found:
                return found[name]
    core = importlib.import_module("mclearn_core")
    if name in vars(core):
        return vars(core)[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
