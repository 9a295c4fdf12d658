import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from squeezeflow.compression import TECHNIQUES, CompressContext
from squeezeflow.compression.decompose import (
    CpConfig,
    CpFactorize,
    TuckerConfig,
    TuckerFactorize,
    cp_als,
    cp_layers,
    cp_params,
    cp_weight,
    tucker2,
    tucker2_weight,
    tucker_layers,
    tucker_params,
)
from squeezeflow.export import export_onnx, parity
from squeezeflow.models import LAYERS, ModelSpec, build_model, describe, load_checkpoint, rebuild, save_checkpoint

# stride 2 and padding everywhere: the chains must split them correctly
CONVS = {
    "conv1d": lambda: nn.Conv1d(5, 6, 3, stride=2, padding=1),
    "conv2d": lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1),
    "conv2d-dilated": lambda: nn.Conv2d(4, 5, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 1)),
    "conv2d-same": lambda: nn.Conv2d(3, 4, 3, padding="same", bias=False),
}


def conv(name: str) -> nn.Module:
    torch.manual_seed(0)
    return CONVS[name]()


def sample(layer: nn.Module, n: int = 4, size: int = 9) -> torch.Tensor:
    spatial = (size,) * (layer.weight.dim() - 2)
    return torch.randn(n, layer.in_channels, *spatial, generator=torch.Generator().manual_seed(1))


def output_error(layer: nn.Module, chain: list[nn.Module]) -> float:
    x = sample(layer)
    with torch.no_grad():
        ref = layer(x)
        return float((nn.Sequential(*chain)(x) - ref).norm() / ref.norm())


def n_params(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def context(model: nn.Sequential, spec: ModelSpec) -> CompressContext:
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(8, *spec.input_shape)).astype(np.float32), rng.integers(0, spec.num_classes, 8))
    return CompressContext(teacher=model, teacher_spec=spec, train=data, val=data, seed=0)


def test_registered_as_structure():
    assert TECHNIQUES["factorize-tucker"] is TuckerFactorize and TECHNIQUES["factorize-cp"] is CpFactorize
    assert TuckerFactorize.kind == CpFactorize.kind == "structure"


# --- Tucker-2 ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("iterations", [0, 2])
@pytest.mark.parametrize("name", list(CONVS))
def test_tucker_at_full_ranks_reproduces_the_conv(name, iterations):
    layer = conv(name)
    chain = tucker_layers(layer, layer.out_channels, layer.in_channels, iterations)
    assert [m.kernel_size for m in chain][1] == layer.kernel_size and chain[0].bias is None
    x = sample(layer)
    with torch.no_grad():
        torch.testing.assert_close(nn.Sequential(*chain)(x), layer(x), atol=1e-4, rtol=0)


