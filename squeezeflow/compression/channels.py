"""Structured pruning: remove whole output channels (Conv) or neurons (Linear), so the model really shrinks.

Unlike magnitude pruning (zeros inside dense tensors), a removed channel is gone from every tensor that touched it:
the layer's own weight rows and bias, the following BatchNorm's affine parameters and running statistics, and the
next layer's input columns (through a Flatten, the block of features the channel fed). Layers in between that act
per element or per channel (ReLU, Dropout, pooling) pass through unchanged. The last weighted layer (the
classifier) never loses outputs, and a layer whose coupling is not understood is left alone rather than guessed at.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Technique, TechniqueConfig, register_technique
from squeezeflow.config import TrainParams
from squeezeflow.models import count_parameters

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
ELEMENTWISE = (nn.ReLU, nn.Dropout)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)

Importance = Literal["l1", "l2", "bn"]
Scope = Literal["layer", "global"]


class PruneChannelsConfig(TechniqueConfig):
    amount: float = Field(0.5, ge=0, lt=1, description="fraction of channels/neurons removed")
    importance: Importance = Field("l1", description="l1/l2 norm of a channel's weights, or |gamma| of its BatchNorm")
    scope: Scope = Field("layer", description="the same fraction from each layer, or globally by normalised score")
    min_channels: int = Field(1, ge=1, description="no prunable layer is left with fewer outputs")
    steps: int = Field(1, ge=1, le=100, description="prune in this many equal increments up to amount")
    finetune: TrainParams | None = Field(None, description="training between steps (needs steps > 1)")

    @model_validator(mode="after")
    def _finetune_needs_steps(self) -> PruneChannelsConfig:
        # fine-tuning runs *between* steps; with one step it would silently do nothing
        if self.finetune is not None and self.steps < 2:
            raise ValueError("finetune runs between pruning steps, so it needs steps >= 2; to fine-tune after "
                             "one-shot pruning add a training step after this one")
        return self


@dataclass(frozen=True)
class Coupling:
    """The output channels of layer `producer`, tied to the same channels of the BatchNorms `norms` and to the
    input of layer `consumer`; each channel feeds `spatial` consecutive inputs of the consumer (>1 through a
    Flatten, whose channel-major order puts channel c at c*spatial ... (c+1)*spatial)."""

    producer: int
    norms: tuple[int, ...]
    consumer: int
    spatial: int


def _is(module: nn.Module, types: tuple[type, ...]) -> bool:
    # exact types: a subclass (say a quantized Linear) may not be rebuildable from the base constructor
    return type(module) in types


def _out_channels(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def input_shapes(model: nn.Sequential, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The input shape of every layer, from one forward pass of a single zero sample (eval mode, no grad)."""
    shapes: list[tuple[int, ...]] = [()] * len(model)
    hooks = [m.register_forward_pre_hook(lambda _m, args, i=i: shapes.__setitem__(i, tuple(args[0].shape)))
             for i, m in enumerate(model)]
    was_training = model.training
    p = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=p.dtype, device=p.device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes


def _producer_ok(m: nn.Module, out_shape: tuple[int, ...]) -> bool:
    if not _is(m, WEIGHTED) or getattr(m, "groups", 1) != 1:
        return False
    # channels must sit on dim 1: a Linear on a 3-D tensor would prune along its last dim instead
    rank_ok = len(out_shape) == 2 if isinstance(m, nn.Linear) else len(out_shape) >= 3
    return rank_ok and out_shape[1] == _out_channels(m)


def _consumer_ok(m: nn.Module, shape: tuple[int, ...], channels: int, spatial: int, flat: bool) -> bool:
    if isinstance(m, nn.Linear):
        return len(shape) == 2 and m.in_features == channels * spatial
    return not flat and m.groups == 1 and len(shape) >= 3 and m.in_channels == channels


