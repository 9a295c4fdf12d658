import numpy as np
import torch

from squeezeflow.config import TrainParams
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.training import accuracy, distillation_loss, fit, seed_everything


def test_distillation_loss_vanishes_for_identical_logits_with_pure_soft_targets():
    logits = torch.randn(16, 10)
    y = torch.randint(0, 10, (16,))
    for kind in ("kl", "mse"):
        assert distillation_loss(logits, logits, y, 4.0, 1.0, kind).abs() < 1e-6
        assert distillation_loss(logits + torch.randn(16, 10), logits, y, 4.0, 1.0, kind) > 1e-3


def _blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 4)) + y[:, None] * 3).astype(np.float32)
    return x, y


def test_fit_learns_and_restores_the_best_epoch():
    x, y = _blobs()
    seed_everything(0)
    m = build_model(ModelSpec("mlp", (4,), 3, (16,)))
    res = fit(m, (x[:200], y[:200]), (x[200:], y[200:]), TrainParams(epochs=30, patience=5, lr=1e-2), 0, "t")
    assert res.best_val_accuracy > 90
    assert accuracy(m, x[200:], y[200:]) == res.best_val_accuracy
