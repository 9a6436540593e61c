"""The run store: where a run's file lives, reading it back and checking it is the run its path
names, whether a stored run still answers the config (stale, identity), the study lock, and the
sweeps that run what is missing (run_once, run_sweep)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import inspect
import json
import os
import platform
import re
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

import mclearn_core as core
from mcstudy.config import Config, RENAMED, config_for_method, replace_config, resolve_device, validate_config
from mcstudy.data import data_sha256
from mcstudy.engine import BudgetPlan, DivergedError
from mcstudy.model import model_sha256
from mcstudy.train import (PROTOCOL, Prepared, TEMP_FILE, atomic_target, device_name, portable_config,
                           portable_path, prepare, run_identity, run_label, train_method, write_json_atomic)
from mcstudy.methods import METHODS, METHOD_OWN_FIELDS


# --- run files and sweeps -------------------------------------------------------------------------
class RunFileError(ValueError):
    """A file under <results>/runs that cannot be read as the run its path names; the message names
    the file and what to do."""


RUN_FILE_SUFFIX = ".json.gz"  # a run file is its record as gzip-compressed JSON (write_json_atomic)
OLD_RUN_FILE_SUFFIX = ".json"  # the old format: plain JSON, old ids and keys (benchmarks/migrate_runs.py converts it)
MIGRATE_COMMAND = "python benchmarks/migrate_runs.py"


def run_path(results_dir: str | Path, study: str, method: str, seed: int) -> Path:
    """Return where a run's file lives: <results>/runs/<study>/<method>-seed<k>.json.gz."""
    return Path(results_dir) / "runs" / study / f"{method}-seed{seed}{RUN_FILE_SUFFIX}"


RUN_LOG_SUFFIX = ".jsonl.gz"  # a run's step log: one JSON object a line, gzip compressed (run_logs)


def run_log_path(path: Path) -> Path:
    """Return the step log beside the run file `path`: <run label>-seed<k>.jsonl.gz."""
    return path.with_name(path.name.removesuffix(RUN_FILE_SUFFIX) + RUN_LOG_SUFFIX)


def old_run_file_error(path: Path) -> "RunFileError":
    """Return the error for a run file in the old format at `path` (plain JSON): one line naming it
    and the command that converts the run files of its results folder."""
    results = path.parent.parent.parent
    return RunFileError(f"{path} is a run file in the old format (plain JSON, old method ids and keys): convert "
                        f"the run files of {results} with `{MIGRATE_COMMAND} {results}`, then run again")


def check_no_old_run_file(path: Path) -> None:
    """Raise RunFileError (old_run_file_error) when the run file `path` is missing but the same run
    is there in the old format, so that its run is neither retrained nor silently left out."""
    old = path.with_name(path.name.removesuffix(RUN_FILE_SUFFIX) + OLD_RUN_FILE_SUFFIX)
    if not path.exists() and old.exists():
        raise old_run_file_error(old)


def renamed_method(name: str) -> str | None:
    """Return the method id that replaced `name` (RENAMED), or None when it was not renamed."""
    new = RENAMED.get(name)
    return new if new in METHODS else None


def check_methods(methods: Iterable[str]) -> None:
    """Raise ValueError (one line) for a method id that is not in METHODS, naming the new id of a
    renamed one (RENAMED) or else the valid ids, and for one listed twice."""
    for method in methods:
        if renamed_method(method):
            raise ValueError(f"Method {method!r} is now {renamed_method(method)!r}: use the new id.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}. Choose from: {', '.join(METHODS)}.")
    twice = sorted({m for m in methods if list(methods).count(m) > 1})
    if twice:
        raise ValueError(f"Method(s) {', '.join(twice)} listed more than once: each method trains once per seed, "
                         f"list it once.")


ABLATION_SUFFIX = "-ablation"  # an ablation study's name (before its sweep's "-lr") ends so (gpu_ablation.sh)
FAIR_ABLATION_SUFFIX = "-fair" + ABLATION_SUFFIX  # the switch's ablation, under the fair protocol


