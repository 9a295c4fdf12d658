import pytest
import torch
from torch import nn

from squeezeflow.models import ModelSpec, build_model, describe, load_checkpoint, rebuild, save_checkpoint
from squeezeflow.models.flops import flops, parameter_counts


@pytest.mark.parametrize("shape", [(40,), (8, 8)])
def test_cnn_takes_the_dataset_layout_and_classifies(shape):
    m = build_model(ModelSpec("cnn", shape, 10, (4, 8, 8)))
    assert m(torch.zeros(3, *shape)).shape == (3, 10)
    assert isinstance(m[1], nn.Conv1d if len(shape) == 1 else nn.Conv2d)


def test_describe_rebuild_round_trips_a_changed_model(tmp_path):
    torch.manual_seed(0)
    m = build_model(ModelSpec("cnn", (40,), 10, (4, 8)))
    m[-1] = nn.Linear(m[-1].in_features, 10, bias=False)  # a technique swapped a layer: the spec no longer says so
    save_checkpoint(tmp_path / "m.pt", m, ModelSpec("cnn", (40,), 10, (4, 8)))
    back, spec = load_checkpoint(tmp_path / "m.pt")
    assert describe(back) == describe(m) and back[-1].bias is None and spec.hidden == (4, 8)
    x = torch.randn(5, 40)
    assert torch.allclose(back(x), m.eval()(x))


def test_unregistered_layers_are_refused():
    with pytest.raises(TypeError, match="not registered"):
        describe(nn.Sequential(nn.GELU()))
    with pytest.raises(KeyError, match="unknown layer type"):
        rebuild([{"type": "gelu"}])


def test_flops_count_dense_multiply_adds_and_parameters():
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert flops(m, (8, 8)) == 2 * 64 * 10
    conv = nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 4, 3, padding=1, bias=False))
    assert flops(conv, (40,)) == 2 * 40 * 4 * 3
    with torch.no_grad():
        m[1].weight[:, :32] = 0
    counts = parameter_counts(m)
    assert counts["parameters"] == 650 and counts["nonzero_parameters"] == 650 - 320
