"""A thin ResNet34 speaker encoder (as in the Hyperion and WeSpeaker DINO recipes).

Log-mel features are treated as a one-channel image [B, 1, F, T]; four stages of basic
residual blocks (3, 4, 6, 3) with ``base_channels`` x (1, 2, 4, 8) channels, frequency and time
halved at stages 2-4; statistics pooling over time of the flattened channel x frequency maps;
a linear embedding layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from paravox.errors import ConfigError
from paravox.models.base import Encoder, EncoderOutput, check_sizes
from paravox.models.pooling import StatsPool


@dataclass
class ResNetConfig:
    """Thin ResNet sizes: width of the first stage and blocks per stage."""

    n_mels: int = 80
    base_channels: int = 32  # "thin": 32 (WeSpeaker) or 16; 64 is the standard ResNet width
    blocks: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    embedding_dim: int = 256

    def __post_init__(self):
        check_sizes("resnet34", self, ("n_mels", "base_channels", "embedding_dim"))
        if not self.blocks:
            raise ConfigError("resnet34.blocks: give the blocks per stage, e.g. [3, 4, 6, 3]")
        for i, n in enumerate(self.blocks):
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
                raise ConfigError(f"resnet34.blocks[{i}]={n!r}: must be an integer in "
                                  f"[1, 1000]")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected when the shape changes)
    residual path."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNetEncoder(Encoder):
    """Thin ResNet34 over the log-mel image, statistics pooling, a linear embedding."""

    def __init__(self, cfg: ResNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ResNetConfig()
        c = cfg.base_channels
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU())
        layers, cin = [], c
        for i, n in enumerate(cfg.blocks):
            cout = c * 2**i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        # index in ``layers`` of each stage's last block, the stage's output
        self.stage_ends = [sum(cfg.blocks[:i + 1]) - 1 for i in range(len(cfg.blocks))]
        self.downsample = 2 ** (len(cfg.blocks) - 1)
        freq_out = -(-cfg.n_mels // self.downsample)
        self.pool = StatsPool()
        self.embed = nn.Linear(2 * cin * freq_out, cfg.embedding_dim)
        self.embedding_dim = cfg.embedding_dim

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None, *,
                return_layers: bool = False) -> EncoderOutput:
        """``return_layers``: the stem and each stage's output, ``[B, C, F', T']`` flattened
        to ``[B, T', C * F']``. Stages 2.. halve time with stride-2 3x3 convolutions
        (padding 1), whose frame k is centred on frame 2k of the stage before: the shift
        doubles per stage and frame 0 stays centred on input frame 0."""
        x = self.stem(feats.transpose(1, 2)[:, None])  # [B, C, F, T]
        layers = None
        if return_layers:
            layers = [self.frame_layer("stem", _flatten(x).transpose(1, 2), lengths, 1, 0)]
        stride, lens = 1, lengths
        ends = set(self.stage_ends)
        for i, block in enumerate(self.layers):
            x = block(x)  # [B, C, F', T']
            if layers is not None:
                step = block.body[0].stride[1]
                stride *= step
                if lens is not None and step > 1:
                    lens = -(-lens // step)
                if i in ends:
                    layers.append(self.frame_layer(f"stage{len(layers)}",
                                                   _flatten(x).transpose(1, 2), lens,
                                                   stride, 0))
        frames = _flatten(x)
        out_lengths = None if lengths is None else -(-lengths // self.downsample)
        emb = self.embed(self.pool(frames, out_lengths))
        return EncoderOutput(emb, frames.transpose(1, 2), out_lengths, layers)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, F, T]`` -> ``[B, C * F, T]``."""
    b, c, f, t = x.shape
    return x.reshape(b, c * f, t)
