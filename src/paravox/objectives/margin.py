"""Speaker-classification objectives for the supervised baseline: softmax and additive angular
margin softmax (AAM, ArcFace; Deng et al. 2019), as used for x-vector/ECAPA training."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SoftmaxClassifier(nn.Module):
    """A linear layer to the classes + cross-entropy."""

    def __init__(self, in_dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, n_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(x)
        return F.cross_entropy(logits.float(), labels), logits


class AAMSoftmax(nn.Module):
    """``s * cos(theta_y + m)`` for the true class, ``s * cos(theta_j)`` for the others, where
    ``theta`` is the angle between the embedding and a class weight vector (both normalised).

    ``margin`` can be changed during training (the supervised method warms it up); the angle
    plus margin is capped at pi so the target logit stays monotonic.
    """

    def __init__(self, in_dim: int, n_classes: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, in_dim))
        nn.init.xavier_uniform_(self.weight)
        self.margin, self.scale = margin, scale

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x.float(), dim=-1), F.normalize(self.weight.float(), dim=-1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = self.cosine(x)
        theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
        target = torch.cos((theta + self.margin).clamp(max=math.pi))
        one_hot = F.one_hot(labels, cos.shape[1]).bool()
        logits = self.scale * torch.where(one_hot, target, cos)
        return F.cross_entropy(logits, labels), self.scale * cos