def is_ablation_study(study: str, include_sweeps: bool = False) -> bool:
    """Return True for an ablation study's name (ending in ABLATION_SUFFIX) and, with include_sweeps,
    for its learning-rate sweep's too (the same name and "-lr")."""
    study = str(study)
    return (study.removesuffix("-lr") if include_sweeps else study).endswith(ABLATION_SUFFIX)


def read_run(path: str | Path) -> Any:
    """Return the run record in a run file (gzip-compressed JSON: run_path); raise RunFileError
    (old_run_file_error) for a file in the old format (plain JSON)."""
    path = Path(path)
    if not path.name.endswith(RUN_FILE_SUFFIX):
        raise old_run_file_error(path) if path.name.endswith(OLD_RUN_FILE_SUFFIX) else \
            RunFileError(f"{path} is not a run file (its name does not end in {RUN_FILE_SUFFIX})")
    with gzip.open(path, "rt") as handle:
        return json.load(handle)


# what reading a truncated or corrupt run file raises (gzip: BadGzipFile, an OSError; EOFError; zlib.error)
RUN_READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError)


RUN_FILE_NAME = re.compile(r"(?P<label>.+)-seed(?P<seed>\d+)\.json\.gz")  # <run label>-seed<k>.json.gz (run_path)


RUN_FIELDS = ("study", "method", "seed", "accuracy", "train_seconds")  # every run record has them (tables read them)


def check_run_file(path: Path, record: Any) -> None:
    """Raise RunFileError (one line naming `path` and the fix) unless `record`, read from `path`, is
    a run record (a JSON object with RUN_FIELDS) and the run its path names: its
    study is the folder, its run label (where an old file has none: its method and budget) and seed are the
    file's name (RUN_FILE_NAME), and that label is its method's (the method id, then -b<budget>
    and/or -lr<lr>)."""
    name = RUN_FILE_NAME.fullmatch(path.name)
    missing = [] if not isinstance(record, dict) else [k for k in RUN_FIELDS if k not in record]
    if name is None or not isinstance(record, dict) or missing:
        why = ("its name is not <run label>-seed<k>.json.gz" if name is None else
               "it holds no JSON object" if not isinstance(record, dict) else f"it has no {', '.join(missing)}")
        raise RunFileError(f"{path} is not a run file ({why}): results/runs/<study>/ holds only the run files sweeps "
                           f"write; move it out of {path.parent}, or delete it (a sweep then trains its run again)")
    method = str(record["method"])
    label = str(record.get("run_label") or run_label(method, float(record.get("time_budget") or 0.0)))
    own_label = re.fullmatch(rf"{re.escape(method)}(-b[\d.]+)?(-lr[\d.e+-]+)?", label)
    if record["study"] != path.parent.name or str(record["seed"]) != name["seed"] or \
            label != name["label"] or not own_label:
        right = run_path(path.parent.parent.parent, str(record["study"]), label, record["seed"])
        raise RunFileError(f"{path} holds the run of {method} (run label {label}) seed {record['seed']} in study "
                           f"{record['study']}, by its record: a run is read only under its own name; move it back to "
                           f"{right} or delete it")


def read_run_or_set_aside(path: Path) -> dict[str, Any] | None:
    """Return the run record at `path`, or None when the file is not a readable run: it is then
    renamed to <name>.corrupt (kept for inspection, never deleted) with a warning, so its run is
    redone and no other study's sweep or summary stops on it."""
    try:
        record = read_run(path)
        if isinstance(record, dict):
            return record
        problem = "not a JSON object"
    except RUN_READ_ERRORS as err:
        problem = f"{type(err).__name__}: {err}"
    aside = path.with_name(path.name + ".corrupt")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt{n}")
    os.replace(path, aside)
    core.say(f"warning: {path} is not a readable run file ({problem}); moved it to {aside.name} "
             f"and its run will be redone", file=sys.stderr)
    return None


