"""The study's configuration: Config (every knob of a run, at the `mclearn` preset's values), the
device and method presets, MC-Learn's ablation variants, old names, parsing of overrides, the range
and type of every key, the checks of a config and its paths, and the device and autocast it asks for."""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch


REPO_ROOT = Path(__file__).resolve().parents[1]  # the repository: mcstudy/ and mclearn_core.py
EMBEDDED_DATA = REPO_ROOT / "data" / "ag_news_sample"
TINY_MODEL = "tiny"  # model_name that builds a small DistilBERT from scratch, no download


@dataclass
class Config:
    """Every knob of a run. Defaults are the study's seed settings (DistilBERT on AG News); MC-Learn's
    are the `mclearn` method's own (METHOD_PRESETS holds what the other methods change)."""

    # --- what to train on -------------------------------------------------------------
    model_name: str = "distilbert-base-uncased"  # hub name, local folder, or "tiny"
    dataset: str = "ag_news"  # hub name ("ag_news", "glue/sst2") or local folder of parquet/CSV
    train_split: str = "train"
    eval_split: str = "test"
    test_split: str = ""  # a second held-out split, evaluated once at the end ("" = none)
    test_holdout: int = 0  # rows carved out of train as the test split (stratified, fixed seed), for data without one
    text_column: str = "text"
    label_column: str = "label"
    max_train_examples: int | None = None  # deterministic stratified subset when set
    max_eval_examples: int | None = None
    max_length: int = 128
    label_noise: float = 0.0  # share of training labels flipped to another class (study of noisy data)
    label_noise_seed: int = 0  # fixes which rows are flipped, the same for every run and method
    # --- optimisation -------------------------------------------------------------------
    epochs: int = 1
    batch_size: int = 64
    grad_accum_steps: int = 1
    lr: float = 2e-5
    encoder_lr_mult: float = 0.8  # encoder lr = lr * encoder_lr_mult * layer_decay**depth_from_top
    layer_decay: float = 0.9
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: str = "cosine"  # any name transformers.get_scheduler accepts
    grad_clip: float = 1.0
    label_smoothing: float = 0.05
    precision: str = "fp32"  # fp32 | fp16 (GradScaler) | bf16
    optimizer_fused: bool | None = None  # None: fused AdamW on CUDA, foreach elsewhere
    compile_mode: str = ""  # "" = eager; else a torch.compile mode for the training forward
    cuda_graphs: bool = False  # baseline family: replay the whole update as one CUDA graph per batch shape
    graph_warmup_steps: int = 2  # eager (real) steps of a batch shape before its graph is captured
    # --- batching and evaluation ------------------------------------------------------------
    bucket_mult: int = 50  # length buckets span bucket_mult batches
    pad_multiple: int = 8  # pad each batch to a multiple of this many tokens
    row_multiple: int = 1  # pad MC-Learn's full-pass row count to a multiple (few shapes on a GPU)
    eval_points: int = 10  # evaluations along training (time-to-accuracy curve)
    eval_batch_size: int = 256
    log_every: int = 50
    # --- bookkeeping ------------------------------------------------------------------------
    seeds: tuple[int, ...] = (42, 43, 44)
    device: str = "auto"
    preset: str = "custom"
    study: str = "default"
    results_dir: str = "results"
    explicit: tuple[str, ...] = ()  # keys the caller set; method presets never override them
    # --- tiny offline model (model_name="tiny") -------------------------------------------------
    tiny_vocab_size: int = 4000
    tiny_dim: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 2
    tiny_hidden_dim: int = 256
    # --- MC-Learn (sections 5-6); defaults are the corrected preset "mclearn" ----------------
    score_layer: int = 1  # encoder layers run by the cheap scorer (0 = embeddings only)
    score_max_length: int = 64  # tokens the scorer reads
    head_lr: float = 1e-3
    distill_gamma: float = 0.10  # weight of the head's distillation from the full pass
    distill_temperature: float = 3.0
    kappa_schedule: tuple[float, ...] = (0.6, 0.5, 0.4)  # kept fraction before 40%, 80%, then to the end
    tau_init: float = 1.0
    tau_bounds: tuple[float, float] = (0.5, 4.0)
    rank_guard: float = 0.8  # widen tau when Spearman(cheap, full loss) drops below this
    replay_share_init: float = 0.2  # share of a step's draws taken uniformly from the pool (replay)
    replay_share_bounds: tuple[float, float] = (0.1, 0.5)
    ess_target: float = 0.7  # ESS / |K| below this raises the replay share and forces a pool refresh
    class_weight_bounds: tuple[float, float] = (0.5, 2.0)
    class_weight_lr: float = 0.5
    w_clip: float = 10.0  # cap on importance weights relative to uniform sampling (0 = none)
    refresh_every: int = 16  # steps between pool re-scores (range 8-32)
    refresh_bounds: tuple[int, int] = (8, 32)  # mclearn-paper: range of its adaptive refresh cadence N
    min_pool_mult: float = 1.0  # mclearn-paper: floor of the budget solver's pool size, in batches
    replay_max: int = 4096  # mclearn-paper: capacity of the FIFO replay buffer, split evenly over classes
    full_prob_bounds: tuple[float, float] = (0.12, 0.33)  # mclearn-paper: bounds of its per-class full_prob
    step_budget_ratio: float = 0.55  # mclearn-paper: one step's time / a baseline step's (the published budget)
    full_rows: int = 0  # mclearn: rows given a full pass per step (0 = batch_size)
    full_prob: float = 0.5  # mclearn: share of a step's pool draws that get a full pass
    cost_ema: float = 0.9
    unfreeze_schedule: tuple[float, ...] = ()  # progress points at which frozen layers thaw
    # --- MC-Learn variants: on in the METHOD_PRESETS of the variants that name them; "mclearn" is
    # "mclearn-once", the ablation's choice (results/ablation/ablation_table.md), so once_draws is on here ---
    free_scores: bool = False  # a row's difficulty is its last full-pass loss; the cheap head scores only the rest
    free_score_max_age: int = 0  # free_scores: refreshes after which a stored loss is stale (0 = never)
    once_draws: bool = True  # a pool's full passes drawn systematically: no row twice before the others once
    once_floor: float = 0.1  # once_draws: each pool row's least chance of a full pass
    uniform_start: float = 0.0  # share of the run's steps drawn uniformly at the start (the scorer learns)
    uniform_end: float = 0.0  # share drawn uniformly at the end, without scoring (InfoBatch's anneal)
    record_passes: bool = True  # the run file counts each training row's full passes (histogram, flipped rows)
    select_switch: bool = True  # each pool selects only where its estimated variance reduction pays for the
    # scoring (select_pays), else is drawn uniformly with no scoring (MCLearn.judge_pool, SelectSwitch)
    # --- peers (section 7) ------------------------------------------------------------------------
    uniform_fraction: float | None = None  # data share of "uniform"; None: match uniform_match's time
    uniform_match: str = "mclearn"  # the method whose measured train time "uniform" matches
    sb_beta: float = 3.0  # Selective Backprop selectivity: selection rate 1 / (sb_beta + 1)
    candidate_share: float = 1.0  # Selective Backprop, RHO-LOSS: share of each epoch's rows offered as candidates
    sb_history: int = 1024
    rho_holdout: float = 0.1  # RHO-LOSS irreducible-loss holdout fraction
    rho_candidate_mult: int = 10
    rho_select_fraction: float = 0.1
    rho_il_epochs: int = 2
    infobatch_prune: float = 0.5
    infobatch_anneal: float = 0.125  # final fraction of training on full data
    vcas_tau_act: float = 0.025  # activation-gradient sampling variance / SGD variance
    vcas_tau_weight: float = 0.025
    vcas_every: int = 100  # steps between variance checks
    vcas_repeats: int = 2  # Monte Carlo repeats per check
    vcas_min_ratio: float = 0.05
    # --- budget studies (section 8) ---------------------------------------------------------------
    time_budget: float = 0.0  # share of the tuned baseline's train seconds a method targets (0 = none)
    budget_seconds: float = 0.0  # train seconds of a clock-driven run (RunClock; 0 = its planned steps)


