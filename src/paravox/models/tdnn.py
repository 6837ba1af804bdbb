"""TDNN x-vector (Snyder et al., ICASSP 2018).

Five frame-level TDNN layers (contexts [t-2..t+2], {t-2,t,t+2}, {t-3,t,t+3}, {t}, {t}),
statistics pooling, two segment-level affine layers; the embedding is the first affine layer's
output (before its non-linearity), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from paravox.models.base import Encoder, EncoderOutput, check_sizes
from paravox.models.pooling import StatsPool


@dataclass
class TDNNConfig:
    """x-vector sizes (defaults: Snyder et al. 2018)."""

    n_mels: int = 80
    channels: int = 512
    stats_channels: int = 1500
    embedding_dim: int = 512

    def __post_init__(self):
        check_sizes("xvector", self, ("n_mels", "channels", "stats_channels", "embedding_dim"))


class TDNNLayer(nn.Sequential):
    """A dilated Conv1d without padding - ReLU - BatchNorm."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int):
        super().__init__(nn.Conv1d(cin, cout, kernel, dilation=dilation), nn.ReLU(),
                         nn.BatchNorm1d(cout))


class XVector(Encoder):
    """x-vector: five TDNN layers, statistics pooling, the embedding affine layer.

    Its convolutions have no padding, so a valid output frame reads valid inputs only and the
    pooling is masked: a padded batch gives each utterance its own embedding
    (``pads_exactly``)."""

    pads_exactly = True

    def __init__(self, cfg: TDNNConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TDNNConfig()
        c = cfg.channels
        spec = [(cfg.n_mels, c, 5, 1), (c, c, 3, 2), (c, c, 3, 3), (c, c, 1, 1),
                (c, cfg.stats_channels, 1, 1)]
        self.frame_layers = nn.Sequential(*[TDNNLayer(*s) for s in spec])
        self.context = sum((k - 1) * d for _, _, k, d in spec)  # frames lost without padding
        # frames lost by layers 1..l (each loses (k-1)*d, half on each side)
        self.layer_context = [sum((k - 1) * d for _, _, k, d in spec[:i + 1])
                              for i in range(len(spec))]
        self.pool = StatsPool()
        self.embed = nn.Linear(2 * cfg.stats_channels, cfg.embedding_dim)
        self.embedding_dim = cfg.embedding_dim

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None, *,
                return_layers: bool = False) -> EncoderOutput:
        """``return_layers``: tdnn1..5 at the input frame rate; without padding, frame 0 of
        layer l is centred on input frame (context lost by layers <= l) / 2 and the valid
        lengths shrink by that context."""
        if feats.shape[1] <= self.context:
            raise ValueError(f"x-vector needs more than {self.context} frames, got "
                             f"{feats.shape[1]}")
        x = feats.transpose(1, 2)
        layers = [] if return_layers else None
        for i, layer in enumerate(self.frame_layers):
            x = layer(x)
            if layers is not None:
                ctx = self.layer_context[i]
                lens = None if lengths is None else (lengths - ctx).clamp(min=1)
                layers.append(self.frame_layer(f"tdnn{i + 1}", x.transpose(1, 2), lens, 1,
                                               ctx / 2))
        out_lengths = None if lengths is None else (lengths - self.context).clamp(min=1)
        emb = self.embed(self.pool(x, out_lengths))
        return EncoderOutput(emb, x.transpose(1, 2), out_lengths, layers)
