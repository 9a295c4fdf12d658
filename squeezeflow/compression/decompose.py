"""Tensor decompositions of convolutions: one conv becomes a short chain of cheaper convs.

Tucker-2 (Kim et al. 2016) factors only the two channel modes of the weight (Cout, Cin, *k):
    1x1 conv Cin->R_in  ->  k conv R_in->R_out (original stride/padding/dilation)  ->  1x1 conv R_out->Cout (bias)
CP (Lebedev et al. 2015) writes the weight as a sum of R rank-one tensors, one factor per mode:
    1x1 conv Cin->R  ->  depthwise conv per spatial axis (groups=R)  ->  1x1 conv R->Cout (bias)
The first 1x1 conv has no bias, so it maps zero padding to zeros and the chain computes exactly what the
decomposed weight would. Only plain convs (groups=1, zero padding) on more than one input channel are
decomposed: the first conv on the raw input has almost nothing to gain.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator
from torch import nn

from squeezeflow.compression.base import (
    Applied,
    CompressContext,
    Selection,
    Technique,
    register_technique,
)
from squeezeflow.compression.factorization import exactly_one, param_counts, ratio_rank, relative_error, rewrite

Conv = nn.Conv1d | nn.Conv2d


def decomposable(layer: nn.Module) -> bool:
    return (type(layer) in (nn.Conv1d, nn.Conv2d) and layer.groups == 1 and layer.padding_mode == "zeros"
            and layer.in_channels > 1)


# --- Tucker-2 ------------------------------------------------------------------------------------------------

def unfold(t: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-n unfolding: the mode's fibres as columns, shape (t.shape[mode], everything else)."""
    return t.movedim(mode, 0).reshape(t.shape[mode], -1)


def mode_product(t: torch.Tensor, matrix: torch.Tensor, mode: int) -> torch.Tensor:
    """t x_mode matrix: multiplies every mode-n fibre by matrix (rows x t.shape[mode])."""
    return torch.tensordot(matrix, t, dims=([1], [mode])).movedim(0, mode)