# Config keys that do not change what a run trains, so a stored run is reused whatever their value:
# where it is stored and under which study, the seeds a sweep runs (each run has its own seed), the
# keys the caller set (their values are compared) and the device setting ("auto" and "cuda" are one
# GPU; the device a run used is in its record). log_every is compared: each log reads the loss back
# from the device, which on a GPU is a sync the train seconds include.
# record_passes is what a run file counts, not how the run trains (MCLearn.after_pool only adds to a
# host array), so a stored run counted or not stands for the same training.
RUN_BOOKKEEPING_FIELDS = ("results_dir", "study", "seeds", "explicit", "device", "record_passes")


RUN_KEY_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name not in RUN_BOOKKEEPING_FIELDS)


def run_key_fields(method: str) -> tuple[str, ...]:
    """Return the Config keys a stored run of `method` must match to be reused: RUN_KEY_FIELDS less
    the keys only other methods read (METHOD_OWN_FIELDS)."""
    others = {key for methods, keys in METHOD_OWN_FIELDS.items() if method not in methods for key in keys}
    return tuple(key for key in RUN_KEY_FIELDS if key not in others)


def check_keys_read(cfg: Config, methods: Sequence[str]) -> None:
    """Raise ValueError (one line) for a key the caller set (cfg.explicit) that only methods outside
    `methods` read (METHOD_OWN_FIELDS): set for this sweep, it would change nothing."""
    for key in cfg.explicit:
        if key in RUN_KEY_FIELDS and all(key not in run_key_fields(m) for m in methods):
            readers = [m for group, keys in METHOD_OWN_FIELDS.items() if key in keys for m in group]
            raise ValueError(f"{key} is set, but only {', '.join(dict.fromkeys(readers))} read it and methods= lists "
                             f"none of them: add one of them to methods=, or drop {key}=")


def check_no_budget_keys(cfg: Config) -> None:
    """Raise ValueError (one line) when cfg.time_budget or cfg.budget_seconds is set for a sweep: both
    are set per run by budget studies (run_budget_study's time_budgets: the run's label, clock and knobs
    follow from the share, its seconds from the share x the reference's seconds), while a sweep trains
    `mclearn` at MC-Learn's default share of the baseline's time and every other method to its plan."""
    if cfg.time_budget:
        raise ValueError(f"time_budget={cfg.time_budget:g} is set per run by budget studies, not by a sweep (which "
                         f"trains mclearn at 1/3 of the baseline's time): drop time_budget=, or run a budget study "
                         f"(notebook 04, or ms.run_budget_study with time_budgets=[{cfg.time_budget:g}])")
    if cfg.budget_seconds:
        raise ValueError(f"budget_seconds={cfg.budget_seconds:g} is set per run by budget studies (its share of the "
                         f"reference's seconds), not by a sweep: drop budget_seconds=, or run a budget study "
                         f"(notebook 04, or ms.run_budget_study with time_budgets=[...])")


def stale_reason(record: dict[str, Any], cfg: Config, method: str) -> str | None:
    """Return which settings of a stored run differ from what `cfg` would train (with their stored
    and wanted values), or None. Compared: run_key_fields(method). A key absent from an old file's
    config is no difference (the file predates it), nor is a knob its budget plan set (the run's
    `knobs`: planned from measured costs for its time_budget, which is compared)."""
    want = portable_config(config_for_method(cfg, method))
    have = {k: portable_path(v) for k, v in record.get("config", {}).items()}
    planned = set(record.get("knobs") or {})
    diff = [k for k in run_key_fields(method) if k in have and k not in planned and want[k] != have[k]]
    if not diff:
        return None
    values = "; ".join(f"{k} {have[k]!r} stored, {want[k]!r} now" for k in diff[:3])
    return f"{', '.join(diff)} differ: {values}{' ...' if len(diff) > 3 else ''}"


IDENTITY_KEYS = ("data_sha256", "model_sha256")  # a run record's "identity": what decided its numbers, with "device"


