"""An encoder followed by a projector MLP: the embedding space that two-step fine-tuning's
step 1 shapes (Lux et al. 2022). As an encoder of its own it exports as an ordinary bundle, so
``Embedder``, ``paravox evaluate`` and ONNX export read the projected space like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from paravox.errors import ConfigError
from paravox.models.base import MAX_SIZE, Encoder, EncoderOutput, check_sizes
from paravox.models.encoder_registry import build_encoder, register_encoder


@dataclass
class ProjectedConfig:
    """The base encoder (registry name + settings) and the projector's widths."""

    base: str = "ecapa"  # a name in the encoder registry
    base_settings: dict[str, Any] = field(default_factory=dict)
    dims: list[int] = field(default_factory=lambda: [64, 64, 64])  # projector layer widths
    dropout: float = 0.5  # on the base embedding, before the projector (training only)
    n_mels: int = 80

    def __post_init__(self):
        check_sizes("projected", self, ("n_mels",))
        for i, d in enumerate(self.dims):
            if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_SIZE:
                raise ConfigError(f"projected.dims[{i}]={d!r}: must be an integer in "
                                  f"[1, {MAX_SIZE}]")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"projected.dropout={self.dropout}: must be in [0, 1)")


def projector_mlp(d_in: int, dims: list[int]) -> nn.Sequential:
    """``Linear`` layers without bias, batch norm + ReLU between them (BetterFinetuning's
    projector: 3 layers of 64)."""
    layers: list[nn.Module] = []
    for i, d_out in enumerate(dims):
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < len(dims) - 1:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU()]
        d_in = d_out
    return nn.Sequential(*layers)


class ProjectedEncoder(Encoder):
    """A registry encoder whose embedding goes through a projector MLP (its frames are the
    base encoder's)."""

    def __init__(self, cfg: ProjectedConfig):
        super().__init__()
        if not cfg.dims:
            raise ConfigError("projected encoder: dims is empty; give the projector's widths")
        self.cfg = cfg
        self.base = build_encoder(cfg.base, n_mels=cfg.n_mels, **cfg.base_settings)
        self.dropout = nn.Dropout(cfg.dropout)
        self.projector = projector_mlp(self.base.embedding_dim, list(cfg.dims))
        self.embedding_dim = int(cfg.dims[-1])

    @property
    def input_kind(self) -> str:
        """The base encoder's front end."""
        return self.base.input_kind

    @property
    def input_frame_shift(self) -> float:
        """The base encoder's (its layers are the ones returned)."""
        return self.base.input_frame_shift

    @input_frame_shift.setter
    def input_frame_shift(self, value: float) -> None:
        self.base.input_frame_shift = value

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None, *,
                return_layers: bool = False) -> EncoderOutput:
        """``return_layers``: the base encoder's layers (the projector acts on the
        utterance embedding only)."""
        out = self.base(feats, lengths, return_layers=return_layers)
        return EncoderOutput(self.projector(self.dropout(out.embedding)), out.frames,
                             out.frame_lengths, out.layers)

    def layer_groups(self) -> list[list[str]]:
        """The base encoder's groups; the projector joins its head (always trained)."""
        groups = [[f"base.{p}" for p in g] for g in self.base.layer_groups()]
        if not groups:
            return [["projector."]]
        return groups[:-1] + [groups[-1] + ["projector."]]

    def bundle_settings(self, settings: dict) -> dict:
        """Self-contained settings: the base encoder's own (e.g. a Hugging Face config)."""
        hook = getattr(self.base, "bundle_settings", None)
        base_settings = settings.get("base_settings", {})
        if hook is not None:
            base_settings = hook(dict(base_settings))
        return {**settings, "base_settings": base_settings}


register_encoder("projected", ProjectedEncoder, ProjectedConfig)  # an encoder + projector MLP
