"""The update machinery every method of the study trains with: the run clock and run context, the
optimizer and its lr schedule, the CUDA-graphed update, the Method base class with its budget plan,
evaluation, and the step-cost measurement that prices every method's budget."""
from __future__ import annotations

import copy
import dataclasses
import gc
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import mclearn_core as core
from mclearn_core import clip_and_step, clip_groups, optimizer_params
from mcstudy.config import autocast_context, Config, replace_config


class DivergedError(core.TrainingError):
    """The training loss became NaN or infinite (the message names the step and the fix)."""


def graphs_enabled(cfg: Config) -> bool:
    """Return True when the baseline family may replay its update as CUDA graphs: cfg.cuda_graphs,
    no fp16 (its GradScaler reads the host) and no gradient accumulation. Off CUDA the same
    code runs eagerly."""
    return cfg.cuda_graphs and cfg.precision != "fp16" and cfg.grad_accum_steps == 1


# A clock-driven run estimates its next step's seconds as the median of this many last steps (a graph
# capture or an eager warm-up step among them does not move the estimate).
CLOCK_WINDOW = 8

# A clock-driven run of a method that plans from the step costs (short-schedule, MC-Learn) plans its
# steps, and so the uses of each update shape its capture policy reads (GRAPH_MIN_USES), for the seconds
# it prices: time_budget x the baseline's priced seconds. The studies' clocks (time_budget x the
# baseline's measured seconds) are 0.99-1.07x that; a clock more than this factor away from it
# plans one run and times another, which the run says (clock_plan_warning).
CLOCK_PLAN_SPREAD = 1.25


@dataclass
class RunClock:
    """Equal time by the clock (No Train No Gain's budgeted runs): a run trains until its train
    seconds (setup and steps, evaluation excluded) reach `seconds`, and its lr follows the elapsed
    share of them, so the schedule decays to its end at the last update whatever a step costs.

    Before each step the training loop reads the seconds elapsed so far (the device synchronized
    after the step before) and asks should_stop: a step is taken while it is expected to end
    nearer the budget than not taking it (elapsed + est / 2 < seconds, est the median of the last
    CLOCK_WINDOW steps' seconds plus the seconds the method expects the step to add: MC-Learn's
    pool refresh, Method.extra_step_seconds), so the run's seconds land within half a step of the
    budget. The step's lr is the schedule's at next_progress, the elapsed share at its expected
    end; methods read the same share (`progress`) for their own phases (MC-Learn's kappa,
    InfoBatch's anneal)."""

    seconds: float
    recent: list[float] = dataclasses.field(default_factory=list)  # the last steps' measured seconds
    progress: float = 0.0  # the elapsed share at the expected end of the current step

    def step_estimate(self) -> float:
        """Return the expected seconds of the next step (0 before the first)."""
        return float(np.median(self.recent)) if self.recent else 0.0

    def should_stop(self, elapsed: float, extra: float = 0.0) -> bool:
        """Return True when the next step (its estimate plus `extra` seconds) would end farther past
        the budget than stopping now leaves before it (never before the first step)."""
        return bool(self.recent) and elapsed + (self.step_estimate() + extra) / 2 >= self.seconds

    def next_progress(self, elapsed: float, extra: float = 0.0) -> float:
        """Return (and keep as `progress`) the elapsed share of the budget at the next step's expected
        end (its estimate plus `extra` seconds)."""
        self.progress = min(1.0, (elapsed + self.step_estimate() + extra) / self.seconds)
        return self.progress

    def observe(self, seconds: float) -> None:
        """Book a step's measured seconds."""
        self.recent = [*self.recent[1 - CLOCK_WINDOW:], seconds]


def clock_plan_warning(clock: RunClock | None, priced_seconds: float | None) -> str | None:
    """Return a warning when a clock-driven run's clock is more than CLOCK_PLAN_SPREAD times above or
    below the seconds its method's plan prices (Method.priced_seconds); None when they agree or
    when the run has no clock or the method no priced plan."""
    if clock is None or priced_seconds is None or priced_seconds <= 0:
        return None
    ratio = clock.seconds / priced_seconds
    if 1 / CLOCK_PLAN_SPREAD <= ratio <= CLOCK_PLAN_SPREAD:
        return None
    return (f"the clock's {clock.seconds:.3f} s are {ratio:.2f}x the {priced_seconds:.3f} s its plan prices "
            f"(time_budget x the baseline's priced seconds): its steps and the shapes it captures as graphs "
            f"are planned for another run than the clock times; set budget_seconds to time_budget x the "
            f"baseline's seconds")


