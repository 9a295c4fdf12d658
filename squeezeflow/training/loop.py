from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from squeezeflow.config import TrainParams
from squeezeflow.io import input_array, input_batches, predict_batches
from squeezeflow.training.distributed import rank_and_world, shard

# loss(model logits, x batch, y batch) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FitResult:
    best_val_accuracy: float
    best_epoch: int
    epochs_run: int
    steps: int = 0  # optimizer steps taken: what train.max_steps bounds

    def metrics(self) -> dict:
        return {"epochs": self.epochs_run, "steps": self.steps, "val_accuracy": self.best_val_accuracy}


def seed_everything(seed: int) -> None:
    """Before a model is built, so initial weights are reproducible too."""
    torch.manual_seed(seed)
    np.random.seed(seed)


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch: int = 128) -> np.ndarray:
    # 128, not 1024: a conv net's activations at 1024 are a stage's memory peak, and slower on a CPU whose caches
    # they overflow (8k 16x16 images through a 128-256-256 CNN: 2.95 s and +76 MB at 128, 4.59 s and +400 MB at
    # 1024; an MLP is as fast either way)
    model.eval()
    return predict_batches(lambda b: model(torch.as_tensor(b)).numpy(), x, batch)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float((predict_logits(model, x).argmax(1) == y).mean() * 100.0)


def _optimizer(model: nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if params.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, params: TrainParams, total_steps: int):
    """Per-step learning rate. None: constant."""
    if params.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=params.lr, total_steps=max(total_steps, 2),
                                                   pct_start=max(params.warmup, 1e-3), anneal_strategy="cos")
    if params.schedule == "cosine":
        warm = max(1, int(total_steps * params.warmup))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total_steps - warm))))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return None


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy in percent, mean cross-entropy)."""
    logits = torch.as_tensor(predict_logits(model, x))
    yt = torch.as_tensor(y)
    return float((logits.argmax(1) == yt).float().mean() * 100.0), float(F.cross_entropy(logits, yt))


_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def stale_batchnorms(model: nn.Module, steps: int) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorms whose running statistics still carry more than 5% of their starting values after `steps`
    updates: with torchvision's MobileNet/EfficientNet momentum of 0.01 that is the first ~300 steps, and a model
    evaluated then predicts one class although it trains well."""
    return [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats and m.momentum is not None
            and (1 - m.momentum) ** steps > 0.05]


@torch.no_grad()
def recalibrate_batchnorms(model: nn.Module, x, norms: list, batch: int, samples: int = 2048) -> None:
    """Running statistics recomputed as exact averages over (up to `samples` of) the training inputs, as
    torch.optim.swa_utils.update_bn does; the weights are untouched."""
    if not norms:
        return
    was, momenta = model.training, [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    for b in input_batches(x, batch, stop=samples):
        model(torch.as_tensor(b))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was)


def eta_line(desc: str, first: float, epochs: int) -> str:
    return (f"[squeezeflow] {desc}: epoch 1 took {first:.1f}s; at most {epochs} epochs: about "
            f"{_duration(first * epochs)} (early stopping may end it sooner)")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
        params: TrainParams, seed: int, desc: str, loss_fn: LossFn | None = None,
        after_step: Callable[[], None] | None = None, teacher_logits: torch.Tensor | None = None,
        stop_at: float | None = None) -> FitResult:
    """Train with params' optimizer and schedule; keep the checkpoint with the best validation accuracy or loss
    (params.select), stop after `patience` epochs without one, and restore it at the end. `teacher_logits`: a
    fixed teacher's outputs for every training sample, handed to loss_fn with each batch (its 4th argument).
    `stop_at`: a validation accuracy that ends training at once, keeping the weights that reached it."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if loss_fn is None:
        smoothing = params.label_smoothing

        def loss_fn(logits, _x, y):
            return F.cross_entropy(logits, y, label_smoothing=smoothing)

    x, yt = train[0], torch.as_tensor(train[1])  # x: an array or rows on disk, read a batch at a time
    rank, world = rank_and_world()  # under torchrun (training/distributed.py): this rank's share of each batch
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    batch_size = max(1, params.batch_size // world)
    opt = _optimizer(model, params)
    steps_per_epoch = math.ceil(len(x) // world / batch_size)
    epochs = min(params.epochs, max(1, params.max_steps // steps_per_epoch)) if params.max_steps else params.epochs
    sched = _scheduler(opt, params, epochs * steps_per_epoch)

    def score(acc: float, loss: float) -> float:  # higher is better
        if params.select == "last":
            return float(epoch)
        return acc if params.select == "val_accuracy" else -loss

    acc, loss, epoch = *evaluate(model, *val), 0
    best, best_acc, best_epoch, best_state, epoch = score(acc, loss), acc, 0, copy.deepcopy(model.state_dict()), 0
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", leave=True, disable=None if rank == 0 else True,
               dynamic_ncols=True)
    started, steps = time.perf_counter(), 0
    for epoch in bar:
        if epoch == 2 and rank == 0 and epochs > 2:  # the first epoch measured: say what the whole loop costs
            print(eta_line(desc, time.perf_counter() - started, epochs), flush=True)
        model.train()
        order = shard(torch.randperm(len(x), generator=gen), rank, world)  # the same draw on every rank
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            extra = () if teacher_logits is None else (teacher_logits[idx],)
            xb = torch.as_tensor(input_array(x[idx.numpy()]))
            batch_loss = loss_fn(net(xb), xb, yt[idx], *extra)
            batch_loss.backward()  # DDP averages the gradients over the ranks here
            opt.step()
            steps += 1
            if sched is not None:
                sched.step()
            if after_step:
                after_step()
        if world > 1:  # BatchNorm statistics differ by rank's data: rank 0's, so every rank evaluates the same model
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)
        recalibrate_batchnorms(model, x, stale_batchnorms(model, epoch * steps_per_epoch), params.batch_size)
        acc, loss = evaluate(model, *val)
        if score(acc, loss) > best:
            best, best_acc, best_epoch, best_state = score(acc, loss), acc, epoch, copy.deepcopy(model.state_dict())
        bar.set_postfix(val_acc=f"{acc:.2f}", val_loss=f"{loss:.3f}", best_epoch=best_epoch)
        if stop_at is not None and acc >= stop_at:
            best_acc, best_epoch, best_state = acc, epoch, model.state_dict()
            break
        if epoch - best_epoch >= params.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(best_acc, best_epoch, epoch, steps)
