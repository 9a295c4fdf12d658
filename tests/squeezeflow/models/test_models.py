import numpy as np
import pytest
import torch
from torch import nn

from squeezeflow.models import (
    ModelSpec,
    build_model,
    choose_arch,
    describe,
    load_checkpoint,
    rebuild,
    resolve_arch,
    save_checkpoint,
)
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


def _signals(n=400, length=48, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    phase = 2 * np.pi * (rng.uniform(2, 4, (n, 1)) * t + rng.uniform(0, 1, (n, 1)))
    return np.sin(phase) + rng.normal(0, 0.3, (n, length))


def test_auto_picks_a_cnn_for_images_and_signals_and_an_mlp_for_tabular_features():
    rng = np.random.default_rng(0)
    assert choose_arch(rng.normal(size=(50, 8, 8))) == "cnn"  # 2-D inputs: images
    assert choose_arch(_signals()) == "cnn"  # neighbours correlate far more than average pairs
    # tabular: features of wildly different scales, correlated in groups, not along the column order
    base = rng.normal(size=(400, 4))
    tab = np.concatenate([base @ rng.normal(size=(4, 6)), rng.normal(size=(400, 10))], axis=1)
    tab = tab[:, rng.permutation(tab.shape[1])] * np.logspace(-2, 3, tab.shape[1])
    assert choose_arch(tab) == "mlp"
    assert choose_arch(_signals()[:, rng.permutation(48)]) == "mlp"  # the same signals, columns shuffled
    assert choose_arch(rng.normal(size=(50, 5))) == "mlp"  # too few features to convolve over
    constant = np.concatenate([_signals(), np.ones((400, 3))], axis=1)  # constant columns are ignored, not NaN
    assert choose_arch(constant) == "cnn"


def test_resolve_arch_fills_in_the_architectures_default_size():
    x = np.random.default_rng(0).normal(size=(30, 6))
    assert resolve_arch("auto", None, x) == ("mlp", (512, 512))
    assert resolve_arch("cnn", None, x) == ("cnn", (128, 256, 256))
    assert resolve_arch("auto", (7, 9), x) == ("mlp", (7, 9))
