"""Low-rank factorization of Linear layers by truncated SVD: Linear(in, out) becomes Linear(in, r) -> Linear(r, out).

The truncated SVD is the best rank-r approximation of the weight (Eckart-Young). Each factor takes the square root
of the singular values, so the two new layers have similar scales for the fine-tuning that usually follows.
The helpers at the bottom (ranks, the flat rewrite, parameter counts) are shared with decompose.py.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Selection, Technique, register_technique
from squeezeflow.compression.factorization import exactly_one, param_counts, ratio_rank, relative_error, rewrite
from squeezeflow.models.graph import output_layer


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second), rank x in and out x rank, with second @ first the best rank-`rank` approximation of the
    out x in `weight`."""
    if not 1 <= rank <= min(weight.shape):
        raise ValueError(f"rank {rank} outside 1..{min(weight.shape)} for a {tuple(weight.shape)} weight")
    # float64: the tests (and full-rank factorizations) expect an exact reconstruction
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    first, second = root[:, None] * vh[:rank], u[:, :rank] * root[None, :]
    return first.to(weight.dtype), second.to(weight.dtype)


def energy_rank(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r whose r largest singular values hold at least `energy` of the sum of squared singular values.

    Singular values at rounding level (below len * eps * largest, as torch.linalg.matrix_rank has it) count as
    zero, so energy=1 means the numerical rank of the weight, not every bit of float32 noise."""
    s = singular_values.detach()
    s = torch.where(s > s.max() * len(s) * torch.finfo(s.dtype).eps, s, 0.0)
    cum = torch.cumsum(s.double().sort(descending=True).values ** 2, 0)
    # against the last cumulative sum itself (not a separately rounded total), so energy=1 never overshoots
    return int((cum < energy * cum[-1]).sum()) + 1


def factorize_linear(layer: nn.Linear, rank: int) -> list[nn.Module]:
    """Linear(in, rank, bias=False) -> Linear(rank, out, original bias)."""
    first_w, second_w = svd_factors(layer.weight, rank)
    kw = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    first = nn.Linear(layer.in_features, rank, bias=False, **kw)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None, **kw)
    with torch.no_grad():
        first.weight.copy_(first_w)
        second.weight.copy_(second_w)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return [first, second]


class SvdConfig(Selection):
    rank_ratio: float | None = Field(None, gt=0, le=1, description="rank as a fraction of min(in, out)")
    energy: float | None = Field(None, gt=0, le=1, description="smallest rank keeping this fraction of the sum of "
                                                               "squared singular values")
    skip_last: bool = Field(True, description="leave the last Linear (the classifier) alone")
    only_if_smaller: bool = Field(True, description="skip a layer when rank * (in + out) >= in * out")

    @model_validator(mode="after")
    def _one_rank_rule(self) -> SvdConfig:
        exactly_one(self, "rank_ratio", "energy")
        return self


@register_technique
class SvdFactorize(Technique):
    name, kind, Config = "factorize-svd", "structure", SvdConfig
    handles = (nn.Linear,)

    def rank(self, layer: nn.Linear) -> int:
        cfg: SvdConfig = self.config
        if cfg.rank_ratio is not None:
            return ratio_rank(cfg.rank_ratio, min(layer.in_features, layer.out_features))
        # in the weight's own dtype: its eps decides which singular values are rounding noise
        return energy_rank(torch.linalg.svdvals(layer.weight.detach()), cfg.energy)

    def apply(self, model: nn.Module, ctx: CompressContext) -> Applied:
        cfg: SvdConfig = self.config
        last = output_layer(model, ctx.example()) if cfg.skip_last else None
        layers, skipped = {}, []

        def replace(i: str, layer: nn.Module) -> list[nn.Module] | None:
            # exact type: not a quantized subclass
            if type(layer) is not nn.Linear or i == last or not cfg.chooses(model, i):
                return None
            rank, n_in, n_out = self.rank(layer), layer.in_features, layer.out_features
            if cfg.only_if_smaller and rank * (n_in + n_out) >= n_in * n_out:
                skipped.append(i)
                return None
            new = factorize_linear(layer, rank)
            layers[i] = {"rank": rank, "weight_error": relative_error(layer.weight, new[1].weight @ new[0].weight)}
            return new

        out = rewrite(model, replace)
        return Applied(out, {"layers": layers, "skipped": skipped, **param_counts(model, out)})