PRESETS: dict[str, dict[str, Any]] = {
    # Colab T4: no bf16, so fp16 autocast with a GradScaler.
    "t4": dict(precision="fp16", batch_size=64, row_multiple=16),
    # Ampere/Hopper: bf16 autocast and a larger batch (lr scaled with it).
    # CUDA graphs need static shapes: pad to multiples of 32 (four widths at max_length 128).
    # Full-pass row counts padded to multiples of 16: cuDNN attention builds a plan per new shape
    # (about 6 ms each on an H100, measured: benchmarks/profile_step.py).
    "a100": dict(precision="bf16", batch_size=256, lr=4e-5, score_layer=0, score_max_length=32,
                 cuda_graphs=True, pad_multiple=32, row_multiple=16),
    "h100": dict(precision="bf16", batch_size=256, lr=4e-5, score_layer=0, score_max_length=32,
                 cuda_graphs=True, pad_multiple=32, row_multiple=16),
    # CPU: tiny from-scratch model on the embedded AG News sample, minutes on two cores.
    "cpu": dict(model_name=TINY_MODEL, dataset=str(EMBEDDED_DATA), precision="fp32",
                batch_size=32, lr=1e-3, head_lr=3e-3, epochs=3, max_length=64,
                score_layer=0, score_max_length=32, eval_points=6),
    # CI smoke: a few hundred examples, one seed, seconds per run.
    "cpu-smoke": dict(model_name=TINY_MODEL, dataset=str(EMBEDDED_DATA), precision="fp32",
                      batch_size=16, lr=1e-3, head_lr=3e-3, epochs=1, max_length=48,
                      score_layer=0, score_max_length=32, max_train_examples=480, max_eval_examples=160,
                      eval_points=3, seeds=(42,), tiny_vocab_size=2000, tiny_dim=32,
                      tiny_hidden_dim=64, refresh_every=8),
}


