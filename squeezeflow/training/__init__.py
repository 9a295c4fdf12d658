"""Training loops: supervised fit with early stopping, and the distillation loss."""

from squeezeflow.training.build import train_from_scratch
from squeezeflow.training.loop import FitResult, accuracy, fit, predict_logits, seed_everything
from squeezeflow.training.losses import distillation_loss

__all__ = ["FitResult", "accuracy", "fit", "predict_logits", "seed_everything", "distillation_loss",
           "train_from_scratch"]
