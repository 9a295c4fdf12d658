"""A small transformer encoder classifier over token ids (embedding + positions, nn.TransformerEncoder, mean
pooling, a linear head): your own nn.Module, built by a factory squeezeflow imports from this folder."""

import torch
from torch import nn


class TextClassifier(nn.Module):
    def __init__(self, num_classes: int, vocab: int = 200, length: int = 24, d_model: int = 64, heads: int = 4,
                 layers: int = 2, ff: int = 128):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(1, length, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids) + self.pos).mean(1))


def build(num_classes: int, **kwargs) -> TextClassifier:
    return TextClassifier(num_classes, **kwargs)
