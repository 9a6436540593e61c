"""The study's command line (`python -m mcstudy ...`) and the checks of a notebook's parameters: each
parameter against its rule, the sweep it asks for, the summary table it prints."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import shutil
import signal
import sys
import textwrap
import threading
import types
from typing import Any, Iterable, Sequence

import mclearn_core as core
from mcstudy.config import (AT_LEAST_ONE, CONFIG_RANGES, Config, ConfigError, NAMED_KEYS, PRESETS, Range,
                            SEED_RANGE, TINY_MODEL, _kind_of, _of_kind, check_range, check_study_name,
                            check_type, make_config, parse_overrides, replace_config, study_name,
                            validate_config)
from mcstudy.data import DataError
from mcstudy.runs import (StudyBusyError, check_keys_read, check_methods, check_no_budget_keys, renamed_method,
                          run_sweep)
from mcstudy.tables import summarize
from mcstudy.train import code_provenance
from mcstudy.methods import METHODS


# --- notebook parameters --------------------------------------------------------------------------
# What each notebook parameter that is not a Config key may hold: (kind, range of its numbers, example).
# Kinds: int, float, bool, floats (a non-empty list), floats or None (items None or in the range),
# method (a METHODS id), methods (a non-empty list of them), method floats / method int (a dict from
# method ids to a list of numbers / to one int). Config keys among the parameters are checked as
# the command line checks them (check_type, check_range).
NOTEBOOK_RULES: dict[str, tuple[str, Range | None, str]] = {
    "methods": ("methods", None, '["baseline", "mclearn"]'), "method": ("method", None, '"mclearn"'),
    "seed": ("int", SEED_RANGE, "42"), "time_budgets": ("floats", Range(0, 1, lo_open=True), "[1/3, 1/2]"),
    "method_budgets": ("method floats", Range(0, 1, lo_open=True), '{"rho-loss": [0.5]}'),
    "method_seeds": ("method int", AT_LEAST_ONE, '{"rho-loss": 3}'),
    "lrs": ("floats", Range(0, lo_open=True, empty_ok=True), "[2e-5, 4e-5]"),
    "lr_factors": ("floats", Range(0, lo_open=True, empty_ok=True), "[0.5, 1, 2]"),
    "progress": ("bool", None, "True"),
    "run_if_missing": ("bool", None, "True"), "draws": ("int", Range(2), "5000"),
    "full_probs": ("floats", Range(0, 1, lo_open=True), "[0.1, 0.5, 1.0]"),
    "w_clip_values": ("floats or None", Range(0, lo_open=True), "[None, 2, 5, 10]"),
    "clip_sweep_full_prob": ("float", Range(0, 1, lo_open=True), "0.25"),
}


def _check_rule(name: str, value: Any) -> None:
    """Raise ConfigError (one line) unless `value` is what NOTEBOOK_RULES[name] allows."""
    kind, rule, example = NOTEBOOK_RULES[name]
    fix = f"e.g. {name}={example}"

    def numbers(values: Any, of: str, nones: bool = False) -> None:
        items = values if isinstance(values, (list, tuple)) else None
        if items is None or not all(_of_kind(v, of) or (nones and v is None) for v in items):
            raise ConfigError(f"{name}={value!r} is {_kind_of(value)}: {name} expects a list of {of}s"
                                   f"{' or None' if nones else ''}, {fix}")
        if not items and not rule.empty_ok:
            raise ConfigError(f"{name} is empty: give at least one value, {fix}")
        bad = [v for v in items if v is not None and not rule.holds(v)]
        if bad:
            raise ConfigError(f"{name}={value!r} has {', '.join(map(str, bad))} out of range: each value must be "
                                   f"{rule.text()}, {fix}")

    def methods(ids: Any) -> None:
        try:
            check_methods(ids)
        except ValueError as err:
            raise ConfigError(f"{name}={value!r}: {err}") from None

    if kind in ("int", "float", "bool"):
        if not _of_kind(value, kind):
            article = "an" if kind == "int" else "a"
            raise ConfigError(f"{name}={value!r} is {_kind_of(value)}: {name} expects {article} "
                                   f"{kind}, {fix}")
        if rule is not None and not rule.holds(value):
            raise ConfigError(f"{name}={value!r} is out of range: {name} must be {rule.text()}, {fix}")
    elif kind in ("floats", "floats or None"):
        numbers(value, "float", nones=kind == "floats or None")
    elif kind in ("method", "methods"):
        ids = [value] if kind == "method" else value
        if not isinstance(ids, (list, tuple)) or not ids or not all(isinstance(m, str) for m in ids):
            raise ConfigError(f"{name}={value!r} is {_kind_of(value)}: {name} expects "
                                   f"{'a method id' if kind == 'method' else 'a non-empty list of method ids'}, {fix}")
        methods(ids)
    else:  # method floats, method int: a dict from method ids
        if not isinstance(value, dict):
            raise ConfigError(f"{name}={value!r} is {_kind_of(value)}: {name} expects a dict from "
                                   f"method ids, {fix}")
        methods(list(value))
        for item in value.values():
            if kind == "method int" and not (_of_kind(item, "int") and rule.holds(item)):
                raise ConfigError(f"{name}={value!r} has {item!r}: each value must be an int {rule.text()}, {fix}")
            if kind == "method floats":
                numbers(item, "float")


def check_notebook_parameters(namespace: dict[str, Any], before: Iterable[str], declared: Sequence[str]) -> None:
    """Raise ConfigError for a notebook's parameters (the `declared` names in `namespace`, a
    kernel's globals) that could not run as given; a notebook cell shows it as one line
    (ConfigError._render_traceback_). Refused: a new name (not in `before`, the names defined
    before the parameters cell; not a module, class or function) that the notebook does not
    declare (a misspelt parameter would leave its default in place), a Config key's value of
    another type or out of its range (check_type, check_range, as the command line checks them;
    None keeps the preset's value), a study that is not one folder name, an empty name, and every
    other parameter by NOTEBOOK_RULES."""
    before = set(before)
    new = [name for name, value in namespace.items() if name not in before and name not in declared
           and not name.startswith("_") and not isinstance(value, (types.ModuleType, type)) and not callable(value)]
    if new:
        close = difflib.get_close_matches(new[0], declared, n=1)
        hint = f": did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{new[0]} is no parameter of this notebook{hint} (its parameters: "
                               f"{', '.join(declared)}); as it is, it would change nothing")
    fields = {f.name for f in dataclasses.fields(Config)}
    for name in declared:
        value = namespace[name]
        if name == "preset":
            if value != "auto" and value not in PRESETS:
                raise ConfigError(f"preset={value!r} is not a preset: choose one of auto, "
                                       f"{', '.join(PRESETS)}")
        elif name in fields:
            if value is None and name != "results_dir":
                continue
            check_type(name, value)
            if name in CONFIG_RANGES:
                check_range(name, tuple(value) if isinstance(value, list) else value)
            if name == "study":
                check_study_name(value)
            if name in NAMED_KEYS and not value.strip():
                raise ConfigError(f"{name}={value!r} is empty: give a name, or None for the preset's")
            if name == "seeds" and len(set(value)) < len(value):
                raise ConfigError(f"seeds={value!r} lists a seed more than once: each seed is one run, "
                                       f"list it once")
        else:
            _check_rule(name, value)


# --- the command line -----------------------------------------------------------------------------
class UsageError(ValueError):
    """A command line that cannot run as given (exit code 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program was so that it cleans up as after Ctrl-C (exit code 143)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def provenance_env() -> str:
    """Return code_provenance() as MCLEARN_* environment assignments, one per line, for a copy of
    this checkout without .git: `env $(python -m mcstudy --provenance) bash benchmarks/gpu_notebooks.sh ...`."""
    prov = code_provenance()
    lines = [f"MCLEARN_COMMIT={prov['git_commit']}", f"MCLEARN_GIT_CLEAN={str(prov['git_clean']).lower()}"]
    if prov["git_diff_sha256"]:
        lines.append(f"MCLEARN_GIT_DIFF_SHA256={prov['git_diff_sha256']}")
    return "\n".join(lines)


# The report table's columns the CLI shows, with shorter headers, and the order in which they give
# way when the table is wider than CLI_WIDTH: the last listed goes first.
CLI_COLUMNS = {"method": "method", "budget": "budget", "seeds": "seeds", "accuracy (%)": "accuracy (%)",
               "train seconds": "train s", "speed-up vs baseline": "speed-up", "accuracy change (pt)": "acc change (pt)",
               "test accuracy (%)": "test acc (%)", "reaches budget": "reaches budget",
               "seconds / baseline": "s / baseline", "graphed": "graphed", "examples seen (backward)": "backward",
               "examples scored (forward only)": "scored (fwd)"}


def cli_table(table, width: int | None = core.CLI_WIDTH) -> str:
    """Return the report table (report_table's DataFrame) as text at most `width` characters wide:
    study and device as a heading line (a device column when there are several), the CLI_COLUMNS
    with their short headers, dropped from the end of that list until the table fits, and a last
    line naming the columns left out. `width` None: every column, as report_table names them."""
    if width is None or table.empty:
        return table.to_string(index=False)
    heading = f"study {', '.join(map(str, table['study'].unique()))}"
    columns = [c for c in CLI_COLUMNS if c in table]
    if table["device"].nunique() == 1:
        heading += f" on {table['device'].iloc[0]}"
    else:
        columns.insert(1, "device")
    shown = list(columns)

    def text(kept: list[str]) -> str:
        order = [c for c in table.columns if c in kept]
        return table[order].rename(columns=CLI_COLUMNS).to_string(index=False)

    while len(shown) > 4 and max(map(len, text(shown).splitlines())) > width:
        shown.pop()
    left = [CLI_COLUMNS.get(c, c) for c in columns if c not in shown]
    note = f"left out to fit {width} columns (--wide shows them): {', '.join(left)}" if left else ""
    return "\n".join([textwrap.fill(heading, width), text(shown), *([textwrap.fill(note, width)] if note else [])])


def table_notes(cfg: Config) -> str:
    """Return the lines printed under the CLI's final table: how its cells summarize the seeds and,
    for the tiny model (model_name="tiny"), that the table checks the wiring and answers nothing."""
    notes = ("accuracy (%): mean ± std over seeds; train s: median [min–max] over seeds; speed-up: the "
             "baseline's median train seconds over the method's")
    if cfg.model_name == TINY_MODEL:
        notes += (f"\nA wiring check, not the answer: a {cfg.tiny_layers}-layer model of width {cfg.tiny_dim} "
                  f"trained from scratch on a small sample shows that every method trains, is timed and writes "
                  f"its run file; its accuracies and speed-ups say nothing about fine-tuning a pretrained "
                  f"transformer on a GPU (README: the answer, and how to reproduce it on a GPU).")
    return notes


class _GivenOnce(argparse.Action):
    """An option that takes one value: given again with another value, it is refused (argparse would
    keep the last without a word)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if self.dest in getattr(namespace, "_given", set()) and getattr(namespace, self.dest) != values:
            parser.error(f"{option_string} is given twice ({getattr(namespace, self.dest)!r} and {values!r}): keep one")
        namespace._given = getattr(namespace, "_given", set()) | {self.dest}
        setattr(namespace, self.dest, values)


def _method_arg(name: str) -> str:
    """Return a --methods value as given; an old (renamed) id is refused naming its new one."""
    if renamed_method(name):
        raise argparse.ArgumentTypeError(f"method {name!r} is now {renamed_method(name)!r}: pass --methods "
                                         f"{renamed_method(name)}")
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run a resumable sweep and print the summary table; return the exit code.

    Example: python -m mcstudy --preset cpu --methods baseline mclearn
    An error prints one line "error: ..." to stderr (the traceback only with --debug) and returns 2
    for a bad command line, 1 for a failed run; Ctrl-C returns 130 and SIGTERM 143, keeping the
    finished runs.
    """
    class HelpFormatter(argparse.HelpFormatter):
        """argparse's help within CLI_WIDTH columns (or the terminal's, if narrower), names unbroken."""

        def __init__(self, prog: str):
            super().__init__(prog, width=min(core.CLI_WIDTH, shutil.get_terminal_size().columns))

        def _split_lines(self, text: str, width: int) -> list[str]:
            return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    parser = argparse.ArgumentParser(prog="python -m mcstudy", description=main.__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--preset", default="auto", action=_GivenOnce, help=f"auto or one of {', '.join(PRESETS)}")
    parser.add_argument("--methods", nargs="+", action="extend", default=None, choices=sorted(METHODS),
                        type=_method_arg, metavar="METHOD",
                        help=f"default: baseline mclearn (given twice: the lists are joined); any of "
                             f"{', '.join(sorted(METHODS))}")
    parser.add_argument("--seeds", nargs="+", type=int, action="extend", default=None)
    parser.add_argument("--dataset", default=None, action=_GivenOnce,
                        help="hub name or local folder (default: preset's)")
    parser.add_argument("--model", dest="model_name", default=None, action=_GivenOnce,
                        help="hub name, local folder or 'tiny'")
    parser.add_argument("--study", default=None, action=_GivenOnce, help='default: "sweep-<preset>"')
    parser.add_argument("--results-dir", default=None, action=_GivenOnce,
                        help="where runs and summary.csv go (default: results)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="any Config field, e.g. --set epochs=2 w_clip=5 kappa_schedule=0.6,0.5,0.4 "
                             "(given twice: the items are joined; a key given twice with two values is refused)")
    parser.add_argument("--wide", action="store_true",
                        help=f"print every column of the final table (default: what fits {core.CLI_WIDTH} columns)")
    parser.add_argument("--provenance", action="store_true",
                        help="only print MCLEARN_COMMIT=... lines for a copy of this checkout without .git")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")

    def usage_error(message: str):
        raise UsageError(message)

    parser.error = usage_error  # one line instead of argparse's usage block
    argv = list(sys.argv[1:] if argv is None else argv)
    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers can be set
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        _run_command_line(parser.parse_args(argv))
    except KeyboardInterrupt as err:
        stopped = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        core.say(f"{stopped}: finished runs are kept and the unfinished run left no file; run the same "
                 f"command again to resume", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except Exception as err:
        if "--debug" in argv:
            raise
        known = isinstance(err, (ValueError, DataError, core.ModelLoadError, core.TrainingError,
                                 StudyBusyError))
        message = " ".join(str(err).split()) or "(no message)"
        if isinstance(err, OSError) and err.filename:
            known, message = True, (f"{err.strerror or err}: {err.filename}. Check that path (free space, "
                                    f"permissions) or set --results-dir to another folder")
        print(f"error: {message}" if known else f"error: {type(err).__name__}: {message} "
              f"(--debug shows the traceback)", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _run_command_line(args) -> None:
    """Do what the parsed command line asks: print provenance, or run a sweep."""
    if args.provenance:
        print(provenance_env())
        return
    try:
        overrides = parse_overrides(args.set)
        flags = {"dataset": args.dataset, "model_name": args.model_name, "study": args.study,
                 "results_dir": args.results_dir}
        for key, value in flags.items():
            if value is not None and key in overrides and overrides[key] != value:
                raise ValueError(f"{key} is given twice (--{key.replace('_name', '').replace('_', '-')} {value} and "
                                 f"--set {key}={overrides[key]}): keep one")
            if value is not None:
                overrides[key] = value
        overrides.setdefault("study", study_name("sweep", args.preset))
        overrides.setdefault("results_dir", "results")
        cfg = make_config(args.preset, **overrides)
        # make_config reads None as "the preset's value"; on the command line "none" means None
        nones = sorted(k for k, v in overrides.items() if v is None)
        cfg = replace_config(cfg, explicit=tuple(sorted({*cfg.explicit, *nones})), **dict.fromkeys(nones))
        methods = args.methods or ["baseline", "mclearn"]
        check_methods(methods)
        check_keys_read(cfg, methods)
        validate_config(cfg, args.seeds)
        check_no_budget_keys(cfg)
    except ValueError as err:
        raise UsageError(str(err)) from err
    records = run_sweep(cfg, methods, args.seeds)
    table = summarize(cfg.results_dir, study=cfg.study, show=False)
    print(cli_table(table, None if args.wide else core.CLI_WIDTH))
    core.say(table_notes(cfg))
    for record in records:  # said once as each run ended; repeated where the table is read
        for warning in record.get("warnings") or []:
            core.say(f"warning: {record.get('run_label') or record['method']} seed {record['seed']}: {warning}")