# Method presets: what a method changes from the Config defaults (which are mclearn's), applied on
# top of the run's config except to the keys its caller set (config_for_method).
METHOD_PRESETS: dict[str, dict[str, Any]] = {
    # As published: cheap term with gradient, CV loss logged, a few full forwards per step.
    # (mclearn_paper.MCLearnPaper; the published code's eta 0.2 and cost/variance EMA 0.98 included.)
    # "gpu": the published notebook's own changes on A100-class GPUs (compute capability >= 8), applied
    # on the a100 and h100 presets; it keeps lr 2e-5 there (those presets raise it to 4e-5 for all
    # other methods).
    "mclearn-paper": dict(unfreeze_schedule=(0.3, 0.7), replay_share_init=0.10, replay_share_bounds=(0.01, 0.9),
                          class_weight_lr=0.2, cost_ema=0.98,
                          gpu=dict(score_max_length=32, score_layer=0, refresh_every=32, refresh_bounds=(16, 64),
                                   kappa_schedule=(0.5, 0.4, 0.3), full_prob_bounds=(0.10, 0.28),
                                   step_budget_ratio=0.70, min_pool_mult=1.5, lr=2e-5)),
    # "mclearn" (ours) is the Config defaults: see README "Deviations from the published MC-Learn";
    # full-size steps, fewer of them (README "How MC-Learn turns fewer full passes into less time").
}


PAPER_GPU_PRESETS = ("a100", "h100")  # the device presets on which mclearn-paper takes its "gpu" changes


# MC-Learn's variants. `mclearn-v1` is `mclearn` with every variant part off, written out here so
# that a change of the `mclearn` defaults (Config) shows as a difference between the two; every variant is
# `mclearn-v1` with some of the parts below on (its name lists them), and every one counts its full passes.
# The switch's ablation (ABLATION_RULE, results/ablation/fair/) chose `mclearn-once-switch`: the Config defaults,
# so `mclearn`, are it (tests/test_readme.py holds the defaults to the committed ablation's choice).
MCLEARN_V1 = dict(replay_share_bounds=(0.1, 0.5), class_weight_lr=0.5)


MCLEARN_VARIANT_PARTS: dict[str, dict[str, Any]] = {
    "free": dict(free_scores=True),  # scores for free: the full passes' own losses
    "once": dict(once_draws=True),  # every row once before any twice
    "anneal": dict(uniform_start=0.25, uniform_end=0.125),  # uniform draws first and last, selection between
    "switch": dict(select_switch=True),  # select only where the variance reduction pays for the scoring
}


MCLEARN_VARIANTS: dict[str, tuple[str, ...]] = {  # method name -> the parts it turns on
    "-".join(("mclearn",) + parts) if parts else "mclearn-v1": parts
    for parts in [(), ("free",), ("once",), ("anneal",), ("free", "once"), ("free", "anneal"), ("once", "anneal"),
                  ("free", "once", "anneal"), ("once", "switch"), ("free", "once", "switch")]}


# The switch's ablation: `mclearn-once` (the preset it started from), its scores for free, each with the
# switch on and off; gpu_ablation.sh runs them under the fair protocol (studies ending in FAIR_ABLATION_SUFFIX).
SWITCH_ABLATION = ("mclearn-once", "mclearn-free-once", "mclearn-once-switch", "mclearn-free-once-switch")


_VARIANT_KEYS_OFF = dict(free_scores=False, once_draws=False, uniform_start=0.0, uniform_end=0.0, select_switch=False)
METHOD_PRESETS.update({name: {**MCLEARN_V1, **_VARIANT_KEYS_OFF, "record_passes": True,
                              **{k: v for part in parts for k, v in MCLEARN_VARIANT_PARTS[part].items()}}
                       for name, parts in MCLEARN_VARIANTS.items()})