@dataclass
class RunContext:
    """What every method's step needs: model, data, optimizer and the precision machinery."""

    cfg: Config
    model: nn.Module
    train: core.EncodedSplit
    eval: core.EncodedSplit
    num_labels: int
    device: torch.device
    generator: torch.Generator  # host-side RNG for data order
    device_generator: torch.Generator  # device-side RNG for sampling decisions
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    scaler: Any = None
    examples_forward: int = 0  # examples that had a full forward (host counter)
    examples_backward: int = 0  # examples that had a full backward
    examples_scored: int = 0  # examples that had a forward-only full pass to be scored (peers)
    compiled: Any = None  # the torch.compile'd model, built on first use
    graphs: bool = False  # the update runs through GraphedUpdate (set by build_optimization)
    step_costs: Any = None  # StepCosts of the baseline's update on this device (budget solver)
    flipped_rows: np.ndarray | None = None  # training rows whose label label_noise flipped (record_passes)
    pending_backwards: int = 0  # backward passes whose gradients await an optimizer step (grad_accum_steps)
    clock: RunClock | None = None  # a clock-driven run's time budget (cfg.budget_seconds); None: its planned steps

    def autocast(self):
        return autocast_context(self.cfg, self.device, cache_enabled=not self.graphs)

    def per_example_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, reduction="none",
                               label_smoothing=self.cfg.label_smoothing)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Full forward; returns logits (through torch.compile when cfg.compile_mode is set)."""
        if self.cfg.compile_mode and self.compiled is None:
            self.compiled = torch.compile(self.model, mode=self.cfg.compile_mode, dynamic=False)
        model = self.compiled if self.compiled is not None else self.model  # a compiled module has no truth value
        with self.autocast():
            return model(**core.model_inputs(self.model, batch)).logits

    def optimizer_step(self, loss: torch.Tensor, step: int) -> None:
        """Backward `loss`, clip, step optimizer and schedule (accumulating per grad_accum_steps; a
        last partial group steps in flush_gradients, which train_loop calls after the last step)."""
        accum = max(self.cfg.grad_accum_steps, 1)
        scaled = loss / accum
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        self.pending_backwards += 1
        if (step + 1) % accum:
            return
        self._apply_gradients()

    def flush_gradients(self) -> None:
        """Step on the gradients of a last, partial accumulation group (a run whose steps are not a
        multiple of grad_accum_steps), so no backward pass is lost: each of its k losses was divided
        by grad_accum_steps, so the sum is rescaled by grad_accum_steps / k to their mean, as a
        full group's. Nothing to do with no pending backward (always so at grad_accum_steps 1)."""
        if not self.pending_backwards:
            return
        scale = max(self.cfg.grad_accum_steps, 1) / self.pending_backwards
        if scale != 1.0:
            for group in self.optimizer.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        param.grad.mul_(scale)
        self._apply_gradients()

    def backward_and_step(self, loss: torch.Tensor) -> None:
        """One whole update on `loss` (backward_and_step): MC-Learn's TrainContext call."""
        backward_and_step(self, loss)

    def _apply_gradients(self) -> None:
        clip_and_step(self)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.pending_backwards = 0


def draw_seed(ctx: RunContext) -> int:
    """Return a fresh seed drawn from the run's host generator."""
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=ctx.generator))


def host_rng(ctx: RunContext) -> np.random.Generator:
    """Return a numpy generator seeded from the run's host generator (for host-side draws)."""
    return np.random.default_rng(draw_seed(ctx))