def identity_reason(record: dict[str, Any], cfg: Config, prepared: "Prepared | None" = None) -> str | None:
    """Return how the stored run `record` is not the run `cfg` would train here, or None: the
    device that timed it (its "device") is not this one, or the data (data_sha256) or model
    (model_sha256) it trained on hash differently now; `prepared` gives today's values where the
    sweep has them. Cheapest first: a hash is computed only when the checks before it hold."""
    stored = record["identity"]
    device = device_name(prepared.device if prepared else resolve_device(cfg))
    if record.get("device") != device:
        return f"was timed on {record.get('device')}, not on this machine's {device}: its seconds are not this device's"
    today = prepared.identity if prepared and prepared.identity else {}
    for key, what, name in (("data_sha256", "data", cfg.dataset), ("model_sha256", "model", cfg.model_name)):
        now = today.get(key) or (data_sha256(cfg) if key == "data_sha256" else model_sha256(cfg))
        if stored[key] != now:
            return (f"was trained on other {what}: {portable_path(name)!r} hashes to {now[:12]} now, "
                    f"{stored[key][:12]} when it ran (its files changed since)")
    return None


def read_finished_run(path: Path, cfg: Config, method: str,
                      prepared: "Prepared | None" = None) -> dict[str, Any] | None:
    """Return the run record at `path` when a finished run is there (None when there is none, or
    the file was unreadable and set aside), after checking that it is the run its path names
    (check_run_file) and the run `cfg` would train here: raise ValueError naming the fix when it
    has no config, is of the previous protocol (no identity: written before runs recorded their data and model
    hashes), was trained with other key settings (stale_reason), or on another device, data or
    model (identity_reason; `prepared` gives today's where the caller has it)."""
    check_no_old_run_file(path)
    record = read_run_or_set_aside(path) if path.exists() else None
    if record is None:
        return None
    check_run_file(path, record)
    if not isinstance(record.get("config"), dict):
        raise RunFileError(f"{path} has no config (the settings it trained with), so it cannot be checked against "
                           f"today's: delete it to retrain its run, or use another study=")
    reason = stale_reason(record, cfg, method)
    identity = record.get("identity")
    if not isinstance(identity, dict):
        raise RunFileError(f"{path.parent} holds runs of the previous protocol ({path.name} has no identity: it was "
                           f"written before runs recorded the hashes of their data and model), which a sweep never "
                           f"reuses: choose another study= (--study), or delete them")
    lacking = [k for k in IDENTITY_KEYS if not isinstance(identity.get(k), str)] + \
        ([] if isinstance(record.get("device"), str) else ["device"])
    if lacking:
        raise RunFileError(f"{path} records no {', '.join(lacking)}, so it cannot be checked against today's data, "
                           f"model and device: delete it to retrain its run, or use another study=")
    if reason:
        raise ValueError(f"{path} was trained with a different config ({reason}). Use another "
                         f"study= or results_dir=, or delete the file to retrain it.")
    reason = identity_reason(record, cfg, prepared)
    if reason:
        raise RunFileError(f"{path} {reason}. Use another study= or results_dir=, or delete the file to retrain it.")
    return record


def matched_fraction(cfg: Config, seed: int, prepared: "Prepared | None" = None) -> float:
    """Return the data share that gives `uniform` the train time of cfg.uniform_match: that run's
    train seconds over the baseline's, same study and seed (training time is linear in examples),
    each run read as a sweep reads it back (read_finished_run: today's config, data, model, device)."""
    times = {}
    for method in ("baseline", cfg.uniform_match):
        path = run_path(cfg.results_dir, cfg.study, method, seed)
        record = read_finished_run(path, cfg, method, prepared)
        if record is None:
            raise ValueError(f"uniform matches the measured time of {cfg.uniform_match!r}, but {path} does "
                             f"not exist: include 'baseline' and {cfg.uniform_match!r} in methods=, or set "
                             f"uniform_fraction= to a fixed share.")
        times[method] = record["train_seconds"]
    return float(np.clip(times[cfg.uniform_match] / times["baseline"], 0.01, 1.0))


