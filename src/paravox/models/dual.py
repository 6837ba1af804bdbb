"""Two encoders as one: a frame-level encoder for content and an utterance-level encoder for
speaker and other non-semantic information (Learn2Diss). As an encoder of its own it exports
as one ordinary bundle with two named outputs: the **utterance embedding** is the
``embedding`` every paravox tool reads (``Embedder.embed``, ``paravox evaluate sv``, ONNX
``embedding``), and the **frame features per layer** are the frame encoder's layers
(``Embedder.frames``, ``paravox evaluate frames``, ONNX ``frames_<layer>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from paravox.errors import ConfigError
from paravox.models.base import Encoder, EncoderOutput
from paravox.models.encoder_registry import build_encoder, register_encoder

UTTERANCE_INPUTS = ("logmel", "frames")


@dataclass
class DualConfig:
    """The frame encoder and the utterance encoder (registry names + settings) and what the
    utterance encoder reads: the log-mel features (``logmel``: two independent encoders) or
    a learned softmax-weighted sum of the frame encoder's layers, detached (``frames``: the
    utterance encoder reads what the frame encoder computes without shaping it)."""

    frame: str = "transformer"
    frame_settings: dict[str, Any] = field(default_factory=dict)
    utterance: str = "ecapa"
    utterance_settings: dict[str, Any] = field(default_factory=lambda: {"channels": 256})
    utterance_input: str = "logmel"
    n_mels: int = 80


class DualEncoder(Encoder):
    """``frame`` and ``utterance`` encoders; the embedding is the utterance encoder's, the
    frames and layers the frame encoder's."""

    def __init__(self, cfg: DualConfig):
        super().__init__()
        if cfg.utterance_input not in UTTERANCE_INPUTS:
            raise ConfigError(f"dual encoder: utterance_input='{cfg.utterance_input}': choose "
                              f"one of {UTTERANCE_INPUTS}")
        self.cfg = cfg
        self.frame = build_encoder(cfg.frame, n_mels=cfg.n_mels, **cfg.frame_settings)
        self.layer_weights = None
        n_in = cfg.n_mels
        if cfg.utterance_input == "frames":
            layers = self.frame.probe(cfg.n_mels).layers
            widths = {layer.frames.shape[-1] for layer in layers}
            if len(widths) != 1:
                raise ConfigError(f"dual encoder: utterance_input='frames' needs frame layers "
                                  f"of one width; '{cfg.frame}' has {sorted(widths)}")
            n_in = widths.pop()
            self.layer_weights = nn.Parameter(torch.zeros(len(layers)))
        self.utterance = build_encoder(cfg.utterance, n_mels=n_in, **cfg.utterance_settings)
        if (cfg.utterance_input == "logmel"
                and self.utterance.input_kind != self.frame.input_kind):
            raise ConfigError(f"dual encoder: the frame encoder '{cfg.frame}' reads "
                              f"{self.frame.input_kind}, the utterance encoder "
                              f"'{cfg.utterance}' {self.utterance.input_kind}: one front end "
                              f"feeds both, so set utterance_input='frames' (the utterance "
                              f"encoder reads the frame encoder's weighted layers)")
        self.embedding_dim = self.utterance.embedding_dim

    @property
    def input_kind(self) -> str:
        """The frame encoder's front end (the utterance encoder reads it or the frames)."""
        return self.frame.input_kind

    @property
    def input_frame_shift(self) -> float:
        """The frame encoder's (its layers are the ones returned)."""
        return self.frame.input_frame_shift

    @input_frame_shift.setter
    def input_frame_shift(self, value: float) -> None:
        self.frame.input_frame_shift = value

    def utterance_input(self, feats: torch.Tensor, lengths: torch.Tensor | None,
                        frame_out: EncoderOutput | None) -> tuple[torch.Tensor,
                                                                  torch.Tensor | None]:
        """What the utterance encoder reads (and its valid lengths): the features, or the
        softmax-weighted sum of ``frame_out``'s layers (detached)."""
        if self.layer_weights is None:
            return feats, lengths
        w = torch.softmax(self.layer_weights, 0)
        stacked = torch.stack([layer.frames.detach() for layer in frame_out.layers])
        return (w[:, None, None, None] * stacked).sum(0), frame_out.frame_lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None, *,
                return_layers: bool = False) -> EncoderOutput:
        """The utterance embedding with the frame encoder's frames (and layers)."""
        need_layers = return_layers or self.layer_weights is not None
        f = self.frame(feats, lengths, return_layers=need_layers)
        u = self.utterance(*self.utterance_input(feats, lengths, f))
        return EncoderOutput(u.embedding, f.frames, f.frame_lengths,
                             f.layers if return_layers else None, u.raw_embedding)

    def layer_groups(self) -> list[list[str]]:
        """The frame encoder's groups, then the utterance encoder as one group (its own
        head last): "train the top k layers" reaches the utterance encoder first."""
        groups = [[f"frame.{p}" for p in g] for g in self.frame.layer_groups()]
        tail = ["utterance."] + (["layer_weights"] if self.layer_weights is not None else [])
        return groups + [tail]

    def bundle_settings(self, settings: dict) -> dict:
        """Self-contained settings: each part's own (e.g. a Hugging Face config)."""
        out = dict(settings)
        for part in ("frame", "utterance"):
            hook = getattr(getattr(self, part), "bundle_settings", None)
            if hook is not None:
                out[f"{part}_settings"] = hook(dict(settings.get(f"{part}_settings", {})))
        return out


register_encoder("dual", DualEncoder, DualConfig)  # frame encoder + utterance encoder (Learn2Diss)