# Old config keys and method ids -> today's (one name, one meaning). A caller who passes an old one
# (the command line, notebook parameters, make_config) gets a one-line error naming today's;
# benchmarks/migrate_runs.py gives old run files today's names through this map.
RENAMED: dict[str, str] = {
    # config keys: the replay share is not RHO-LOSS; the full-pass probability has one name
    "rho_init": "replay_share_init", "rho_bounds": "replay_share_bounds", "q_bounds": "full_prob_bounds",
    # the share of the baseline's seconds has one name
    "budget_ratio": "time_budget",
    # method ids: kebab-case, as mclearn-paper and the MC-Learn variants
    "short_schedule": "short-schedule", "selective_backprop": "selective-backprop", "rho_loss": "rho-loss",
}
# Where today's key is set by something other than the caller, the error says where instead.
SET_BY = {"time_budget": "it is set per run by budget studies (notebook 04's time_budgets, ms.run_budget_study)"}


PRESET_ENV = "MCLEARN_PRESET"  # forces what "auto" resolves to, e.g. MCLEARN_PRESET=t4 on an H100


def detect_preset() -> str:
    """Return the preset name for the visible device: t4, a100, h100 or cpu; or the preset named by
    the MCLEARN_PRESET environment variable, so "auto" can be run as another device's code path."""
    forced = os.environ.get(PRESET_ENV, "").strip()
    if forced:
        if forced not in PRESETS:
            raise ValueError(f"{PRESET_ENV}={forced!r} is not a preset. Set it to one of: {', '.join(PRESETS)} "
                             f"(or unset it to pick from the device).")
        return forced
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower()
    if "t4" in name:
        return "t4"
    if any(tag in name for tag in ("h100", "h200", "h800", "gh200")):
        return "h100"
    return "a100" if torch.cuda.is_bf16_supported() else "t4"


def make_config(preset: str = "auto", **overrides: Any) -> Config:
    """Return a Config for `preset` ("auto" picks from the device) with `overrides` applied.

    An override of None means "the preset's value" (so notebook parameters can default to None);
    to lift a preset's example limit pass 0. Keys given here win over method presets.
    Unknown keys raise a ValueError that names the closest valid key.
    """
    name = detect_preset() if preset == "auto" else preset
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}. Choose one of: auto, {', '.join(PRESETS)}.")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**PRESETS[name], **given}
    return replace_config(Config(preset=name), explicit=tuple(sorted(given)), **values)


def replace_config(cfg: Config, **changes: Any) -> Config:
    """Return a copy of `cfg` with `changes`; unknown keys raise a ValueError naming the fix (the
    new name of a renamed key)."""
    valid = {f.name for f in dataclasses.fields(Config)}
    for key in changes:
        if RENAMED.get(key) in valid:
            new = RENAMED[key]
            raise ValueError(f"Config key {key!r} is now {new!r}: " + (SET_BY[new] + "." if new in SET_BY else
                                                                        f"set {new}= instead."))
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown config key {key!r}.{hint}")
    tuple_fields = {f.name for f in dataclasses.fields(Config) if "tuple" in str(f.type)}
    changes = {k: tuple(v) if k in tuple_fields and isinstance(v, list) else v
               for k, v in changes.items()}
    return dataclasses.replace(cfg, **changes)


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _parse_scalar(text: str, kind: str) -> Any:
    """Return `text` as a `kind` ("str", "int", "float" or "bool"); raise ValueError if it is not one."""
    if kind == "str":
        return text
    if kind == "bool":
        if text.lower() not in _BOOL_WORDS:
            raise ValueError(f"not a bool: {text!r}")
        return _BOOL_WORDS[text.lower()]
    if kind == "int":
        return int(text)  # "1.5" and "two" raise
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def parse_config_value(key: str, text: str) -> Any:
    """Return the command-line string `text` converted to the type of Config field `key`.

    Scalars by type (int, float, bool, str; "none" for optional fields), tuples as comma-separated
    values or a JSON list. Raises ValueError naming the key, the expected type and an example.
    """
    fields = {f.name: str(f.type) for f in dataclasses.fields(Config)}
    if key not in fields:
        replace_config(Config(), **{key: None})  # raises the "did you mean" error
    kind = fields[key]
    optional = kind.endswith(" | None")
    kind = kind.removesuffix(" | None")
    default = getattr(Config(), key)
    example = ",".join(map(str, default)) if isinstance(default, tuple) else str(default).lower() \
        if isinstance(default, bool) else str(default)
    try:
        if optional and text.lower() in ("none", "null"):
            return None
        if not kind.startswith("tuple["):
            return _parse_scalar(text, kind)
        items = json.loads(text) if text.startswith("[") else [t for t in text.split(",") if t.strip()]
        inner = [t.strip() for t in kind[len("tuple["):-1].split(",")]
        values = tuple(_parse_scalar(str(v).strip(), inner[0]) for v in items)
        if inner[-1] != "..." and len(values) != len(inner):
            raise ValueError(f"{len(inner)} values needed")
        return values
    except (ValueError, KeyError, json.JSONDecodeError):
        expected = kind + (" or none" if optional else "")
        raise ValueError(f"--set {key}={text}: {key} expects {expected}, e.g. {key}={example or 'name'}") from None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Return the Config changes of command-line KEY=VALUE items, each value of its field's type.
    A key given twice with two values raises ValueError (one of them would be dropped)."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE items, got {item!r} (e.g. --set epochs=2)")
        key = key.strip()
        value = parse_config_value(key, text.strip())
        if key in overrides and overrides[key] != value:
            raise ValueError(f"--set gives {key} twice ({key}={_config_text(overrides[key])} and "
                             f"{key}={text.strip()}): keep one")
        overrides[key] = value
    return overrides


