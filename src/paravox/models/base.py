"""The interface every encoder shares: features [B, T, F] -> utterance embedding [B, D], with
the frame-level sequence available for the methods that need it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EncoderOutput:
    embedding: torch.Tensor  # [B, D]
    frames: torch.Tensor  # [B, T', C] frame-level features before pooling
    frame_lengths: torch.Tensor | None  # [B] valid frames in ``frames`` (None: all valid)


class Encoder(nn.Module):
    """Base class. Subclasses set ``embedding_dim`` and implement ``forward``."""

    embedding_dim: int

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> EncoderOutput:
        raise NotImplementedError


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
