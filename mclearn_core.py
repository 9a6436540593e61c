"""MC-Learn: adaptive Monte Carlo sampling for fine-tuning a transformer classifier in less time.
A cheap head on early-layer features scores a pool of training rows; each step draws a fixed number
of them by those scores (mixed with a uniform replay share), gives the drawn rows a full pass and
weights them (Hansen-Hurwitz) so the loss is an unbiased estimate of the training set's mean loss;
a budget solver prices the run in measured update seconds, a policy learner adapts the draw.
`MCLearn` is the method (`mclearn`); the published algorithm (`mclearn-paper`, `MCLearnPaper`) is
mclearn_paper.py beside it, built on this module's parts.

In a plain PyTorch loop it takes three calls (README "Use MC-Learn in your own loop"):
    trainer = MCLearn(PlainContext(MCLearnConfig(), model, rows, device))  # rows: an EncodedSplit
    trainer.setup()       # ctx.optimizer must hold trainer.extra_param_groups()
    for step in range(trainer.num_steps()): trainer.step(step)

Its numbered sections follow the call order (tests/test_module_order.py: none uses a later one).
It imports torch, numpy and the standard library (plotting libraries inside the diagnostics); the
study around it (config, data, model, update machinery, peers, runs, tables) is a package beside it.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import functools
import math
import sys
import textwrap
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# =============================================================================
# 1. Helpers: printing, errors, batches, encoder access, MC-Learn's knobs and run context
# =============================================================================
CLI_WIDTH = 100  # every line the module prints fits this many columns (say; the final table unless --wide)


def say(text: str, file=None) -> None:
    """Print `text` to `file` (stdout when None) and flush, each of its lines wrapped at CLI_WIDTH columns
    with continuation lines indented two spaces; a word longer than a line (a path) is kept whole."""
    lines = [textwrap.fill(line, CLI_WIDTH, subsequent_indent="  ", break_long_words=False,
                           break_on_hyphens=False) for line in text.splitlines()]
    print("\n".join(lines), file=file or sys.stdout, flush=True)


@dataclass
class EncodedSplit:
    """A tokenized split as flat tensors: padded ids [N, L], true lengths [N], labels [N]."""

    input_ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @functools.cached_property
    def host_lengths(self) -> torch.Tensor:
        """The lengths on the host, copied once, so batch widths never need a device sync."""
        return self.lengths.cpu()

    def to(self, device: torch.device) -> "EncodedSplit":
        return EncodedSplit(self.input_ids.to(device), self.lengths.to(device), self.labels.to(device))


def padded_length(max_len: int, pad_multiple: int, cap: int) -> int:
    """Return `max_len` rounded up to a multiple of `pad_multiple`, at most `cap`."""
    return min(cap, int(math.ceil(max(max_len, 1) / pad_multiple) * pad_multiple))


def batch_width(data: EncodedSplit, idx, pad_multiple: int, cap: int | None = None) -> int:
    """Return the padded token width of rows `idx` of `data` (host-side, no device sync)."""
    longest = int(data.host_lengths[torch.as_tensor(idx)].max())
    return padded_length(longest, pad_multiple, cap or data.input_ids.shape[1])


def to_device(values, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Return `values` (array or tensor) as a tensor on `device`, a host-to-GPU copy through pinned
    memory without blocking (a pageable copy waits for the GPU's queue to drain: a hidden sync)."""
    tensor = torch.as_tensor(values, dtype=dtype)
    if device.type != "cuda" or tensor.device.type == "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def make_batch(data: EncodedSplit, idx, width: int) -> dict[str, torch.Tensor]:
    """Return model inputs for rows `idx` cut to `width` tokens (ids, mask, labels)."""
    idx = to_device(idx, data.input_ids.device)
    ids = data.input_ids[idx, :width]
    positions = torch.arange(ids.shape[1], device=ids.device)
    mask = (positions[None, :] < data.lengths[idx, None]).long()
    return {"input_ids": ids, "attention_mask": mask, "labels": data.labels[idx]}


class ModelLoadError(ValueError):
    """A model that cannot be loaded; the message names the parameter to set."""


@dataclass
class EncoderParts:
    """Named pieces of a sequence classifier that MC-Learn and the optimizer need."""

    base: nn.Module  # the encoder (DistilBertModel, BertModel, ...)
    layers: nn.ModuleList  # its transformer blocks, bottom to top
    layer_owner: nn.Module  # the module whose `.layer` attribute holds `layers`
    embeddings: nn.Module
    head: dict[str, nn.Module]  # classification-head modules by name (re-initialised per seed)


def encoder_parts(model: nn.Module) -> EncoderParts:
    """Return the encoder, its layers, embeddings and head of a DistilBERT/BERT-style classifier."""
    base = model.base_model
    owner = getattr(base, "transformer", None) or getattr(base, "encoder", None)
    if owner is None or not isinstance(getattr(owner, "layer", None), nn.ModuleList):
        raise ModelLoadError(f"{type(model).__name__} is not a DistilBERT/BERT-style encoder "
                             f"(no .transformer.layer or .encoder.layer). Use such a model.")
    head = {name: m for name, m in model.named_children() if name in ("pre_classifier", "classifier")}
    if getattr(base, "pooler", None) is not None:
        head["pooler"] = base.pooler
    return EncoderParts(base=base, layers=owner.layer, layer_owner=owner,
                        embeddings=base.embeddings, head=head)


@contextlib.contextmanager
def truncated_encoder(model: nn.Module, num_layers: int):
    """Run only the bottom `num_layers` blocks of the encoder inside this context."""
    parts = encoder_parts(model)
    full = parts.layer_owner.layer
    parts.layer_owner.layer = nn.ModuleList(list(full)[:num_layers])
    try:
        yield parts.base
    finally:
        parts.layer_owner.layer = full


def model_inputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the keyword inputs (input_ids, attention_mask) for `model` on `batch`, the padding
    mask already in the 4-D form [B, 1, L, L] that transformers passes through: boolean (True =
    attend) for SDPA attention (else transformers asks the host `mask.all()`, a sync per forward),
    additive float (0 or float32 min) for eager attention (MPNet; else a host scalar, no graph)."""
    mask = batch["attention_mask"]
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation in ("sdpa", "eager") and mask.dim() == 2:
        width = mask.shape[1]
        keep = mask.bool()[:, None, None, :].expand(-1, 1, width, width)
        mask = keep if implementation == "sdpa" else \
            torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, torch.finfo(torch.float32).min)
    return {"input_ids": batch["input_ids"], "attention_mask": mask}


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the mask-weighted mean of `hidden` [B, L, H] over tokens: [B, H]."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class TrainingError(RuntimeError):
    """Training hit a state that would give a wrong result (NaN loss, out of memory)."""


def sync_device(device: torch.device) -> None:
    """Return None once `device` has finished its queued work (CUDA); at once on the CPU. Every clock
    reading of GPU work follows it, or the clock reads the launch, not the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- what MC-Learn reads: its knobs and its run context -------------------------------------------
@dataclass
class MCLearnConfig:
    """The knobs MC-Learn reads, at the `mclearn` preset's values; any object with these attributes
    works (the study's Config, whose defaults tests/test_core_api.py keeps equal to these)."""

    # --- batching and optimisation the trainers read ---------------------------------------------
    batch_size: int = 64  # the baseline's batch: the budget prices its steps at this size
    epochs: int = 1  # the baseline's epochs over the training rows
    grad_accum_steps: int = 1
    grad_clip: float = 1.0  # PlainContext: gradient norm cap of each update (0 = none)
    label_smoothing: float = 0.05
    precision: str = "fp32"  # fp32 | fp16 | bf16 (autocast)
    pad_multiple: int = 8  # pad each batch to a multiple of this many tokens
    row_multiple: int = 1  # mclearn-paper: pad its full-pass row count to a multiple
    eval_batch_size: int = 256
    log_every: int = 50
    # --- MC-Learn (the `mclearn` preset; mclearn-paper's keys are marked) -------------------------
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
    refresh_every: int = 16  # steps between pool re-scores
    refresh_bounds: tuple[int, int] = (8, 32)  # mclearn-paper: range of its adaptive refresh cadence N
    min_pool_mult: float = 1.0  # mclearn-paper: floor of the budget solver's pool size, in batches
    replay_max: int = 4096  # mclearn-paper: capacity of the FIFO replay buffer
    full_prob_bounds: tuple[float, float] = (0.12, 0.33)  # mclearn-paper: bounds of its per-class full_prob
    time_budget: float = 1 / 3  # mclearn: the whole run's train seconds as a share of the baseline's
    step_budget_ratio: float = 0.55  # mclearn-paper: one step's time / a baseline step's
    full_rows: int = 0  # mclearn: rows given a full pass per step (0 = batch_size)
    full_prob: float = 0.5  # mclearn: share of a step's pool draws that get a full pass
    cost_ema: float = 0.9
    unfreeze_schedule: tuple[float, ...] = ()  # mclearn-paper: progress points at which frozen layers thaw
    free_scores: bool = False  # a row's difficulty is its last full-pass loss; the head scores only the rest
    free_score_max_age: int = 0  # free_scores: refreshes after which a stored loss is stale (0 = never)
    once_draws: bool = True  # a pool's full passes drawn systematically: no row twice before the others once
    once_floor: float = 0.1  # once_draws: each pool row's least chance of a full pass
    uniform_start: float = 0.0  # share of the run's steps drawn uniformly at the start
    uniform_end: float = 0.0  # share drawn uniformly at the end, without scoring
    record_passes: bool = True  # count each training row's full passes (telemetry full_passes)
    select_switch: bool = True  # select a pool only where its variance reduction pays for its scoring