def test_tucker_error_grows_as_ranks_shrink():
    w = torch.randn(8, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    errors = [float((w - tucker2_weight(*tucker2(w, r, r))).norm()) for r in (6, 5, 4, 3, 2, 1)]
    assert errors[0] > 0 and all(a < b for a, b in zip(errors, errors[1:], strict=False))


def test_hooi_refinement_never_does_worse_than_hosvd():
    w = torch.randn(8, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    errors = [float((w - tucker2_weight(*tucker2(w, 3, 2, it))).norm()) for it in (0, 1, 5)]
    assert errors[0] >= errors[1] - 1e-6 >= errors[2] - 2e-6
    assert errors[2] < errors[0]  # and on a random weight it does better


def test_tucker_factors_are_orthonormal():
    core, u_out, u_in = tucker2(torch.randn(8, 6, 3), 4, 3, iterations=2)
    assert core.shape == (4, 3, 3)
    torch.testing.assert_close(u_out.T @ u_out, torch.eye(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(u_in.T @ u_in, torch.eye(3), atol=1e-5, rtol=0)


def test_tucker_shrinks_parameters():
    layer = nn.Conv2d(16, 16, 3, bias=False)
    chain = tucker_layers(layer, 4, 4)
    assert n_params(chain) == tucker_params(layer, 4, 4) < layer.weight.numel()


# --- CP ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["conv1d", "conv2d"])
def test_cp_error_falls_as_rank_grows(name):
    layer = conv(name)
    errors = [output_error(layer, cp_layers(layer, r)) for r in (1, 2, 4, 8)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False))


@pytest.mark.parametrize("name", list(CONVS))
def test_cp_beyond_full_rank_reproduces_the_conv(name):
    layer = conv(name)
    # a rank covering every slice along the largest mode always suffices; ALS gets there from its SVD start
    full = layer.weight.numel() // max(layer.weight.shape)
    chain = cp_layers(layer, full + 4, iterations=500)
    assert all(m.groups == full + 4 for m in chain[1:-1]) and chain[0].bias is None
    x = sample(layer)
    with torch.no_grad():
        torch.testing.assert_close(nn.Sequential(*chain)(x), layer(x), atol=1e-4, rtol=0)


def test_cp_als_is_deterministic():
    w = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    a, b = cp_als(w, 30, iterations=20, seed=7), cp_als(w, 30, iterations=20, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(cp_weight(a), cp_weight(cp_als(w, 30, iterations=20, seed=8)))  # the seed matters


def test_cp_shrinks_parameters():
    layer = nn.Conv2d(16, 16, 3, bias=False)
    chain = cp_layers(layer, 4, iterations=5)
    assert n_params(chain) == cp_params(layer, 4) == 4 * (16 + 3 + 3 + 16) < layer.weight.numel()


# --- as techniques on whole models -----------------------------------------------------------------------------

TECHNIQUE_CASES = {
    "tucker": lambda: TuckerFactorize(TuckerConfig(rank_ratio=0.5)),
    "cp": lambda: CpFactorize(CpConfig(rank_ratio=0.5, iterations=30)),
}


def conv_indices(model: nn.Sequential) -> list[int]:
    return [i for i, m in enumerate(model) if isinstance(m, (nn.Conv1d, nn.Conv2d))]


# (1, 8, 8) rather than (8, 8) for Conv2d: the cnn's Unflatten(1, (1, 8, 8)) only accepts flattened (N, 64) inputs
@pytest.mark.parametrize("shape", [(40,), (1, 8, 8)])
@pytest.mark.parametrize("technique", list(TECHNIQUE_CASES))
def test_factorized_cnn_round_trips_checkpoint_and_onnx(tmp_path, technique, shape):
    spec = ModelSpec("cnn", shape, 10, (4, 8))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    applied = TECHNIQUE_CASES[technique]().apply(model, context(model, spec))
    out, metrics = applied.model, applied.metrics
    first, second = conv_indices(model)
    assert isinstance(out, nn.Sequential) and not out.training
    assert list(metrics["layers"]) == [str(second)]  # the first conv (one input channel) is left alone
    torch.testing.assert_close(out[first].weight, model[first].weight, atol=0, rtol=0)
    assert metrics["params_after"] < metrics["params_before"] == n_params([model])
    assert all(type(m) in {cls for cls, _ in LAYERS.values()} for m in out)
    assert describe(rebuild(describe(out))) == describe(out)

    save_checkpoint(tmp_path / "m.pt", out, spec)
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), out(x), atol=0, rtol=0)
    export_onnx(loaded, shape, tmp_path / "m.onnx", opset=17)
    result = parity(loaded, tmp_path / "m.onnx", x.numpy())
    assert result["max_abs_diff"] < 1e-4 and result["argmax_agreement"] == 1.0


def test_full_rank_tucker_keeps_the_model_outputs():
    spec = ModelSpec("cnn", (1, 8, 8), 10, (4, 8, 8))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    out = TuckerFactorize(TuckerConfig(rank_ratio=1.0, only_if_smaller=False)).apply(model, context(model, spec)).model
    assert len(out) == len(model) + 4  # two convs became three each
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), atol=1e-4, rtol=0)


def test_layers_that_would_not_shrink_are_skipped():
    spec = ModelSpec("cnn", (40,), 10, (4, 8))
    model = build_model(spec).eval()
    applied = CpFactorize(CpConfig(rank=64)).apply(model, context(model, spec))
    assert applied.metrics["layers"] == {} and applied.metrics["skipped"] == [str(conv_indices(model)[1])]
    assert describe(applied.model) == describe(model)


def test_cp_technique_uses_the_context_seed():
    spec = ModelSpec("cnn", (1, 8, 8), 10, (4, 8))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    technique = CpFactorize(CpConfig(rank=3, iterations=10))
    a, b = (technique.apply(model, context(model, spec)).model for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("config_cls, config", [
    (TuckerConfig, {"rank_ratio": 0}),
    (TuckerConfig, {}),
    (TuckerConfig, {"rank_ratio": 0.5, "iterations": -1}),
    (TuckerConfig, {"rank_ratio": 0.5, "ranks": 3}),
    (CpConfig, {"rank_ratio": 0}),
    (CpConfig, {"rank": 0}),
    (CpConfig, {"rank_ratio": 0.5, "rank": 4}),
    (CpConfig, {}),
    (CpConfig, {"rank": 4, "energy": 0.9}),
])
def test_bad_config_is_rejected(config_cls, config):
    with pytest.raises(ValidationError):
        config_cls(**config)
