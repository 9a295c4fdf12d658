"""A frozen teacher's outputs are computed once per sample for every stage that distils from it, not once per stage."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from squeezeflow.compression.distill import Distill, DistillConfig, StudentSpec
from squeezeflow.compression.finetune import Finetune, FinetuneConfig
from squeezeflow.compression.teacher_outputs import KEEP, data_digest, model_digest, teacher_logits
from squeezeflow.config import TrainParams
from squeezeflow.training import predict_logits

SHORT = TrainParams(epochs=2, patience=2, lr=1e-2)


def counting(model):
    seen = []
    return seen, model.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))


def test_the_distill_and_finetune_stages_share_one_pass_of_the_teacher_over_the_data(task, tmp_path):
    ctx = dataclasses.replace(task, cache=tmp_path / "teacher-logits")
    seen, hook = counting(ctx.teacher)
    try:
        student = Distill(DistillConfig(student=StudentSpec(hidden=(8,)), train=SHORT)).apply(ctx.teacher, ctx)
        assert sum(seen) == len(ctx.train[0])
        Finetune(FinetuneConfig(alpha=0.5, train=SHORT)).apply(student.model, ctx)  # the finetuned stage's step
        Distill(DistillConfig(student=StudentSpec(hidden=(4,)), train=SHORT)).apply(ctx.teacher, ctx)  # a 2nd recipe
    finally:
        hook.remove()
    assert sum(seen) == len(ctx.train[0])  # still one pass: the later fits read the stored outputs
    assert len(list(ctx.cache.glob("*.npy"))) == 1


def test_stored_outputs_are_what_the_teacher_computes(task, tmp_path):
    first = teacher_logits(task.teacher, task.train[0], tmp_path, predict_logits, log=lambda _: None)
    again = teacher_logits(task.teacher, task.train[0], tmp_path, lambda *_: 1 / 0, log=lambda _: None)
    np.testing.assert_array_equal(first.numpy(), predict_logits(task.teacher, task.train[0]))
    np.testing.assert_array_equal(again.numpy(), first.numpy())


def test_another_teacher_or_other_rows_are_computed_again(task, tmp_path):
    calls = []

    def compute(model, x):
        calls.append(len(x))
        return predict_logits(model, x)

    x = task.train[0]
    teacher_logits(task.teacher, x, tmp_path, compute, log=lambda _: None)
    changed = copy.deepcopy(task.teacher)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3  # one weight
    teacher_logits(changed, x, tmp_path, compute, log=lambda _: None)
    other_rows = x.copy()
    other_rows[3, 0, 0] += 1e-3  # one value
    teacher_logits(task.teacher, other_rows, tmp_path, compute, log=lambda _: None)
    teacher_logits(task.teacher, x[:-1], tmp_path, compute, log=lambda _: None)  # one row fewer
    assert calls == [len(x)] * 3 + [len(x) - 1]
    assert len({model_digest(task.teacher), model_digest(changed)}) == 2
    assert data_digest(x) == data_digest(x.copy()) != data_digest(other_rows)


def test_an_unreadable_stored_file_is_computed_again_not_an_error(task, tmp_path):
    teacher_logits(task.teacher, task.train[0], tmp_path, predict_logits, log=lambda _: None)
    (stored,) = tmp_path.glob("*.npy")
    stored.write_bytes(b"not an array")
    got = teacher_logits(task.teacher, task.train[0], tmp_path, predict_logits, log=lambda _: None)
    np.testing.assert_array_equal(got.numpy(), predict_logits(task.teacher, task.train[0]))
    assert np.load(stored).shape == got.shape  # and stored again


def test_a_model_without_weights_is_never_cached(tmp_path):
    class Fixed(torch.nn.Module):  # e.g. a wrapped ONNX session: nothing in its state says what it computes
        def forward(self, x):
            return x.reshape(len(x), -1)[:, :3]

    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    assert model_digest(Fixed()) is None
    teacher_logits(Fixed(), x, tmp_path, predict_logits, log=lambda _: None)
    assert not list(tmp_path.glob("*.npy"))


def test_the_cache_keeps_the_newest_files_only(task, tmp_path):
    x = task.train[0]
    for i in range(KEEP + 3):
        teacher_logits(task.teacher, x[: 50 + i], tmp_path, predict_logits, log=lambda _: None)
    kept = sorted(tmp_path.glob("*.npy"))
    assert len(kept) == KEEP
    assert {len(np.load(p)) for p in kept} == {50 + i for i in range(3, KEEP + 3)}


def test_a_cache_that_cannot_be_written_costs_a_recomputation_not_the_stage(task, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the cache folder's path is a file: every write fails
    said = []
    got = teacher_logits(task.teacher, task.train[0], blocked / "cache", predict_logits, log=said.append)
    np.testing.assert_array_equal(got.numpy(), predict_logits(task.teacher, task.train[0]))
    assert said and "not kept for reuse" in said[0]