class TrainContext(Protocol):
    """What MC-Learn needs of a run (PlainContext in a plain loop; the study's RunContext): `cfg`
    with MCLearnConfig's fields, `generator` seeding MC-Learn's draws, a `scheduler` stepped once
    per update, `step_costs` pricing the budget (None: the trainer measures one and says so),
    `clock` with `.progress` for a clock-driven run (else None), examples_* counting rows passed."""

    cfg: Any
    model: nn.Module
    train: EncodedSplit
    eval: EncodedSplit | None
    num_labels: int
    device: torch.device
    generator: torch.Generator
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    step_costs: Any
    clock: Any
    examples_forward: int
    examples_backward: int
    flipped_rows: np.ndarray | None

    def autocast(self): ...
    def per_example_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def optimizer_step(self, loss: torch.Tensor, step: int) -> None: ...
    def backward_and_step(self, loss: torch.Tensor) -> None: ...


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Return every parameter the optimizer updates."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def clip_groups(ctx) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Return the optimizer's parameters in the two sets gradient clipping acts on separately:
    (the model's, every other one: MC-Learn's cheap head)."""
    in_model = {id(p) for p in ctx.model.parameters()}
    params = optimizer_params(ctx.optimizer)
    return [p for p in params if id(p) in in_model], [p for p in params if id(p) not in in_model]


def clip_and_step(ctx) -> None:
    """Clip the accumulated gradients of `ctx` to cfg.grad_clip (unscaled first under a GradScaler),
    the model's on their own norm as in every method, the optimizer's others (MC-Learn's cheap head)
    on theirs, so a large head gradient cannot shrink the model's update; step the optimizer."""
    if ctx.scaler is not None:
        ctx.scaler.unscale_(ctx.optimizer)
    if ctx.cfg.grad_clip:
        for params in clip_groups(ctx):
            if params:
                torch.nn.utils.clip_grad_norm_(params, ctx.cfg.grad_clip, foreach=True)
    if ctx.scaler is not None:
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
    else:
        ctx.optimizer.step()


@dataclass
class PlainContext:
    """A TrainContext for a plain PyTorch loop: `model` a Hugging Face sequence classifier, `train`
    (and `eval`) an EncodedSplit, `optimizer` any torch optimizer holding the model's parameters and
    the trainer's extra_param_groups(), `scheduler` anything with .step() (None keeps the lr)."""

    cfg: Any
    model: nn.Module
    train: EncodedSplit
    device: torch.device
    eval: EncodedSplit | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    seed: int = 0
    step_costs: Any = None
    clock: Any = None
    scaler: Any = None  # a torch.amp.GradScaler for fp16
    flipped_rows: np.ndarray | None = None
    examples_forward: int = 0
    examples_backward: int = 0
    pending_backwards: int = 0

    def __post_init__(self):
        self.num_labels = self.model.config.num_labels
        self.generator = torch.Generator().manual_seed(self.seed)
        if self.scheduler is None:  # keep the optimizer's lr
            self.scheduler = types.SimpleNamespace(step=lambda: None)

    def autocast(self):
        """Return the autocast context of cfg.precision (a no-op for fp32)."""
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[self.cfg.precision]
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def per_example_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=self.cfg.label_smoothing)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the model's logits on `batch` (under autocast)."""
        with self.autocast():
            return self.model(**model_inputs(self.model, batch)).logits

    def backward_and_step(self, loss: torch.Tensor) -> None:
        """Backward `loss`, then clip, step the optimizer and the scheduler, clear the gradients."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        self._apply_gradients()

    def optimizer_step(self, loss: torch.Tensor, step: int) -> None:
        """Backward `loss` / grad_accum_steps; every grad_accum_steps-th step, apply the gradients."""
        accum = max(self.cfg.grad_accum_steps, 1)
        (self.scaler.scale(loss / accum) if self.scaler is not None else loss / accum).backward()
        self.pending_backwards += 1
        if (step + 1) % accum == 0:
            self._apply_gradients()

    def _apply_gradients(self) -> None:
        clip_and_step(self)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.pending_backwards = 0


def seeded_rng(generator: torch.Generator) -> np.random.Generator:
    """Return a numpy generator seeded by one draw from the torch `generator` (for host draws)."""
    return np.random.default_rng(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator)))


# =============================================================================
# 2. The pool stream: class-stratified candidate pools
# =============================================================================
class CandidateStream:
    """Class-stratified candidate pools drawn from a reshuffled pass over the training set: class c
    gives quota_c = pool_size a_c' rows (a_c' the class weights rescaled by class frequency), each
    in the pool with probability pool_prob = quota_c / n_c, which the weights divide by."""

    def __init__(self, labels: np.ndarray, rng: np.random.Generator):
        self.labels, self.rng = labels, rng
        self.classes = np.unique(labels)
        self.by_class = {c: np.flatnonzero(labels == c) for c in self.classes}
        self.freq = np.array([len(self.by_class[c]) for c in self.classes], dtype=np.float64)
        self.order = {c: rng.permutation(self.by_class[c]) for c in self.classes}
        self.cursor = {c: 0 for c in self.classes}
        self.drawn = 0  # candidates handed out so far

    def quotas(self, pool_size: int, class_weights: np.ndarray) -> np.ndarray:
        tilt = self.freq / self.freq.sum() * class_weights * len(class_weights)
        share = tilt / tilt.sum()
        return np.minimum(np.maximum(1, np.round(share * pool_size)).astype(int), self.freq.astype(int))

    def next_pool(self, pool_size: int, class_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (example indices, pool-membership probability) for a new pool."""
        rows, probs = [], []
        for cls, quota in zip(self.classes, self.quotas(pool_size, class_weights)):
            order, start = self.order[cls], self.cursor[cls]
            if start + quota > len(order):  # this class's pass is over: reshuffle it
                order = self.order[cls] = self.rng.permutation(self.by_class[cls])
                start = 0
            rows.append(order[start:start + quota])
            self.cursor[cls] = start + quota
            probs.append(np.full(quota, quota / len(order)))
        self.drawn += int(sum(len(r) for r in rows))
        return np.concatenate(rows), np.concatenate(probs)


# =============================================================================
# 3. The draw and its weights: draw probabilities, the fixed-size draw, Hansen-Hurwitz weights
# =============================================================================
# --- draw probabilities --------------------------------------------------------------------------
def soft_topk_keep_prob(scores: np.ndarray, k: int, tau: float) -> np.ndarray:
    """Return sigmoid((s - threshold_k) / (0.05 tau)): a soft membership of the top k scores."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    k = int(np.clip(k, 1, scores.size))
    threshold = np.partition(scores, scores.size - k)[scores.size - k]
    z = np.clip((scores - threshold) / (0.05 * tau), -60, 60)
    return 1.0 / (1.0 + np.exp(-z))


def candidate_probs(scores: np.ndarray, labels: np.ndarray, kappa: float, tau: float,
                    expected_kept: float) -> np.ndarray:
    """Return per-step candidate-path probabilities: soft top-k (k = kappa * class size) inside
    each class, scaled so they sum to about `expected_kept`, capped at 1."""
    probs = np.zeros(len(scores))
    for cls in np.unique(labels):
        rows = labels == cls
        probs[rows] = soft_topk_keep_prob(scores[rows], round(kappa * rows.sum()), tau)
    total = probs.sum()
    return np.clip(probs * (expected_kept / total), 0.0, 1.0) if total > 0 else probs


def candidate_draw_probs(difficulty: np.ndarray, labels: np.ndarray, kappa: float, tau: float) -> np.ndarray:
    """Return the candidate path's draw distribution over a pool (sums to 1): the soft top-k
    membership (k = kappa * class size) inside each class, normalised over the pool."""
    candidate = candidate_probs(difficulty, labels, kappa, tau, expected_kept=1.0)
    total = candidate.sum()
    return candidate / total if total > 0 else np.full(len(difficulty), 1.0 / len(difficulty))


def mix_replay(candidate_prob: np.ndarray, replay_share: float) -> np.ndarray:
    """Return p = (1 - replay_share) candidate_prob + replay_share / |P| (sum 1), the chance that
    one draw picks each pool member (a uniform replay of the pool with probability replay_share)."""
    return (1.0 - replay_share) * np.asarray(candidate_prob) + replay_share / len(candidate_prob)


def project_to_box_simplex(weights: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Return clip(s * weights, lo, hi) with the scale s found by bisection so the result sums
    to 1 (feasible when lo * C <= 1 <= hi * C); order of the weights is preserved."""
    weights = np.asarray(weights, dtype=np.float64)
    s_lo, s_hi = 0.0, 1.0
    while np.clip(s_hi * weights, lo, hi).sum() < 1.0 and s_hi < 1e12:
        s_hi *= 2.0
    for _ in range(100):
        mid = 0.5 * (s_lo + s_hi)
        if np.clip(mid * weights, lo, hi).sum() < 1.0:
            s_lo = mid
        else:
            s_hi = mid
    return np.clip(s_hi * weights, lo, hi)


def once_draw_probs(draw_prob: np.ndarray, draws: int, floor: float) -> np.ndarray:
    """Return the per-draw probabilities p' (sum 1) of `draws` full passes, no row drawn twice
    before every row once: draw_prob projected (project_to_box_simplex) so each row's expected
    count draws p'_i lies in [min(floor, draws / |P|), max(1, draws / |P|)]."""
    size = len(draw_prob)
    cap, least = max(1.0, draws / size), min(floor, draws / size)
    probs = project_to_box_simplex(np.asarray(draw_prob, dtype=np.float64), least / draws, cap / draws)
    return probs / probs.sum()


def full_pass_draw_probs(candidate_prob: np.ndarray, replay_share: float, draws: int,
                         once_floor: float | None) -> np.ndarray:
    """Return the probability p_i (sum 1) that one full-pass draw picks pool member i: mix_replay,
    then with `once_floor` (once_draws) once_draw_probs for `draws` full passes."""
    draw_prob = mix_replay(candidate_prob, replay_share)
    return draw_prob if once_floor is None else once_draw_probs(draw_prob, draws, once_floor)


# --- the fixed-size draw and its weights (static shapes: CUDA graphs) -----------------------------
@dataclass
class StepPlan:
    """The draws (with replacement) of the steps a pool serves; a step's first `full` pass fully."""

    kept_pos: np.ndarray  # [steps, kept] pool positions
    kept_weight: np.ndarray  # [steps, kept] weights of the cheap terms
    full_weight: np.ndarray  # [steps, full] weights of the full-pass term
    widths: list[int]  # the token width of each step's full pass
    bucket_widths: np.ndarray  # the pool's padded widths, and the chance P_b that a step has each
    bucket_prob: np.ndarray
    draw_prob: np.ndarray  # [pool] p_i (sum 1): the draws' probabilities, which the weights divide by


def draw_weights(draw_prob: np.ndarray, pool_prob: np.ndarray, population: int, draws: int) -> np.ndarray:
    """Return Hansen-Hurwitz weights 1 / (population * pool_prob * draws * draw_prob): with
    `draws` independent draws of probability draw_prob from a pool whose members entered it with
    probability pool_prob, sum_j w_j y_j is unbiased for the population mean of y."""
    return 1.0 / (population * np.asarray(pool_prob) * draws * np.asarray(draw_prob))