def study_name(base: str, preset: str) -> str:
    """Return the default study name "<base>-<preset>" ("auto" resolved), so runs of different
    devices never share a study."""
    return f"{base}-{detect_preset() if preset == 'auto' else preset}"


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key and a value that can."""

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: a notebook cell's output is the one line."""
        return [f"error: {self}"]


@dataclass(frozen=True)
class Range:
    """The values a numeric Config key may take: from `lo` to `hi` (None: no bound; an end is
    excluded when `lo_open`/`hi_open`), or one of `also` (e.g. 0 for "no limit"). For a tuple key
    the range holds for each value; `empty_ok` allows an empty tuple."""

    lo: float | None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    also: tuple[Any, ...] = ()
    empty_ok: bool = False

    def holds(self, value: Any) -> bool:
        """Return whether `value` (one number) is in the range."""
        if value in self.also:
            return True
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return False
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def text(self) -> str:
        """Return the range in words, e.g. "in (0, 1]", ">= 1", "0 or >= 16"."""
        lo, hi = (None if v is None else str(int(v)) if float(v).is_integer() else f"{v:g}" for v in (self.lo, self.hi))
        if lo is not None and hi is not None:
            span = f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        elif lo is not None:
            span = f"{'>' if self.lo_open else '>='} {lo}"
        else:
            span = f"{'<' if self.hi_open else '<='} {hi}"
        return " or ".join([*map(str, self.also), span])


SHARE, POSITIVE, NON_NEGATIVE, AT_LEAST_ONE = Range(0, 1), Range(0, lo_open=True), Range(0), Range(1)


SEED_RANGE = Range(0, 2**32 - 1)  # what numpy's seed accepts


MIN_EXAMPLES = 16  # the smallest example limit: fewer rows cannot train or measure a classifier


# The range of every numeric Config key (tests/test_config.py checks that none lacks one).
CONFIG_RANGES: dict[str, Range] = {
    "max_train_examples": Range(MIN_EXAMPLES, also=(None, 0)), "max_eval_examples": Range(MIN_EXAMPLES, also=(None, 0)),
    "test_holdout": Range(MIN_EXAMPLES, also=(0,)),
    "max_length": Range(4), "label_noise": Range(0, 1, hi_open=True), "label_noise_seed": SEED_RANGE,
    "epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "grad_accum_steps": AT_LEAST_ONE, "lr": POSITIVE,
    "encoder_lr_mult": NON_NEGATIVE, "layer_decay": Range(0, 1, lo_open=True), "weight_decay": SHARE,
    "warmup_ratio": SHARE, "grad_clip": NON_NEGATIVE, "label_smoothing": Range(0, 1, hi_open=True),
    "graph_warmup_steps": NON_NEGATIVE, "bucket_mult": AT_LEAST_ONE, "pad_multiple": AT_LEAST_ONE,
    "row_multiple": AT_LEAST_ONE, "eval_points": AT_LEAST_ONE, "eval_batch_size": AT_LEAST_ONE,
    "log_every": AT_LEAST_ONE, "seeds": SEED_RANGE,
    "tiny_vocab_size": Range(16), "tiny_dim": AT_LEAST_ONE, "tiny_layers": AT_LEAST_ONE, "tiny_heads": AT_LEAST_ONE,
    "tiny_hidden_dim": AT_LEAST_ONE,
    "score_layer": NON_NEGATIVE, "score_max_length": Range(2), "head_lr": POSITIVE, "distill_gamma": NON_NEGATIVE,
    "distill_temperature": POSITIVE, "kappa_schedule": Range(0, 1, lo_open=True), "tau_init": POSITIVE,
    "tau_bounds": POSITIVE, "rank_guard": Range(-1, 1), "replay_share_init": SHARE, "replay_share_bounds": SHARE,
    "ess_target": Range(0, 1, lo_open=True), "class_weight_bounds": POSITIVE, "class_weight_lr": NON_NEGATIVE,
    "w_clip": NON_NEGATIVE, "refresh_every": AT_LEAST_ONE, "refresh_bounds": AT_LEAST_ONE,
    "min_pool_mult": NON_NEGATIVE, "replay_max": AT_LEAST_ONE, "full_prob_bounds": Range(0, 1, lo_open=True),
    "free_score_max_age": NON_NEGATIVE, "once_floor": Range(0, 1, lo_open=True), "uniform_start": SHARE,
    "uniform_end": SHARE,
    "step_budget_ratio": Range(0, 1, lo_open=True), "full_rows": NON_NEGATIVE, "full_prob": Range(0, 1, lo_open=True),
    "cost_ema": Range(0, 1, hi_open=True), "unfreeze_schedule": Range(0, 1, empty_ok=True),
    "uniform_fraction": Range(0, 1, lo_open=True, also=(None,)), "sb_beta": NON_NEGATIVE,
    "candidate_share": Range(0, 1, lo_open=True), "sb_history": AT_LEAST_ONE, "rho_holdout": Range(0, 1, True, True),
    "rho_candidate_mult": AT_LEAST_ONE, "rho_select_fraction": Range(0, 1, lo_open=True), "rho_il_epochs": AT_LEAST_ONE,
    "infobatch_prune": Range(0, 1, hi_open=True), "infobatch_anneal": SHARE, "vcas_tau_act": NON_NEGATIVE,
    "vcas_tau_weight": NON_NEGATIVE, "vcas_every": AT_LEAST_ONE, "vcas_repeats": AT_LEAST_ONE,
    "vcas_min_ratio": Range(0, 1, lo_open=True), "time_budget": SHARE, "budget_seconds": NON_NEGATIVE,
}