def coupling_at(model: nn.Sequential, shapes: list[tuple[int, ...]], i: int) -> Coupling | None:
    """Follow layer i's outputs to the next weighted layer, or None if a layer on the way is not understood."""
    if i + 1 >= len(model) or not _producer_ok(model[i], shapes[i + 1]):
        return None
    channels, norms, spatial, flat = _out_channels(model[i]), [], 1, False
    for j in range(i + 1, len(model)):
        m, shape = model[j], shapes[j]
        if _is(m, WEIGHTED):
            ok = _consumer_ok(m, shape, channels, spatial, flat)
            return Coupling(i, tuple(norms), j, spatial) if ok else None
        if _is(m, ELEMENTWISE):
            continue
        if flat:  # after a Flatten only elementwise layers keep the channel -> feature-block mapping simple
            return None
        if _is(m, NORMS) and m.num_features == channels:
            norms.append(j)
        elif _is(m, (nn.Flatten,)) and m.start_dim == 1 and m.end_dim == -1:
            flat, spatial = True, math.prod(shape[2:])
        elif not (_is(m, POOLS) and len(shape) >= 3):  # pooling acts on the spatial dims only
            return None
    return None  # the last weighted layer (the classifier): its outputs are never removed


def find_couplings(model: nn.Sequential, input_shape: tuple[int, ...]) -> list[Coupling]:
    """Every layer whose output channels can be removed, in model order."""
    shapes = input_shapes(model, input_shape)
    return [c for i in range(len(model)) if (c := coupling_at(model, shapes, i)) is not None]


def channel_importance(model: nn.Sequential, c: Coupling, importance: Importance) -> torch.Tensor:
    """One score per output channel of c.producer; the lowest scores are removed first."""
    if importance == "bn":
        bn = model[c.norms[0]] if c.norms else None
        if bn is None or bn.weight is None:
            raise ValueError(f"importance 'bn' needs an affine BatchNorm after layer {c.producer} "
                             f"({type(model[c.producer]).__name__}) and there is none; use 'l1' or 'l2'")
        return bn.weight.detach().abs().float()
    w = model[c.producer].weight.detach().flatten(1).float()
    return w.abs().sum(1) if importance == "l1" else w.pow(2).sum(1).sqrt()


def _n_removed(amount: float, n: int) -> int:
    # floor, with a little slack so 0.5 * 3 / 3 of 10 is 5 and not 4
    return math.floor(amount * n + 1e-9)


def _lowest(scores: torch.Tensor, n: int) -> set[int]:
    return set(torch.argsort(scores, stable=True)[:n].tolist()) if n > 0 else set()


def _keep_all_but(count: int, removed: set[int]) -> torch.Tensor:
    return torch.tensor([k for k in range(count) if k not in removed], dtype=torch.long)


def _floor_of(original: int, min_channels: int) -> int:
    return min(original, min_channels)  # a layer already narrower than min_channels is simply left alone


def _select_per_layer(scores: dict[int, torch.Tensor], original: dict[int, int], amount: float,
                      min_channels: int) -> dict[int, set[int]]:
    removed = {}
    for i, s in scores.items():
        target = max(original[i] - _n_removed(amount, original[i]), _floor_of(original[i], min_channels))
        removed[i] = _lowest(s, len(s) - target)
    return removed


def _select_global(scores: dict[int, torch.Tensor], original: dict[int, int], amount: float,
                   min_channels: int) -> dict[int, set[int]]:
    # dividing by each layer's mean score makes layers of different scale and fan-in comparable
    total, current = sum(original.values()), sum(len(s) for s in scores.values())
    need = _n_removed(amount, total) - (total - current)
    ranked = sorted((float(s[k] / s.mean().clamp_min(1e-12)), i, k) for i, s in scores.items() for k in range(len(s)))
    removed: dict[int, set[int]] = {i: set() for i in scores}
    for _, i, k in ranked:
        if need <= 0:
            break
        if len(scores[i]) - len(removed[i]) > _floor_of(original[i], min_channels):
            removed[i].add(k)
            need -= 1
    return removed


def select_channels(model: nn.Sequential, couplings: list[Coupling], amount: float, importance: Importance = "l1",
                    scope: Scope = "layer", min_channels: int = 1,
                    original: dict[int, int] | None = None) -> dict[int, torch.Tensor]:
    """Kept output channels (sorted indices) per producer layer, such that `amount` of the `original` channel
    counts (default: the current ones) is removed in all; channels already gone count towards it."""
    scores = {c.producer: channel_importance(model, c, importance) for c in couplings}
    original = original or {i: len(s) for i, s in scores.items()}
    pick = _select_global if scope == "global" else _select_per_layer
    removed = pick(scores, original, amount, min_channels)
    return {i: _keep_all_but(len(scores[i]), removed[i]) for i in scores}