class StudyBusyError(RuntimeError):
    """Another sweep holds the study's folder; the message names the folder, its holder and the fix."""


STUDY_LOCK = ".lock"  # in a study's folder while a sweep writes to it: "pid N on HOST since TIME"


@contextlib.contextmanager
def study_lock(results_dir: str | Path, study: str):
    """Hold the lock of <results>/runs/<study>/ while a sweep writes it; yield the lock file's path.

    Raises StudyBusyError when another live process holds it: two sweeps on one study both train
    every missing run and slow each other's timings. The lock is an flock on the file, which the
    system drops when its process dies, so the lock of a killed sweep is taken over (with a note).
    Where the system or file system has no locks, a warning says so and the sweep runs unlocked (None)."""
    folder = Path(results_dir) / "runs" / study
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STUDY_LOCK
    try:
        import fcntl
    except ImportError:  # Windows
        core.say(f"warning: no file locks here: a second sweep on study {study!r} would not be stopped",
                 file=sys.stderr)
        yield None
        return
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process that has not written its name yet"
            handle.close()
            raise StudyBusyError(f"{folder} is in use by another sweep ({holder}): wait until it ends, or set study= "
                                 f"(--study) to another name; two sweeps on one study both train its missing runs and "
                                 f"slow each other's timings") from None
        except OSError as err:  # a file system without locks
            handle.close()
            core.say(f"warning: cannot lock {path} ({err}): a second sweep on study {study!r} would not be stopped",
                     file=sys.stderr)
            handle = None
            break
        try:  # the holder may have removed the file between our open and flock: lock the file that is there
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    if handle is None:
        yield None
        return
    handle.seek(0)
    previous = handle.read().strip()
    if previous:
        core.say(f"note: took over the lock of {folder} from a sweep that is no longer running ({previous})",
                 file=sys.stderr)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {platform.node()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    remove_leftover_temps(folder)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        handle.close()


def remove_leftover_temps(folder: Path) -> list[Path]:
    """Remove the temp files (TEMP_FILE) in a study folder whose lock this process holds, and return
    them: no other sweep writes there, so each is what a killed sweep left (SIGKILL, a lost machine)."""
    leftovers = sorted(p for p in folder.iterdir() if TEMP_FILE.fullmatch(p.name) and p.is_file())
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        core.say(f"note: removed {len(leftovers)} temp file(s) that a killed sweep left in {folder}: "
                 f"{', '.join(p.name for p in leftovers)}", file=sys.stderr)
    return leftovers


def guarded_sweep(*study_suffixes: str):
    """Return a decorator for a sweep function f(cfg, ..., seeds=...): validate the config and the
    seeds (validate_config), then hold the lock of each study folder cfg.study + suffix
    (study_lock) while f runs."""
    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def guarded(cfg: Config, *args, **kwargs):
            validate_config(cfg, signature.bind(cfg, *args, **kwargs).arguments.get("seeds"))
            with contextlib.ExitStack() as locks:
                for suffix in study_suffixes:
                    locks.enter_context(study_lock(cfg.results_dir, cfg.study + suffix))
                return function(cfg, *args, **kwargs)
        return guarded
    return decorate


def save_flipped_rows(cfg: Config, prepared: Prepared) -> Path | None:
    """Write the training rows whose labels label_noise flipped to
    <results>/runs/<study>/flipped_rows.csv (one row index per line, under a header), so a noisy
    study can be checked and redone; return the path, or None without label noise."""
    if prepared.flipped_rows is None:
        return None
    path = Path(cfg.results_dir) / "runs" / cfg.study / "flipped_rows.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# label_noise={cfg.label_noise} label_noise_seed={cfg.label_noise_seed} train_rows={len(prepared.train)}\nrow\n"
    with atomic_target(path) as tmp:
        tmp.write_text(text + "".join(f"{int(r)}\n" for r in prepared.flipped_rows))
    return path


def run_once(cfg: Config, method: str, seed: int, prepared: Prepared, label: str,
             budget: BudgetPlan | None = None, progress: bool = True, extra: dict[str, Any] | None = None,
             keep_diverged: bool = False) -> dict[str, Any]:
    """Return the run record of (method, seed) named `label` in cfg.study: read back when its file
    exists (and was trained with the same key settings), else trained, given the `extra` fields
    and written atomically. With `keep_diverged`, a run whose loss became NaN is a result, not a
    stop: its record (diverged_record) is written and returned, and the study goes on."""
    path = run_path(cfg.results_dir, cfg.study, label, seed)
    record = read_finished_run(path, cfg, method, prepared)
    if record is not None:
        return record
    log_path = run_log_path(path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        record = train_method(method, cfg, prepared, seed, log_path=log_path, progress=progress, budget=budget)
    except DivergedError as err:
        if not keep_diverged:
            raise
        core.say(f"warning: {label} seed {seed} diverged, recorded as such: {err}", file=sys.stderr)
        record = diverged_record(method, cfg, prepared, seed, str(err), budget)
    record.update(run_label=label, **(extra or {}))
    if budget is not None:
        record["predicted_share"] = budget.predicted_share
    write_json_atomic(path, record)
    if progress:
        core.say(f"{label:>26} seed {seed}: accuracy {record['accuracy']:.4f}, train {record['train_seconds']:.2f}s"
                 f"{'' if record['graphed'] else ' (eager)'} -> {path}")
    return record


def diverged_record(method: str, cfg: Config, prepared: Prepared, seed: int, message: str,
                    budget: BudgetPlan | None = None) -> dict[str, Any]:
    """Return the run record of a run whose training loss became NaN: `diverged` holds the message
    (which step), accuracy and train seconds are NaN (no result to compare), the rest as train_method's."""
    return {
        **run_identity(method, config_for_method(cfg, method), prepared, seed, budget),
        "protocol": PROTOCOL, "diverged": message, "graphed": False, "graph_capture_error": None,
        "train_seconds": float("nan"), "accuracy": float("nan"), "test_accuracy": None,
        "examples_backward": 0, "examples_scored": 0, "eval_curve": [], "warnings": [message],
    }


@guarded_sweep("")
def run_sweep(cfg: Config, methods: Sequence[str] = ("baseline",), seeds: Sequence[int] | None = None,
              prepared: Prepared | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Run every (method, seed) whose result file is missing; return all records, old and new.

    Each run is written atomically as soon as it ends, so an interrupted sweep resumes where it
    stopped and loses no finished run. The config is validated and the study locked first
    (guarded_sweep); a key set that no method of the sweep reads is refused (check_keys_read), and
    so is a time budget (check_no_budget_keys: budget studies set it per run).
    """
    check_methods(methods)
    check_keys_read(cfg, methods)
    check_no_budget_keys(cfg)
    seeds = list(seeds if seeds is not None else cfg.seeds)
    methods = sorted(methods, key=lambda m: m == "uniform")  # uniform may match the others' times
    records = []
    for seed in seeds:
        for method in methods:
            path = run_path(cfg.results_dir, cfg.study, method, seed)
            run_cfg = cfg  # uniform's share, when matched, is read from this sweep's finished runs
            if method == "uniform" and cfg.uniform_fraction is None:
                run_cfg = replace_config(cfg, uniform_fraction=matched_fraction(cfg, seed, prepared))
            record = read_finished_run(path, run_cfg, method, prepared)
            if record is not None:
                records.append(record)
                continue
            prepared = prepared or prepare(cfg)
            log_path = run_log_path(path)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            record = train_method(method, run_cfg, prepared, seed, log_path=log_path, progress=progress)
            write_json_atomic(path, record)
            records.append(record)
            if progress:
                core.say(f"{method:>18} seed {seed}: accuracy {record['accuracy']:.4f}, "
                         f"train {record['train_seconds']:.1f}s -> {path}")
    return records
