import pytest
import torch
from pydantic import ValidationError

from squeezeflow.compression.qat import Qat, QatConfig
from squeezeflow.compression.quantize import Quantize, QuantizeConfig
from squeezeflow.config import TrainParams
from squeezeflow.models.quant_layers import is_quantized
from squeezeflow.training import accuracy
from tests.squeezeflow.compression.test_quantize import digits_task, single_thread  # noqa: F401 (fixture)

TRAIN = TrainParams(epochs=8, patience=4, lr=1e-3, weight_decay=0.0)


@pytest.mark.parametrize("bits", [4, 2])
def test_qat_is_never_worse_than_ptq_and_recovers_low_bit_accuracy(bits):
    model, ctx, test = digits_task()
    ptq = Quantize(QuantizeConfig(bits=bits)).apply(model, ctx).model
    applied = Qat(QatConfig(bits=bits, train=TRAIN)).apply(model, ctx)
    qat = applied.model
    assert all(m.bits == bits for m in qat if is_quantized(m))
    assert accuracy(qat, *ctx.val) >= accuracy(ptq, *ctx.val)
    assert applied.metrics["val_accuracy_ptq"] == accuracy(ptq, *ctx.val)
    if bits == 2:  # round-to-nearest ternary weights lose a lot; training through them wins most of it back
        assert accuracy(qat, *test) > accuracy(ptq, *test) + 10


def test_qat_trains_latent_weights_and_keeps_them_on_the_grid():
    model, ctx, _ = digits_task()
    before = model[1].weight.detach().clone()
    qat = Qat(QatConfig(bits=2, train=TRAIN)).apply(model, ctx).model
    layer = qat[1]
    assert not torch.equal(layer.weight, before) and torch.equal(model[1].weight, before)
    per_row = [len(torch.unique(r)) for r in layer.dequantized_weight()]
    assert max(per_row) <= 3  # symmetric 2-bit: q in {-1, 0, 1}


def test_qat_with_distillation_from_the_teacher():
    model, ctx, _ = digits_task()
    cfg = QatConfig(bits=2, distill_alpha=0.5, temperature=2.0, train=TrainParams(epochs=3, patience=3, lr=1e-3))
    applied = Qat(cfg).apply(model, ctx)
    assert applied.metrics["epochs"] == 3
    assert applied.metrics["val_accuracy"] >= applied.metrics["val_accuracy_ptq"]


@pytest.mark.parametrize("bad", [{"bits": 3}, {"distill_alpha": 1.5}, {"train": {"epochs": 0}}, {"epochs": 3}])
def test_bad_qat_configs_are_rejected(bad):
    with pytest.raises(ValidationError):
        QatConfig(**bad)