def _shrunk_weighted(m: nn.Module, out: torch.Tensor | None, inp: torch.Tensor | None) -> nn.Module:
    w = m.weight.detach()
    w = w[out] if out is not None else w
    w = w[:, inp] if inp is not None else w
    b = None if m.bias is None else (m.bias.detach()[out] if out is not None else m.bias.detach())
    factory = {"bias": b is not None, "device": w.device, "dtype": w.dtype}
    if isinstance(m, nn.Linear):
        new = nn.Linear(w.shape[1], w.shape[0], **factory)
    else:
        new = type(m)(w.shape[1], w.shape[0], m.kernel_size, stride=m.stride, padding=m.padding,
                      dilation=m.dilation, groups=1, padding_mode=m.padding_mode, **factory)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _shrunk_norm(m: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = type(m)(len(keep), eps=m.eps, momentum=m.momentum, affine=m.affine,
                  track_running_stats=m.track_running_stats)
    ref = next(iter([*m.parameters(), *m.buffers()]), None)
    if ref is not None:
        new.to(device=ref.device, dtype=ref.dtype)  # .to(dtype) leaves the integer batch counter alone
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(m, name) is not None:
                getattr(new, name).copy_(getattr(m, name)[keep])
        if m.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(m.num_batches_tracked)
    return new


def remove_channels(model: nn.Sequential, couplings: list[Coupling], keep: dict[int, torch.Tensor]) -> nn.Sequential:
    """Replace, in place, every layer touched by a removed channel with a smaller one of the same type holding the
    kept weights unchanged; returns the model."""
    out_idx: dict[int, torch.Tensor] = {}
    in_idx: dict[int, torch.Tensor] = {}
    for c in couplings:
        k = keep.get(c.producer)
        if k is None or len(k) == _out_channels(model[c.producer]):
            continue
        for j in (c.producer, *c.norms):
            out_idx[j] = k
        in_idx[c.consumer] = (k[:, None] * c.spatial + torch.arange(c.spatial)).flatten()
    for j in sorted(out_idx.keys() | in_idx.keys()):
        old = model[j]
        new = _shrunk_norm(old, out_idx[j]) if _is(old, NORMS) else _shrunk_weighted(old, out_idx.get(j), in_idx.get(j))
        model[j] = new.train(old.training)
    return model


def _channel_counts(model: nn.Sequential, couplings: list[Coupling]) -> dict[str, int]:
    return {f"{c.producer}_{type(model[c.producer]).__name__.lower()}": _out_channels(model[c.producer])
            for c in couplings}


@register_technique
class PruneChannels(Technique):
    """Remove the least important channels/neurons of every hidden layer, optionally in steps with fine-tuning."""

    name = "prune-channels"
    kind = "structure"
    Config = PruneChannelsConfig
    config: PruneChannelsConfig

    def apply(self, model: nn.Sequential, ctx: CompressContext) -> Applied:
        cfg = self.config
        model = copy.deepcopy(model)  # the caller's model (often the teacher) stays as it was
        couplings = find_couplings(model, ctx.input_shape)
        if cfg.importance == "bn":  # fail before any work, naming the first layer without a BatchNorm
            for c in couplings:
                channel_importance(model, c, "bn")
        original = {c.producer: _out_channels(model[c.producer]) for c in couplings}
        before, params_before, fits = _channel_counts(model, couplings), count_parameters(model), []
        for step in range(1, cfg.steps + 1):
            amount = cfg.amount if step == cfg.steps else cfg.amount * step / cfg.steps
            keep = select_channels(model, couplings, amount, cfg.importance, cfg.scope, cfg.min_channels, original)
            remove_channels(model, couplings, keep)
            ctx.log(f"prune-channels step {step}/{cfg.steps}: kept {_channel_counts(model, couplings)}")
            if step < cfg.steps and cfg.finetune is not None:
                fits.append(ctx.fit(model, cfg.finetune, desc=f"prune-channels finetune {step}/{cfg.steps - 1}"))
        metrics = {"channels_before": before, "channels_kept": _channel_counts(model, couplings),
                   "params_before": params_before, "params_after": count_parameters(model),
                   "param_ratio": count_parameters(model) / max(params_before, 1)}
        if fits:
            metrics |= {"finetune_steps": len(fits), "finetune_best_val_accuracy": fits[-1].best_val_accuracy}
        return Applied(model, metrics)