def leading_vectors(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    """The `rank` leading left singular vectors (fewer when the matrix has fewer)."""
    return torch.linalg.svd(matrix, full_matrices=False)[0][:, :rank]


def tucker2(weight: torch.Tensor, rank_out: int, rank_in: int, iterations: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(core (R_out, R_in, *k), U_out (Cout, R_out), U_in (Cin, R_in)) with orthonormal U: HOSVD, then
    `iterations` HOOI sweeps (each factor the best one given the other, so the error never grows)."""
    w = weight.detach().double()  # float64: full ranks must reproduce the conv exactly
    u_out, u_in = leading_vectors(unfold(w, 0), rank_out), leading_vectors(unfold(w, 1), rank_in)
    for _ in range(iterations):
        u_out = leading_vectors(unfold(mode_product(w, u_in.T, 1), 0), rank_out)
        u_in = leading_vectors(unfold(mode_product(w, u_out.T, 0), 1), rank_in)
    core = mode_product(mode_product(w, u_out.T, 0), u_in.T, 1)
    return core.to(weight.dtype), u_out.to(weight.dtype), u_in.to(weight.dtype)


def tucker2_weight(core: torch.Tensor, u_out: torch.Tensor, u_in: torch.Tensor) -> torch.Tensor:
    return mode_product(mode_product(core, u_out, 0), u_in, 1)


def tucker_chain_weight(chain: list[nn.Module]) -> torch.Tensor:
    """The single conv weight a Tucker-2 chain computes, read back from its layers."""
    first, middle, last = chain
    return tucker2_weight(middle.weight, last.weight.flatten(1), first.weight.flatten(1).T)


def tucker_ranks(conv: Conv, ratio: float) -> tuple[int, int]:
    """(R_out, R_in): a fraction of each channel count, capped by the rank the mode's unfolding can have."""
    k = math.prod(conv.kernel_size)
    return (min(ratio_rank(ratio, conv.out_channels), conv.in_channels * k),
            min(ratio_rank(ratio, conv.in_channels), conv.out_channels * k))


def tucker_params(conv: Conv, rank_out: int, rank_in: int) -> int:
    return conv.in_channels * rank_in + rank_in * rank_out * math.prod(conv.kernel_size) + rank_out * conv.out_channels


def tucker_layers(conv: Conv, rank_out: int, rank_in: int, iterations: int = 0) -> list[nn.Module]:
    core, u_out, u_in = tucker2(conv.weight, rank_out, rank_in, iterations)
    r_out, r_in, ones = u_out.shape[1], u_in.shape[1], (1,) * (conv.weight.dim() - 2)
    return [
        _conv_like(conv, conv.in_channels, r_in, u_in.T.reshape(r_in, conv.in_channels, *ones)),
        _conv_like(conv, r_in, r_out, core, stride=conv.stride, padding=conv.padding, dilation=conv.dilation),
        _conv_like(conv, r_out, conv.out_channels, u_out.reshape(conv.out_channels, r_out, *ones), bias=conv.bias),
    ]


class TuckerConfig(Selection):
    rank_ratio: float = Field(gt=0, le=1, description="rank of each channel mode as a fraction of its channels")
    iterations: int = Field(2, ge=0, le=100, description="HOOI refinement sweeps after the HOSVD; 0 = HOSVD only")
    only_if_smaller: bool = Field(True, description="skip a conv whose decomposition has no fewer parameters")


@register_technique
class TuckerFactorize(Technique):
    name, kind, Config = "factorize-tucker", "structure", TuckerConfig
    handles = (nn.Conv1d, nn.Conv2d)

    def apply(self, model: nn.Module, ctx: CompressContext) -> Applied:
        cfg: TuckerConfig = self.config
        layers, skipped = {}, []

        def replace(i: str, layer: nn.Module) -> list[nn.Module] | None:
            if not decomposable(layer) or not cfg.chooses(model, i):
                return None
            rank_out, rank_in = tucker_ranks(layer, cfg.rank_ratio)
            if cfg.only_if_smaller and tucker_params(layer, rank_out, rank_in) >= layer.weight.numel():
                skipped.append(i)
                return None
            new = tucker_layers(layer, rank_out, rank_in, cfg.iterations)
            layers[i] = {"rank_out": new[1].out_channels, "rank_in": new[1].in_channels,
                              "weight_error": relative_error(layer.weight, tucker_chain_weight(new))}
            return new

        out = rewrite(model, replace)
        return Applied(out, {"layers": layers, "skipped": skipped, **param_counts(model, out)})


# --- CP ------------------------------------------------------------------------------------------------------

def cp_als(tensor: torch.Tensor, rank: int, iterations: int = 200, tol: float = 1e-8, seed: int = 0
           ) -> list[torch.Tensor]:
    """CP decomposition by alternating least squares: one (dim_n, rank) factor per mode, with
    tensor ~= sum_r factors[0][:, r] o factors[1][:, r] o ... The column scales live in factors[0].

    Deterministic: SVD start (leading singular vectors of each unfolding), seeded noise for columns beyond them.
    Stops after `iterations` sweeps or once a sweep lowers the relative error by less than `tol`."""
    x = tensor.detach().double()
    gen = torch.Generator().manual_seed(seed)
    factors = [_cp_start(unfold(x, n), rank, gen) for n in range(x.dim())]
    scale, previous = torch.ones(rank, dtype=x.dtype), math.inf
    for _ in range(iterations):
        for n in range(x.dim()):
            gram = math.prod(f.T @ f for m, f in enumerate(factors) if m != n)
            factor = _mttkrp(x, factors, n) @ torch.linalg.pinv(gram, hermitian=True)
            # unit columns keep the factors from drifting apart in scale; the scale is put back at the end
            scale = factor.norm(dim=0).clamp_min(1e-30)
            factors[n] = factor / scale
        error = relative_error(x, cp_weight([factors[0] * scale, *factors[1:]]))
        if previous - error < tol:
            break
        previous = error
    factors[0] = factors[0] * scale
    return [f.to(tensor.dtype) for f in factors]


def cp_weight(factors: list[torch.Tensor]) -> torch.Tensor:
    letters = "abcdefgh"[: len(factors)]
    return torch.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)


def _mttkrp(x: torch.Tensor, factors: list[torch.Tensor], n: int) -> torch.Tensor:
    """The mode-n unfolding times the Khatri-Rao product of the other factors, as one einsum."""
    letters = "abcdefgh"[: x.dim()]
    others = [m for m in range(x.dim()) if m != n]
    spec = letters + "," + ",".join(f"{letters[m]}r" for m in others) + f"->{letters[n]}r"
    return torch.einsum(spec, x, *(factors[m] for m in others))


def _cp_start(unfolded: torch.Tensor, rank: int, gen: torch.Generator) -> torch.Tensor:
    start = leading_vectors(unfolded, rank)
    extra = torch.randn(unfolded.shape[0], rank - start.shape[1], generator=gen, dtype=unfolded.dtype)
    return torch.cat([start, extra / math.sqrt(unfolded.shape[0])], dim=1)


def cp_params(conv: Conv, rank: int) -> int:
    return rank * (conv.in_channels + sum(conv.kernel_size) + conv.out_channels)


def cp_rank(conv: Conv, rank_ratio: float | None, rank: int | None) -> int:
    return rank if rank is not None else ratio_rank(rank_ratio, min(conv.in_channels, conv.out_channels))


def numeric_padding(conv: Conv) -> tuple[int, ...] | None:
    """The padding per axis, which the per-axis depthwise convs need; None for an asymmetric 'same'."""
    if not isinstance(conv.padding, str):
        return tuple(conv.padding)
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
    return None if any(t % 2 for t in total) else tuple(t // 2 for t in total)


def cp_layers(conv: Conv, rank: int, iterations: int = 200, tol: float = 1e-8, seed: int = 0) -> list[nn.Module]:
    """1x1 (Cin->R) -> one depthwise conv per spatial axis, each with that axis' stride/padding/dilation ->
    1x1 (R->Cout, original bias)."""
    padding = numeric_padding(conv)
    if padding is None:
        raise ValueError("CP needs a symmetric padding per axis")
    out_f, in_f, *spatial = cp_als(conv.weight, rank, iterations, tol, seed)
    dims = len(spatial)
    layers = [_conv_like(conv, conv.in_channels, rank, in_f.T.reshape(rank, conv.in_channels, *(1,) * dims))]
    for axis, f in enumerate(spatial):
        weight = f.T.reshape(rank, 1, *_along(axis, dims, f.shape[0], 1))
        layers.append(_conv_like(conv, rank, rank, weight, groups=rank,
                                 stride=_along(axis, dims, conv.stride[axis], 1),
                                 padding=_along(axis, dims, padding[axis], 0),
                                 dilation=_along(axis, dims, conv.dilation[axis], 1)))
    layers.append(_conv_like(conv, rank, conv.out_channels, out_f.reshape(conv.out_channels, rank, *(1,) * dims),
                             bias=conv.bias))
    return layers


class CpConfig(Selection):
    rank_ratio: float | None = Field(None, gt=0, le=1, description="rank as a fraction of min(Cin, Cout)")
    rank: int | None = Field(None, ge=1, le=4096, description="the same absolute rank for every conv")
    iterations: int = Field(200, ge=1, le=10_000, description="at most this many ALS sweeps")
    tol: float = Field(1e-8, ge=0, lt=1, description="stop once a sweep lowers the relative error by less")
    only_if_smaller: bool = Field(True, description="skip a conv whose decomposition has no fewer parameters")

    @model_validator(mode="after")
    def _one_rank_rule(self) -> CpConfig:
        exactly_one(self, "rank_ratio", "rank")
        return self


@register_technique
class CpFactorize(Technique):
    name, kind, Config = "factorize-cp", "structure", CpConfig
    handles = (nn.Conv1d, nn.Conv2d)

    def apply(self, model: nn.Module, ctx: CompressContext) -> Applied:
        cfg: CpConfig = self.config
        layers, skipped = {}, []

        def replace(i: str, layer: nn.Module) -> list[nn.Module] | None:
            if not decomposable(layer) or not cfg.chooses(model, i):
                return None
            rank = cp_rank(layer, cfg.rank_ratio, cfg.rank)
            too_big = cfg.only_if_smaller and cp_params(layer, rank) >= layer.weight.numel()
            if too_big or numeric_padding(layer) is None:
                skipped.append(i)
                return None
            new = cp_layers(layer, rank, cfg.iterations, cfg.tol, ctx.seed)
            layers[i] = {"rank": rank, "weight_error": relative_error(layer.weight, cp_chain_weight(new))}
            return new

        out = rewrite(model, replace)
        return Applied(out, {"layers": layers, "skipped": skipped, **param_counts(model, out)})


def _along(axis: int, dims: int, value: int, rest: int) -> tuple[int, ...]:
    """`value` on one spatial axis, `rest` on the others: the shape of a one-axis depthwise conv."""
    return tuple(value if a == axis else rest for a in range(dims))


def cp_chain_weight(chain: list[nn.Module]) -> torch.Tensor:
    """The single conv weight a CP chain computes: factors read back from the layers."""
    first, *depthwise, last = chain
    spatial = [m.weight.reshape(m.out_channels, -1).T for m in depthwise]
    return cp_weight([last.weight.flatten(1), first.weight.flatten(1).T, *spatial])


def _conv_like(conv: Conv, cin: int, cout: int, weight: torch.Tensor, bias: torch.Tensor | None = None,
               **kwargs) -> nn.Module:
    """A conv of the same class, dtype and device holding `weight` (and `bias`, when given)."""
    new = type(conv)(cin, cout, tuple(weight.shape[2:]), bias=bias is not None, device=conv.weight.device,
                     dtype=conv.weight.dtype, **kwargs)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new