PRECISIONS = ("fp32", "fp16", "bf16")


def numeric_fields() -> list[str]:
    """Return the Config keys that hold numbers (int, float, or tuples of them; bools excluded)."""
    def numeric(kind: str) -> bool:
        kind = kind.removesuffix(" | None")
        return kind in ("int", "float") or kind.startswith(("tuple[int", "tuple[float"))

    return [f.name for f in dataclasses.fields(Config) if numeric(str(f.type))]


def _config_text(value: Any) -> str:
    """Return a Config value as --set writes it (tuples comma-separated, floats to 6 significant digits)."""
    def text(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)
    return ",".join(map(text, value)) if isinstance(value, tuple) else text(value)


def _of_kind(value: Any, kind: str) -> bool:
    """Return whether one value is of the scalar Config type `kind` (int, float, bool or str);
    a bool is no number, an int is a float."""
    if kind == "bool":
        return isinstance(value, (bool, np.bool_))
    if isinstance(value, (bool, np.bool_)):
        return False
    if kind == "int":
        return isinstance(value, (int, np.integer))
    if kind == "float":
        return isinstance(value, (int, float, np.integer, np.floating))
    return isinstance(value, str)


def check_type(key: str, value: Any) -> None:
    """Raise ConfigError naming `key`, the type it expects and an example when `value` is not of
    Config field `key`'s type (a tuple field takes a list or tuple of its items' type; "| None"
    fields also take None)."""
    kind = str(Config.__dataclass_fields__[key].type)
    optional, kind = kind.endswith(" | None"), kind.removesuffix(" | None")
    if value is None and optional:
        return
    default = getattr(Config(), key)
    if kind.startswith("tuple["):
        inner = [t.strip() for t in kind[len("tuple["):-1].split(",")]
        fits = isinstance(value, (list, tuple)) and all(_of_kind(v, inner[0]) for v in value) and \
            (inner[-1] == "..." or len(value) == len(inner))
        words = f"a list of {len(inner)} {inner[0]}s" if inner[-1] != "..." else f"a list of {inner[0]}s"
        example = list(default) or ["..."]
    else:
        fits, words, example = _of_kind(value, kind), kind, default
    if not fits:
        raise ConfigError(f"{key}={value!r} is {_kind_of(value)}: {key} expects {words}"
                          f"{' or None' if optional else ''}, e.g. {key}={example!r}")


def _kind_of(value: Any) -> str:
    """Return the type of `value` in words: "None", "an int", "a str", ..."""
    name = type(value).__name__
    return "None" if value is None else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def check_range(key: str, value: Any) -> None:
    """Raise ConfigError naming `key`, its range and a valid example when `value` is outside
    CONFIG_RANGES[key] (for a tuple: empty where it may not be, a value outside, or a (lo, hi)
    pair whose lo exceeds its hi)."""
    rule, default = CONFIG_RANGES[key], getattr(Config(), key)
    example = f"e.g. {key}={_config_text(default)}"
    if isinstance(value, tuple):
        if not value and not rule.empty_ok:
            raise ConfigError(f"{key} is empty: give at least one value, each {rule.text()}, {example}")
        bad = [v for v in value if not rule.holds(v)]
        if bad:
            raise ConfigError(f"{key}={_config_text(value)} has {_config_text(tuple(bad))} out of range: each value "
                              f"must be {rule.text()}, {example}")
        if str(Config.__dataclass_fields__[key].type).count(",") == 1 and len(value) == 2 and value[0] > value[1]:
            raise ConfigError(f"{key}={_config_text(value)} is a (low, high) pair with low above high, {example}")
    elif not rule.holds(value):
        raise ConfigError(f"{key}={value} is out of range: {key} must be {rule.text()}, {example}")