def release_device_memory(device: torch.device) -> None:
    """Collect unreachable objects and, on CUDA, return the allocator's cached memory. A method,
    its GraphedUpdate and its context refer to each other, so a finished run's CUDA graphs (and
    the memory pool they hold) are freed by the cycle collector, not when the run returns."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_optimizer(model: nn.Module, cfg: Config, device: torch.device,
                    extra_groups: Iterable[dict] = (), capturable: bool = False) -> torch.optim.Optimizer:
    """Return AdamW (fused on CUDA) with layer-wise lr decay: head at lr, top encoder layer at
    lr*encoder_lr_mult, each layer below times layer_decay, embeddings lowest. `capturable`
    returns the fused, CUDA-graph-safe form (step counts on the device)."""
    parts = core.encoder_parts(model)
    n_layers = len(parts.layers)
    groups: list[dict] = []
    seen: set[int] = set()

    def add(params, lr):
        decay, no_decay = [], []
        for name, p in params:
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        for plist, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            if plist:
                groups.append({"params": plist, "lr": lr, "weight_decay": wd})

    encoder_lr = cfg.lr * cfg.encoder_lr_mult
    for depth, layer in enumerate(reversed(parts.layers)):
        add(layer.named_parameters(), encoder_lr * cfg.layer_decay ** depth)
    add(parts.embeddings.named_parameters(), encoder_lr * cfg.layer_decay ** n_layers)
    add(model.named_parameters(), cfg.lr)  # head and anything left
    for group in extra_groups:
        groups.append(group)
    if capturable:
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True, capturable=device.type == "cuda")
    fused = device.type == "cuda" if cfg.optimizer_fused is None else cfg.optimizer_fused
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, total_steps: int):
    """Return the transformers warmup + decay schedule (cfg.schedule) over `total_steps`."""
    from transformers import get_scheduler

    return get_scheduler(cfg.schedule, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                         num_training_steps=max(total_steps, 1))


def schedule_multiplier(cfg: Config, total_steps: int) -> Callable[[float], float]:
    """Return f(k): the lr multiplier of the transformers schedule cfg.schedule (warmup share
    cfg.warmup_ratio) over `total_steps` steps at step k, for any real k in [0, total_steps]: at
    whole k it is the schedule's own lr_lambda (LambdaLR), between them the same formula."""
    import warnings

    from transformers import get_scheduler

    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)  # the lambda is the same for any optimizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lam = get_scheduler(cfg.schedule, probe, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                            num_training_steps=max(total_steps, 1)).lr_lambdas[0]
    return lambda k: float(lam(k))


class LRSchedule:
    """The lr of every param group: its peak lr (build_optimizer's) times the schedule's multiplier
    f (schedule_multiplier over `total_steps` optimizer updates). Two ways to move it:

    - step(): an optimizer update was made; count it and, unless progress drives the schedule,
      move to the next step's multiplier, f(updates made) (the transformers schedule, step for step);
    - drive(progress): set the multiplier of the next update from the run's progress p in [0, 1]
      (elapsed share of a time budget, of epochs, or of a re-planned run): f(p total_steps), so the
      schedule ends when the progress does, however many updates that takes.

    On CUDA graphs (`on_device`) each group's lr is a 0-d view of one device vector, written by one
    kernel per move (no host sync), so a captured optimizer step reads the current lr. Every update
    is booked: record() gives the updates made, the multiplier at the last one (the lr at the last
    update as a share of peak) and their sum (the sum of lr / peak over the updates)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: Config, total_steps: int, on_device: bool = False):
        self.groups, self.total = optimizer.param_groups, max(int(total_steps), 1)
        self.f = schedule_multiplier(cfg, self.total)
        self.peaks = [float(group["lr"]) for group in self.groups]
        self.on_device = on_device
        if on_device:
            device = self.groups[0]["params"][0].device
            self.peak_vector = torch.tensor(self.peaks, dtype=torch.float32, device=device)
            self.current = self.peak_vector.clone()
            for g, group in enumerate(self.groups):
                group["lr"] = self.current[g]
        self.driven = False
        self.updates, self.last_share, self.sum_share = 0, None, 0.0
        self._set(self.f(0))

    def _set(self, multiplier: float) -> None:
        self.multiplier = multiplier
        if self.on_device:
            torch.mul(self.peak_vector, multiplier, out=self.current)
        else:
            for group, peak in zip(self.groups, self.peaks):
                group["lr"] = peak * multiplier

    def step(self) -> None:
        """Book an optimizer update made at the current lr; then, unless driven, set the next step's."""
        self.updates += 1
        self.last_share, self.sum_share = self.multiplier, self.sum_share + self.multiplier
        if not self.driven:
            self._set(self.f(min(self.updates, self.total)))

    def drive(self, progress: float) -> None:
        """Set the lr of the next update from the run's progress (clipped to [0, 1]): f(p total_steps)."""
        self.driven = True
        self._set(self.f(min(max(float(progress), 0.0), 1.0) * self.total))

    def record(self) -> dict[str, Any]:
        """Return the run file's lr_schedule: updates made, the lr at the last one and the sum of lr
        over them, as shares of the peak, and whether progress drove the schedule."""
        return {"updates": self.updates, "driven": self.driven,
                "last_share": None if self.last_share is None else round(self.last_share, 6),
                "sum_share": round(self.sum_share, 4)}


# A batch shape that a run's plan uses fewer times than this runs eagerly instead of being captured:
# its capture (0.1-0.2 s for MPNet-base at batch 256 on an H200, `graph_capture_seconds`) would not
# pay back, and whether a rare width turns up at all depends on the seed's data order (one extra
# capture spread SST-2's baseline seeds by 5.7 % in train seconds).
GRAPH_MIN_USES = 10


