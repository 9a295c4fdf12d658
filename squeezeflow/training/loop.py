from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from squeezeflow.config import TrainParams

# loss(model logits, x batch, y batch) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FitResult:
    best_val_accuracy: float
    best_epoch: int
    epochs_run: int


def seed_everything(seed: int) -> None:
    """Before a model is built, so initial weights are reproducible too."""
    torch.manual_seed(seed)
    np.random.seed(seed)


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    model.eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    return torch.cat([model(xt[i : i + batch]) for i in range(0, len(xt), batch)]).numpy()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float((predict_logits(model, x).argmax(1) == y).mean() * 100.0)


def _ce(logits: torch.Tensor, _x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
        params: TrainParams, seed: int, desc: str, loss_fn: LossFn = _ce,
        after_step: Callable[[], None] | None = None) -> FitResult:
    """Adam with early stopping on validation accuracy; the best weights are restored at the end."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.as_tensor(train[0], dtype=torch.float32), torch.as_tensor(train[1])
    opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    best_acc, best_epoch, best_state, epoch = accuracy(model, *val), 0, copy.deepcopy(model.state_dict()), 0
    bar = tqdm(range(1, params.epochs + 1), desc=desc, unit="epoch", leave=True, disable=None, dynamic_ncols=True)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order), params.batch_size):
            idx = order[i : i + params.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), xt[idx], yt[idx])
            loss.backward()
            opt.step()
            if after_step:
                after_step()
        acc = accuracy(model, *val)
        if acc > best_acc:
            best_acc, best_epoch, best_state = acc, epoch, copy.deepcopy(model.state_dict())
        bar.set_postfix(val_acc=f"{acc:.2f}", best=f"{best_acc:.2f}")
        if epoch - best_epoch >= params.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(best_acc, best_epoch, epoch)
