
import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from squeezeflow.compression import TECHNIQUES, CompressContext
from squeezeflow.compression.channels import PruneChannels, PruneChannelsConfig, channel_counts
from squeezeflow.config import TrainParams
from squeezeflow.export.onnx import export_onnx, parity
from squeezeflow.models import (
    ModelSpec,
    build_model,
    count_parameters,
    describe,
    load_checkpoint,
    save_checkpoint,
)

SPECS = {
    "mlp": ModelSpec("mlp", (8, 8), 10, (32, 16)),
    "cnn-1d": ModelSpec("cnn", (40,), 10, (8, 16)),
    "cnn-2d": ModelSpec("cnn", (8, 8), 10, (8, 16)),
}


def _randomise_norms(model: nn.Module) -> nn.Module:
    """Fresh BatchNorms are the identity with beta 0, which would hide BN coupling mistakes."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def make(arch: str) -> tuple[nn.Sequential, ModelSpec]:
    if arch == "pool-2d":  # hand-built: pooling between convs, adaptive pooling before Flatten, BN after a Linear
        torch.manual_seed(0)
        spec = ModelSpec("custom", (8, 8), 10)
        model = nn.Sequential(nn.Unflatten(1, (1, 8)), nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.MaxPool2d(2, 2), nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                              nn.Flatten(), nn.Dropout(0.1), nn.Linear(48, 16), nn.BatchNorm1d(16), nn.ReLU(),
                              nn.Linear(16, 10))
        return _randomise_norms(model), spec
    torch.manual_seed(0)
    spec = SPECS[arch]
    return _randomise_norms(build_model(spec)), spec


ARCHS = [*SPECS, "pool-2d"]


def ctx_for(model: nn.Sequential, spec: ModelSpec, n: int = 64) -> CompressContext:
    rng = np.random.default_rng(0)
    def data():  # learnable labels (the sign of the mean), so fine-tuning improves and keeps its weights
        x = rng.normal(size=(n, *spec.input_shape)).astype(np.float32)
        return x, (x.reshape(n, -1).mean(1) > 0).astype(np.int64)

    return CompressContext(teacher=model, teacher_spec=spec, train=data(), val=data(), seed=0, log=lambda _: None)


def inputs(spec: ModelSpec, n: int = 32) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(2).normal(size=(n, *spec.input_shape)), dtype=torch.float32)


def out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def prune(model, spec, **cfg):
    return PruneChannels(PruneChannelsConfig(**cfg)).apply(model, ctx_for(model, spec))


def widths(model: nn.Sequential) -> list[int]:
    return [m.out_features if isinstance(m, nn.Linear) else m.out_channels
            for m in model if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def test_registered_as_structure():
    assert TECHNIQUES["prune-channels"] is PruneChannels and PruneChannels.kind == "structure"


@pytest.mark.parametrize("arch", ARCHS)
def test_shrinks_params_and_onnx_with_parity(tmp_path, arch):
    model, spec = make(arch)
    applied = prune(model, spec, amount=0.5)
    pruned = applied.model
    full = widths(model)
    assert widths(pruned)[:-1] == [w - w // 2 for w in full[:-1]]
    assert widths(pruned)[-1] == full[-1] == 10  # the classifier keeps every output
    before, after = applied.metrics["params_before"], applied.metrics["params_after"]
    assert before == count_parameters(model) > after == count_parameters(pruned)
    assert list(applied.metrics["channels_kept"].values())[:-1] == [w - w // 2 for w in full[:-1]]
    assert widths(model) == full  # the caller's model is untouched

    export_onnx(model, spec.input_shape, tmp_path / "full.onnx", opset=17)
    export_onnx(pruned, spec.input_shape, tmp_path / "pruned.onnx", opset=17)
    assert (tmp_path / "pruned.onnx").stat().st_size < 0.75 * (tmp_path / "full.onnx").stat().st_size
    result = parity(pruned, tmp_path / "pruned.onnx", inputs(spec).numpy())
    assert result["max_abs_diff"] < 1e-5 and result["argmax_agreement"] == 1.0


def test_channels_with_zero_weights_and_norms_are_removed_without_changing_the_output():
    """l1 importance removes the channels whose weights are zero; with their BatchNorm's gamma and beta zero too
    they contribute nothing, so the pruned model computes exactly what the original did."""
    model, spec = make("cnn-2d")
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    norms = [m for m in model if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for conv, bn in zip(convs, norms, strict=True):
            dead = list(range(conv.out_channels // 2))
            conv.weight[dead] = 0
            bn.weight[dead] = 0
            bn.bias[dead] = 0
    pruned = prune(model, spec, amount=0.5, importance="l1").model
    assert widths(pruned)[:-1] == [4, 8]
    torch.testing.assert_close(out(pruned, inputs(spec)), out(model, inputs(spec)), atol=1e-5, rtol=1e-5)


def test_bn_importance_errors_without_a_batchnorm():
    model, spec = make("mlp")
    with pytest.raises(ValueError, match="BatchNorm"):
        prune(model, spec, amount=0.5, importance="bn")


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_min_channels_is_respected(scope):
    model, spec = make("cnn-2d")
    pruned = prune(model, spec, amount=0.75, scope=scope, min_channels=3).model
    assert all(w >= 3 for w in widths(pruned)[:-1])


def test_iterative_reaches_the_one_shot_count_and_finetunes_between_steps():
    model, spec = make("cnn-1d")
    one_shot = prune(model, spec, amount=0.5)
    iterative = prune(model, spec, amount=0.5, steps=3,
                      finetune=TrainParams(epochs=2, patience=2, lr=1e-2, batch_size=16))
    assert widths(iterative.model) == widths(one_shot.model) == [4, 8, 10]
    assert iterative.metrics["finetune_steps"] == 2
    untrained = prune(model, spec, amount=0.5, steps=3)
    assert not torch.allclose(out(iterative.model, inputs(spec)), out(untrained.model, inputs(spec)))


def test_zero_amount_changes_nothing():
    model, spec = make("cnn-2d")
    pruned = prune(model, spec, amount=0.0).model
    assert describe(pruned) == describe(model)
    torch.testing.assert_close(out(pruned, inputs(spec)), out(model, inputs(spec)))


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip(tmp_path, arch):
    model, spec = make(arch)
    pruned = prune(model, spec, amount=0.5).model
    save_checkpoint(tmp_path / "m.pt", pruned, spec)
    loaded, loaded_spec = load_checkpoint(tmp_path / "m.pt")
    assert describe(loaded) == describe(pruned)
    assert loaded_spec == spec
    torch.testing.assert_close(out(loaded, inputs(spec)), out(pruned, inputs(spec)), atol=0, rtol=0)


# --- graphs the built-in models do not have ---------------------------------------------------------------------


class Residual(nn.Module):
    """A residual block with a depthwise conv: the add ties the block's output channels to its input's."""

    def __init__(self, c: int):
        super().__init__()
        self.expand = nn.Conv2d(c, 2 * c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * c)
        self.depthwise = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c, bias=False)
        self.project = nn.Conv2d(2 * c, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return x + self.bn2(self.project(torch.relu(self.depthwise(torch.relu(self.bn1(self.expand(x)))))))


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.blocks = nn.Sequential(Residual(8), Residual(8))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x.unsqueeze(1)))
        return self.head(torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1))  # a concatenation too


class Encoder(nn.Module):
    """A transformer classifier on feature vectors: attention and FFN blocks, LayerNorm, residual adds."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 32)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), 1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(1))


