"""Temporal pooling with padding masks: statistics pooling and attentive statistics pooling."""

from __future__ import annotations

import torch
from torch import nn


def length_mask(lengths: torch.Tensor | None, max_len: int, device) -> torch.Tensor:
    """[B, T] float mask, 1 on valid frames (all ones when ``lengths`` is None)."""
    if lengths is None:
        return torch.ones(1, max_len, device=device)
    return (torch.arange(max_len, device=device)[None] < lengths[:, None].to(device)).float()


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and standard deviation over the last axis of ``x`` [B, C, T].

    ``mask`` [B, T] (or [B, 1|C, T]) holds non-negative weights summing to anything > 0.
    Computed in at least float32 whatever the input's dtype: the variance is a difference of
    two nearly equal sums, which bf16's 8-bit mantissa would cancel away.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    x = x.to(dtype)
    w = (mask if mask.ndim == 3 else mask[:, None, :]).to(dtype)
    w = w / w.sum(-1, keepdim=True).clamp(min=eps)
    mean = (x * w).sum(-1)
    var = (x.square() * w).sum(-1) - mean.square()
    return mean, var.clamp(min=eps).sqrt()


def _like_input(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Pooled statistics back in the input's dtype, except under autocast (where the next
    layer casts as it needs and the float32 statistics are kept). A model built on the meta
    device (shapes only, when a bundle is checked) has no autocast."""
    if x.device.type == "meta":
        return y.to(x.dtype)
    return y if torch.is_autocast_enabled(x.device.type) else y.to(x.dtype)


class StatsPool(nn.Module):
    """Mean and standard deviation over valid frames: [B, C, T] -> [B, 2C] (x-vector)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        mask = length_mask(lengths, x.shape[-1], x.device).expand(x.shape[0], -1)
        return _like_input(torch.cat(masked_mean_std(x, mask), dim=1), x)


class AttentiveStatsPool(nn.Module):
    """Channel-dependent attentive statistics with global context (ECAPA-TDNN).

    Frame weights come from the frame features concatenated with the utterance's (masked)
    mean and std; padded frames get zero weight.
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True):
        super().__init__()
        self.global_context = global_context
        in_ch = channels * 3 if global_context else channels
        self.attention = nn.Sequential(
            nn.Conv1d(in_ch, attention_channels, 1), nn.ReLU(), nn.BatchNorm1d(attention_channels),
            nn.Tanh(), nn.Conv1d(attention_channels, channels, 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, c, t = x.shape
        mask = length_mask(lengths, t, x.device).expand(b, -1)
        h = x
        if self.global_context:
            mean, std = (s.to(x.dtype) for s in masked_mean_std(x, mask))
            h = torch.cat([x, mean[..., None].expand(-1, -1, t), std[..., None].expand(-1, -1, t)],
                          dim=1)
        scores = self.attention(h).masked_fill(mask[:, None, :] == 0, float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1)  # float32, as the statistics
        return _like_input(torch.cat(masked_mean_std(x, weights), dim=1), x)
