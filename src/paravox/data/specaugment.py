"""Masks over features: SpecAugment (Park et al. 2019) time and frequency masks, and the span
masks of masked prediction (wav2vec 2.0, Baevski et al. 2020; HuBERT, Hsu et al. 2021).

Every masking function can return the mask itself (True = masked), so that a masked-prediction
or masked-reconstruction loss can select exactly the frames that were hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from paravox.errors import ConfigError


@dataclass
class SpecAugmentConfig:
    """Settings of :class:`SpecAugment`: the number and maximum width of the time masks and
    of the frequency masks (a count or width of 0 turns that axis off), and how often an
    utterance is masked at all."""

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

    def forward(self, feats: torch.Tensor, generator: torch.Generator | None = None,
                return_mask: bool = False):
        """Masked features; with ``return_mask`` also ``(time [B, T], freq [B, F])`` boolean
        masks (True = masked; a cell is masked when its frame or its band is)."""
        if not self.training:
            if return_mask:
                b, t, f = feats.shape
                return feats, (torch.zeros(b, t, dtype=torch.bool, device=feats.device),
                               torch.zeros(b, f, dtype=torch.bool, device=feats.device))
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

        time = torch.zeros(b, t, dtype=torch.bool, device=feats.device)
        freq = torch.zeros(b, f, dtype=torch.bool, device=feats.device)
        if c.time_masks and c.max_time_width:
            time = spans(c.time_masks, min(c.max_time_width, t), t)
            keep &= ~time[:, :, None]
        if c.freq_masks and c.max_freq_width:
            freq = spans(c.freq_masks, min(c.max_freq_width, f), f)
            keep &= ~freq[:, None, :]
        out = feats * keep.to(feats.dtype)
        return (out, (time, freq)) if return_mask else out


def time_mask(feats: torch.Tensor, prob: float, length: int,
              generator: torch.Generator | None = None, return_mask: bool = False):
    """Zero spans of ``length`` frames of ``[B, T, F]`` features, ``round(prob * T / length)``
    span starts per utterance drawn uniformly (spans may overlap, so about ``prob`` of the
    frames are masked): the time masking of wav2vec 2.0 that two-step fine-tuning uses
    (BetterFinetuning: ``mask_prob=0.2, mask_length=2``). With ``return_mask`` also the
    ``[B, T]`` mask (True = masked)."""
    b, t, _ = feats.shape
    n_spans = int(round(prob * t / max(length, 1)))
    if n_spans == 0 or length <= 0 or t <= length:
        hit = torch.zeros(b, t, dtype=torch.bool, device=feats.device)
        return (feats, hit) if return_mask else feats
    start = torch.randint(0, t - length + 1, (b, n_spans), generator=generator)
    pos = torch.arange(t)[None, None]
    hit = ((pos >= start[..., None]) & (pos < (start + length)[..., None])).any(1)
    hit = hit.to(feats.device)
    out = feats * (~hit).to(feats.dtype)[:, :, None]
    return (out, hit) if return_mask else out


def draw_span_mask(batch: int, frames: int, mask_prob: float, span: int,
                   lengths: torch.Tensor | None = None, min_spans: int = 0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Random span masks as in wav2vec 2.0 / HuBERT: ``[B, T]`` booleans, True = masked.

    For an utterance of ``L`` valid frames, ``floor(mask_prob * L / span + u)`` span starts
    (``u`` uniform in [0, 1): probabilistic rounding; at least ``min_spans``) are drawn without
    replacement from ``[0, L - span]``, and each masks ``span`` frames from its start; spans
    may overlap, so the masked fraction is somewhat below ``mask_prob`` (HuBERT's
    ``mask_prob=0.8, span=10`` masks about half the frames). Padding frames are never masked.
    """
    if not 0.0 <= mask_prob <= 1.0 or span < 1:
        raise ConfigError(f"span masking: mask_prob={mask_prob} must be in [0, 1] and "
                          f"span={span} >= 1")
    if lengths is None:
        lengths = torch.full((batch,), frames, dtype=torch.long)
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    u = torch.rand(batch, generator=generator)
    for i in range(batch):
        n = int(lengths[i])
        if n < span:
            continue
        count = max(int(mask_prob * n / span + float(u[i])), min_spans)
        count = min(count, n - span + 1)
        if count == 0:
            continue
        starts = torch.randperm(n - span + 1, generator=generator)[:count]
        idx = (starts[:, None] + torch.arange(span)[None]).reshape(-1)
        mask[i, idx] = True
    return mask
