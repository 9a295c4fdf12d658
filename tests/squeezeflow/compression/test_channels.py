import copy

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from squeezeflow.compression import TECHNIQUES, CompressContext
from squeezeflow.compression.channels import (
    PruneChannels,
    PruneChannelsConfig,
    channel_importance,
    find_couplings,
    remove_channels,
    select_channels,
)
from squeezeflow.config import TrainParams
from squeezeflow.export.onnx import export_onnx, parity
from squeezeflow.models import (
    ModelSpec,
    build_model,
    count_parameters,
    describe,
    load_checkpoint,
    rebuild,
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


@pytest.mark.parametrize("arch,expected", [("mlp", 2), ("cnn-1d", 2), ("cnn-2d", 2), ("pool-2d", 3)])
def test_every_hidden_layer_is_prunable_and_the_classifier_is_not(arch, expected):
    model, spec = make(arch)
    couplings = find_couplings(model, spec.input_shape)
    assert len(couplings) == expected
    assert all(c.producer != len(model) - 1 for c in couplings)


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
    assert list(applied.metrics["channels_kept"].values()) == [w - w // 2 for w in full[:-1]]
    assert widths(model) == full  # the caller's model is untouched

    export_onnx(model, spec.input_shape, tmp_path / "full.onnx", opset=17)
    export_onnx(pruned, spec.input_shape, tmp_path / "pruned.onnx", opset=17)
    assert (tmp_path / "pruned.onnx").stat().st_size < 0.75 * (tmp_path / "full.onnx").stat().st_size
    result = parity(pruned, tmp_path / "pruned.onnx", inputs(spec).numpy())
    assert result["max_abs_diff"] < 1e-5 and result["argmax_agreement"] == 1.0


def _zero_channel(model: nn.Sequential, coupling, channel: int, beta: bool = True) -> None:
    with torch.no_grad():
        producer = model[coupling.producer]
        producer.weight[channel] = 0
        if producer.bias is not None:
            producer.bias[channel] = 0
        for j in coupling.norms:
            model[j].weight[channel] = 0
            if beta:
                model[j].bias[channel] = 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("which", [0, -1])
def test_an_all_zero_channel_is_removed_without_changing_the_output(arch, which):
    model, spec = make(arch)
    couplings = find_couplings(model, spec.input_shape)
    target = couplings[which]
    _zero_channel(model, target, channel=3)
    total = sum(widths(model)[:-1])
    # global scope, one channel in all: the zero channel has the lowest score anywhere
    applied = prune(model, spec, amount=1.5 / total, scope="global")
    assert sum(widths(applied.model)[:-1]) == total - 1
    assert widths(applied.model)[couplings.index(target)] == widths(model)[couplings.index(target)] - 1
    torch.testing.assert_close(out(applied.model, inputs(spec)), out(model, inputs(spec)), atol=1e-5, rtol=0)


def test_a_zero_weight_channel_with_a_live_bn_beta_is_not_free_to_remove():
    # the converse, so the test above can fail: with BN beta left, ReLU(beta) still reaches the next layer
    model, spec = make("cnn-1d")
    c = find_couplings(model, spec.input_shape)[0]
    channel = int(torch.argmax(model[c.norms[0]].bias))  # beta > 0 survives the ReLU
    _zero_channel(model, c, channel, beta=False)
    keep = {c.producer: torch.tensor([k for k in range(8) if k != channel])}
    pruned = remove_channels(copy.deepcopy(model), [c], keep)
    assert not torch.allclose(out(pruned, inputs(spec)), out(model, inputs(spec)), atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_pruned_model_equals_the_original_with_removed_channels_zeroed(arch, scope):
    model, spec = make(arch)
    couplings = find_couplings(model, spec.input_shape)
    keep = select_channels(model, couplings, 0.5, "l2", scope)
    pruned = prune(model, spec, amount=0.5, importance="l2", scope=scope).model
    reference = copy.deepcopy(model)
    for c in couplings:
        for channel in set(range(model[c.producer].weight.shape[0])) - set(keep[c.producer].tolist()):
            _zero_channel(reference, c, channel)  # weights, bias, BN gamma and beta: the channel outputs 0
    assert widths(pruned)[:-1] == [len(keep[c.producer]) for c in couplings]
    torch.testing.assert_close(out(pruned, inputs(spec)), out(reference, inputs(spec)), atol=1e-5, rtol=1e-5)
    # the kept weights (and BN statistics) are copied, not retrained or rescaled
    first, k = couplings[0], keep[couplings[0].producer]
    assert torch.equal(pruned[first.producer].weight, model[first.producer].weight[k])
    for j in first.norms:
        assert torch.equal(pruned[j].running_mean, model[j].running_mean[k])


def test_l1_and_l2_pick_the_smallest_norm_channels():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1, 1, 1],  # l1 4, l2 2
                                            [3.0, 0, 0, 0],  # l1 3, l2 3
                                            [5.0, 5, 0, 0],  # large either way
                                            [0.0, 0, 6, 0]]))
    couplings = find_couplings(model, (4,))
    assert select_channels(model, couplings, 0.25, "l1")[0].tolist() == [0, 2, 3]
    assert select_channels(model, couplings, 0.25, "l2")[0].tolist() == [1, 2, 3]
    assert select_channels(model, couplings, 0.5, "l2")[0].tolist() == [2, 3]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_removed_channels_never_outrank_kept_ones(arch, importance):
    model, spec = make(arch)
    for c in find_couplings(model, spec.input_shape):
        scores = channel_importance(model, c, importance)
        kept = select_channels(model, [c], 0.4, importance)[c.producer]
        dropped = torch.ones(len(scores), dtype=torch.bool)
        dropped[kept] = False
        assert dropped.sum() == int(0.4 * len(scores)) and scores[dropped].max() <= scores[kept].min()


