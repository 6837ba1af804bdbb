"""SpecAugment (Park et al. 2019) on log-mel features: random time and frequency masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SpecAugmentConfig:
    time_masks: int = 2
    max_time_width: int = 10  # frames
    freq_masks: int = 2
    max_freq_width: int = 8  # mel bins
    prob: float = 1.0  # probability that an utterance is masked at all


class SpecAugment(nn.Module):
    """Masks features ``[B, T, F]`` in training mode (identity in eval mode).

    Masked cells are set to 0, which after mean normalisation is the utterance's mean.
    Pass a ``torch.Generator`` for reproducible masks.
    """

    def __init__(self, cfg: SpecAugmentConfig | None = None):
        super().__init__()
        self.cfg = cfg or SpecAugmentConfig()

    def forward(self, feats: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        if not self.training:
            return feats
        b, t, f = feats.shape
        c = self.cfg
        keep = torch.ones(b, t, f, dtype=torch.bool, device=feats.device)
        apply = torch.rand(b, generator=generator) < c.prob

        def spans(n_masks: int, max_width: int, size: int) -> torch.Tensor:
            width = torch.randint(0, max_width + 1, (b, n_masks), generator=generator)
            start = (torch.rand(b, n_masks, generator=generator) * (size - width + 1)).long()
            pos = torch.arange(size)[None, None]
            hit = (pos >= start[..., None]) & (pos < (start + width)[..., None])
            return (hit.any(1) & apply[:, None]).to(feats.device)  # [B, size]

        if c.time_masks and c.max_time_width:
            keep &= ~spans(c.time_masks, min(c.max_time_width, t), t)[:, :, None]
        if c.freq_masks and c.max_freq_width:
            keep &= ~spans(c.freq_masks, min(c.max_freq_width, f), f)[:, None, :]
        return feats * keep.to(feats.dtype)


def time_mask(feats: torch.Tensor, prob: float, length: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero spans of ``length`` frames of ``[B, T, F]`` features, ``round(prob * T / length)``
    span starts per utterance drawn uniformly (spans may overlap, so about ``prob`` of the
    frames are masked): the time masking of wav2vec 2.0 that two-step fine-tuning uses
    (BetterFinetuning: ``mask_prob=0.2, mask_length=2``)."""
    b, t, _ = feats.shape
    n_spans = int(round(prob * t / max(length, 1)))
    if n_spans == 0 or length <= 0 or t <= length:
        return feats
    start = torch.randint(0, t - length + 1, (b, n_spans), generator=generator)
    pos = torch.arange(t)[None, None]
    hit = ((pos >= start[..., None]) & (pos < (start + length)[..., None])).any(1)
    return feats * (~hit).to(feats.device, feats.dtype)[:, :, None]