def systematic_counts(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return integer counts n_i, each floor or ceil of expected_i with E[n_i] = expected_i, summing
    to sum(expected) (a whole number): systematic sampling, the points u, u + 1, ... (u ~ U[0, 1))
    over the cumulative expected counts of the rows in a random order, n_i the points in row i's
    interval (a row with expected_i <= 1 gets one point with probability expected_i)."""
    expected = np.asarray(expected, dtype=np.float64)
    total = int(round(float(expected.sum())))
    order = rng.permutation(len(expected))
    edges = np.cumsum(expected[order]) * (total / expected.sum())
    edges[-1] = total  # no point lost to rounding
    below = np.searchsorted(rng.random() + np.arange(total), edges, side="left")  # points under each edge
    counts = np.empty(len(expected), dtype=np.int64)
    counts[order] = np.diff(below, prepend=0)
    return counts


def once_positions(draw_prob: np.ndarray, member_width: np.ndarray, bucket_widths: np.ndarray, steps: int,
                   kept: int, full: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return (step_bucket, positions [steps, kept]) under once_draws: the steps x full full passes
    are systematic_counts of steps full draw_prob (E[count_i] = steps full p_i: draw_weights stays
    unbiased over the pool's steps), sorted by padded width into steps of `full` (ties in random
    order), the steps shuffled, a step's bucket its widest row's; a step's other kept - full
    positions (cheap head only) are drawn with replacement from draw_prob."""
    counts = systematic_counts(steps * full * np.asarray(draw_prob), rng)
    chosen = rng.permutation(np.repeat(np.arange(len(draw_prob)), counts))
    chosen = chosen[np.argsort(member_width[chosen], kind="stable")].reshape(steps, full)[rng.permutation(steps)]
    step_bucket = np.searchsorted(bucket_widths, member_width[chosen].max(axis=1))
    extra = rng.choice(len(draw_prob), size=(steps, kept - full), replace=True, p=draw_prob)
    return step_bucket, np.concatenate([chosen, extra], axis=1)


def draw_step_plan(candidate_prob: np.ndarray, replay_share: float, pool_prob: np.ndarray, lengths: np.ndarray,
                   population: int, steps: int, kept: int, full: int, rng: np.random.Generator,
                   pad_multiple: int, cap: int, w_clip: float | None, once_floor: float | None = None) -> StepPlan:
    """Return the StepPlan of `steps` steps. A draw picks pool member i with probability p_i
    (full_pass_draw_probs); steps are length-bucketed like the baseline's batches: a step picks a
    padded width b with probability P_b = sum_{i in b} p_i, then its `kept` positions with
    replacement inside b, each with probability p_i / P_b, so a draw's probability is still p_i and
    draw_weights keeps the full-pass term unbiased:
    E[sum_j y_j / (N pi_j kept p_j)] = sum_b P_b sum_{i in b} (p_i / P_b) y_i / (N pi_i p_i).
    A step's first `full` draws get a full pass, weighted by the cheap-term weight over full_prob =
    full / kept. With `w_clip`, weights are capped at w_clip times a uniform draw's (1 / draws): a
    small bias for less variance. With `once_floor`, once_positions draws the full passes."""
    draw_prob = full_pass_draw_probs(candidate_prob, replay_share, steps * full, once_floor)
    member_width = np.minimum(cap, np.ceil(np.maximum(lengths, 1) / pad_multiple).astype(int) * pad_multiple)
    bucket_widths = np.unique(member_width)
    bucket_prob = np.array([draw_prob[member_width == w].sum() for w in bucket_widths])
    if once_floor is None:
        step_bucket = rng.choice(len(bucket_widths), size=steps, p=bucket_prob / bucket_prob.sum())
        positions = np.empty((steps, kept), dtype=np.int64)
        for j, b in enumerate(step_bucket):
            members = np.flatnonzero(member_width == bucket_widths[b])
            positions[j] = rng.choice(members, size=kept, replace=True, p=draw_prob[members] / bucket_prob[b])
    else:
        step_bucket, positions = once_positions(draw_prob, member_width, bucket_widths, steps, kept, full, rng)
    full_prob = full / kept
    kept_weight = draw_weights(draw_prob[positions], pool_prob[positions], population, kept)
    full_weight = kept_weight[:, :full] / full_prob
    if w_clip is not None:
        kept_weight, full_weight = np.minimum(kept_weight, w_clip / kept), np.minimum(full_weight, w_clip / full)
    widths = [int(bucket_widths[b]) for b in step_bucket]
    return StepPlan(kept_pos=positions, kept_weight=kept_weight, full_weight=full_weight, widths=widths,
                    bucket_widths=bucket_widths, bucket_prob=bucket_prob / bucket_prob.sum(), draw_prob=draw_prob)


# =============================================================================
# 4. Costs and the budget solver
# =============================================================================
class CostMeter:
    """EMAs of measured seconds per example for scoring, cheap head, full pass, and per-step
    fixed cost. On CUDA, regions are timed with events and read lazily (one sync per `flush`)."""

    def __init__(self, device: torch.device, decay: float):
        self.device, self.decay = device, decay
        self.ema: dict[str, float] = {}
        self.seconds: dict[str, float] = {}  # total measured seconds per kind (the time breakdown)
        self._pending: list[tuple[str, Any, Any, int]] = []

    @contextlib.contextmanager
    def timed(self, kind: str, count: int):
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((kind, start, end, count))
        else:
            t0 = time.perf_counter()
            yield
            seconds = time.perf_counter() - t0
            self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
            self.observe(kind, seconds / max(count, 1))

    def observe(self, kind: str, seconds_per_example: float) -> None:
        old = self.ema.get(kind)
        self.ema[kind] = seconds_per_example if old is None else \
            self.decay * old + (1 - self.decay) * seconds_per_example

    def flush(self) -> dict[str, float]:
        """Resolve pending CUDA timings; return the current EMAs."""
        if self._pending:
            torch.cuda.synchronize(self.device)
            for kind, start, end, count in self._pending:
                seconds = start.elapsed_time(end) / 1000.0
                self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
                self.observe(kind, seconds / max(count, 1))
            self._pending = []
        return dict(self.ema)


@dataclass
class StepCosts:
    """Measured seconds of one plain update (gather, forward, backward, clip, AdamW) per shape
    (rows, width), CUDA-graph replays when `graphed`, else eager, timed on a throwaway model copy
    outside any run's timed region: every method's budget is priced in the baseline's own update."""

    seconds: dict[tuple[int, int], float]
    graphed: bool
    capture_seconds: float  # mean seconds to capture one graph (0 when not graphed)
    measure_seconds: float  # wall seconds the calibration itself took
    warnings: list[str]

    def at(self, rows: int, width: int) -> float:
        """Return the seconds of one update of `rows` rows at the measured width nearest above
        `width`, linear between the measured row counts (in proportion beyond the largest)."""
        widths = sorted({w for _, w in self.seconds})
        w = next((w for w in widths if w >= width), widths[-1])
        sizes = sorted(r for r, ww in self.seconds if ww == w)
        values = [self.seconds[(r, w)] for r in sizes]
        if rows > sizes[-1]:
            return values[-1] * rows / sizes[-1]
        return float(np.interp(rows, sizes, values))

    def record(self) -> dict[str, Any]:
        """Return the table as JSON-ready rows for a run file."""
        return {"graphed": self.graphed, "capture_seconds": round(self.capture_seconds, 4),
                "measure_seconds": round(self.measure_seconds, 3), "warnings": self.warnings,
                "update_seconds": [{"rows": r, "width": w, "seconds": round(s, 6)}
                                   for (r, w), s in sorted(self.seconds.items())]}


def cost_warnings(seconds: dict[tuple[int, int], float], tolerance: float = 0.15) -> list[str]:
    """Return a message (empty list if none) when an update of more rows (same width) or a wider one
    (same rows) measured more than `tolerance` cheaper: a noisy or cold calibration, which prices a
    budget badly (the caller prints the message and stores it in the run file)."""
    bad = []
    for (rows, width), value in sorted(seconds.items()):
        for (rows2, width2), value2 in sorted(seconds.items()):
            bigger = (rows2 > rows and width2 == width) or (width2 > width and rows2 == rows)
            if bigger and value2 < value * (1 - tolerance):
                bad.append((value2 / value, rows, width, value, rows2, width2, value2))
    if not bad:
        return []
    _, rows, width, value, rows2, width2, value2 = min(bad)
    return [f"step costs not monotone in {len(bad)} comparison(s); worst: {rows2} rows x {width2} tokens took "
            f"{value2 * 1e3:.2f} ms, less than {rows} rows x {width} tokens ({value * 1e3:.2f} ms)"]


def time_update_costs(ctx: TrainContext, rows: Sequence[int], repeats: int = 3) -> StepCosts:
    """Return StepCosts of eager plain updates (gather, forward, mean loss, backward, AdamW at lr 0)
    of each row count in `rows` at each padded width of ctx.train, timed on a copy of ctx.model
    (the median of `repeats` after a warm-up each): the price table of a loop that has none."""
    cfg, data, device = ctx.cfg, ctx.train, ctx.device
    cap = data.input_ids.shape[1]
    widths = sorted({padded_length(w, cfg.pad_multiple, cap) for w in range(1, cap + 1)})
    start = time.perf_counter()
    model = copy.deepcopy(ctx.model).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # measure the work, move no weight
    seconds: dict[tuple[int, int], float] = {}
    for width in widths:
        for count in sorted({min(int(r), len(data)) for r in rows}):
            times = []
            for k in range(repeats + 1):
                sync_device(device)
                t0 = time.perf_counter()
                batch = make_batch(data, torch.arange(count), width)
                with ctx.autocast():
                    logits = model(**model_inputs(model, batch)).logits
                F.cross_entropy(logits.float(), batch["labels"]).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                sync_device(device)
                times.append(time.perf_counter() - t0)
            seconds[(count, width)] = float(np.median(times[1:]))
    del model, optimizer
    return StepCosts(seconds=seconds, graphed=False, capture_seconds=0.0,
                     measure_seconds=time.perf_counter() - start, warnings=cost_warnings(seconds))


def solve_budget(costs: StepCosts, baseline_widths: Sequence[int], batch_size: int, full_rows: int,
                 full_widths: Sequence[int], time_budget: float, refresh_every: int, refresh_seconds: float,
                 spent_seconds: float, graph_count: float,
                 full_width_prob: Sequence[float] | None = None) -> dict[str, Any]:
    """Return MC-Learn's step count and the numbers it comes from (stored in the run file): the
    baseline's time T_base = sum over its batches of the measured cost(batch_size, width); MC-Learn
    may spend T = time_budget T_base, less `spent_seconds` (setup) and `graph_count` captures
    (expected_captures); a step costs cost(full_rows, width) averaged over `full_widths` (weighted
    by `full_width_prob`: a pool's width mix), plus a refresh (`refresh_seconds`, the mean over the
    run's pools) every `refresh_every` steps:
        steps = (T - spent - captures) / (step + refresh / refresh_every), at least 1."""
    baseline_seconds = float(sum(costs.at(batch_size, w) for w in baseline_widths))
    budget_seconds = time_budget * baseline_seconds
    step_seconds = float(np.average([costs.at(full_rows, w) for w in full_widths], weights=full_width_prob))
    capture_seconds = graph_count * costs.capture_seconds
    per_step = step_seconds + refresh_seconds / max(refresh_every, 1)
    available = budget_seconds - spent_seconds - capture_seconds
    steps = max(1, int(available / per_step)) if per_step > 0 else 1
    warnings = list(costs.warnings)
    if available <= per_step:
        warnings.append(f"budget too small: {budget_seconds:.3f} s of budget, {spent_seconds:.3f} s spent in setup "
                        f"and {capture_seconds:.3f} s of graph captures leave room for one step at most; "
                        f"raise time_budget=")
    return {"time_budget": time_budget, "baseline_seconds_estimate": round(baseline_seconds, 4),
            "baseline_steps": len(baseline_widths), "budget_seconds": round(budget_seconds, 4),
            "spent_in_setup_seconds": round(spent_seconds, 4), "capture_count_expected": round(graph_count, 3),
            "capture_seconds_estimate": round(capture_seconds, 4),
            "step_seconds_estimate": round(step_seconds, 6), "refresh_seconds": round(refresh_seconds, 4),
            "full_rows": full_rows, "steps": steps,
            "planned_seconds": round(spent_seconds + capture_seconds + steps * per_step, 4),
            "graphed_costs": costs.graphed, "warnings": warnings}


def expected_captures(width_prob: Sequence[float], steps: float, warmup_steps: int,
                      uses_so_far: Sequence[int] | None = None) -> float:
    """Return how many CUDA graphs a GraphedUpdate without a plan (MC-Learn's) is expected to capture
    in `steps` more steps of width b with probability width_prob[b] each (a pool's width mix, less
    the shapes already captured): it captures a shape at its (warmup_steps + 1)-th use, so with u_b
    uses so far (`uses_so_far`) and U_b ~ Binomial(steps, P_b) to come,
        E[captures] = sum_b P(U_b > warmup_steps - u_b)."""
    n = max(int(steps), 0)
    total = 0.0
    for b, p in enumerate(width_prob):
        need = warmup_steps - (uses_so_far[b] if uses_so_far is not None else 0)  # P(U > need)
        if need < 0:
            total += 1.0
        elif p > 0 and n > need:
            p = min(float(p), 1.0)
            below = sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(need + 1))
            total += max(0.0, 1.0 - below)
    return total


