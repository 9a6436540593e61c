"""One run of the study: the data and model prepared once per sweep, the device and host checks, the
training loop around a method's step, the run record with its provenance and identity, and the
atomic writes every run file and table goes through."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import gzip
import io
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import mclearn_core as core
from mcstudy.config import (Config, REPO_ROOT, TINY_MODEL, autocast_context, config_for_method, local_copy,
                            replace_config, resolve_device, validate_config)
from mcstudy.data import DataBundle, encode_split, load_text_dataset, rows_sha256, subset_split, validate_data
from mcstudy.engine import (DivergedError, Method, RunClock, RunContext, _check_finite, _diverged,
                            _finite_message, build_optimization, calibration_rows, clock_plan_warning, evaluate,
                            measure_step_costs, predict, release_device_memory)
from mcstudy.methods import METHODS
from mcstudy.model import check_model_fits, load_model_and_tokenizer, model_sha256, reinit_head


# --- prepared data and model ----------------------------------------------------------------------
@dataclass
class Prepared:
    """Data tokenized once and the initial model, shared by every run of a sweep."""

    cfg: Config
    base_model: nn.Module
    tokenizer: Any
    train: core.EncodedSplit
    eval: core.EncodedSplit
    label_names: list[str]
    source: str
    device: torch.device
    test: core.EncodedSplit | None = None  # cfg.test_split, evaluated once at the end of each run
    flipped_rows: np.ndarray | None = None  # training rows with a flipped label (cfg.label_noise)
    warmup_seconds: float = 0.0  # untimed device warm-up done by prepare (CUDA only)
    step_costs: Any = None  # StepCosts of the baseline's update (measured once, see prepared_step_costs)
    splits: dict[str, str | None] = dataclasses.field(default_factory=dict)  # the splits read (DataBundle.splits)
    identity: dict[str, str] = dataclasses.field(default_factory=dict)  # data_sha256, model_sha256 (prepare)


def preparing_line(cfg: Config, device: torch.device, bundle: DataBundle | None = None) -> str:
    """Return the line prepare prints before it loads anything: which data and model it loads, onto
    which device, and what it does before the first run's progress bar."""
    data = f"dataset {bundle.source}" if bundle else f"dataset {portable_path(cfg.dataset)}"
    if cfg.model_name == TINY_MODEL:
        model = (f"the tiny model ({cfg.tiny_layers} layers, width {cfg.tiny_dim}, built from scratch with a "
                 f"tokenizer trained on the data)")
    else:
        local = Path(local_copy(cfg.model_name)).expanduser().is_dir()
        model = f"model {portable_path(cfg.model_name)}{'' if local else ' (from the hub, or its cache)'}"
    after = "tokenizing and warming the GPU up" if device.type == "cuda" else "tokenizing"
    return f"preparing: loading {data} and {model} onto {device}, then {after}; the runs follow"


def prepare(cfg: Config, bundle: DataBundle | None = None) -> Prepared:
    """Check the config (validate_config) and the data (validate_data), load data and model once,
    check that they fit (check_model_fits), tokenize, move the tensors to the device and, on CUDA,
    warm the device up (see warm_up_device); return Prepared, with the identity of its data (the
    bundle's sha256, or its rows' when it has none) and model (model_sha256)."""
    validate_config(cfg)
    device = resolve_device(cfg)
    core.say(preparing_line(cfg, device, bundle))
    bundle = validate_data(bundle) if bundle else load_text_dataset(cfg)
    model, tokenizer = load_model_and_tokenizer(cfg, len(bundle.label_names), bundle.train.texts)
    encoded_train = encode_split(bundle.train, tokenizer, cfg.max_length)
    check_model_fits(cfg, model, tokenizer, encoded_train)
    identity = {"data_sha256": bundle.sha256 or rows_sha256({"train": bundle.train, "eval": bundle.eval,
                                                               "test": bundle.test}),
                "model_sha256": model_sha256(cfg)}
    train = encoded_train.to(device)
    evaluation = encode_split(bundle.eval, tokenizer, cfg.max_length).to(device)
    test = None if bundle.test is None else encode_split(bundle.test, tokenizer, cfg.max_length).to(device)
    prepared = Prepared(cfg=cfg, base_model=model.cpu(), tokenizer=tokenizer, train=train, eval=evaluation,
                        label_names=bundle.label_names, source=bundle.source, device=device, test=test,
                        flipped_rows=bundle.flipped_rows, splits=bundle.splits, identity=identity)
    if device.type == "cuda":
        prepared.warmup_seconds = warm_up_device(prepared)
        prepared_step_costs(prepared)  # graphed throwaway updates at every width: part of the warm-up
        prepared.warmup_seconds += warm_up_training(prepared)
    return prepared


