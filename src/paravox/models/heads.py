"""Projection heads. The DINO head: MLP -> L2 normalisation -> weight-normalised linear layer
onto K prototypes (facebookresearch/dino ``DINOHead``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from paravox.utils.checks import at_least


@dataclass
class DINOHeadConfig:
    """Settings of the DINO projection head: the MLP's width (``hidden_dim``), depth
    (``n_layers``) and optional BatchNorm, the bottleneck size, the number of prototypes ``K``
    and whether the prototype vectors keep unit norm. Defaults are facebookresearch/dino's."""

    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    n_prototypes: int = 65536
    n_layers: int = 3
    use_bn: bool = False
    norm_last_layer: bool = True  # fix the prototype norms to 1 (more stable)

    def __post_init__(self):
        for key in ("hidden_dim", "bottleneck_dim", "n_prototypes", "n_layers"):
            at_least(f"head.{key}", getattr(self, key), 1)


class WeightNormLinear(nn.Module):
    """``y = g * x @ (v / ||v||)^T`` row-wise, no bias; ``g`` fixed to 1 when not learnable."""

    def __init__(self, in_dim: int, out_dim: int, learn_norm: bool = False):
        super().__init__()
        self.v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.v, std=0.02)
        self.g = nn.Parameter(torch.ones(out_dim, 1)) if learn_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 under autocast too: the scores are cosines that the DINO loss divides by a
        # teacher temperature of 0.04, where bf16's 8-bit mantissa would quantise them to
        # steps of ~0.1 nats; this layer is a small part of the step's work
        with torch.autocast(device_type=x.device.type, enabled=False):
            w = F.normalize(self.v.float(), dim=1)
            if self.g is not None:
                w = self.g.float() * w
            return F.linear(x.float(), w)


class DINOHead(nn.Module):
    """Maps an utterance embedding ``[B, in_dim]`` to ``[B, K]`` prototype scores for the
    DINO loss: MLP -> bottleneck -> L2 normalisation -> weight-normalised prototypes. Only
    the encoder's embedding is used downstream; the head exists to shape it in training."""

    def __init__(self, in_dim: int, cfg: DINOHeadConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DINOHeadConfig()
        dims = [in_dim] + [cfg.hidden_dim] * (cfg.n_layers - 1) + [cfg.bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                if cfg.use_bn:
                    layers.append(nn.BatchNorm1d(dims[i + 1]))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(cfg.bottleneck_dim, cfg.n_prototypes,
                                           learn_norm=not cfg.norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.mlp(x))

    def logits(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """Bottleneck output (``self.mlp(x)``) -> prototype scores (float32)."""
        return self.last_layer(F.normalize(bottleneck.float(), dim=-1))

    def cancel_last_layer_gradients(self) -> None:
        """DINO freezes the prototypes during the first epoch: drop their gradients."""
        for p in self.last_layer.parameters():
            p.grad = None