def steps_within(seconds: float, step_seconds: float, refresh_seconds: float, refresh_every: int, most: int) -> int:
    """Return the most steps n (0 <= n <= `most`) whose cost n step_seconds + ceil(n /
    refresh_every) refresh_seconds fits in `seconds` (a refresh before each refresh_every steps)."""
    def cost(n: int) -> float:
        return n * step_seconds + math.ceil(n / max(refresh_every, 1)) * refresh_seconds

    per_step = step_seconds + refresh_seconds / max(refresh_every, 1)
    n = min(most, max(0, int(seconds / per_step))) if per_step > 0 else most
    while n > 0 and cost(n) > seconds:
        n -= 1
    while n < most and cost(n + 1) <= seconds:
        n += 1
    return n


# =============================================================================
# 5. The policy: the policy learner and the switch
# =============================================================================
def effective_sample_size(weights: np.ndarray) -> float:
    """Return ESS = (sum w)^2 / sum w^2 (Kish); equals len(w) for equal weights."""
    weights = np.asarray(weights, dtype=np.float64)
    denom = float((weights ** 2).sum())
    return float(weights.sum() ** 2 / denom) if denom > 0 else 0.0


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Return the Spearman rank correlation of two 1-D arrays (nan when fewer than 3 values)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


class PolicyLearner:
    """Adapts, each within its bounds, the class weights a_c (move_class_weights), the temperature
    tau (x1.25 when the scorer's rank agreement with the full loss is under the guard, else x0.9)
    and the replay share (x1.25 when ESS / |K| is under its target, else x0.95)."""

    switches = (0.4, 0.8)  # training progress at which kappa takes the schedule's next value

    def __init__(self, cfg: MCLearnConfig, num_classes: int):
        self.cfg = cfg
        self.class_weights = np.ones(num_classes) / num_classes
        self.tau = cfg.tau_init
        self.replay_share = cfg.replay_share_init

    def kappa(self, progress: float) -> float:
        """Return the kept fraction for training progress in [0, 1] (switches at 0.4 and 0.8)."""
        schedule = self.cfg.kappa_schedule
        index = sum(progress >= switch for switch in self.switches)
        return float(schedule[min(index, len(schedule) - 1)])

    def move_class_weights(self, shares: np.ndarray, target_shares: np.ndarray) -> np.ndarray:
        """Return the class weights moved toward `target_shares` of the draws (a class's share is
        proportional to its weight): each times (target / current share) ** class_weight_lr (a
        damped step in log space), projected into class_weight_bounds / C."""
        ratio = np.asarray(target_shares) / np.maximum(np.asarray(shares), 1e-12)
        weights = self.class_weights * np.power(np.maximum(ratio, 1e-12), self.cfg.class_weight_lr)
        lo, hi = self.cfg.class_weight_bounds
        self.class_weights = project_to_box_simplex(weights, lo / len(weights), hi / len(weights))
        return self.class_weights

    def update_tau(self, rank_corr: float) -> float:
        """Return the new temperature after seeing the scorer's rank agreement."""
        lo, hi = self.cfg.tau_bounds
        widen = not math.isfinite(rank_corr) or rank_corr < self.cfg.rank_guard
        self.tau = float(np.clip(self.tau * (1.25 if widen else 0.9), lo, hi))
        return self.tau

    def update_replay_share(self, ess_fraction: float) -> float:
        """Return the new replay share after seeing ESS / |K|."""
        lo, hi = self.cfg.replay_share_bounds
        factor = 1.25 if ess_fraction < self.cfg.ess_target else 0.95
        self.replay_share = float(np.clip(self.replay_share * factor, lo, hi))
        return self.replay_share


def variance_optimal_shares(scaled_rms: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Return the class shares of a step's draws that minimise the variance of the full-pass
    (Hansen-Hurwitz) term, from the current shares s_c and each class's RMS of w y over its draws
    (y the full loss, w its weight); classes without draws keep their share. Derivation: a draw
    picks member i with probability r_i = s_c g_i (g the draw distribution inside class c); the
    term's variance (1/n)(sum_i y_i^2 / r_i - Y^2) = (1/n)(sum_c A_c / s_c - Y^2), A_c =
    sum_{i in c} y_i^2 / g_i, is least under sum_c s_c = 1 (a Lagrange multiplier) at s_c* =
    sqrt(A_c) / sum_c' sqrt(A_c'); a class-c draw has w_i = 1 / (N n r_i), so y_i / g_i =
    N n s_c w_i y_i and sqrt(A_c) = N n s_c RMS_c(w y): s_c* is proportional to s_c RMS_c(w y)."""
    shares = np.asarray(shares, dtype=np.float64)
    scaled = np.where(np.isfinite(scaled_rms), scaled_rms, np.nan)
    fill = np.nanmean(scaled) if np.isfinite(scaled).any() else 1.0
    target = shares * np.where(np.isfinite(scaled), scaled, fill)
    return target / target.sum() if target.sum() > 0 else shares


# --- the switch: select only where selection pays for its scoring ----------------------------------
def variance_reduction(second_moment: np.ndarray, draw_share: np.ndarray, sample_share: np.ndarray,
                       mean_square: float = 0.0) -> float:
    """Return tau = V_uniform / V_draw, how many times smaller the variance of one draw's
    Hansen-Hurwitz estimate of the mean gradient is under the draw's probabilities than uniform (a
    step of such draws is worth about tau uniform steps), from a sample of rows k: m_k =
    `second_moment` |g_k|^2 (or a proxy's square), Q_k = `draw_share` N P_k (P_k one draw's chance
    of row k; 1 uniform), a_k = `sample_share`, row k's chance of being in the sample over a
    uniform sample's (a pool: N pi_k / |pool|; the draws themselves: Q_k). Per draw,
        V_uniform = (1/N) sum_i m_i - |mu|^2,      V_draw = (1/N) sum_i m_i / Q_i - |mu|^2,
    the sums estimated by Horvitz-Thompson (mean_k m_k / a_k, mean_k m_k / (a_k Q_k)). `mean_square`
    |mu|^2 is 0 where unknown, as in Katharopoulos and Fleuret (ICML 2018, "Not All Samples Are
    Created Equal"): tau is then the ratio of second moments, 1 / (1 - |g - u|^2 / |g|^2) for P
    proportional to scores s (m = s^2, g = s / sum s, u uniform). NaN when a variance is not
    positive (no signal)."""
    m, q, a = (np.asarray(x, dtype=np.float64) for x in (second_moment, draw_share, sample_share))
    uniform = float(np.mean(m / a)) - mean_square
    drawn = float(np.mean(m / (a * q))) - mean_square
    return uniform / drawn if uniform > 0 and drawn > 0 else float("nan")


def select_pays(tau: float, cost: float) -> bool:
    """Return True when drawing a pool by its scores pays for scoring it: tau >= 1 + cost, tau the
    draw's variance reduction (variance_reduction), cost = S / (k u) the pool's scoring seconds over
    those of the k updates it serves. Where variance limits progress, an update with tau times less
    variance is worth tau uniform ones: selection makes k tau updates' progress in k u + S seconds
    against k in k u, more per second exactly when tau >= 1 + S / (k u). Katharopoulos and
    Fleuret's threshold (ICML 2018: tau_th = (B + 3b) / 3b, B rows scored by forwards for b trained,
    a backward costing two forwards) is this rule with cost = B t_forward / 3 b t_forward; here the
    cost is measured. A NaN tau (no signal) never pays."""
    return bool(tau >= 1.0 + cost)


# After n selected pools in a row that did not pay, the switch draws SWITCH_BACKOFF ** n uniform
# pools before it may select again: a failing scorer costs its scoring and a worse pool each try.
SWITCH_BACKOFF = 2


@dataclass
class SelectSwitch:
    """The choice between MC-Learn's two kinds of pool (select_switch): "select" (scored, drawn by
    its scores) and "uniform" (stratified by class frequency, drawn uniformly, unscored: it trains
    as the short schedule does). At each refresh decide() sets the next pool's kind from tau, the
    variance reduction judged on the last pool's full passes (MCLearn.judge_pool): after a selected
    pool, what its draws achieved (select again if it paid, else back off); after a uniform pool,
    what a draw by those losses would promise (select if it pays and no wait is left). The
    decisions, with their estimates, are kept for the run file."""

    mode: str = "select"  # the kind of the next pool
    failures: int = 0  # selected pools in a row that did not pay
    wait: int = 0  # uniform pools still to draw before selection may be tried again
    decisions: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def decide(self, selected: bool, tau: float, cost: float, **record: Any) -> str:
        """Return (and keep as `mode`) the next pool's kind after a `selected` pool (or not) whose
        steps gave the estimate `tau` against the scoring `cost`; book it with `record`'s fields."""
        pays = select_pays(tau, cost)
        if selected:
            self.failures = 0 if pays else self.failures + 1
            self.wait = 0 if pays else SWITCH_BACKOFF ** self.failures - 1
            self.mode, source = ("select" if pays else "uniform"), "achieved"
        elif self.wait > 0:
            self.wait -= 1
            self.mode, source = "uniform", "waiting"
        else:
            self.mode, source = ("select" if pays else "uniform"), "promised"
        self.decisions.append({**record, "after": "select" if selected else "uniform", "source": source,
                               "tau": round(tau, 4) if math.isfinite(tau) else None, "cost": round(cost, 4),
                               "mode": self.mode})
        return self.mode