LOCAL_COPIES_ENV = "MCLEARN_LOCAL_COPIES"  # a folder of offline copies of hub datasets and models


def local_copy(name: str) -> str:
    """Return the offline copy of the hub dataset or model `name`: the folder
    $MCLEARN_LOCAL_COPIES/<name> (e.g. .../glue/sst2, .../sentence-transformers/all-MiniLM-L6-v2) when
    that variable is set and the folder exists, else `name` itself. A notebook can then name hub ids
    that work on Colab and still run on a machine without the hub."""
    root = os.environ.get(LOCAL_COPIES_ENV)
    if root and name and not Path(name).is_absolute() and (Path(root).expanduser() / name).is_dir():
        return str(Path(root).expanduser() / name)
    return name


def _names_a_local_path(name: str) -> bool:
    """Return whether `name` can only be a local path, not a hub name: it starts with '/', '~' or
    '.', holds a backslash or './', or its parent folder exists here."""
    path = Path(name).expanduser()
    return name.startswith(("/", "~", ".")) or "\\" in name or "./" in name or \
        (path.parent != Path(".") and path.parent.is_dir())


# A model folder holds at least one of these: the vocabulary its tokenizer is built from.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def check_study_name(study: str) -> None:
    """Raise ConfigError unless `study` is one folder name (not empty, no '/', '\\' or '..')."""
    if not study or study in (".", "..") or any(c in study for c in "/\\\0") or study != study.strip():
        raise ConfigError(f"study={study!r} must be one folder name inside results_dir/runs (no '/', '\\' or "
                          f"'..'), e.g. study=my-study")


def check_paths(cfg: Config) -> None:
    """Raise ConfigError when a path in `cfg` is not what it must be: study one folder name inside
    results_dir/runs, results_dir a folder (or not yet there), dataset a folder of split files or
    a hub name, model_name a model folder (with config.json), a hub name or "tiny"."""
    check_study_name(cfg.study)
    results = Path(cfg.results_dir).expanduser()
    if results.exists() and not results.is_dir():
        raise ConfigError(f"results_dir={cfg.results_dir!r} is a file: set results_dir= (--results-dir) to a folder")
    data = Path(local_copy(cfg.dataset)).expanduser()
    if data.is_file():
        raise ConfigError(f"dataset={cfg.dataset!r} is a file: set dataset= (--dataset) to the folder that holds "
                          f"it ({data.parent}), whose files are named by split ({cfg.train_split}.csv or "
                          f"{cfg.train_split}.parquet, {cfg.eval_split}.csv ...)")
    if not data.is_dir() and _names_a_local_path(cfg.dataset):
        raise ConfigError(f"Dataset folder {cfg.dataset!r} does not exist: set dataset= (--dataset) to an existing "
                          f"folder or a hub name such as 'ag_news'")
    if cfg.model_name != TINY_MODEL:
        model = Path(local_copy(cfg.model_name)).expanduser()
        fix = ("set model_name= (--model) to a folder holding config.json, the weights and the tokenizer files, "
               "a hub name, or 'tiny'")
        if model.is_file():
            raise ConfigError(f"model_name={cfg.model_name!r} is a file: {fix}")
        if model.is_dir() and not (model / "config.json").is_file():
            raise ConfigError(f"Model folder {cfg.model_name!r} has no config.json: {fix}")
        if not model.is_dir() and _names_a_local_path(cfg.model_name):
            raise ConfigError(f"Model folder {cfg.model_name!r} does not exist: {fix}")
        if model.is_dir() and not any((model / name).is_file() for name in TOKENIZER_FILES):
            raise ConfigError(f"Model folder {cfg.model_name!r} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): "
                              f"without them every word would read as one unknown token; {fix}")


NAMED_KEYS = ("dataset", "model_name", "results_dir", "train_split", "eval_split", "text_column", "label_column",
              "schedule")  # a name or path each: an empty one would mean something else without a word


