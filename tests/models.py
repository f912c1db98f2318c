"""Models people bring, sized for scikit-learn's digits (64 pixels, 0 to 16, ten classes).

Each reads a row of 64 values: the CNNs and the recurrent model as an 8x8 image, the attention
model as 8 tokens of 8 pixels, the text classifier as 64 integer token ids (pixel values).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

CLASSES = 10
VOCABULARY = 17  # pixel values 0 to 16; the mock draws beyond are clamped


class ConvNet(nn.Module):
    """Conv2d, a normalization layer, MaxPool and AdaptiveAvgPool."""

    def __init__(self, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = norm(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.norm(self.conv1(x.view(-1, 1, 8, 8) / 16))))
        return self.head(torch.relu(self.conv2(h)))


class Attention(nn.Module):
    """PyTorch's own nn.TransformerEncoderLayer over the image's 8 rows as tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 32)
        self.position = nn.Parameter(torch.zeros(8, 32))
        self.encoder = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
        self.out = nn.Linear(32, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x.view(x.shape[0], 8, 8) / 16) + self.position)
        return self.out(h.mean(dim=1))


class TextClassifier(nn.Module):
    """An nn.Embedding over integer token ids: it takes a LongTensor, not floats."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCABULARY, 4)
        self.out = nn.Linear(64 * 4, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids.clamp(0, VOCABULARY - 1)).flatten(1))


class Recurrent(nn.Module):
    """A GRU or an LSTM over the image's 8 rows."""

    def __init__(self, rnn: type[nn.GRU | nn.LSTM]) -> None:
        super().__init__()
        self.rnn = rnn(8, 32, batch_first=True)
        self.out = nn.Linear(32, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x.view(x.shape[0], 8, 8) / 16)
        return self.out(h[:, -1])


def batch_norm_cnn() -> nn.Module:
    torch.manual_seed(0)
    return ConvNet(nn.BatchNorm2d)


def group_norm_cnn() -> nn.Module:
    torch.manual_seed(0)
    return ConvNet(lambda channels: nn.GroupNorm(2, channels))


def attention() -> nn.Module:
    torch.manual_seed(0)
    return Attention()


def text_classifier() -> nn.Module:
    torch.manual_seed(0)
    return TextClassifier()


def gru() -> nn.Module:
    torch.manual_seed(0)
    return Recurrent(nn.GRU)


def lstm() -> nn.Module:
    torch.manual_seed(0)
    return Recurrent(nn.LSTM)