# =============================================================================
# 6. The trainer: `mclearn`
# =============================================================================
class MCLearn:
    """MC-Learn as the module docstring says (corrected, preset "mclearn") on a TrainContext `ctx`,
    its phases marked below. Every step has the same shapes, so on a GPU the whole update is one
    CUDA-graph replay and host work happens only at a pool refresh. The study's MCLearnMethod adds
    CUDA graphs, its step costs and the end-of-run variance check through the hooks below."""

    name = "mclearn"

    def __init__(self, ctx: TrainContext):
        self.ctx = ctx
        cfg, model = ctx.cfg, ctx.model
        self.parts = encoder_parts(model)
        hidden = getattr(model.config, "dim", None) or model.config.hidden_size
        self.num_classes = ctx.num_labels
        self.rng = seeded_rng(ctx.generator)
        self.labels_host = ctx.train.labels.cpu().numpy()
        self.stream = CandidateStream(self.labels_host, self.rng)
        self.policy = PolicyLearner(cfg, self.num_classes)
        self.costs = CostMeter(ctx.device, cfg.cost_ema)
        self.cheap_head = nn.Linear(hidden, self.num_classes).to(ctx.device)
        self.full_rows = min(cfg.full_rows or cfg.batch_size, len(ctx.train))
        self.kept_rows = max(self.full_rows, round(self.full_rows / cfg.full_prob))
        largest_pool = self.pool_size(min(cfg.kappa_schedule)) + self.num_classes
        # Static device buffers: the pool's features and labels, refreshed in place.
        self.pool_feats = torch.zeros(largest_pool, hidden, device=ctx.device)
        self.pool_labels = torch.zeros(largest_pool, dtype=torch.long, device=ctx.device)
        self.pool: dict[str, Any] | None = None
        self.plan: StepPlan | None = None
        self.plan_device: dict[str, torch.Tensor] = {}
        self.plan_start = 0
        # The budget: loop_steps, the steps setup priced (what the training loop runs and the lr
        # schedule spans); total_steps, the steps the latest re-plan leaves the run (replan).
        self.loop_steps = self.total_steps = 1
        self.budget: dict[str, Any] = {}
        self.setup_charge = 0.0  # seconds setup spent (the graph captures are charged as they happen)
        self.priced_update_seconds = 0.0  # the steps run so far whose shape replays, each at its priced update
        self.loop_refresh_seconds = self.loop_refresh_size = 0.0  # the refreshes after setup: seconds, pool_size
        self.setup_refresh_per_member = 0.0  # measured seconds per pool member of the refresh setup priced
        self.update_prices: dict[int, float] = {}  # priced seconds of an update per width
        self.planned_uses: dict[tuple, int] = {}  # planned steps per update shape (setup: capture policy)
        self.position, self.stride = 0.0, 1.0  # training progress in steps of the first plan (lr schedule, kappa)
        self.replans: list[dict[str, Any]] = []
        self.steps_run = 0
        self.selected_steps = 0  # steps drawn from a selected pool (not a uniform one)
        self.step_stats: list[torch.Tensor] = []  # per step [3, full]: cheap loss, full loss, weight on S
        self.records: list[dict[str, Any]] = []
        self.refreshes = 0
        self.ess_fraction = 1.0
        self.last_rank = float("nan")
        self._init_variants(largest_pool)

    def extra_param_groups(self) -> list[dict]:
        return [{"params": list(self.cheap_head.parameters()), "lr": self.ctx.cfg.head_lr, "weight_decay": 0.0}]

    def pool_size(self, kappa: float) -> int:
        """Pool members scored per refresh: the full-pass draws of the steps a pool serves, over
        kappa (the kept fraction of the soft top-k), at least one step's draws."""
        cfg = self.ctx.cfg
        return max(self.kept_rows, self.num_classes, round(self.full_rows * cfg.refresh_every / kappa))

    def mean_pool_size(self, start: float) -> float:
        """Return the mean pool_size over training progress [start, 1]: pools grow as kappa falls."""
        edges = sorted({start, 1.0, *(s for s in PolicyLearner.switches if start < s < 1.0)})
        spans = np.diff(edges)
        if spans.sum() <= 0:
            return float(self.pool_size(self.policy.kappa(start)))
        return float(np.dot([self.pool_size(self.policy.kappa(a)) for a in edges[:-1]], spans) / spans.sum())

    # -- phase 1: plan (inside the timed region) -----------------------------------------------
    def setup(self) -> None:
        """Score the first pool, then price the run (solve_budget): a step at the first pool's width
        mix, a refresh at its measured seconds per pool member times the run's mean pool size (pools
        grow as kappa falls). Each later refresh re-plans the steps left (replan)."""
        cfg, ctx = self.ctx.cfg, self.ctx
        sync_device(ctx.device)
        start = time.perf_counter()
        self.refresh(0.0)  # the first refresh of a process pays one-off costs: price the second
        refresh_seconds = self.timed_refresh(0.0)
        self.setup_refresh_per_member = refresh_seconds / self.pool_size(self.policy.kappa(0.0))
        costs = self.ctx_step_costs()
        baseline_widths = self.baseline_widths()
        mean_refresh = self.setup_refresh_per_member * self.mean_pool_size(0.0)
        spent = time.perf_counter() - start

        def solve(graphs: float) -> dict[str, Any]:
            return solve_budget(costs, baseline_widths, cfg.batch_size, self.full_rows,
                                self.plan.bucket_widths.tolist(), self.time_budget(), cfg.refresh_every,
                                mean_refresh, spent_seconds=spent, graph_count=graphs,
                                full_width_prob=self.plan.bucket_prob.tolist())

        self.budget = solve(self.capture_reserve(solve))
        for message in self.budget["warnings"]:
            if message not in costs.warnings:  # those were printed when the costs were measured
                say(f"warning (mclearn budget): {message}")
        self.budget["measured_refresh_seconds"] = round(refresh_seconds, 4)  # the first pool's
        self.budget["step_costs"] = costs.record()
        self.setup_charge = spent
        self.loop_steps = self.total_steps = self.budget["steps"]
        self.planned_uses = {(self.full_rows, int(w)): int(round(p * self.loop_steps))
                             for w, p in zip(self.plan.bucket_widths, self.plan.bucket_prob)}

    def timed_refresh(self, progress: float) -> float:
        """Refresh (self.refresh) between two device syncs; return its seconds."""
        sync_device(self.ctx.device)
        start = time.perf_counter()
        self.refresh(progress)
        sync_device(self.ctx.device)
        return time.perf_counter() - start

    def update_price(self, width: int) -> float:
        """Return the priced seconds of one full pass at `width` (the step-cost table's)."""
        if width not in self.update_prices:
            self.update_prices[width] = self.ctx.step_costs.at(self.full_rows, width)
        return self.update_prices[width]

    def charged_seconds(self) -> float:
        """Return the seconds charged so far (one device sync): setup, then the steps (their eager
        warm-ups and graph captures included) and the refreshes since setup, as measured."""
        self.costs.flush()
        steps = self.costs.seconds.get("update", 0.0) + self.costs.seconds.get("update_warmup", 0.0)
        return self.setup_charge + steps + self.loop_refresh_seconds

    # -- hooks: an eager update here; the study's MCLearnMethod replays it as CUDA graphs -------------
    def time_budget(self) -> float:
        """Return the share of the baseline's train seconds the whole run may spend (cfg.time_budget)."""
        return self.ctx.cfg.time_budget

    def baseline_widths(self) -> list[int]:
        """Return the padded width of each batch of the baseline the budget is a share of: `epochs`
        passes over the training rows in batches of batch_size, in a shuffled order (seed 0)."""
        cfg, data = self.ctx.cfg, self.ctx.train
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
        return [batch_width(data, idx, cfg.pad_multiple) for idx in order.split(cfg.batch_size)] * cfg.epochs

    def capture_reserve(self, solve: Callable[[float], dict[str, Any]]) -> float:
        """Return the graph captures the budget holds back (solve(captures) prices a run): none."""
        return 0.0

    def captures_expected(self, steps: float) -> float:
        """Return the graph captures expected in the next `steps` steps: none."""
        return 0.0

    def replayed(self, key: tuple) -> bool:
        """Return True when an update of shape `key` costs its price (a graph's warm-ups do not)."""
        return True

    def run_update(self, key: tuple, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return the detached logs of one update of shape `key` on `inputs` (gradients cleared)."""
        self.ctx.optimizer.zero_grad(set_to_none=True)
        return self._update(inputs, key)

    def replan(self, i: int, progress: float) -> None:
        """At the refresh that starts step `i`, set total_steps to the most steps the budget has
        room for after charged_seconds() (steps_within), so the run stays within it when its pools
        or steps cost other than planned: a step at the last pool's priced width mix times
        measured / priced seconds of the replayed steps so far (MC-Learn's update also runs the
        cheap head and the distillation), a refresh at refresh_seconds_per_member() times the mean
        pool size left, the captures still expected held back (captures_expected). Never more steps
        than the lr schedule has left; after a change, schedule and kappa move `stride` a step."""
        charged = self.charged_seconds()
        plan = self.plan
        measured = self.costs.seconds.get("update", 0.0)
        ratio = measured / self.priced_update_seconds if self.priced_update_seconds > 0 else 1.0
        step_seconds = ratio * float(np.dot([self.update_price(int(w)) for w in plan.bucket_widths], plan.bucket_prob))
        refresh_seconds = self.refresh_seconds_per_member() * self.mean_pool_size(progress)
        most = int(self.loop_steps - self.position + 1e-9)
        reserve = self.captures_expected(most) * self.ctx.step_costs.capture_seconds
        total = i + steps_within(self.budget["budget_seconds"] - charged - reserve, step_seconds, refresh_seconds,
                                 self.ctx.cfg.refresh_every, most)
        if total == self.total_steps:
            return
        if total < self.loop_steps and not any(r["steps"] < self.loop_steps for r in self.replans):
            say(f"warning (mclearn budget): at step {i} the run had cost {charged:.3f} s of its "
                f"{self.budget['budget_seconds']:.3f} s budget: re-planned to {total} steps of the "
                f"{self.loop_steps} planned (telemetry: budget.replans)")
        self.replans.append({"step": i, "steps": total, "charged_seconds": round(charged, 4),
                             "capture_reserve_seconds": round(reserve, 4),
                             "update_cost_ratio": round(ratio, 4)})
        self.total_steps = total
        self.stride = (self.loop_steps - self.position) / (total - i) if total > i else 1.0

    def schedule_progress(self) -> float:
        """Return the progress the next update's lr follows: the optimizer updates made at training
        progress `position` (steps of the first plan, moved `stride` per step after a re-plan) over
        those the schedule spans, so it ends with the run's last update."""
        accum = max(self.ctx.cfg.grad_accum_steps, 1)
        return int(self.position / accum + 1e-9) / math.ceil(self.loop_steps / accum)

    def refresh_seconds_per_member(self) -> float:
        """Return a refresh's measured seconds per member: those since setup, else setup's."""
        if self.loop_refresh_size:
            return self.loop_refresh_seconds / self.loop_refresh_size
        return self.setup_refresh_per_member

    def ctx_step_costs(self) -> StepCosts:
        """Return the step-cost table this run is priced with: ctx.step_costs, or, when it is None,
        one measured here (time_update_costs, inside the timed region), said in one line."""
        ctx = self.ctx
        if ctx.step_costs is None:
            say("mclearn: no step_costs in the context: timing eager updates on a copy of the model to "
                "price the budget (give ctx.step_costs, a StepCosts, to skip this)")
            ctx.step_costs = time_update_costs(ctx, sorted({self.full_rows, ctx.cfg.batch_size}))
        return ctx.step_costs

    def num_steps(self) -> int:
        return self.loop_steps

    # -- phase 2: refresh and score (host work, once per pool) -----------------------------------
    @torch.no_grad()
    def early_features(self, data: EncodedSplit, rows: np.ndarray) -> torch.Tensor:
        """Return mean-pooled features [len(rows), H] after `score_layer` encoder blocks (no
        dropout, no gradient), read from the first score_max_length tokens."""
        cfg = self.ctx.cfg
        width = batch_width(data, rows, cfg.pad_multiple, min(cfg.score_max_length, data.input_ids.shape[1]))
        feats = []
        was_training = self.ctx.model.training
        self.ctx.model.eval()
        try:
            with truncated_encoder(self.ctx.model, cfg.score_layer) as encoder, self.ctx.autocast():
                for idx in torch.as_tensor(rows).split(max(cfg.eval_batch_size, 8192)):  # few, large chunks
                    batch = make_batch(data, idx, width)
                    hidden = encoder(**model_inputs(encoder, batch)).last_hidden_state
                    feats.append(mean_pool(hidden.float(), batch["attention_mask"]))
        finally:
            self.ctx.model.train(was_training)
        return torch.cat(feats)

    def refresh(self, progress: float) -> None:
        """Draw a class-stratified pool, score it with the cheap head (difficulty = 1 - p(true
        class)), write its features into the static buffers and draw the steps it serves (draw)."""
        if self.variant_refresh:
            return self.refresh_variant(progress)
        cfg, ctx = self.ctx.cfg, self.ctx
        kappa = self.policy.kappa(progress)
        rows, pool_prob = self.stream.next_pool(self.pool_size(kappa), self.policy.class_weights)
        with self.costs.timed("score", len(rows)):
            feats = self.early_features(ctx.train, rows)
            labels = ctx.train.labels[to_device(rows, ctx.device)]
            with torch.no_grad():
                probs = torch.softmax(self.cheap_head(feats).float(), -1)
                difficulty_t = 1.0 - probs.gather(1, labels[:, None]).squeeze(1)
            self.pool_feats[: len(rows)].copy_(feats)
            self.pool_labels[: len(rows)].copy_(labels)
        difficulty = difficulty_t.cpu().numpy()  # the refresh's one host read
        if not np.isfinite(difficulty).all():
            raise TrainingError("mclearn: the cheap scorer's difficulty became non-finite (the model diverged). "
                                "Lower lr= or head_lr=.")
        labels_host = self.labels_host[rows]
        candidate = candidate_draw_probs(difficulty, labels_host, kappa, self.policy.tau)
        draw_prob = mix_replay(candidate, self.policy.replay_share)
        self.pool = {"rows": rows, "pool_prob": pool_prob, "labels_host": labels_host, "candidate_prob": candidate,
                     "replay_share": self.policy.replay_share, "difficulty": difficulty,
                     "class_share": np.bincount(labels_host, weights=draw_prob, minlength=self.num_classes)}
        self.draw()
        self.refreshes += 1

    # -- phase 3: draw the steps a pool serves ------------------------------------------------------
    def draw(self) -> None:
        """Draw the next refresh_every steps from the pool; copy them to the device at once."""
        cfg, ctx, pool = self.ctx.cfg, self.ctx, self.pool
        steps = cfg.refresh_every
        self.plan = draw_step_plan(pool["candidate_prob"], pool["replay_share"], pool["pool_prob"],
                                   ctx.train.host_lengths.numpy()[pool["rows"]],
                                   len(ctx.train), steps, self.kept_rows, self.full_rows, self.rng,
                                   cfg.pad_multiple, ctx.train.input_ids.shape[1], cfg.w_clip or None,
                                   once_floor=cfg.once_floor if cfg.once_draws else None)
        kept = self.plan.kept_pos
        self.plan_device = {
            "full_rows": to_device(pool["rows"][kept[:, : self.full_rows]], ctx.device),
            "full_pos": to_device(kept[:, : self.full_rows], ctx.device),
            "full_weight": to_device(self.plan.full_weight, ctx.device, torch.float32),
            "kept_pos": to_device(kept, ctx.device),
            "kept_weight": to_device(self.plan.kept_weight, ctx.device, torch.float32)}
        self.ess_fraction = float(np.mean([effective_sample_size(w) / len(w) for w in self.plan.full_weight]))

    # -- phase 4: full pass and update (one CUDA graph on a GPU) --------------------------------
    def objective(self, inputs: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
        """Return the step's objective and its parts, from the static inputs (full_rows, full_pos,
        full_weight, kept_pos, kept_weight) and the pool buffers:
          full    = sum_S w_j l_full(x_j)   unbiased for the mean loss (draw_weights; the only term
                                            with a gradient into the model)
          head    = sum_K w_j l_head(x_j) / sum_K w_j   the cheap head's loss on the pool features
          distill = gamma T^2 sum_S (w_j / sum_S w) KL(softmax(full / T) || softmax(head / T))
          cv      = sum_K w_j l_head + sum_S w'_j (l_full - l_head)   logged control variate"""
        ctx, cfg = self.ctx, self.ctx.cfg
        batch = make_batch(ctx.train, inputs["full_rows"], width)
        full_logits = ctx.forward(batch)
        loss_full = ctx.per_example_loss(full_logits, batch["labels"])
        full_term = (inputs["full_weight"] * loss_full).sum()
        kept_logits = self.cheap_head(self.pool_feats[inputs["kept_pos"]])
        loss_cheap = ctx.per_example_loss(kept_logits, self.pool_labels[inputs["kept_pos"]])
        head_term = (inputs["kept_weight"] * loss_cheap).sum() / inputs["kept_weight"].sum()
        cheap_full = kept_logits[: self.full_rows]
        temp = cfg.distill_temperature
        teacher = torch.softmax(full_logits.detach().float() / temp, -1)
        student = torch.log_softmax(cheap_full.float() / temp, -1)
        share = inputs["full_weight"] / inputs["full_weight"].sum()
        if self.pool_has_feats is not None:  # variants: a row the head did not score has no features to distil on
            share = share * self.pool_has_feats[inputs["full_pos"]]
        kl = (teacher * (teacher.clamp_min(1e-8).log() - student)).sum(-1)
        distill = cfg.distill_gamma * temp ** 2 * (share * kl).sum()
        loss_cheap_full = loss_cheap[: self.full_rows].detach()
        cv = (inputs["kept_weight"] * loss_cheap.detach()).sum() + \
            (inputs["full_weight"] * (loss_full.detach() - loss_cheap_full)).sum()
        return {"objective": full_term + head_term + distill, "full": full_term, "head": head_term,
                "distill": distill, "cv": cv, "loss_full": loss_full, "loss_cheap_full": loss_cheap_full}

    def _update(self, inputs: dict[str, torch.Tensor], key: tuple) -> dict[str, torch.Tensor]:
        """One update: objective, backward, clip, AdamW; return detached logs (no host sync)."""
        parts = self.objective(inputs, key[1])
        self.ctx.backward_and_step(parts["objective"])
        return self._logs(parts, inputs)

    def _accumulated_update(self, inputs: dict[str, torch.Tensor], width: int, i: int) -> dict[str, torch.Tensor]:
        """Return the detached logs of step `i` with grad_accum_steps > 1 (never graphed): the
        optimizer and the lr schedule step every grad_accum_steps steps (ctx.optimizer_step)."""
        parts = self.objective(inputs, width)
        self.ctx.optimizer_step(parts["objective"], i)
        return self._logs(parts, inputs)

    def _logs(self, parts: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return an update's detached logs and its statistics for the policy (no host sync)."""
        return {"loss": parts["full"].detach(), "loss_cv": parts["cv"], "loss_head": parts["head"].detach(),
                "distill": parts["distill"].detach(),
                "stats": torch.stack([parts["loss_cheap_full"].float(), parts["loss_full"].detach().float(),
                                      inputs["full_weight"]])}

    def refresh_due(self, i: int) -> bool:
        """Return True when step `i` starts with a pool refresh (the steps' one host read)."""
        return i - self.plan_start >= self.ctx.cfg.refresh_every

    def extra_step_seconds(self, i: int) -> float:
        """Return the expected seconds of the refresh step `i` starts with, if any (RunClock weighs
        a refresh as several steps): seconds per pool member times the pool size at this point."""
        if not self.refresh_due(i):
            return 0.0
        clock = self.ctx.clock
        progress = clock.progress if clock else self.position / self.loop_steps
        return self.refresh_seconds_per_member() * self.pool_size(self.policy.kappa(progress))

    def step(self, i: int) -> dict[str, Any]:
        ctx = self.ctx
        clock = ctx.clock  # clock-driven: steps until the clock stops the run, phases by its elapsed share
        if self.budget and clock is None and i >= self.total_steps:  # a re-plan ended the run sooner
            return {}
        progress = clock.progress if clock is not None else self.position / self.loop_steps
        if self.refresh_due(i):
            self._update_policy()
            self.plan_start = i
            if self.budget and clock is None:
                self.replan(i, progress)
                if i >= self.total_steps:
                    return {}
            self.loop_refresh_seconds += self.timed_refresh(progress)
            self.loop_refresh_size += self.pool_size(self.policy.kappa(progress))
        j = i - self.plan_start
        inputs = {name: value[j] for name, value in self.plan_device.items()}
        width = self.plan.widths[j]
        accumulate = ctx.cfg.grad_accum_steps > 1
        # a shape's eager warm-up steps and capture are timed apart: they say nothing of a replay's cost
        warm = accumulate or self.replayed((self.full_rows, width))
        with self.costs.timed("update" if warm else "update_warmup", self.full_rows):
            out = self._accumulated_update(inputs, width, i) if accumulate else \
                self.run_update((self.full_rows, width), inputs)
        if not accumulate:  # else stepped with the optimizer
            ctx.scheduler.step()
        if self.budget and warm:
            self.priced_update_seconds += self.update_price(width)
        self.position += self.stride
        self.steps_run += 1
        self.selected_steps += not self.pool.get("uniform", False)
        self.step_stats.append(out.pop("stats"))
        ctx.examples_forward += self.full_rows
        ctx.examples_backward += self.full_rows
        return {**out, **self._telemetry_row(i, progress, width)}

    # -- phase 5: policy and telemetry (at a refresh: one host read of the steps' statistics) ----
    def _update_policy(self) -> None:
        """Read the last pool's step statistics once; update tau (rank guard), the replay share
        (ESS guard) and the class weights (variance_optimal_shares)."""
        if not self.step_stats:
            return
        stats = torch.stack(self.step_stats).cpu().numpy()  # [steps, 3, full]
        self.step_stats = []
        self.after_pool(stats)
        cheap, full, weight = (stats[:, k].ravel() for k in range(3))
        labels = self.pool["labels_host"][self.plan.kept_pos[: len(stats), : self.full_rows]].ravel()
        self.last_rank = spearman(cheap, full)
        if "scored" in self.pool:  # variants: the head's agreement on the rows it scored
            scored = self.pool["scored"][self.plan.kept_pos[: len(stats), : self.full_rows]].ravel()
            self.last_rank = spearman(cheap[scored], full[scored])
        self.policy.update_tau(self.last_rank)
        if self.pool.get("uniform"):  # a uniform pool's draws used neither the replay share nor the class weights
            return
        self.policy.update_replay_share(self.ess_fraction)
        rms = np.array([np.sqrt(np.mean((weight[labels == c] * full[labels == c]) ** 2)) if (labels == c).any()
                        else np.nan for c in range(self.num_classes)])
        shares = self.pool["class_share"]
        self.policy.move_class_weights(shares, variance_optimal_shares(rms, shares))

    def _telemetry_row(self, i: int, progress: float, width: int) -> dict[str, Any]:
        record = {"step": i + 1, "kept": self.kept_rows, "full": self.full_rows, "width": width,
                  "pool": len(self.pool["rows"]), "ess_fraction": round(self.ess_fraction, 4),
                  "replay_share": round(self.policy.replay_share, 4), "tau": round(self.policy.tau, 4),
                  "class_weights": np.round(self.policy.class_weights, 4).tolist(),
                  "kappa": self.policy.kappa(progress), "refreshes": self.refreshes,
                  "rank_corr": None if math.isnan(self.last_rank) else round(self.last_rank, 4)}
        every = max(1, min(self.ctx.cfg.log_every, self.loop_steps // 100))  # ~100 points per run
        if (i + 1) % every == 0 or i == 0:
            self.records.append(record)
        return record

    def telemetry(self) -> dict[str, Any]:
        """Return the run's records, its budget with what the run was charged and the re-plans, and
        the measured seconds inside each timed region (score, update): the time breakdown."""
        budget = {**self.budget, "steps_run": self.steps_run, "charged_seconds": round(self.charged_seconds(), 4),
                  "replans": self.replans} if self.budget else {}
        self.costs.flush()
        # Pool scoring runs eagerly on every device: a few large forwards per refresh, costing in
        # all about one graph capture (pool_scoring_table compares the two from the run files).
        return {"steps": self.records, "refreshes": self.refreshes, "budget": budget,
                "full_rows": self.full_rows, "kept_rows": self.kept_rows, "scoring_graphed": False,
                "measured_seconds": {k: round(v, 4) for k, v in self.costs.seconds.items()},
                **self.variant_telemetry(), "selection": self.selection_telemetry()}

    def eval_difficulty(self) -> np.ndarray:
        """Return the scorer's difficulty 1 - p_head(true class) on every eval example."""
        data = self.ctx.eval
        with torch.no_grad():
            feats = self.early_features(data, np.arange(len(data)))
            probs = torch.softmax(self.cheap_head(feats).float(), -1)
        return (1.0 - probs.gather(1, data.labels[:, None]).squeeze(1)).cpu().numpy()

    # -- the variants (free_scores, once_draws, uniform_start/end, record_passes) ---------------------
    def _init_variants(self, largest_pool: int) -> None:
        """Set up the variants' state (all None or off for "mclearn")."""
        cfg, n = self.ctx.cfg, len(self.ctx.train)
        self.variant_refresh = cfg.free_scores or cfg.uniform_start > 0 or cfg.uniform_end > 0 or cfg.select_switch
        self.switch = SelectSwitch() if cfg.select_switch else None
        self.score_table = np.full(n, np.nan) if cfg.free_scores else None  # each row's last full-pass loss
        self.score_refresh = np.zeros(n, dtype=np.int64) if cfg.free_scores else None  # the refresh that stored it
        # Pool positions the cheap head scored (its features are in pool_feats), where some are not.
        masked = cfg.free_scores or cfg.uniform_end > 0 or cfg.select_switch
        self.pool_has_feats = torch.ones(largest_pool, device=self.ctx.device) if masked else None
        self.pass_counts = np.zeros(n, dtype=np.int64) if cfg.record_passes else None
        self.variant_counts: collections.Counter = collections.Counter()

    def uniform_phase(self, progress: float) -> bool:
        """Return True when a pool refreshed at `progress` is drawn uniformly: in the first
        uniform_start or the last uniform_end of the run's steps."""
        cfg = self.ctx.cfg
        return progress < cfg.uniform_start or progress >= 1.0 - cfg.uniform_end

    def refresh_variant(self, progress: float) -> None:
        """refresh() with free_scores, a uniform phase or the switch on. A uniform pool (a uniform
        phase's or the switch's) is stratified by class frequency alone, holds its steps' full
        passes (kappa 1), is drawn uniformly and scored only at the start (the head learns); any
        other pool is drawn as refresh draws it, from variant_scores' difficulties."""
        cfg = self.ctx.cfg
        switched = self.switch is not None and self.switch.mode == "uniform" and not self.uniform_phase(progress)
        uniform = self.uniform_phase(progress) or switched
        kappa = 1.0 if uniform else self.policy.kappa(progress)
        class_weights = np.full(self.num_classes, 1.0 / self.num_classes) if uniform else self.policy.class_weights
        rows, pool_prob = self.stream.next_pool(self.pool_size(kappa), class_weights)
        ending = cfg.uniform_end > 0 and progress >= 1.0 - cfg.uniform_end
        difficulty, scored = self.variant_scores(rows, score=not (ending or switched))
        labels_host = self.labels_host[rows]
        candidate = np.full(len(rows), 1.0 / len(rows)) if uniform else \
            candidate_draw_probs(difficulty, labels_host, kappa, self.policy.tau)
        shares = np.bincount(labels_host, weights=mix_replay(candidate, self.policy.replay_share), minlength=self.num_classes)
        self.pool = {"rows": rows, "pool_prob": pool_prob, "labels_host": labels_host, "candidate_prob": candidate,
                     "replay_share": self.policy.replay_share, "difficulty": difficulty, "class_share": shares,
                     "scored": scored, "uniform": uniform, "select_kappa": self.policy.kappa(progress)}
        self.variant_counts["uniform_pools"] += int(uniform)
        self.draw()
        self.refreshes += 1

    def variant_scores(self, rows: np.ndarray, score: bool) -> tuple[np.ndarray, np.ndarray]:
        """Return (difficulty, scored) for a pool's rows, the head's features of the `scored` ones
        written into the pool buffers (the others get label -100, which the head's loss ignores,
        and no distillation): a row with a stored loss l (stored_rows) has difficulty 1 - exp(-l),
        the head scores the rest (head_difficulty), or none (NaN) if not `score` (uniform end)."""
        ctx = self.ctx
        difficulty = np.full(len(rows), np.nan)
        stored = self.stored_rows(rows)
        if stored.any():
            difficulty[stored] = 1.0 - np.exp(-self.score_table[rows[stored]])
        scored = ~stored & score
        self.pool_labels[: len(rows)].fill_(-100)
        if self.pool_has_feats is not None:
            self.pool_has_feats[: len(rows)].zero_()
        if scored.any():
            with self.costs.timed("score", int(scored.sum())):
                feats, labels, head = self.head_difficulty(rows[scored])
                positions = to_device(np.flatnonzero(scored), ctx.device)
                self.pool_feats[positions] = feats
                self.pool_labels[positions] = labels
                if self.pool_has_feats is not None:
                    self.pool_has_feats[positions] = 1.0
            difficulty[scored] = head.cpu().numpy()  # the refresh's one host read
            if not np.isfinite(difficulty[scored]).all():
                raise TrainingError("mclearn: the cheap scorer's difficulty became non-finite (the model diverged). "
                                    "Lower lr= or head_lr=.")
        self.variant_counts["head_scored_rows"] += int(scored.sum())
        self.variant_counts["stored_score_rows"] += int(stored.sum())
        return difficulty, scored

    def stored_rows(self, rows: np.ndarray) -> np.ndarray:
        """Return which of `rows` have a stored full-pass loss to be scored by (free_scores: one at
        most free_score_max_age refreshes old, 0 = any age); none without free_scores."""
        cfg = self.ctx.cfg
        if not cfg.free_scores:
            return np.zeros(len(rows), dtype=bool)
        fresh = (cfg.free_score_max_age == 0) | (self.refreshes - self.score_refresh[rows] <= cfg.free_score_max_age)
        return np.isfinite(self.score_table[rows]) & fresh

    @torch.no_grad()
    def head_difficulty(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (features, labels, difficulty) of training `rows` by the cheap head, on the device:
        1 - exp(-its loss) with free_scores (the stored losses' scale), else 1 - p(true class)."""
        ctx = self.ctx
        feats = self.early_features(ctx.train, rows)
        labels = ctx.train.labels[to_device(rows, ctx.device)]
        logits = self.cheap_head(feats).float()
        difficulty = 1.0 - torch.exp(-ctx.per_example_loss(logits, labels)) if ctx.cfg.free_scores else \
            1.0 - torch.softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
        return feats, labels, difficulty

    def after_pool(self, stats: np.ndarray) -> None:
        """Book the steps the last pool served (stats [steps, 3, full]): with record_passes each
        full pass in pass_counts; with free_scores each row's full-pass loss in the score table,
        stamped with this refresh (a row drawn twice keeps one); with select_switch, judge_pool."""
        if self.pass_counts is not None or self.score_table is not None:
            rows = self.pool["rows"][self.plan.kept_pos[: len(stats), : self.full_rows]].ravel()
            if self.pass_counts is not None:
                np.add.at(self.pass_counts, rows, 1)
            if self.score_table is not None:
                self.score_table[rows] = stats[:, 1].ravel()
                self.score_refresh[rows] = self.refreshes
        if self.switch is not None:
            self.judge_pool(stats)

    def judge_pool(self, stats: np.ndarray) -> str:
        """Return the next pool's kind (SelectSwitch.decide) from the full passes the last pool
        served (stats [steps, 3, full]). A pass's loss l scores its row s = 1 - exp(-l), the true
        class's missing probability without label smoothing, within sqrt(2) of the loss gradient's
        norm at the logits, which Katharopoulos and Fleuret bound the gradient norm by. tau after a
        selected pool: what its draws achieved, variance_reduction of s^2 with Q = N pi p (the
        plan's own); after a uniform pool: what a selected pool would promise, the passed rows (last
        loss each) as a uniform sample (a = 1) drawn by the selected rule (candidate_draw_probs,
        full_pass_draw_probs for kappa x their count). The cost is selection_cost's."""
        pool, plan, cfg = self.pool, self.plan, self.ctx.cfg
        positions = plan.kept_pos[: len(stats), : self.full_rows].ravel()
        scores = 1.0 - np.exp(-stats[:, 1].ravel())
        selected = not pool.get("uniform", False)
        kappa = pool["select_kappa"]
        if selected:
            share = len(self.ctx.train) * pool["pool_prob"][positions] * plan.draw_prob[positions]
            tau = variance_reduction(scores ** 2, share, share)
        else:
            last = {int(p): k for k, p in enumerate(positions)}  # a row passed twice keeps its last loss
            members, at = np.fromiter(last, dtype=np.int64), np.fromiter(last.values(), dtype=np.int64)
            candidate = candidate_draw_probs(scores[at], pool["labels_host"][members], kappa, self.policy.tau)
            draw = full_pass_draw_probs(candidate, self.policy.replay_share, max(1, round(kappa * len(members))),
                                        cfg.once_floor if cfg.once_draws else None)
            tau = variance_reduction(scores[at] ** 2, len(members) * draw, np.ones(len(members)))
        cost, stored = self.selection_cost(kappa)
        return self.switch.decide(selected, tau, cost, refresh=self.refreshes, step=self.steps_run,
                                  stored_share=None if stored is None else round(stored, 4))

    def selection_cost(self, kappa: float) -> tuple[float, float | None]:
        """Return (cost, stored share) of a selected pool at `kappa`: cost = (seconds per row
        scored) x (its rows, less the share with a stored loss) / ((seconds per full-pass row of an
        update) x full_rows x refresh_every) from the CostMeter's EMAs (a replay's, else warm-up's);
        the stored share: with free_scores the training rows' with a stored loss, else None."""
        cfg, ema = self.ctx.cfg, self.costs.flush()
        stored = float(self.stored_rows(np.arange(len(self.ctx.train))).mean()) if cfg.free_scores else None
        update = ema.get("update", ema.get("update_warmup"))
        if not update or "score" not in ema:  # none measured, or 0 s: no price to weigh scoring against
            raise TrainingError("mclearn: the switch has no measured update seconds above 0 or scoring seconds "
                                "to weigh (select_switch=False draws every pool by its scores)")
        scoring = ema["score"] * self.pool_size(kappa) * (1.0 - (stored or 0.0))
        return scoring / (update * self.full_rows * cfg.refresh_every), stored

    def variant_telemetry(self) -> dict[str, Any]:
        """Return the variants' run-file records: the variant keys with the rows the head scored,
        the rows scored from stored losses, the uniform pools; with record_passes "full_passes"."""
        cfg, out = self.ctx.cfg, {}
        if self.variant_refresh or cfg.once_draws:
            keys = ("free_scores", "free_score_max_age", "once_draws", "once_floor", "uniform_start", "uniform_end",
                    "select_switch")
            out["variant"] = {**{k: getattr(cfg, k) for k in keys}, **self.variant_counts}
        if self.pass_counts is not None:
            counts = self.pass_counts.copy()
            if self.pool is not None and self.step_stats:
                np.add.at(counts, self.pool["rows"][self.plan.kept_pos[: len(self.step_stats), : self.full_rows]], 1)
            out["full_passes"] = pass_count_summary(counts, self.ctx.flipped_rows)
        return out

    def selection_telemetry(self) -> dict[str, Any]:
        """Return the run file's record of its selection: the steps run, those from a selected pool
        and their share; with select_switch every SelectSwitch decision with its estimate."""
        out: dict[str, Any] = {"select_switch": self.switch is not None, "steps": self.steps_run,
                               "selected_steps": self.selected_steps,
                               "selected_share": round(self.selected_steps / self.steps_run, 4) if self.steps_run else None}
        if self.switch is not None:
            out["decisions"] = self.switch.decisions
        return out


def pass_count_summary(counts: np.ndarray, flipped_rows: np.ndarray | None = None) -> dict[str, Any]:
    """Return how often the training rows had a full pass: rows, passes, distinct rows (one pass or
    more), the histogram (rows with 0, 1, 2, ... passes) and, with `flipped_rows` (label noise), the
    flipped rows' share of the data against their share of the passes, and their distinct rows."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    out: dict[str, Any] = {"rows": len(counts), "passes": total, "distinct_rows": int((counts > 0).sum()),
                           "histogram": np.bincount(counts).tolist()}
    if flipped_rows is not None:
        flipped = counts[np.asarray(flipped_rows, dtype=np.int64)]
        out["flipped"] = {"rows": len(flipped), "data_share": round(len(flipped) / max(len(counts), 1), 6),
                          "passes": int(flipped.sum()),
                          "pass_share": round(int(flipped.sum()) / total, 6) if total else None,
                          "distinct_rows": int((flipped > 0).sum())}
    return out


# =============================================================================
# 7. Diagnostics: the confusion matrix, difficulty distributions, sampler telemetry
# =============================================================================
def figure_out(fig, path: str | Path | None):
    """Return `fig`, saved first as an image at `path` (its folder made) when a path is given."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_confusion_matrix(record: dict[str, Any], path: str | Path | None = None):
    """Return a matplotlib figure of the run's confusion matrix (a PNG at `path` when given), true
    labels by row, each count in the colour map's light end on a cell darker than mid-range."""
    import matplotlib.pyplot as plt

    matrix, names = np.array(record["confusion_matrix"]), record["label_names"]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.imshow(matrix, interpolation="nearest", cmap="Blues")
    middle = (matrix.max() + matrix.min()) / 2.0
    for (row, col), count in np.ndenumerate(matrix):
        text = format(count, "d") if matrix.dtype.kind in "iu" else format(count, ".2g")
        ax.text(col, row, text, ha="center", va="center", color=image.cmap(1.0) if count > middle else image.cmap(0))
    ticks = np.arange(len(names))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=names, yticklabels=names, xlabel="Predicted label",
           ylabel="True label", ylim=(len(names) - 0.5, -0.5))
    plt.setp(ax.get_xticklabels(), rotation=30)
    ax.set_title(f"{record['method']} seed {record['seed']}: accuracy {record['accuracy']:.3f}")
    return figure_out(fig, path)


def difficulty_frame(record: dict[str, Any]):
    """Return a DataFrame of eval difficulty 1 - p(true class) and correctness: the scorer's, or for
    a method without one the trained model's own."""
    import pandas as pd

    correct = np.array(record["eval_predictions"]) == np.array(record["eval_labels"])
    if record.get("eval_difficulty") is not None:
        difficulty, source = np.array(record["eval_difficulty"]), "scorer (cheap head)"
    else:
        difficulty, source = 1.0 - np.array(record["eval_true_prob"]), "trained model"
    return pd.DataFrame({"difficulty": difficulty,
                         "prediction": np.where(correct, "correct", "incorrect"), "source": source})


def plot_difficulty(record: dict[str, Any], path: str | Path | None = None):
    """Return a KDE figure of difficulty for correct vs incorrect eval predictions (if the scorer
    works, the incorrect ones sit at higher difficulty)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = difficulty_frame(record)
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = frame["prediction"].nunique()
    sns.kdeplot(data=frame, x="difficulty", hue="prediction" if groups > 1 else None, common_norm=False,
                fill=True, clip=(0, 1), ax=ax, warn_singular=False)
    ax.set_xlabel(f"difficulty = 1 - p(true class), from the {frame['source'].iloc[0]}")
    ax.set_title(f"{record['method']} seed {record['seed']}: difficulty of correct vs incorrect")
    return figure_out(fig, path)


def plot_telemetry(record: dict[str, Any], path: str | Path | None = None):
    """Return a figure of MC-Learn's sampler telemetry over steps (kept and full rows, ESS, replay
    share, rank agreement, tau, full-pass probabilities or class weights); a note if it has none."""
    import matplotlib.pyplot as plt

    steps = (record.get("telemetry") or {}).get("steps") or []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    if not steps:
        axes[0].text(0.5, 0.5, "no sampler telemetry for this method", ha="center")
        return figure_out(fig, path)

    def column(key: str) -> np.ndarray:  # a telemetry key over the steps, NaN where a step has none
        return np.array([np.nan if r.get(key) is None else r[key] for r in steps], dtype=float)

    def lines(ax, columns: dict[str, np.ndarray], title: str, logy: bool = False) -> None:
        for label, values in columns.items():
            ax.plot(step, values, marker="o", ms=2, label=label)
        ax.set(title=title, xlabel="step", yscale="log" if logy else "linear")
        ax.legend()

    step = column("step")
    lines(axes[0], {k: column(k) for k in ("kept", "full")}, "examples per step")
    health = [k for k in ("ess_fraction", "replay_share", "rank_corr") if np.isfinite(column(k)).any()]
    lines(axes[1], {k: column(k) for k in health}, "ESS fraction, replay share, rank agreement")
    # mclearn-paper logs its per-class full-pass probabilities; mclearn its class weights
    name, label = ("full_prob", "full-pass probability") if any("full_prob" in r for r in steps) \
        else ("class_weights", "class weights")
    per_class = np.array([r[name] for r in steps], dtype=float)
    lines(axes[2], {**{f"{name} class {c}": per_class[:, c] for c in range(per_class.shape[1])}, "tau": column("tau")},
          f"{label} and tau", logy=True)
    fig.suptitle(f"{record['method']} seed {record['seed']}")
    fig.tight_layout()
    return figure_out(fig, path)


if __name__ == "__main__":  # a library, not a program: say how it is used instead of exiting silently
    print(__doc__.strip())
