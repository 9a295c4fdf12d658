import copy

import pytest
import torch
from pydantic import ValidationError

from squeezeflow.compression.distill import Distill, DistillConfig, StudentSpec, features, kd_loss_fn
from squeezeflow.compression.distill_online import OnlineDistill, OnlineDistillConfig, mutual_kl
from squeezeflow.compression.distill_self import SelfDistill, SelfDistillConfig, fresh_copy
from squeezeflow.config import TrainParams
from squeezeflow.models import ModelSpec, describe
from squeezeflow.training import accuracy
from tests.squeezeflow.compression.conftest import FAST


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_loss_is_zero_when_student_equals_teacher(task, kind):
    x = torch.as_tensor(task.val[0][:32])
    y = torch.as_tensor(task.val[1][:32])
    loss = kd_loss_fn(task.teacher, DistillConfig(alpha=1.0, loss=kind))
    assert float(loss(task.teacher(x), x, y)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(task.teacher(x) + 1.0 * torch.randn(32, 3), x, y)) > 1e-3
    assert float(mutual_kl(task.teacher(x), task.teacher(x), 2.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("extra", [{}, {"loss": "mse"}, {"hint_weight": 0.5}])
def test_offline_distillation_builds_a_smaller_student_that_learns(task, extra):
    cfg = DistillConfig(student=StudentSpec(hidden=(8,)), train=FAST, **extra)
    out = Distill(cfg).apply(task.teacher, task)
    assert out.spec.hidden == (8,)
    assert sum(p.numel() for p in out.model.parameters()) < sum(p.numel() for p in task.teacher.parameters())
    assert accuracy(out.model, *task.val) >= accuracy(task.teacher, *task.val) - 5
    # a plain Sequential of the student's layers: no hint projection head left behind
    assert isinstance(out.model, torch.nn.Sequential) and [type(m) for m in out.model] == [
        torch.nn.Flatten, torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]


def test_a_student_may_stop_once_it_matches_the_teacher_on_val(task):
    long = TrainParams(epochs=200, patience=200, lr=1e-2, schedule="onecycle", select="last")
    student = StudentSpec(hidden=(16,))
    early = Distill(DistillConfig(student=student, train=long, stop_at_teacher=True)).apply(task.teacher, task)
    assert early.metrics["epochs"] < 200
    assert early.metrics["val_accuracy"] == accuracy(early.model, *task.val) >= accuracy(task.teacher, *task.val)
    short = TrainParams(epochs=12, patience=12, lr=1e-2, select="last")
    full = Distill(DistillConfig(student=student, train=short)).apply(task.teacher, task)
    assert full.metrics["epochs"] == 12  # without it, the whole schedule


def test_hint_loss_trains_a_projection_of_student_features_onto_the_teacher_features(task):
    from squeezeflow.compression import distill as d

    made = []
    original = d._WithHint

    class Recording(original):  # keeps a handle on the throwaway projection head
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    def hint_error(wrapped):
        xs = torch.as_tensor(task.train[0])
        with torch.no_grad():
            t = features(task.teacher, xs)
            return float(((wrapped.project(features(wrapped.student, xs)) - t) ** 2).mean() / (t**2).mean())

    d._WithHint = Recording
    try:
        out = Distill(DistillConfig(student=StudentSpec(hidden=(8,)), train=FAST,
                                    hint_weight=5.0)).apply(task.teacher, task)
    finally:
        d._WithHint = original
    (wrapped,) = made
    assert wrapped.student is out.model and not any(m is wrapped.project for m in out.model)
    fresh = Recording.__mro__[1](d.build_model(out.spec), 8, 64)
    assert hint_error(wrapped) < 0.5 * hint_error(fresh)


def test_self_distillation_trains_a_fresh_copy_of_the_same_architecture(task):
    copy_ = fresh_copy(task.teacher, 1)
    assert describe(copy_) == describe(task.teacher)
    assert not torch.equal(copy_[1].weight, task.teacher[1].weight)
    out = SelfDistill(SelfDistillConfig(train=FAST)).apply(copy.deepcopy(task.teacher), task)
    assert describe(out.model) == describe(task.teacher)
    assert accuracy(out.model, *task.val) >= accuracy(task.teacher, *task.val) - 5


@pytest.mark.parametrize("peer", ["student", "teacher"])
def test_online_distillation_trains_student_and_peer_together(task, peer):
    cfg = OnlineDistillConfig(student=StudentSpec(hidden=(8,)), peer=peer, train=FAST)
    out = OnlineDistill(cfg).apply(task.teacher, task)
    assert out.spec.hidden == (8,)
    assert out.metrics["val_accuracy"] > 80 and out.metrics["peer_val_accuracy"] > 80  # both learned


def test_bad_configs_are_rejected():
    for bad in ({"temperature": 0}, {"alpha": 1.5}, {"loss": "ce"}, {"student": {"arch": "vit"}},
                {"student": {"hidden": [0]}}, {"studnet": {}}):
        with pytest.raises(ValidationError):
            DistillConfig.model_validate(bad)


def test_the_student_is_the_teachers_architecture_at_a_fraction_of_its_size():
    cnn = ModelSpec("cnn", (8, 8), 10, (128, 256, 256), 0.1, {"kernel": 5})
    assert StudentSpec().spec(cnn) == ModelSpec("cnn", (8, 8), 10, (16, 32, 32), 0.0, {"kernel": 5})
    mlp = ModelSpec("mlp", (30,), 2, (512, 512))
    assert StudentSpec(width=0.25).spec(mlp).hidden == (128, 128)
    assert StudentSpec(width=0.001).spec(mlp).hidden == (4, 4)  # never narrower than 4
    assert StudentSpec(arch="mlp", hidden=(64,)).spec(cnn) == ModelSpec("mlp", (8, 8), 10, (64,))
    assert StudentSpec(arch="mlp").spec(cnn).hidden == (64, 64)  # another family: a fraction of its default size


def test_an_empty_student_hidden_list_is_rejected():
    with pytest.raises(ValidationError, match="width"):
        DistillConfig.model_validate({"student": {"hidden": []}})


def test_hint_by_module_path_matches_the_named_layers_outputs(task):
    """hint: {student: PATH, teacher: PATH}: any pair of modules, here each model's first Linear."""
    cfg = DistillConfig(student=StudentSpec(hidden=(8,)), train=FAST, hint_weight=1.0,
                        hint={"student": "1", "teacher": "1"})
    out = Distill(cfg).apply(task.teacher, task)
    assert accuracy(out.model, *task.val) >= accuracy(task.teacher, *task.val) - 5
    assert not out.model._forward_hooks and not out.model[1]._forward_hooks  # taps removed after training
    with pytest.raises(ValueError, match="no module at 'layer9'"):
        Distill(cfg.model_copy(update={"hint": cfg.hint.model_copy(update={"student": "layer9"})})).apply(
            task.teacher, task)


def test_features_are_pooled_per_sample_whatever_their_layout():
    from squeezeflow.compression.distill import pooled

    conv = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert pooled(conv, torch.nn.Conv2d(1, 3, 1)).shape == (2, 3)  # channels kept, space averaged
    tokens = torch.randn(2, 7, 5)
    torch.testing.assert_close(pooled(tokens, torch.nn.TransformerEncoderLayer(5, 1)), tokens.mean(1))
    signal = torch.randn(2, 4, 9)
    torch.testing.assert_close(pooled(signal, torch.nn.Conv1d(1, 4, 1)), signal.mean(2))


def test_distillation_runs_the_teacher_once_per_sample_not_once_per_batch_per_epoch(task):
    seen = []
    hook = task.teacher.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
    try:
        out = Distill(DistillConfig(student=StudentSpec(hidden=(8,)), train=FAST)).apply(task.teacher, task)
    finally:
        hook.remove()
    assert out.metrics["epochs"] >= 2
    assert sum(seen) == len(task.train[0])  # one pass over the train split, whatever the number of epochs
    assert accuracy(out.model, *task.val) >= accuracy(task.teacher, *task.val) - 5