@pytest.mark.parametrize("cls", [ResNetish, Encoder])
def test_user_graphs_stay_consistent_and_export(tmp_path, cls):
    torch.manual_seed(0)
    model, spec = _randomise_norms(cls()), ModelSpec("custom", (8, 8), 10)
    applied = prune(model, spec, amount=0.5)
    pruned = applied.model
    assert applied.metrics["params_after"] < 0.75 * applied.metrics["params_before"]
    assert channel_counts(pruned)["head"] == 10
    x = inputs(spec)
    assert out(pruned, x).shape == (len(x), 10)
    export_onnx(pruned, spec.input_shape, tmp_path / "p.onnx", opset=17)
    result = parity(pruned, tmp_path / "p.onnx", x.numpy())
    assert result["max_abs_diff"] < 1e-4 and result["argmax_agreement"] == 1.0


def test_include_and_exclude_choose_the_layers_by_path():
    torch.manual_seed(0)
    model, spec = _randomise_norms(ResNetish()), ModelSpec("custom", (8, 8), 10)
    before = channel_counts(model)
    after = channel_counts(prune(model, spec, amount=0.5, include=["blocks.*"], exclude=["blocks.1.*"]).model)
    assert after["blocks.0.expand"] < before["blocks.0.expand"]
    assert after["blocks.1.expand"] == before["blocks.1.expand"]


@pytest.mark.parametrize("bad", [
    {"amount": 1.0}, {"amount": -0.1}, {"importance": "l3"}, {"scope": "model"}, {"min_channels": 0},
    {"steps": 0}, {"sparsity": 0.5}, {"finetune": {"epochs": 1}},  # finetune runs between steps: needs steps >= 2
])
def test_bad_configs_are_rejected(bad):
    with pytest.raises(ValidationError):
        PruneChannelsConfig(**bad)
