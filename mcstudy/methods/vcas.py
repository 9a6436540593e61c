"""VCAS (Liu et al. 2024): unbiased sampling of activation and weight gradients in backward."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import mclearn_core as core
from mclearn_core import encoder_parts
from mcstudy.engine import RunContext, draw_seed
from .baseline import FullPass


class VCASState:
    """Sampling ratios and counters shared by VCAS's backward hooks during one run."""

    def __init__(self, act_ratio: float, weight_ratio: float, generator: torch.Generator):
        self.act_ratio, self.weight_ratio = act_ratio, weight_ratio
        self.generator = generator
        self.enabled = True
        self.act_kept = 0.0  # running sums of kept fractions, for the FLOPs report
        self.act_seen = 0
        self.weight_kept = 0.0
        self.weight_seen = 0


def importance_keep(scores: torch.Tensor, ratio: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (keep mask, keep probability) with p_i = min(1, ratio * n * s_i / sum s): an
    importance draw whose kept items, scaled by 1/p_i, give an unbiased sum."""
    n = scores.numel()
    total = scores.sum()
    if ratio >= 1.0 or total <= 0:
        return torch.ones_like(scores, dtype=torch.bool), torch.ones_like(scores)
    prob = (ratio * n * scores / total).clamp(max=1.0)
    keep = torch.rand(scores.shape, generator=generator, device=scores.device) < prob
    return keep, prob


class _SampleActivationGrad(torch.autograd.Function):
    """Identity forward; backward keeps each example's gradient with probability proportional
    to its norm and rescales it by 1/p (VCAS activation-gradient sampling, unbiased)."""

    @staticmethod
    def forward(ctx, hidden, state):
        ctx.state = state
        return hidden.view_as(hidden)

    @staticmethod
    def backward(ctx, grad):
        state = ctx.state
        if not state.enabled:
            return grad, None
        norms = grad.float().flatten(1).norm(dim=1)
        keep, prob = importance_keep(norms, state.act_ratio, state.generator)
        scale = torch.where(keep, 1.0 / prob.clamp_min(1e-12), torch.zeros_like(prob))
        state.act_kept += float(keep.float().mean())
        state.act_seen += 1
        return grad * scale.to(grad.dtype).view(-1, *([1] * (grad.dim() - 1))), None


class _SampledWeightGradLinear(torch.autograd.Function):
    """Linear layer whose input gradient is exact and whose weight gradient sums only a sample
    of tokens, drawn with probability proportional to ||g_t|| ||x_t|| and rescaled (VCAS)."""

    @staticmethod
    def forward(ctx, x, weight, bias, state):
        ctx.save_for_backward(x, weight)
        ctx.state, ctx.has_bias = state, bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        state = ctx.state
        grad_x = (grad @ weight.to(grad.dtype)).to(x.dtype)
        g2 = grad.reshape(-1, grad.shape[-1]).float()
        x2 = x.reshape(-1, x.shape[-1]).float()
        if state.enabled:
            keep, prob = importance_keep(g2.norm(dim=1) * x2.norm(dim=1), state.weight_ratio, state.generator)
            idx = keep.nonzero().squeeze(1)
            state.weight_kept += float(keep.float().mean())
            state.weight_seen += 1
            grad_w = (g2[idx] / prob[idx, None]).T @ x2[idx]  # only kept tokens: fewer FLOPs
        else:
            grad_w = g2.T @ x2
        grad_b = g2.sum(0).to(weight.dtype) if ctx.has_bias else None
        return grad_x, grad_w.to(weight.dtype), grad_b, None


class VCAS(FullPass):
    """VCAS (Liu et al. 2024): exact forward; in backward, per-example activation-gradient
    sampling after each transformer block and per-token weight-gradient sampling in the encoder's
    linear layers, both unbiased. Every vcas_every steps the ratios adapt so each sampling
    variance stays under tau x the SGD variance (estimated with vcas_repeats Monte Carlo draws).

    Zeroed rows still flow through dense PyTorch kernels, so the activation part saves FLOPs in
    principle but not wall-clock here; `telemetry()` reports both the estimated FLOPs saved and,
    through train_seconds, the wall-clock."""

    name = "vcas"
    graphable = False  # its backward draws samples and adapts ratios on the host
    own_fields = ("vcas_tau_act", "vcas_tau_weight", "vcas_every", "vcas_repeats", "vcas_min_ratio")
    wall_clock_note = ("no wall-clock knob: its ratios cut backward FLOPs, not seconds (dense kernels still do "
                       "the work); it runs once per seed at its defaults")

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        cfg = ctx.cfg
        self.state = VCASState(1.0, 1.0, torch.Generator(device=ctx.device).manual_seed(draw_seed(ctx)))
        self.history: list[dict[str, float]] = []
        parts = encoder_parts(ctx.model)
        for layer in parts.layers:
            layer.register_forward_hook(self._sample_after_block)
            for module in layer.modules():
                if isinstance(module, nn.Linear):
                    module.forward = self._sampled_linear(module)
        self.cfg = cfg

    def _sample_after_block(self, module, inputs, output):
        if isinstance(output, tuple):
            return (_SampleActivationGrad.apply(output[0], self.state),) + tuple(output[1:])
        return _SampleActivationGrad.apply(output, self.state)

    def _sampled_linear(self, module: nn.Linear):
        def forward(x):
            return _SampledWeightGradLinear.apply(x, module.weight, module.bias, self.state)
        return forward

    def _gradient(self, batch, act: bool, weight: bool) -> torch.Tensor:
        """Return the flattened gradient of the batch loss with the chosen sampling on."""
        model = self.ctx.model
        model.zero_grad(set_to_none=True)
        saved = (self.state.act_ratio, self.state.weight_ratio)
        self.state.act_ratio = saved[0] if act else 1.0
        self.state.weight_ratio = saved[1] if weight else 1.0
        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # same dropout masks in every draw
            torch.manual_seed(self.dropout_seed)
            loss = self.ctx.per_example_loss(self.ctx.forward(batch), batch["labels"]).mean()
            loss.backward()
        self.state.act_ratio, self.state.weight_ratio = saved
        grads = [p.grad.flatten().float() for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        return torch.cat(grads)

    def adapt(self, batch) -> dict[str, float]:
        """Estimate SGD and sampling variances on `batch` and move the ratios (x1.1 or x0.9)."""
        cfg = self.cfg
        n = batch["labels"].shape[0]
        self.dropout_seed = draw_seed(self.ctx)
        half = {k: v[: n // 2] for k, v in batch.items()}
        other = {k: v[n // 2:] for k, v in batch.items()}
        exact = self._gradient(batch, act=False, weight=False)
        # SGD variance of a batch-n mean, from two half-batch means: E||g1 - g2||^2 / 4.
        var_sgd = float((self._gradient(half, False, False) - self._gradient(other, False, False)).pow(2).sum()) / 4
        var_act = float(np.mean([float((self._gradient(batch, True, False) - exact).pow(2).sum())
                                 for _ in range(cfg.vcas_repeats)]))
        var_weight = float(np.mean([float((self._gradient(batch, False, True) - exact).pow(2).sum())
                                    for _ in range(cfg.vcas_repeats)]))
        lo = cfg.vcas_min_ratio
        self.state.act_ratio = float(np.clip(self.state.act_ratio * (1.1 if var_act > cfg.vcas_tau_act * var_sgd else 0.9), lo, 1.0))
        self.state.weight_ratio = float(np.clip(self.state.weight_ratio * (1.1 if var_weight > cfg.vcas_tau_weight * var_sgd else 0.9), lo, 1.0))
        record = {"var_sgd": var_sgd, "var_act": var_act, "var_weight": var_weight,
                  "act_ratio": self.state.act_ratio, "weight_ratio": self.state.weight_ratio}
        self.history.append(record)
        return record

    def step(self, i: int) -> dict[str, Any]:
        if i % self.cfg.vcas_every == 0 and len(self.plan[i][0]) >= 2:
            idx, width = self.plan[i]
            self.adapt(core.make_batch(self.data, idx, width))
        return super().step(i)

    def flops_saved_fraction(self) -> float:
        """Return the estimated share of backward linear-layer FLOPs avoided: half of the backward
        is input gradients (saved in proportion to dropped example rows), half weight gradients
        (saved in proportion to dropped tokens)."""
        act = self.state.act_kept / max(self.state.act_seen, 1)
        weight = self.state.weight_kept / max(self.state.weight_seen, 1)
        return 0.5 * (1 - act) + 0.5 * (1 - weight)

    def telemetry(self) -> dict[str, Any]:
        return {"adaptations": self.history, "backward_flops_saved_fraction": self.flops_saved_fraction(),
                "final_act_ratio": self.state.act_ratio, "final_weight_ratio": self.state.weight_ratio}