def prepared_step_costs(prepared: Prepared) -> "StepCosts":
    """Return the step-cost table of the baseline's update on the prepared data and device
    (measure_step_costs at calibration_rows), measured on first use and kept for every run of
    the process: outside the runs' timed regions, like the device warm-up, and stored in the run
    files of the methods priced with it."""
    if prepared.step_costs is None:
        cfg = prepared.cfg
        prepared.step_costs = measure_step_costs(cfg, prepared.base_model, prepared.train, prepared.device,
                                                      rows=calibration_rows(cfg, cfg.full_rows or None))
        for message in prepared.step_costs.warnings:
            core.say(f"warning (step costs): {message}")
    return prepared.step_costs


def warm_up_device(prepared: Prepared, steps_per_width: int = 2) -> float:
    """Run untimed forward/backward/AdamW steps and eval forwards of a throwaway model copy at
    every padded batch width, so CUDA context, library handles and lazily loaded kernels are not
    charged to whichever run comes first in a sweep; return the seconds spent."""
    cfg, device = prepared.cfg, prepared.device
    core.sync_device(device)
    start = time.perf_counter()
    model = copy.deepcopy(prepared.base_model).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, fused=device.type == "cuda")
    rows = torch.arange(min(cfg.batch_size, len(prepared.train)))
    cap = prepared.train.input_ids.shape[1]
    for width in sorted({core.padded_length(w, cfg.pad_multiple, cap) for w in range(1, cap + 1)}):
        batch = core.make_batch(prepared.train, rows, width)
        for _ in range(steps_per_width):
            with autocast_context(cfg, device):
                logits = model(**core.model_inputs(model, batch)).logits
            F.cross_entropy(logits.float(), batch["labels"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    predict(model, prepared.eval, cfg, device)
    with torch.no_grad(), core.truncated_encoder(model, cfg.score_layer) as encoder, autocast_context(cfg, device):
        score_cap = min(cfg.score_max_length, cap)  # MC-Learn's scorer: its widths too
        for width in sorted({core.padded_length(w, cfg.pad_multiple, score_cap) for w in range(1, score_cap + 1)}):
            batch = core.make_batch(prepared.train, torch.arange(min(max(cfg.eval_batch_size, 256), len(prepared.train))), width)
            encoder(**core.model_inputs(encoder, batch))
    core.sync_device(device)
    return time.perf_counter() - start


def warm_up_training(prepared: Prepared, batches: int = 6) -> float:
    """Run a throwaway baseline run (train_method on `batches` batches of training rows, with its
    evaluations, graph captures and optimizer) and return its seconds: one-off costs of the first
    run of a process (the first capture, the first capturable AdamW step, the first evaluation)
    are paid here, untimed, instead of by whichever seed comes first. Nothing is written."""
    cfg = replace_config(prepared.cfg, study="warm-up", eval_points=2, time_budget=0.0)
    start = time.perf_counter()
    rows = torch.randperm(len(prepared.train), generator=torch.Generator().manual_seed(0))[:batches * cfg.batch_size]
    small = dataclasses.replace(prepared, train=subset_split(prepared.train, rows), test=None,
                                eval=subset_split(prepared.eval, torch.arange(min(len(prepared.eval), cfg.eval_batch_size))))
    with contextlib.redirect_stderr(io.StringIO()):  # its chance-level warnings are noise
        train_method("baseline", cfg, small, seed=0, progress=False)
    core.sync_device(prepared.device)
    return time.perf_counter() - start


# --- the training loop ----------------------------------------------------------------------------
CHANCE_MARGIN_SE = 2.0  # a run is "at chance" when its accuracy is within this many standard errors of it


# The eval set can tell a run at chance from one that learned only when that margin is small: at
# most this share (5 points). 64 eval rows of 4 classes give 10.8 points, at which a healthy tiny
# run would be flagged; 300 rows of 4 balanced classes, or 400 of 2, are the fewest that can tell.
CHANCE_RESOLUTION = 0.05


def chance_warning(accuracy: float, labels: np.ndarray, num_classes: int) -> str | None:
    """Return a warning when `accuracy` is within CHANCE_MARGIN_SE binomial standard errors of
    chance (the majority-class share of `labels`, at least 1 / num_classes) and that margin is at
    most CHANCE_RESOLUTION (an eval set large enough to tell); else None."""
    chance = max(np.bincount(labels, minlength=num_classes).max() / len(labels), 1.0 / num_classes)
    margin = CHANCE_MARGIN_SE * math.sqrt(chance * (1 - chance) / len(labels))
    if accuracy > chance + margin or margin > CHANCE_RESOLUTION:
        return None
    return (f"accuracy {accuracy:.4f} is at chance (majority class {chance:.4f} + {CHANCE_MARGIN_SE:g} standard "
            f"errors = {chance + margin:.4f} on {len(labels)} eval examples, a margin of {margin * 100:.1f} points: "
            f"enough to tell a run that learned): the run learned nothing; check lr= and the labels")


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not available on every platform
        return None


BUSY_PROCESS_CORES = 0.5  # another process using this many cores during the sample is a competing run


HOST_SAMPLE_SECONDS = 0.2  # how long host_load watches the other processes (untimed, before a run)


def _process_cpu_ticks() -> dict[int, tuple[int, str]]:
    """Return {pid: (user + system clock ticks, command)} of every process /proc lists (Linux)."""
    ticks = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # after "(command)"; utime and stime are fields 14, 15
            command = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            ticks[int(entry.name)] = (int(fields[11]) + int(fields[12]), command or stat[stat.index("(") + 1:stat.rindex(")")])
        except (OSError, ValueError, IndexError):  # the process ended meanwhile, or is not ours to read
            continue
    return ticks


def host_load(sample_seconds: float = HOST_SAMPLE_SECONDS) -> dict[str, Any]:
    """Return how busy the host is apart from this process, watched for `sample_seconds` while this
    process waits: other_cores, the cores all other processes used meanwhile; busy_processes, those
    that used at least BUSY_PROCESS_CORES cores ({pid, cores, command}); load_avg (1 minute, which
    counts this process's own last minute of training too, so it is stored, not judged) and
    cpu_count. Without /proc (not Linux): load_avg and cpu_count, and `checked` False."""
    load, cpus = _load_average(), os.cpu_count() or 1
    if not Path("/proc/self/stat").exists():
        return {"checked": False, "load_avg": load, "cpu_count": cpus}
    hz = os.sysconf("SC_CLK_TCK")
    start, t0 = _process_cpu_ticks(), time.perf_counter()
    time.sleep(sample_seconds)
    end, seconds = _process_cpu_ticks(), time.perf_counter() - t0
    cores = {pid: (ticks - start[pid][0]) / hz / seconds for pid, (ticks, _) in end.items()
             if pid in start and pid != os.getpid()}
    busy = [{"pid": pid, "cores": round(c, 2), "command": end[pid][1][:80]} for pid, c in sorted(cores.items())
            if c >= BUSY_PROCESS_CORES]
    return {"checked": True, "load_avg": load, "cpu_count": cpus, "other_cores": round(sum(cores.values()), 2),
            "busy_processes": busy}


def host_load_warning(load: dict[str, Any]) -> str | None:
    """Return a warning when a host_load reading says timings taken now are not comparable: other
    processes using more than half the cores, or one of them at least BUSY_PROCESS_CORES (another
    training run, say); else None."""
    if not load.get("checked"):
        return None
    reasons = []
    if load["other_cores"] > load["cpu_count"] / 2:
        reasons.append(f"other processes used {load['other_cores']:g} of its {load['cpu_count']} cores")
    reasons += [f"pid {p['pid']} used {p['cores']:g} cores ({p['command']})" for p in load["busy_processes"][:3]]
    if not reasons:
        return None
    return (f"the host was busy at the start of this run ({'; '.join(reasons)}; load average {load['load_avg']}): its "
            f"train seconds are not comparable with runs on an idle host; delete its run file and rerun it when the "
            f"host is idle")


@functools.lru_cache(maxsize=None)
def _tqdm_class():
    """Return tqdm.auto's bar class, imported with its "IProgress not found" warning silenced: in a
    notebook without ipywidgets it is the plain-text bar. Importing it first also keeps the warning out
    of later imports of tqdm.auto by transformers and datasets."""
    import warnings

    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm
    return tqdm


_tqdm_class()  # now, before transformers and datasets import tqdm.auto and print the warning


def _progress(total: int, desc: str, enabled: bool):
    """Return a progress bar: the notebook widget where ipywidgets is installed, else plain text."""
    return _tqdm_class()(total=total, desc=desc, disable=not enabled, leave=False, mininterval=1.0)


TEMP_FILE = re.compile(r"\.(.+)\.(\d+)\.tmp")  # atomic_target's temp file: .<name>.<pid>.tmp beside <name>


@contextlib.contextmanager
def atomic_target(path: Path):
    """Yield a temp path beside `path` (TEMP_FILE); on success it replaces `path` (one rename), on any
    error it is removed, so readers see the old file or the new one, never a part. An OSError without
    a path (a full disk) is raised again naming `path`. A process killed outright (SIGKILL) leaves its
    temp file: the next sweep of the study removes it (remove_leftover_temps)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:  # a full disk says "No space left on device" without a path: name the file
        tmp.unlink(missing_ok=True)
        if err.filename not in (None, str(tmp)):
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to `path` atomically: a temp file in the same folder, fsync, then rename; gzip
    compressed where the name ends in .gz (run files, RUN_FILE_SUFFIX), with no time stamp, so the
    same record gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # compact: a run file is read by programs (`gzip -dc FILE | python -m json.tool` shows one indented)
    text = json.dumps(_jsonable(payload), separators=(",", ":"))
    with atomic_target(path) as tmp, open(tmp, "wb") as handle:
        handle.write(gzip.compress(text.encode(), mtime=0) if path.name.endswith(".gz") else text.encode())
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def run_logs(log_path: Path | None):
    """Yield (jsonl log file, TensorBoard writer or None) for one run, (None, None) without a path.

    The log is written to a temp file and renamed when the run completes, gzip compressed (with no
    time stamp) where its name ends in .gz (run_log_path); on any error (Ctrl-C included) both logs
    are removed, so no partial log is left beside the finished runs."""
    if log_path is None:
        yield None, None
        return
    writer = _tensorboard_writer(log_path)
    try:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_target(log_path))
            if log_path.name.endswith(".gz"):
                raw = stack.enter_context(open(tmp, "wb"))
                packed = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0))
                log_file = stack.enter_context(io.TextIOWrapper(packed, encoding="utf-8"))
            else:
                log_file = stack.enter_context(open(tmp, "w"))
            yield log_file, writer
    except BaseException:
        if writer:
            writer.close()
            shutil.rmtree(writer.log_dir, ignore_errors=True)
        raise
    if writer:
        writer.close()


def _tensorboard_writer(log_path: Path | None):
    if log_path is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional
        return None
    return SummaryWriter(log_dir=str(log_path.with_name(Path(log_path.name.removesuffix(".gz")).stem + "-tb")))


def start_run(method_name: str, cfg: Config, prepared: "Prepared",
              seed: int) -> tuple[RunContext, Method]:
    """Return a fresh run's context and method (`cfg` already the method's config): seeded torch,
    numpy and generators, a copy of the prepared model with its head re-initialised on the device,
    a gradient scaler for fp16 on CUDA, and the measured step costs when the method is priced."""
    device = prepared.device
    release_device_memory(device)  # what an earlier run of this process left (one that raised, say)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = copy.deepcopy(prepared.base_model)
    reinit_head(model, seed)
    model.to(device).train()
    ctx = RunContext(cfg=cfg, model=model, train=prepared.train, eval=prepared.eval,
                          num_labels=len(prepared.label_names), device=device,
                          generator=torch.Generator().manual_seed(seed),
                          device_generator=torch.Generator(device=device).manual_seed(seed))
    ctx.flipped_rows = prepared.flipped_rows
    ctx.clock = RunClock(cfg.budget_seconds) if cfg.budget_seconds > 0 else None
    if cfg.precision == "fp16" and device.type == "cuda":
        ctx.scaler = torch.amp.GradScaler("cuda")
    method = METHODS[method_name](ctx)
    if getattr(method, "priced", False):
        ctx.step_costs = prepared_step_costs(prepared)
    return ctx, method


def eval_steps(total_steps: int, eval_points: int) -> list[int]:
    """Return the steps after which a run evaluates: `eval_points` steps spread evenly, the last one last."""
    return sorted({max(1, round(total_steps * k / eval_points)) for k in range(1, eval_points + 1)})


def _warn(warnings: list[str], warning: str | None, method_name: str, seed: int) -> None:
    """Keep a run's warning for its record and say it on stderr as it happens (nothing for None)."""
    if warning:
        warnings.append(warning)
        core.say(f"warning: {method_name} seed {seed}: {warning}", file=sys.stderr)


def checked_step(method: Method, step: int, method_name: str, model: nn.Module,
                 running_loss: torch.Tensor | None) -> dict[str, Any]:
    """Return `method.step(step)`'s log values; out of GPU memory raises a TrainingError naming the
    knobs to lower, and a step that fails on a diverged model a DivergedError (each method breaks
    somewhere else when its weights are no longer finite: one message)."""
    try:
        return method.step(step)
    except torch.OutOfMemoryError as err:
        raise core.TrainingError(f"{method_name}: out of GPU memory at step {step}. Lower "
                                 f"batch_size= (and raise grad_accum_steps= to keep the effective "
                                 f"batch), or lower max_length=.") from err
    except Exception as err:
        value = _diverged(model, running_loss)
        if value is None:
            raise
        raise DivergedError(_finite_message(value, step + 1, method_name)) from err


def write_step_log(logs: tuple, done: int, lr: float, logged: dict[str, float], info: dict[str, Any]) -> None:
    """Write one log line (per-step means of the tensors since the last line, the method's other
    values as they are) to the run's JSONL log and TensorBoard writer, when the run has them."""
    log_file, writer = logs
    record = {"step": done, "lr": lr, **logged, **{k: v for k, v in info.items() if not isinstance(v, torch.Tensor)}}
    if log_file:
        log_file.write(json.dumps(_jsonable(record)) + "\n")
    if writer:
        for k, v in record.items():
            if isinstance(v, (int, float)) and k != "step":
                writer.add_scalar(f"train/{k}", v, done)


def train_loop(ctx: RunContext, method: Method, method_name: str, total_steps: int,
               eval_data: core.EncodedSplit, logs: tuple, bar, train_seconds: float) -> tuple[list[dict[str, Any]], float, float, int]:
    """Run the method's steps; return its eval curve, train seconds (`train_seconds`, the setup's,
    plus the steps'; the clock runs between evaluations and stops after a device synchronize) and
    eval seconds. A step-driven run takes `total_steps` steps and evaluates after the eval_steps;
    a clock-driven one (ctx.clock) takes steps until its clock says stop, synchronizing after each
    to read the time, with its lr driven by the clock (RunClock) and evaluations at even shares of
    its budget. The last evaluation follows the last step (after a last partial accumulation group
    stepped), and the steps taken come last. Logs every log_every steps and at each evaluation,
    checking the logged loss is finite."""
    cfg, device, clock = ctx.cfg, ctx.device, ctx.clock
    eval_at = set(eval_steps(total_steps, cfg.eval_points)[:-1]) if clock is None else set()
    eval_times = [clock.seconds * k / cfg.eval_points for k in range(1, cfg.eval_points)] if clock else []
    curve, eval_seconds = [], 0.0
    running: dict[str, torch.Tensor] = {}
    running_steps, step = 0, 0

    def log(done: int, info: dict[str, Any]) -> None:
        nonlocal running, running_steps
        logged = {k: float(v) / running_steps for k, v in running.items()}  # per-step means
        running, running_steps = {}, 0
        if "loss" in logged:
            _check_finite(logged["loss"], done, method_name)
        write_step_log(logs, done, float(ctx.optimizer.param_groups[-1]["lr"]), logged, info)

    def evaluation(done: int) -> None:
        nonlocal eval_seconds
        te = time.perf_counter()
        result = evaluate(method.eval_model(), eval_data, cfg, device)
        eval_seconds += time.perf_counter() - te
        curve.append({"step": done, "train_seconds": train_seconds, "examples_backward": ctx.examples_backward,
                      "accuracy": result["accuracy"], "eval_loss": result["loss"]})
        bar.set_postfix(acc=f"{result['accuracy']:.3f}")
        if logs[1]:
            logs[1].add_scalar("eval/accuracy", result["accuracy"], step)
            logs[1].add_scalar("eval/loss", result["loss"], step)

    info: dict[str, Any] = {}
    core.sync_device(device)
    t0 = time.perf_counter()
    while True:
        if clock is not None:
            elapsed, extra = train_seconds + time.perf_counter() - t0, method.extra_step_seconds(step)
            if clock.should_stop(elapsed, extra):
                break
            ctx.scheduler.drive(clock.next_progress(elapsed, extra))
            started = time.perf_counter()
        elif step >= total_steps:
            break
        else:
            progress = method.schedule_progress()
            if progress is not None:
                ctx.scheduler.drive(progress)
        info = checked_step(method, step, method_name, ctx.model, running.get("loss"))
        if clock is not None:
            if not info:  # the method has nothing left to train: no step for the clock to wait on
                core.say(f"warning: {method_name}: it ended at step {step} before its clock "
                         f"({train_seconds + time.perf_counter() - t0:.2f} of {clock.seconds:.2f} s)")
                break
            core.sync_device(device)
            clock.observe(time.perf_counter() - started)
        for key, value in info.items():
            if isinstance(value, torch.Tensor):
                running[key] = running.get(key, 0.0) + value.detach().float()
        running_steps += 1
        step += 1
        bar.update(1)
        due = step in eval_at or bool(eval_times and train_seconds + time.perf_counter() - t0 >= eval_times[0])
        if step % cfg.log_every == 0 or due:
            log(step, info)
        if due:
            core.sync_device(device)
            train_seconds += time.perf_counter() - t0
            while eval_times and train_seconds >= eval_times[0]:
                eval_times.pop(0)
            evaluation(step)
            core.sync_device(device)
            t0 = time.perf_counter()
    ctx.flush_gradients()  # a last partial accumulation group steps too, before the final evaluation
    core.sync_device(device)
    train_seconds += time.perf_counter() - t0
    if running_steps:
        log(step, info)
    evaluation(step)
    return curve, train_seconds, eval_seconds, step


def train_method(method_name: str, cfg: Config, prepared: "Prepared", seed: int,
                 log_path: Path | None = None, progress: bool = True,
                 budget: "BudgetPlan | None" = None) -> dict[str, Any]:
    """Train one method for one seed on prepared data; return the run record (not yet written).

    Train time counts the method's setup and steps and excludes evaluation (train_loop); with
    cfg.budget_seconds the run is clock-driven (RunClock: it trains until its train seconds reach
    them), else it takes its planned steps. `budget` (a budget study's plan for this method, its
    knobs already in `cfg`) is stored in the record.
    """
    cfg = config_for_method(cfg, method_name)
    ctx, method = start_run(method_name, cfg, prepared, seed)
    device, warnings = ctx.device, []
    load = host_load()  # untimed: other processes competing for the cores make the seconds incomparable
    _warn(warnings, host_load_warning(load), method_name, seed)
    core.sync_device(device)
    t_setup = time.perf_counter()
    method.setup()
    total_steps = method.num_steps()
    build_optimization(ctx, method)
    core.sync_device(device)
    setup_seconds = time.perf_counter() - t_setup  # counted as training time
    _warn(warnings, clock_plan_warning(ctx.clock, method.priced_seconds()), method_name, seed)
    host = {"load_avg_start": _load_average(), "load_at_start": load, "cpu_start": time.process_time()}
    with run_logs(log_path) as logs, _progress(total_steps, f"{method_name} seed {seed}", progress) as bar:
        curve, train_seconds, eval_seconds, steps = train_loop(ctx, method, method_name, total_steps, prepared.eval,
                                                               logs, bar, setup_seconds)
    final = evaluate(method.eval_model(), prepared.eval, cfg, device)
    test = None if prepared.test is None else evaluate(method.eval_model(), prepared.test, cfg, device)
    _warn(warnings, chance_warning(final["accuracy"], final["labels"], len(prepared.label_names)), method_name, seed)
    method.finish()  # untimed: the run's seconds and evaluations are in
    record = run_record(method_name, cfg, prepared, seed, budget, ctx, method, warnings, host,
                        steps=steps, train_seconds=train_seconds, eval_seconds=eval_seconds, curve=curve,
                        final=final, test=test)
    del method, ctx
    release_device_memory(device)  # this run's CUDA graphs and their memory pool, before the next run
    return record


# --- the run record -------------------------------------------------------------------------------
def run_label(method: str, time_budget: float) -> str:
    """Return a run's name in its study: the method, with its time budget when it has one
    ("uniform-b0.33"); run files are <run_label>-seed<k>.json."""
    return method if not time_budget else f"{method}-b{time_budget:.2f}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def portable_path(value: str) -> str:
    """Return `value` with this checkout's absolute path replaced by a path relative to it, so
    records and comparisons do not depend on where the repository was cloned."""
    root = str(REPO_ROOT)
    return value.replace(root + os.sep, "").replace(root, ".") if isinstance(value, str) else value


def portable_config(cfg: Config) -> dict[str, Any]:
    """Return the config as JSON-ready values with repository paths made relative."""
    return {k: portable_path(v) for k, v in _jsonable(dataclasses.asdict(cfg)).items()}


def device_name(device: torch.device) -> str:
    """Return a readable name of `device` (the GPU's name, or the CPU's)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _git(*args: str) -> str | None:
    """Return the stdout of `git args` run in this checkout, or None when git or .git is missing."""
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def code_provenance() -> dict[str, Any]:
    """Return the code a run came from: git_commit, git_clean (no change to a tracked file outside
    results/) and, when not clean, git_diff_sha256 (SHA-256 of `git diff HEAD` of those files).

    Where this copy has no .git (the GPU machine gets the working tree only), the values come from
    the environment: MCLEARN_COMMIT, MCLEARN_GIT_CLEAN and MCLEARN_GIT_DIFF_SHA256, as printed by
    `python -m mcstudy --provenance` in the checkout the copy was made from.
    """
    import hashlib

    commit = None if os.environ.get("MCLEARN_COMMIT") else _git("rev-parse", "HEAD")
    if commit is None:  # the environment, when set, names the code (a copy may hold a stale .git)
        clean = os.environ.get("MCLEARN_GIT_CLEAN")
        return {"git_commit": os.environ.get("MCLEARN_COMMIT", "unknown"),
                "git_clean": None if clean is None else clean.lower() in ("1", "true", "yes"),
                "git_diff_sha256": os.environ.get("MCLEARN_GIT_DIFF_SHA256")}
    diff = _git("diff", "HEAD", "--binary", "--", ".", ":(exclude)results") or ""
    return {"git_commit": commit.strip(), "git_clean": not diff,
            "git_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None}


def environment_versions() -> dict[str, Any]:
    """Return torch/transformers/python versions and the code's provenance (see code_provenance)."""
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), **code_provenance()}


