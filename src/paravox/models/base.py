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

    head_modules: tuple[str, ...] = ("pool", "pool_norm", "embed", "embed_norm")

    def layer_groups(self) -> list[list[str]]:
        """Parameter-name prefixes grouped by layer, input side first, the pooling/embedding
        head (``head_modules``) as the last group: the unit for "train only the top k layers".
        Default: the top-level children, a stack of blocks (ModuleList/Sequential of
        composite modules) counting one group per block;
        encoders with another notion of a layer override it."""
        groups, head = [], []
        for name, child in self.named_children():
            if not any(True for _ in child.parameters()):
                continue
            if name in self.head_modules:
                head.append(f"{name}.")
            elif isinstance(child, (nn.ModuleList, nn.Sequential)) and all(
                    any(True for _ in mod.children()) for mod in child):  # a stack of blocks
                groups += [[f"{name}.{sub}."] for sub, mod in child.named_children()
                           if any(True for _ in mod.parameters())]
            else:
                groups.append([f"{name}."])
        return groups + ([head] if head else [])

    def bundle_settings(self, settings: dict) -> dict:
        """The encoder settings a bundle records (:func:`paravox.inference.bundle.write_bundle`):
        enough to rebuild this architecture with nothing but the bundle. Default: unchanged;
        an encoder built from outside files (e.g. a pretrained model's folder) replaces them
        by what they hold."""
        return settings


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