def test_bn_importance_uses_gamma_magnitude():
    model, spec = make("cnn-1d")
    c = find_couplings(model, spec.input_shape)[0]
    with torch.no_grad():
        model[c.norms[0]].weight.copy_(torch.tensor([0.5, -9.0, 0.1, 2.0, -0.2, 3.0, 0.3, 1.0]))
    kept = select_channels(model, [c], 0.5, "bn")[c.producer]
    assert kept.tolist() == [1, 3, 5, 7]  # |-9| is large: the sign does not matter


def test_bn_importance_errors_without_a_batchnorm():
    model, spec = make("mlp")
    with pytest.raises(ValueError, match="BatchNorm after layer 1"):
        prune(model, spec, importance="bn")
    model, spec = make("cnn-2d")
    assert widths(prune(model, spec, importance="bn", amount=0.5).model) == [4, 8, 10]


def test_global_scope_follows_normalised_scores_across_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.ones(8, 6))  # every neuron equally important
        model[2].weight.copy_(torch.ones(8, 8))
        model[2].weight[:4] *= 0.01  # half of this layer barely matters
    couplings = find_couplings(model, (6,))
    per_layer = select_channels(model, couplings, 0.25, scope="layer")
    assert [len(k) for k in per_layer.values()] == [6, 6]
    globally = select_channels(model, couplings, 0.25, scope="global")
    assert [len(k) for k in globally.values()] == [8, 4] and globally[2].tolist() == [4, 5, 6, 7]
    # normalised: scaling a whole layer does not make it more or less prunable
    with torch.no_grad():
        model[2].weight.mul_(1000.0)
    assert [k.tolist() for k in select_channels(model, couplings, 0.25, scope="global").values()] == \
        [k.tolist() for k in globally.values()]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_min_channels_is_respected(scope):
    model, spec = make("cnn-2d")
    pruned = prune(model, spec, amount=0.95, scope=scope, min_channels=3).model
    assert all(w >= 3 for w in widths(pruned)[:-1])
    assert widths(pruned)[:-1] == [3, 3]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_iterative_reaches_the_one_shot_count(scope):
    model, spec = make("cnn-1d")
    one_shot = prune(model, spec, amount=0.6, scope=scope)
    iterative = prune(model, spec, amount=0.6, scope=scope, steps=3,
                      finetune=TrainParams(epochs=2, patience=2, lr=1e-2, batch_size=16))
    if scope == "layer":
        assert widths(iterative.model) == widths(one_shot.model) == [4, 7, 10]
    else:
        assert sum(widths(iterative.model)) == sum(widths(one_shot.model)) == 24 - int(0.6 * 24) + 10
    # fine-tuning ran between the steps and changed the weights
    assert iterative.metrics["finetune_steps"] == 2
    untrained = prune(model, spec, amount=0.6, scope=scope, steps=3)
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
    assert describe(loaded) == describe(pruned) == describe(rebuild(describe(pruned)))
    assert loaded_spec == spec
    torch.testing.assert_close(out(loaded, inputs(spec)), out(pruned, inputs(spec)), atol=0, rtol=0)


@pytest.mark.parametrize("bad", [
    {"amount": 1.0}, {"amount": -0.1}, {"importance": "l3"}, {"scope": "model"}, {"min_channels": 0},
    {"steps": 0}, {"sparsity": 0.5}, {"finetune": {"epochs": 1}},  # finetune runs between steps: needs steps >= 2
])
def test_bad_configs_are_rejected(bad):
    with pytest.raises(ValidationError):
        PruneChannelsConfig(**bad)