def run_record(method_name: str, cfg: Config, prepared: "Prepared", seed: int, budget: "BudgetPlan | None",
               ctx: RunContext, method: Method, warnings: list[str], host: dict[str, Any], *, steps: int,
               train_seconds: float, eval_seconds: float, curve: list[dict[str, Any]], final: dict[str, Any],
               test: dict[str, Any] | None) -> dict[str, Any]:
    """Return the run record of a trained run: its identity (run_identity), whether the update was
    graphed, steps, seconds, accuracy (eval, and test when the data has a test split), examples
    with a backward pass and scored forward-only, warnings (a failed graph capture added), host
    load (from `host`, taken as training started), the eval curve, confusion matrix, eval
    predictions, true-class probabilities and difficulty, and the method's telemetry."""
    from sklearn.metrics import confusion_matrix

    difficulty = method.eval_difficulty()
    telemetry = method.telemetry()
    capture_error = telemetry.get("graph_capture_error")
    if capture_error:
        warnings.append(f"the update was not graphed (capture failed): {capture_error}")
    schedule = ctx.scheduler.record()
    return {
        **run_identity(method_name, cfg, prepared, seed, budget),
        "protocol": PROTOCOL,
        # graphed: the update was replayed as CUDA graphs (a failed capture runs eagerly, see warnings)
        "graphed": bool(ctx.graphs and not capture_error), "graph_capture_error": capture_error,
        "steps": steps, "updates": schedule["updates"],
        "train_seconds": train_seconds, "eval_seconds": eval_seconds,
        "time_target": time_target(cfg, train_seconds),
        "lr_schedule": {"peak_lr": cfg.lr, "driven_by": ("clock" if ctx.clock else "progress") if schedule.pop("driven")
                        else "steps", **schedule},
        "startup_seconds": startup_seconds(method, train_seconds),
        "device_warmup_seconds": prepared.warmup_seconds,  # untimed, once per prepare (CUDA)
        "accuracy": final["accuracy"], "eval_loss": final["loss"],
        "test_accuracy": None if test is None else test["accuracy"],
        "test_examples": 0 if prepared.test is None else len(prepared.test),
        # examples_backward: examples with a backward pass (every method alike); examples_scored:
        # examples that had a forward-only pass of the full model to choose them (Selective Backprop, RHO-LOSS).
        "examples_backward": ctx.examples_backward, "examples_scored": ctx.examples_scored, "warnings": warnings,
        # Host load: timings taken while other processes competed for the cores are not comparable.
        "host": {"load_avg_start": host["load_avg_start"], "load_avg_end": _load_average(),
                 "load_at_start": host["load_at_start"], "process_cpu_seconds": time.process_time() - host["cpu_start"],
                 "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
        "eval_curve": curve,
        "confusion_matrix": confusion_matrix(final["labels"], final["predictions"],
                                             labels=list(range(len(prepared.label_names)))).tolist(),
        "eval_predictions": final["predictions"].tolist(),
        "eval_labels": final["labels"].tolist(),
        "eval_true_prob": final["probs"][np.arange(len(final["labels"])), final["labels"]].round(5).tolist(),
        "eval_difficulty": None if difficulty is None else np.round(difficulty, 5).tolist(),
        "telemetry": telemetry,
    }


# The protocol a run file was made under: "fair" (the fair protocol: clock-driven equal time, each
# method's own lr at each budget, lr schedules that end at the last update, one capture policy, the
# record's lr_schedule, updates, time_target and startup_seconds). A file without it is of the
# previous protocol.
PROTOCOL = "fair"


def time_target(cfg: Config, train_seconds: float) -> dict[str, Any] | None:
    """Return a clock-driven run's time target: its seconds (cfg.budget_seconds), the reference's
    seconds they are the time_budget share of, the share, and the train seconds over the target
    (ratio); None for a run driven by its planned steps."""
    if not cfg.budget_seconds > 0:
        return None
    return {"seconds": round(cfg.budget_seconds, 4),
            "reference_seconds": round(cfg.budget_seconds / cfg.time_budget, 4) if cfg.time_budget else None,
            "share": cfg.time_budget, "ratio": round(train_seconds / cfg.budget_seconds, 4)}


def startup_seconds(method: Method, train_seconds: float) -> dict[str, Any]:
    """Return the start-up costs of a run's CUDA graphs (its update's and its scoring forward's):
    the eager warm-up steps of the shapes it captured, the captures, the eager steps of rare
    shapes, the graphs captured, and the share of train seconds warm-up and captures took; all 0
    where nothing is captured (off CUDA, graphs off)."""
    graphs = [g for g in (method.graphed, getattr(method, "scorer", None)) if g is not None]
    eager = [g.eager_seconds() for g in graphs]
    warmup, rare = sum(w for w, _ in eager), sum(r for _, r in eager)
    capture = sum(g.capture_seconds for g in graphs)
    return {"warmup": round(warmup, 4), "capture": round(capture, 4), "rare_eager": round(rare, 4),
            "graphs": sum(len(g.graphs) for g in graphs),
            "share": round((warmup + capture) / train_seconds, 4) if train_seconds > 0 else None}


def run_identity(method: str, cfg: Config, prepared: "Prepared", seed: int,
                 budget: "BudgetPlan | None" = None) -> dict[str, Any]:
    """Return the fields that say which run a record is, whether it trained or diverged: study,
    method, seed, preset, run label and time budget with its plan's knobs and note, device, data
    (with the splits read and its label noise), model, the identity of data and model (their
    SHA-256, see prepare; a sweep reads a stored run back only where they and the device are
    today's: identity_reason), config (`cfg`, the method's own) and versions."""
    return {
        "study": cfg.study, "method": method, "seed": seed, "preset": cfg.preset,
        "run_label": run_label(method, cfg.time_budget), "time_budget": cfg.time_budget,
        "knobs": budget.knobs if budget else {}, "budget_note": budget.note if budget else None,
        "device": device_name(prepared.device), "dataset": portable_path(prepared.source),
        "splits": prepared.splits, "identity": dict(prepared.identity),
        "model": portable_path(cfg.model_name), "label_names": prepared.label_names,
        "train_examples": len(prepared.train), "eval_examples": len(prepared.eval),
        "label_noise": cfg.label_noise, "flipped_rows": 0 if prepared.flipped_rows is None else len(prepared.flipped_rows),
        "config": portable_config(cfg), "versions": environment_versions(),
    }


def format_budget(budget: float) -> str:
    """Return a time budget as the report writes it: "—" for 0 (none), "1/2", "1/3" or "2/3" within
    0.005 of those, else two decimals ("0.25")."""
    if not budget:
        return "—"
    for denominator in (2, 3):
        for numerator in range(1, denominator):
            if abs(budget - numerator / denominator) < 0.005:
                return f"{numerator}/{denominator}"
    return f"{budget:.2f}"
