import pytest
import torch

from squeezeflow.compression import apply_masks, magnitude_prune, sparsity, weight_masks
from squeezeflow.models import ModelSpec, build_model


def model():
    torch.manual_seed(0)
    return build_model(ModelSpec("mlp", (8, 8), 10, (32, 16)))


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_exact_sparsity_and_permanent(scope, target):
    m = model()
    magnitude_prune(m, target, scope)
    assert sparsity(m) == pytest.approx(target, abs=2e-3)
    assert not any(name.endswith("_orig") for name, _ in m.named_parameters())  # no reparametrisation left


def test_smallest_weights_go_first():
    m = model()
    before = torch.cat([layer.weight.detach().abs().flatten() for layer in m if isinstance(layer, torch.nn.Linear)])
    magnitude_prune(m, 0.5)
    after = torch.cat([layer.weight.detach().flatten() for layer in m if isinstance(layer, torch.nn.Linear)])
    assert before[after == 0].max() <= before[after != 0].min()


def test_masks_keep_pruned_weights_zero_through_updates():
    m = model()
    magnitude_prune(m, 0.6)
    masks = weight_masks(m)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    apply_masks(masks)
    assert sparsity(m) == pytest.approx(0.6, abs=2e-3)


def test_technique_iterative_reaches_exact_sparsity_and_fine_tuning_keeps_zeros(task):
    import copy

    from squeezeflow.compression.prune import MagnitudePrune, MagnitudePruneConfig, schedule
    from tests.squeezeflow.compression.conftest import FAST

    assert schedule(0.6, 3) == pytest.approx([0.2, 0.4, 0.6])
    m = copy.deepcopy(task.teacher)
    out = MagnitudePrune(MagnitudePruneConfig(sparsity=0.6, steps=3, finetune=FAST)).apply(m, task)
    assert out.metrics["sparsity"] == pytest.approx(0.6, abs=1e-3)
    zeros = [w.detach() == 0 for _, w in ((mod, mod.weight) for mod in m if isinstance(mod, torch.nn.Linear))]
    task.fit(m, FAST, "ft")  # later training (the recovery fine-tuning) must not revive pruned weights
    again = [w.detach() == 0 for _, w in ((mod, mod.weight) for mod in m if isinstance(mod, torch.nn.Linear))]
    assert all(bool((a & b).eq(a).all()) for a, b in zip(zeros, again, strict=True))
    assert sparsity(m) == pytest.approx(0.6, abs=1e-3)


def test_bad_sparsity_is_rejected():
    from pydantic import ValidationError

    from squeezeflow.compression.prune import MagnitudePruneConfig

    for bad in ({"sparsity": 1.0}, {"sparsity": -0.1}, {"steps": 0}, {"scope": "row"}, {"sparsty": 0.5}):
        with pytest.raises(ValidationError):
            MagnitudePruneConfig.model_validate(bad)