def check_settings(cfg: Config, seeds: Sequence[int] | None = None) -> None:
    """Raise ConfigError (one line naming the key and the fix) for settings that could not take
    effect as given: an empty name (NAMED_KEYS), a seed listed twice, one column as text and label,
    a train split that is also the eval or test split, tiny_* keys set for a model that is not
    'tiny', a cheap scorer that runs every layer of the tiny model (score_layer >= tiny_layers),
    and a score_max_length set above max_length (texts are cut at max_length tokens)."""
    for key in NAMED_KEYS:
        if not str(getattr(cfg, key)).strip():
            raise ConfigError(f"{key}={getattr(cfg, key)!r} is empty: give a name, e.g. {key}={getattr(Config(), key)}")
    for values in (cfg.seeds, seeds or ()):
        twice = sorted({s for s in values if list(values).count(s) > 1})
        if twice:
            raise ConfigError(f"seeds lists {', '.join(map(str, twice))} more than once: each seed is one run, "
                              f"list it once")
    if cfg.text_column == cfg.label_column:
        raise ConfigError(f"text_column and label_column are both {cfg.text_column!r}: a run would read its labels as "
                          f"its texts; set text_column= to the column that holds the text")
    if cfg.train_split == cfg.eval_split:
        raise ConfigError(f"train_split and eval_split are both {cfg.train_split!r}: a run would be scored on the "
                          f"rows it trains on; set eval_split= to another split, e.g. eval_split=validation")
    for other in ("train_split", "eval_split"):
        if cfg.test_split and cfg.test_split == getattr(cfg, other):
            raise ConfigError(f"test_split={cfg.test_split!r} is also the {other.removesuffix('_split')} split: "
                              f"test rows must be rows a run neither trains nor is chosen on; set test_split= to "
                              f"another split, or '' for none")
    tiny_keys = sorted(k for k in cfg.explicit if k.startswith("tiny_"))
    if tiny_keys and cfg.model_name != TINY_MODEL:
        raise ConfigError(f"{', '.join(tiny_keys)} set for model_name={cfg.model_name!r}: the tiny_* keys shape only "
                          f"model_name=tiny; drop them or set model_name=tiny")
    if cfg.model_name == TINY_MODEL and cfg.score_layer >= cfg.tiny_layers:
        raise ConfigError(f"score_layer={cfg.score_layer} runs all {cfg.tiny_layers} layers of the tiny model: the "
                          f"cheap scorer must run fewer; set score_layer= to 0..{cfg.tiny_layers - 1}")
    if "score_max_length" in cfg.explicit and cfg.score_max_length > cfg.max_length:
        raise ConfigError(f"score_max_length={cfg.score_max_length} is above max_length={cfg.max_length}: texts are "
                          f"cut at max_length tokens; set score_max_length= to at most {cfg.max_length}")


def validate_config(cfg: Config, seeds: Sequence[int] | None = None) -> Config:
    """Return `cfg` after checking it can run, before anything loads or trains: every key's type
    (check_type), every numeric key in its CONFIG_RANGES, a non-empty seed list (cfg.seeds, and
    `seeds` when given), precision, the tiny model's width against its heads, settings that could
    not take effect (check_settings) and its paths (check_paths). Raises ConfigError, one line
    naming the key and a valid value."""
    for field in dataclasses.fields(Config):
        check_type(field.name, getattr(cfg, field.name))
    for key in numeric_fields():
        check_range(key, getattr(cfg, key))
    if seeds is not None:
        check_type("seeds", seeds)
        check_range("seeds", tuple(seeds))
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"precision={cfg.precision!r} is not one of {', '.join(PRECISIONS)}: e.g. precision=fp32")
    if cfg.model_name == TINY_MODEL and cfg.tiny_dim % cfg.tiny_heads:
        raise ConfigError(f"tiny_dim={cfg.tiny_dim} is not a multiple of tiny_heads={cfg.tiny_heads}: set "
                          f"tiny_heads= to a divisor of it, e.g. tiny_heads=2")
    check_settings(cfg, seeds)
    check_paths(cfg)
    return cfg


def config_for_method(cfg: Config, method: str) -> Config:
    """Return `cfg` with the method's preset changes (METHOD_PRESETS, e.g. "mclearn-paper", with its
    "gpu" changes on PAPER_GPU_PRESETS) applied, except to the keys the caller set (cfg.explicit)."""
    changes = dict(METHOD_PRESETS.get(method, {}))
    gpu = changes.pop("gpu", {})
    if cfg.preset in PAPER_GPU_PRESETS:
        changes.update(gpu)
    return replace_config(cfg, **{k: v for k, v in changes.items() if k not in cfg.explicit})


def resolve_device(cfg: Config) -> torch.device:
    """Return the torch device for `cfg.device` ("auto" = CUDA when available)."""
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def autocast_context(cfg: Config, device: torch.device, cache_enabled: bool = True):
    """Return the autocast context for the configured precision (a no-op for fp32).
    CUDA graph capture needs cache_enabled=False (cast weights are not kept between regions)."""
    if cfg.precision == "fp32":
        return contextlib.nullcontext()
    if cfg.precision not in ("fp16", "bf16"):
        raise ValueError(f"precision must be fp32, fp16 or bf16, not {cfg.precision!r}")
    dtype = torch.float16 if cfg.precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache_enabled)
