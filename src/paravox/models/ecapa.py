"""ECAPA-TDNN (Desplanques et al., Interspeech 2020).

A 5-wide convolution, three SE-Res2Blocks with dilations 2, 3, 4, multi-layer feature
aggregation (the blocks' outputs concatenated, then a 1x1 convolution), attentive statistics
pooling with global context, and a linear embedding layer with batch norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from paravox.errors import ConfigError
from paravox.models.base import Encoder, EncoderOutput, check_sizes
from paravox.models.pooling import AttentiveStatsPool, length_mask


@dataclass
class ECAPAConfig:
    """ECAPA-TDNN sizes (defaults: the paper's C=512 model)."""

    n_mels: int = 80
    channels: int = 512  # 512 or 1024 in the paper; 256 is a light demo setting
    scale: int = 8  # Res2Net scale
    se_channels: int = 128
    attention_channels: int = 128
    mfa_channels: int = 1536
    embedding_dim: int = 192

    def __post_init__(self):
        check_sizes("ecapa", self, ("n_mels", "channels", "scale", "se_channels",
                                    "attention_channels", "mfa_channels", "embedding_dim"))
        if self.channels % self.scale:
            raise ConfigError(f"ecapa.channels={self.channels}: must be divisible by "
                              f"scale={self.scale} (Res2Net groups)")


class ConvBlock(nn.Sequential):
    """Conv1d (same padding) - ReLU - BatchNorm: ECAPA's TDNN unit."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1):
        super().__init__(nn.Conv1d(cin, cout, kernel, dilation=dilation,
                                   padding=dilation * (kernel - 1) // 2),
                         nn.ReLU(), nn.BatchNorm1d(cout))


class SqueezeExcitation(nn.Module):
    """Channel gates from the masked time average: ``x * sigmoid(W2 relu(W1 mean_t x))``."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(channels, bottleneck, 1), nn.ReLU(),
                                 nn.Conv1d(bottleneck, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask[:, None, :]
        mean = (x * w).sum(-1, keepdim=True) / w.sum(-1, keepdim=True).clamp(min=1)
        return x * self.net(mean)


class Res2Conv(nn.Module):
    """Split channels into ``scale`` groups; each group's conv also sees the previous output."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels={channels} must be divisible by scale={scale}")
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList([ConvBlock(width, width, kernel, dilation)
                                    for _ in range(scale - 1)])

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """``pad``: [B, 1, T] mask of valid frames in a padded batch (None: all valid); each
        dilated conv's input is zeroed past an utterance's end, where its own forward would
        see the convolution's zero padding."""
        chunks = torch.chunk(x, self.scale, dim=1)
        outs = [chunks[0]]
        y = None
        for i, conv in enumerate(self.convs, start=1):
            z = chunks[i] if y is None else chunks[i] + y
            y = conv(z if pad is None else z * pad)
            outs.append(y)
        return torch.cat(outs, dim=1)


class SERes2Block(nn.Module):
    """1x1 conv, dilated Res2 conv, 1x1 conv, squeeze-excitation, with a residual path."""

    def __init__(self, channels: int, dilation: int, scale: int, se_channels: int):
        super().__init__()
        self.conv1 = ConvBlock(channels, channels)
        self.res2 = Res2Conv(channels, 3, dilation, scale)
        self.conv2 = ConvBlock(channels, channels)
        self.se = SqueezeExcitation(channels, se_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                pad: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.se(self.conv2(self.res2(self.conv1(x), pad)), mask)


class ECAPATDNN(Encoder):
    """ECAPA-TDNN: log-mel frames -> SE-Res2 blocks -> MFA -> attentive stats -> embedding.

    With ``lengths``, every convolution that mixes frames reads zeros past an utterance's
    end and every average is masked, so a padded batch gives each utterance the embedding
    of its own forward (``pads_exactly``): inference batches utterances of unequal length."""

    pads_exactly = True

    def __init__(self, cfg: ECAPAConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ECAPAConfig()
        c = cfg.channels
        self.stem = ConvBlock(cfg.n_mels, c, kernel=5)
        self.blocks = nn.ModuleList([SERes2Block(c, d, cfg.scale, cfg.se_channels)
                                     for d in (2, 3, 4)])
        self.mfa = ConvBlock(3 * c, cfg.mfa_channels)
        self.pool = AttentiveStatsPool(cfg.mfa_channels, cfg.attention_channels)
        self.pool_norm = nn.BatchNorm1d(2 * cfg.mfa_channels)
        self.embed = nn.Linear(2 * cfg.mfa_channels, cfg.embedding_dim)
        self.embed_norm = nn.BatchNorm1d(cfg.embedding_dim)
        self.embedding_dim = cfg.embedding_dim

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None, *,
                return_layers: bool = False) -> EncoderOutput:
        """``return_layers``: stem, block1..3 and mfa, all at the input frame rate (same
        padding), frame 0 centred on input frame 0."""
        x = feats.transpose(1, 2)
        mask = length_mask(lengths, x.shape[-1], x.device).expand(x.shape[0], -1)
        pad = None if lengths is None else mask[:, None, :].to(x.dtype)
        x = self.stem(x if pad is None else x * pad)
        outs = []
        stem = x
        for block in self.blocks:
            x = block(x, mask, pad)
            outs.append(x)
        frames = self.mfa(torch.cat(outs, dim=1))
        pooled = self.pool_norm(self.pool(frames, lengths))
        raw = self.embed(pooled)
        emb = self.embed_norm(raw)
        layers = None
        if return_layers:
            named = [("stem", stem)] + [(f"block{i}", o) for i, o in enumerate(outs, 1)]
            named.append(("mfa", frames))
            layers = [self.frame_layer(n, y.transpose(1, 2), lengths, 1, 0) for n, y in named]
        return EncoderOutput(emb, frames.transpose(1, 2), lengths, layers, raw)
