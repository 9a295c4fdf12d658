import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

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


def _rates(params: TrainParams, n: int = 128, reported: list | None = None) -> list[float]:
    """The learning rate at every step of a fit, recorded from inside the optimizer (`reported`: gets the fit's
    own count of its steps)."""
    x, y = _blobs(n)
    m = build_model(ModelSpec("mlp", (4,), 3, (8,)))
    seen: list[float] = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
    try:
        result = fit(m, (x, y), (x[:32], y[:32]), params, 0, "t")
    finally:
        hook.remove()
    if reported is not None:
        reported.append(result.steps)
    return seen


def test_one_cycle_warms_up_to_the_peak_then_anneals():
    params = TrainParams(epochs=10, patience=100, lr=0.01, batch_size=32, schedule="onecycle", warmup=0.2,
                         select="last")
    rates = _rates(params)
    assert len(rates) == 10 * 4
    peak = int(np.argmax(rates))
    assert 6 <= peak <= 9  # 20% of 40 steps
    assert max(rates) == pytest.approx(0.01, rel=1e-3)
    assert rates[0] < 0.001 and rates[-1] < 1e-4


def test_max_steps_fits_fewer_epochs_and_lays_the_whole_schedule_over_them():
    params = TrainParams(epochs=10, max_steps=18, patience=100, lr=0.01, batch_size=32, schedule="onecycle",
                         select="last")
    reported: list[int] = []
    rates = _rates(params, reported=reported)  # 128 samples: 4 steps per epoch, so 4 epochs fit in 18 steps
    assert len(rates) == 4 * 4
    assert reported == [len(rates)]  # the steps the fit reports (in a stage's metrics) are the optimizer's
    assert max(rates) == pytest.approx(0.01, rel=0.02) and rates[-1] < 1e-4  # warmed up and annealed, not cut
    assert len(_rates(params.model_copy(update={"max_steps": 10_000}))) == 10 * 4  # a cap above: all the epochs


def test_cosine_warms_up_linearly_then_decays_to_zero():
    rates = _rates(TrainParams(epochs=10, patience=100, lr=0.01, batch_size=32, schedule="cosine", warmup=0.25))
    assert rates[:10] == pytest.approx([0.01 * (i + 1) / 10 for i in range(10)])
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False)) and rates[-1] < 1e-4


def test_last_keeps_the_final_weights_and_never_stops_early():
    x, y = _blobs()
    seed_everything(0)
    m = build_model(ModelSpec("mlp", (4,), 3, (16,)))
    params = TrainParams(epochs=12, patience=1, lr=1e-2, schedule="onecycle", optimizer="adamw", select="last")
    res = fit(m, (x[:200], y[:200]), (x[200:], y[200:]), params, 0, "t")
    assert res.epochs_run == 12 and res.best_epoch == 12


def test_label_smoothing_keeps_predictions_less_confident():
    x, y = _blobs()
    probs = {}
    for smoothing in (0.0, 0.3):
        seed_everything(0)
        m = build_model(ModelSpec("mlp", (4,), 3, (16,)))
        fit(m, (x, y), (x[:50], y[:50]), TrainParams(epochs=30, patience=100, lr=1e-2, label_smoothing=smoothing,
                                                     select="last"), 0, "t")
        with torch.no_grad():
            probs[smoothing] = torch.softmax(m(torch.as_tensor(x)), 1).max(1).values.mean().item()
    assert probs[0.3] < probs[0.0] - 0.05


def test_once_the_first_epoch_is_measured_the_loop_says_how_long_it_will_take_at_most(capsys):
    x, y = _blobs()
    m = build_model(ModelSpec("mlp", (4,), 3, (16,)))
    fit(m, (x[:200], y[:200]), (x[200:], y[200:]), TrainParams(epochs=12, patience=100, batch_size=32), 0, "teacher")
    said = [line for line in capsys.readouterr().out.splitlines() if "epoch 1 took" in line]
    assert len(said) == 1 and said[0].startswith("[squeezeflow] teacher: epoch 1 took ")
    assert "at most 12 epochs: about " in said[0]
