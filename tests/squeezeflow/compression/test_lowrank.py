import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from squeezeflow.compression import TECHNIQUES, CompressContext
from squeezeflow.compression.lowrank import SvdConfig, SvdFactorize, energy_rank, svd_factors
from squeezeflow.export import export_onnx, parity
from squeezeflow.models import ModelSpec, build_model, describe, load_checkpoint, rebuild, save_checkpoint

SPEC = ModelSpec("mlp", (8, 8), 10, (32, 16))


def make(spec: ModelSpec = SPEC) -> nn.Sequential:
    torch.manual_seed(0)
    return build_model(spec).eval()


def context(model: nn.Sequential, spec: ModelSpec = SPEC) -> CompressContext:
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(8, *spec.input_shape)).astype(np.float32), rng.integers(0, spec.num_classes, 8))
    return CompressContext(teacher=model, teacher_spec=spec, train=data, val=data, seed=0)


def factorize(model: nn.Sequential, **config) -> tuple[nn.Sequential, dict]:
    applied = SvdFactorize(SvdConfig(**config)).apply(model, context(model))
    return applied.model, applied.metrics


def inputs(spec: ModelSpec = SPEC, n: int = 16) -> torch.Tensor:
    return torch.randn(n, *spec.input_shape, generator=torch.Generator().manual_seed(1))


def with_spectrum(singular_values: list[float], n_out: int, n_in: int) -> torch.Tensor:
    """An n_out x n_in matrix with exactly these singular values."""
    gen = torch.Generator().manual_seed(2)
    u = torch.linalg.qr(torch.randn(n_out, len(singular_values), generator=gen))[0]
    v = torch.linalg.qr(torch.randn(n_in, len(singular_values), generator=gen))[0]
    return u @ torch.diag(torch.tensor(singular_values)) @ v.T


def test_registered_as_structure():
    assert TECHNIQUES["factorize-svd"] is SvdFactorize and SvdFactorize.kind == "structure"


def test_error_falls_strictly_with_rank_and_vanishes_at_full_rank():
    w = torch.randn(12, 20, generator=torch.Generator().manual_seed(0))
    errors = []
    for rank in range(1, 13):
        first, second = svd_factors(w, rank)
        assert first.shape == (rank, 20) and second.shape == (12, rank)
        errors.append(float((w - second @ first).norm()))
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False))
    first, second = svd_factors(w, 12)
    torch.testing.assert_close(second @ first, w, atol=1e-5, rtol=0)


def test_factors_share_the_singular_values_evenly():
    first, second = svd_factors(with_spectrum([9.0, 4.0], 6, 5), 2)
    # sqrt(s) on each side: both factors have the same column/row norms, 3 and 2
    torch.testing.assert_close(first.norm(dim=1), torch.tensor([3.0, 2.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(second.norm(dim=0), torch.tensor([3.0, 2.0]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("rank", [0, 6])
def test_rank_outside_the_matrix_is_an_error(rank):
    with pytest.raises(ValueError):
        svd_factors(torch.ones(5, 7), rank)


def test_full_rank_model_computes_the_same_outputs():
    model = make()
    out, metrics = factorize(model, rank_ratio=1.0, skip_last=False, only_if_smaller=False)
    assert [type(m) for m in out].count(nn.Linear) == 6  # every Linear became two
    assert sorted(metrics["layers"]) == ["1", "3", "5"]
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("energy, expected", [(0.5, 1), (0.6, 2), (0.9, 3), (0.99, 4), (1.0, 4)])
def test_energy_picks_the_smallest_rank_meeting_it(energy, expected):
    # squared spectrum 16, 9, 4, 1 of 30: cumulative 0.53, 0.83, 0.97, 1.0
    w = with_spectrum([4.0, 3.0, 2.0, 1.0], 32, 64)  # the shape of the first Linear
    assert energy_rank(torch.linalg.svdvals(w), energy) == expected
    model = make()
    with torch.no_grad():
        model[1].weight.copy_(w)
    out, metrics = factorize(model, energy=energy)
    assert metrics["layers"]["1"]["rank"] == expected and out[1].out_features == expected


@pytest.mark.parametrize("energy", [0.3, 0.7, 0.95])
def test_energy_rank_is_minimal_on_a_random_spectrum(energy):
    s = torch.linalg.svdvals(torch.randn(20, 30, generator=torch.Generator().manual_seed(3)))
    share = torch.cumsum(s.double() ** 2, 0) / (s.double() ** 2).sum()
    rank = energy_rank(s, energy)
    assert share[rank - 1] >= energy and (rank == 1 or share[rank - 2] < energy)


def test_low_ratio_shrinks_parameters_and_leaves_the_classifier():
    model = make(ModelSpec("mlp", (8, 8), 10, (64, 32)))
    out, metrics = factorize(model, rank_ratio=0.25)
    assert metrics["params_after"] < metrics["params_before"]
    assert metrics["params_before"] == sum(p.numel() for p in model.parameters())
    assert metrics["params_after"] == sum(p.numel() for p in out.parameters())
    assert [out[i].out_features for i in (1, 4)] == [16, 8]  # round(0.25 * min(64, 64)), round(0.25 * min(64, 32))
    torch.testing.assert_close(out[-1].weight, model[-1].weight, atol=0, rtol=0)  # the classifier is untouched
    with torch.no_grad():
        out[-1].weight.zero_()  # later in-place steps (pruning) on the result must not reach the input model
    assert len(model) == 6 and model[-1].weight.abs().sum() > 0


def test_layers_that_would_not_shrink_are_skipped():
    model = make()
    out, metrics = factorize(model, rank_ratio=1.0, skip_last=False)
    assert metrics["layers"] == {} and metrics["skipped"] == ["1", "3", "5"]
    assert describe(out) == describe(model)


def test_checkpoint_and_onnx_round_trip(tmp_path):
    model = make()
    out, _ = factorize(model, rank_ratio=0.5)
    assert describe(rebuild(describe(out))) == describe(out)
    save_checkpoint(tmp_path / "m.pt", out, SPEC)
    loaded, spec = load_checkpoint(tmp_path / "m.pt")
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), out(x), atol=0, rtol=0)
    export_onnx(loaded, spec.input_shape, tmp_path / "m.onnx", opset=17)
    result = parity(loaded, tmp_path / "m.onnx", x.numpy())
    assert result["max_abs_diff"] < 1e-5 and result["argmax_agreement"] == 1.0


@pytest.mark.parametrize("config", [
    {"rank_ratio": 0},
    {"rank_ratio": 1.5},
    {"energy": 0},
    {"rank_ratio": 0.5, "energy": 0.9},
    {},
    {"rank_ratio": 0.5, "rank": 4},
])
def test_bad_config_is_rejected(config):
    with pytest.raises(ValidationError):
        SvdConfig(**config)