class GraphedUpdate:
    """A whole update (gather rows, forward, loss, backward, clip, AdamW) replayed as one CUDA
    graph per shape key, for any method whose update has static shapes; with `trains=False`, a
    forward-only pass the same way (the scoring peers' no-grad scoring forward).

    `update_fn(inputs, key)` runs one update on the tensors in `inputs` (device tensors whose shapes
    the key fixes) and returns a dict of detached output tensors. The first `graph_warmup_steps`
    steps of a key run it eagerly on a side stream (real training steps, which also warm up cuBLAS
    and the allocator); the next one captures the graph on static copies of the inputs, and every
    later one only copies the inputs in and replays. A key that `planned_uses` (uses per key over
    the run, when the method knows its plan) gives fewer than GRAPH_MIN_USES is never captured:
    all its steps run as the warm-up steps do. Off CUDA, or with graphs off (ctx.graphs),
    every step runs eagerly through the same code. Capture seconds are kept apart; a failed capture is recorded in `capture_error`,
    printed, and the run goes on eagerly.
    """

    def __init__(self, ctx: RunContext, update_fn: Callable[[dict[str, torch.Tensor], tuple], dict[str, torch.Tensor]],
                 planned_uses: dict[tuple, int] | None = None, trains: bool = True):
        self.ctx, self.update_fn, self.planned_uses = ctx, update_fn, planned_uses
        self.trains = trains  # False: `update_fn` is a forward-only pass (scoring) and gradients are left alone
        self.capture = ctx.device.type == "cuda" and ctx.graphs  # else: the same code, eagerly
        self.graphs: dict[tuple, tuple[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}
        self.eager_steps: dict[tuple, int] = {}
        self.eager_times: list[tuple[tuple, float]] = []  # (key, seconds) of each eager step (device synchronized)
        self.capture_seconds = 0.0
        self.capture_error: str | None = None  # set when a capture failed and the run went eager
        self.side_stream = torch.cuda.Stream(ctx.device) if self.capture else None
        # One memory pool for all of this update's graphs: a private pool per capture held the
        # activations of every batch shape at once (a Banking77 study ran out of the H200's memory).
        # Sharing is safe here: replays never overlap, and what outlives a replay (static inputs and
        # outputs) stays referenced, so a later capture never takes its memory.
        self.pool = torch.cuda.graph_pool_handle() if self.capture else None

    def step(self, key: tuple, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run one update on `inputs` for shape `key`; return its outputs (fresh tensors).
        Every eager update first sets each .grad to None: after a capture they still point at
        that graph's gradient buffers, which an eager backward would add to."""
        if not self.capture:
            self._zero_grad()
            return self.update_fn(inputs, key)
        if key not in self.graphs:
            if self.eager_steps.get(key, 0) < self.ctx.cfg.graph_warmup_steps or not self.worth_capturing(key):
                self.eager_steps[key] = self.eager_steps.get(key, 0) + 1
                main = torch.cuda.current_stream(self.ctx.device)
                core.sync_device(self.ctx.device)  # an eager step is timed on its own (few: warm-ups and rare shapes)
                start = time.perf_counter()
                self.side_stream.wait_stream(main)
                self._zero_grad()
                with torch.cuda.stream(self.side_stream):
                    out = self.update_fn(inputs, key)
                main.wait_stream(self.side_stream)
                core.sync_device(self.ctx.device)
                self.eager_times.append((key, time.perf_counter() - start))
                for value in out.values():
                    value.record_stream(main)
                return out
            try:
                self._capture(key, inputs)
            except RuntimeError as err:  # e.g. an op that reads the host: train on, without graphs
                self.capture_error = f"{type(err).__name__}: {str(err)[:300]}"
                core.say(f"warning: CUDA graph capture failed, this run continues eagerly (slower): "
                    f"{self.capture_error}")
                self.capture = False
                torch.cuda.synchronize(self.ctx.device)
                return self.step(key, inputs)
        graph, static_in, static_out = self.graphs[key]
        for name, value in inputs.items():
            static_in[name].copy_(value)
        graph.replay()
        return {name: value.clone() for name, value in static_out.items()}

    def _zero_grad(self) -> None:
        if self.trains:
            self.ctx.optimizer.zero_grad(set_to_none=True)

    def worth_capturing(self, key: tuple) -> bool:
        """Return False when the run's plan uses `key` fewer than GRAPH_MIN_USES times."""
        return self.planned_uses is None or self.planned_uses.get(key, 0) >= GRAPH_MIN_USES

    def _capture(self, key: tuple, inputs: dict[str, torch.Tensor]) -> None:
        core.sync_device(self.ctx.device)
        start = time.perf_counter()
        static_in = {name: value.clone() for name, value in inputs.items()}
        graph = torch.cuda.CUDAGraph()
        self._zero_grad()  # the graph's backward owns fresh gradients
        with torch.cuda.graph(graph, pool=self.pool):
            static_out = self.update_fn(static_in, key)
        core.sync_device(self.ctx.device)
        self.capture_seconds += time.perf_counter() - start
        self.graphs[key] = (graph, static_in, static_out)

    def eager_seconds(self) -> tuple[float, float]:
        """Return the seconds of the eager steps: (warm-up steps of the shapes later captured, every
        other eager step: rare shapes and shapes that never reached a capture), each timed between
        two device synchronizations; (0, 0) when nothing captures (off CUDA, graphs off)."""
        warmup = rest = 0.0
        for key, seconds in self.eager_times:
            if key in self.graphs:
                warmup += seconds
            else:
                rest += seconds
        return warmup, rest

    def telemetry(self) -> dict[str, Any]:
        """Return how many graphs were captured, their capture seconds, the seconds of the eager
        warm-up steps before them and of the other eager steps, how many shapes (and their steps)
        ran eagerly for being rare in the plan, and any capture error."""
        rare = [key for key in self.eager_steps if key not in self.graphs and not self.worth_capturing(key)]
        warmup, other = self.eager_seconds()
        return {"cuda_graphs": len(self.graphs), "graph_capture_seconds": round(self.capture_seconds, 4),
                **({"graph_warmup_seconds": round(warmup, 4), "eager_seconds": round(other, 4)}
                   if self.eager_times else {}),
                **({"rare_shapes_eager": len(rare), "rare_shape_steps": sum(self.eager_steps[k] for k in rare)}
                   if rare and self.capture else {}),
                **({"graph_capture_error": self.capture_error} if self.capture_error else {})}


def plain_update(ctx: RunContext, data: core.EncodedSplit, rows: torch.Tensor, width: int) -> dict[str, torch.Tensor]:
    """One plain update (the baseline's, Method.update without weights): mean loss of rows `rows`
    of `data` at `width` tokens, backward, clip, AdamW; return {"loss": the detached mean loss,
    "losses": the detached per-example losses}. No host sync."""
    return weighted_update(ctx, data, rows, width, None)


def weighted_update(ctx: RunContext, data: core.EncodedSplit, rows: torch.Tensor, width: int,
                    weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """One update on the mean of per-example losses times `weights` (plain mean when None), as
    plain_update; return {"loss": detached weighted mean, "losses": detached per-example losses}."""
    batch = core.make_batch(data, rows, width)
    losses = ctx.per_example_loss(ctx.forward(batch), batch["labels"])
    loss = (losses * weights).mean() if weights is not None else losses.mean()
    backward_and_step(ctx, loss)
    return {"loss": loss.detach(), "losses": losses.detach()}


def backward_and_step(ctx: RunContext, loss: torch.Tensor) -> None:
    """Backward `loss`, clip gradients to cfg.grad_clip and step the optimizer (through the
    GradScaler when fp16 runs with one: that path reads the host, so it is never graphed)."""
    (ctx.scaler.scale(loss) if ctx.scaler is not None else loss).backward()
    clip_and_step(ctx)


@dataclass
class BudgetPlan:
    """How one method targets a time budget: the values of its own knobs, the share of the tuned
    baseline's train time they are predicted to take, and a note when the knobs alone cannot
    reach the budget (the measured seconds in the run file say whether the plan held)."""

    method: str
    time_budget: float
    knobs: dict[str, Any]
    predicted_share: float | None
    note: str | None = None


class Method:
    """A training method: plans its steps and performs one step at a time.

    Subclasses set `name`, implement `num_steps()` and `step(i)` (returning a dict of tensors or
    floats to log), and may add optimizer groups with `extra_param_groups()`. For budget studies a
    class plans its own knobs for a time budget (`plan_budget`) or says why it has none
    (`wall_clock_note`); `own_fields` names the Config keys only it reads (METHOD_OWN_FIELDS).
    """

    name = "method"
    graphable = False  # True: every step is a plain update, so CUDA graphs may replay it
    reference = False  # True: the run every time budget is a share of (the baseline); never planned
    wall_clock_note: str | None = None  # set: no knob bounds its seconds; it runs once per seed at its defaults
    own_fields: tuple[str, ...] = ()  # Config keys that only this method (and others naming them) reads

    @classmethod
    def plan_budget(cls, name: str, time_budget: float, cfg: Config, costs: dict[str, Any]) -> BudgetPlan:
        """Return the BudgetPlan that sets the knobs of method `name` (its registry id: one class
        may serve several) so its train time is `time_budget` times the baseline's, with costs in
        units of one baseline update (measure_relative_costs). Here: a method with a
        wall_clock_note gets no knobs and the note; any other method without a plan_budget of its
        own raises ValueError."""
        if cls.wall_clock_note:
            return BudgetPlan(name, 0.0, {}, None, cls.wall_clock_note)
        why = ("it is the reference every time budget is a share of" if cls.reference
               else f"{cls.__name__} defines no plan_budget and no wall_clock_note")
        raise ValueError(f"No time-budget knob for method {name!r}: {why}.")

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.graphed: GraphedUpdate | None = None  # built on the first graphed update()

    def extra_param_groups(self) -> list[dict]:
        return []

    def planned_update_shapes(self) -> dict[tuple, int] | None:
        """Return how many updates of each update_shape the run will make, when the method knows
        its plan up front (GraphedUpdate leaves rare shapes uncaptured); else None."""
        return None

    @staticmethod
    def update_shape(rows: int, width: int, weighted: bool) -> tuple[int, int, bool]:
        """Return the key Method.update's graphs are captured under: (rows, width, weighted)."""
        return rows, width, weighted

    def setup(self) -> None:
        """Work done before the first step inside the timed region (e.g. cost calibration)."""

    def num_steps(self) -> int:
        raise NotImplementedError

    def optimizer_steps(self) -> int:
        """Optimizer updates the schedule spans (defaults to one per step)."""
        return self.num_steps()

    def priced_seconds(self) -> float | None:
        """Return the seconds the method's plan prices for the whole run (set by setup), when it plans
        its steps from the step costs (clock_plan_warning compares a clock with them); else None."""
        return None

    def extra_step_seconds(self, i: int) -> float:
        """Return the seconds step `i` is expected to take beyond a usual step (a clock-driven run
        weighs them before taking it): 0 unless the method says otherwise."""
        return 0.0

    def schedule_progress(self) -> float | None:
        """Return the progress in [0, 1] that the lr of the next update follows when the method's
        schedule follows its own progress (InfoBatch's epochs, MC-Learn's re-planned steps); None:
        one schedule step per optimizer update. A clock-driven run follows its clock instead."""
        return None

    def step(self, i: int) -> dict[str, Any]:
        raise NotImplementedError

    def telemetry(self) -> dict[str, Any]:
        """Return method-specific records to keep in the run result."""
        return {}

    def finish(self) -> None:
        """Work done once the run has trained and been evaluated, outside its timed region, before its
        record is written (MC-Learn's variance check); nothing unless the method says otherwise."""

    def train_on(self, data: core.EncodedSplit, idx: torch.Tensor, step: int, weights: torch.Tensor | None = None,
                 width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward and update on rows `idx` of `data` (padded to `width`, or to their
        longest); return the detached (mean loss, per-example losses), the mean weighted if given."""
        batch = core.make_batch(data, idx, width or core.batch_width(data, idx, self.ctx.cfg.pad_multiple))
        losses = self.ctx.per_example_loss(self.ctx.forward(batch), batch["labels"])
        loss = (losses * weights).mean() if weights is not None else losses.mean()
        self.ctx.optimizer_step(loss, step)
        self.ctx.examples_forward += len(idx)
        self.ctx.examples_backward += len(idx)
        return loss.detach(), losses.detach()

    def update(self, data: core.EncodedSplit, rows: torch.Tensor, step: int, width: int,
               weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One update on rows `rows` (device indices) of `data` at `width` tokens, the loss
        weighted per example when `weights` is given; return the detached (mean loss, per-example
        losses). With graphs on (ctx.graphs) it is a CUDA-graph replay per (rows, width) shape,
        as the baseline's; otherwise train_on."""
        if not self.ctx.graphs:
            return self.train_on(data, rows, step, weights, width)
        if self.graphed is None:
            self.graphed = GraphedUpdate(self.ctx, lambda inputs, key: weighted_update(
                self.ctx, data, inputs["rows"], key[1], inputs.get("weights")), self.planned_update_shapes())
        inputs = {"rows": rows} if weights is None else {"rows": rows, "weights": weights}
        out = self.graphed.step(self.update_shape(len(rows), width, weights is not None), inputs)
        self.ctx.scheduler.step()
        self.ctx.examples_forward += len(rows)
        self.ctx.examples_backward += len(rows)
        return out["loss"], out["losses"]

    def graph_telemetry(self) -> dict[str, Any]:
        """Return the graphed update's telemetry (graphs captured, capture seconds and error)."""
        return {} if self.graphed is None else self.graphed.telemetry()

    def eval_difficulty(self) -> np.ndarray | None:
        """Return the method's difficulty score for each eval example, if it has a scorer."""
        return None

    def eval_model(self) -> nn.Module:
        """Return the module whose logits are evaluated: the model itself, unless the method
        classifies through another path (mclearn-paper: the published mean-pooled head)."""
        return self.ctx.model


def build_optimization(ctx: RunContext, method: Method, extra_steps: int = 0) -> None:
    """Set ctx.optimizer and ctx.scheduler for `method` (its optimizer steps plus `extra_steps`):
    the capturable fused AdamW with its lr on the device when the method replays CUDA graphs
    (ctx.graphs), else AdamW; the lr follows LRSchedule over the method's optimizer updates."""
    cfg = ctx.cfg
    ctx.graphs = method.graphable and graphs_enabled(cfg)
    ctx.optimizer = build_optimizer(ctx.model, cfg, ctx.device, method.extra_param_groups(), capturable=ctx.graphs)
    total = math.ceil(method.optimizer_steps() / max(cfg.grad_accum_steps, 1)) + extra_steps
    ctx.scheduler = LRSchedule(ctx.optimizer, cfg, total, on_device=ctx.graphs)


@torch.no_grad()
def predict(model: nn.Module, data: core.EncodedSplit, cfg: Config, device: torch.device) -> torch.Tensor:
    """Return float32 logits [N, C] of `model` (in eval mode, no gradients) on every row of `data`,
    computed in length-sorted batches of eval_batch_size for little padding."""
    was_training = model.training
    model.eval()
    logits = torch.empty(len(data), model.config.num_labels, device=device)
    for idx in torch.argsort(data.host_lengths).split(cfg.eval_batch_size):
        batch = core.make_batch(data, idx, core.batch_width(data, idx, cfg.pad_multiple))
        with autocast_context(cfg, device):
            out = model(**core.model_inputs(model, batch)).logits
        logits[idx.to(device)] = out.float()
    model.train(was_training)
    return logits


def evaluate(model: nn.Module, data: core.EncodedSplit, cfg: Config, device: torch.device) -> dict[str, Any]:
    """Return eval loss, accuracy, predictions and probabilities of `model` on `data`."""
    logits = predict(model, data, cfg, device)
    loss = float(F.cross_entropy(logits, data.labels.to(device), reduction="sum")) / len(data)
    probs = torch.softmax(logits, -1).cpu()
    labels = data.labels.cpu()
    preds = probs.argmax(-1)
    return {"loss": loss, "accuracy": float((preds == labels).float().mean()),
            "predictions": preds.numpy(), "labels": labels.numpy(), "probs": probs.numpy()}


def _finite_message(value: float, step: int, method: str) -> str:
    """Return the one message every method gives when its training loss is not finite."""
    return (f"{method}: the training loss became {value} at step {step}. Lower lr=, "
            f"use precision='fp32' or 'bf16' instead of fp16, or lower grad_clip=.")


def _check_finite(value: float, step: int, method: str) -> None:
    if not math.isfinite(value):
        raise DivergedError(_finite_message(value, step, method))


def _diverged(model: nn.Module, running_loss: torch.Tensor | float | None) -> float | None:
    """Return the non-finite value (the running loss, else a weight's) when training has diverged,
    else None. Read only after a step failed, so normal steps never wait on it."""
    if running_loss is not None and not math.isfinite(float(running_loss)):
        return float(running_loss)
    for p in model.parameters():
        if not bool(torch.isfinite(p).all()):
            return float("nan")
    return None


def measure_step_costs(cfg: Config, model: nn.Module, data: core.EncodedSplit, device: torch.device,
                       rows: Sequence[int], graphed: bool | None = None, widths: Sequence[int] | None = None,
                       repeats: int = 5) -> core.StepCosts:
    """Return StepCosts for updates of each row count in `rows` at each padded width of the data
    (or `widths`), on a throwaway copy of the model with the baseline's optimizer: graphed
    (capturable fused AdamW, one captured graph per shape, median of `repeats` replays) when
    `graphed` (default: graphs_enabled(cfg) on CUDA), else eager steps (median of `repeats`).
    `model` itself is not touched (a copy trains, at learning rate 0)."""
    graphed = graphs_enabled(cfg) and device.type == "cuda" if graphed is None else graphed
    cap = data.input_ids.shape[1]
    widths = sorted(set(widths or {core.padded_length(w, cfg.pad_multiple, cap) for w in range(1, cap + 1)}))
    rows = sorted({min(int(r), len(data)) for r in rows})
    core.sync_device(device)
    start = time.perf_counter()
    model = copy.deepcopy(model).to(device).train()
    run_cfg = replace_config(cfg, cuda_graphs=graphed)
    ctx = RunContext(cfg=run_cfg, model=model, train=data, eval=data, num_labels=model.config.num_labels,
                     device=device, generator=torch.Generator(), device_generator=torch.Generator(device=device))
    if cfg.precision == "fp16" and device.type == "cuda":
        ctx.scaler = torch.amp.GradScaler("cuda")
    ctx.graphs = graphed
    ctx.optimizer = build_optimizer(model, run_cfg, device, capturable=graphed)
    for group in ctx.optimizer.param_groups:  # measure the work, move no weight far
        group["lr"] = torch.tensor(0.0, device=device) if graphed else 0.0
    updater = GraphedUpdate(ctx, lambda inputs, key: plain_update(ctx, data, inputs["rows"], key[1]))
    seconds: dict[tuple[int, int], float] = {}
    for _ in range(3):  # a cold first shape would otherwise look dearer than larger ones
        updater.step((rows[0], widths[0]), {"rows": core.to_device(torch.arange(rows[0]), device)})
    for width in widths:
        for count in rows:
            key, inputs = (count, width), {"rows": core.to_device(torch.arange(count), device)}
            for _ in range(cfg.graph_warmup_steps + 1 if updater.capture else 1):  # warm-up, then capture
                updater.step(key, inputs)
            times = []
            for _ in range(repeats):
                core.sync_device(device)
                t0 = time.perf_counter()
                updater.step(key, inputs)
                core.sync_device(device)
                times.append(time.perf_counter() - t0)
            seconds[key] = float(np.median(times))
    warnings = core.cost_warnings(seconds)
    if updater.capture_error:
        warnings.append(f"graph capture failed, costs are eager: {updater.capture_error}")
    n_graphs = len(updater.graphs)
    capture = updater.capture_seconds / n_graphs if n_graphs else 0.0
    del updater, ctx, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    core.sync_device(device)
    return core.StepCosts(seconds=seconds, graphed=graphed and n_graphs > 0, capture_seconds=capture,
                     measure_seconds=time.perf_counter() - start, warnings=warnings)


@torch.no_grad()
def measure_forward_seconds(cfg: Config, model: nn.Module, data: core.EncodedSplit, device: torch.device,
                            rows: int, width: int, repeats: int = 5, graphed: bool = False) -> float:
    """Return the median seconds of a no-grad forward (train mode, autocast) of `rows` rows at
    `width` tokens on a throwaway copy of `model`: the scoring pass of Selective Backprop and
    RHO-LOSS, run as they run it (ScoredBatches.score): through a forward-only GraphedUpdate,
    replayed as a CUDA graph when `graphed`, else eager."""
    model = copy.deepcopy(model).to(device).train()
    ctx = RunContext(cfg=cfg, model=model, train=data, eval=data, num_labels=model.config.num_labels, device=device,
                     generator=torch.Generator(), device_generator=torch.Generator(device=device), graphs=graphed)
    batch = core.make_batch(data, torch.arange(min(rows, len(data))), width)
    scorer = GraphedUpdate(ctx, lambda inputs, key: {"logits": ctx.forward(batch)}, trains=False)
    times = []
    for k in range(cfg.graph_warmup_steps + 1 + repeats + 2):  # warm-up and capture (graphed), two more warm-ups
        core.sync_device(device)
        t0 = time.perf_counter()
        scorer.step((rows, width), {})
        core.sync_device(device)
        if k >= cfg.graph_warmup_steps + 3:
            times.append(time.perf_counter() - t0)
    del scorer, ctx, model
    return float(np.median(times))


def calibration_rows(cfg: Config, full_rows: int | None = None) -> list[int]:
    """Return the row counts a step-cost table measures: eighth, quarter, half and whole batch,
    and MC-Learn's full-pass rows."""
    sizes = {max(1, cfg.batch_size // d) for d in (8, 4, 2, 1)}
    return sorted(sizes | ({full_rows} if full_rows else set()))
