"""A frame-level Transformer over log-mel frames for masked prediction (Mockingjay, TERA,
wav2vec 2.0 lineage): the frame encoder of the MGF and Learn2Diss methods.

``subsample`` consecutive log-mel frames are stacked into one input frame (frame shift
``10 ms * subsample``), projected to ``dim`` (Linear + LayerNorm); masked input frames
(``mask``, on the subsampled grid) are replaced by a learned mask embedding (wav2vec 2.0's
``mask_emb``); a convolutional relative positional embedding (wav2vec 2.0) or sinusoidal
absolute positions is added; then ``layers`` Transformer blocks (pre-LN by default, with a
final LayerNorm), a key padding mask from ``lengths`` so that padded frames never reach valid
ones, and an utterance head (attentive or mean+std statistics pooling, Linear, BatchNorm) as in
ECAPA-TDNN.

The blocks are written here (fused QKV projection + ``scaled_dot_product_attention``) rather
than taken from ``nn.TransformerEncoderLayer``, whose inference fast path swaps in a fused
kernel under ``no_grad``: one code path for training, inference and ONNX export (torch.export,
dynamic batch and time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from paravox.errors import ConfigError
from paravox.models.base import Encoder, EncoderOutput, check_sizes
from paravox.models.pooling import AttentiveStatsPool, StatsPool

POOLINGS = ("attentive", "mean")
MAX_POS_GROUPS = 16  # wav2vec 2.0's groups of the convolutional positional embedding


@dataclass
class TransformerConfig:
    """Sizes of :class:`FrameTransformer` (defaults: a small ~2 M parameter model)."""

    n_mels: int = 80
    dim: int = 192
    layers: int = 4
    heads: int = 4
    ff_dim: int = 768
    dropout: float = 0.1
    subsample: int = 1  # log-mel frames stacked into one input frame: shift 10 ms * subsample
    conv_pos_kernel: int = 31  # convolutional positional embedding; 0: sinusoidal absolute
    conv_pos_groups: int | None = None  # None: the largest divisor of dim up to 16
    norm_first: bool = True  # pre-LN blocks and a final LayerNorm; False: post-LN
    embedding_dim: int = 192
    pooling: str = "attentive"  # "attentive" (ECAPA's) | "mean" (mean + std)
    attention_channels: int = 64

    def __post_init__(self):
        check_sizes("transformer", self, ("n_mels", "dim", "layers", "heads", "ff_dim",
                                          "subsample", "embedding_dim", "attention_channels"))
        if self.dim % self.heads:
            raise ConfigError(f"transformer: dim={self.dim} must be divisible by "
                              f"heads={self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"transformer: dropout={self.dropout} must be in [0, 1)")
        if self.conv_pos_kernel < 0:
            raise ConfigError(f"transformer: conv_pos_kernel={self.conv_pos_kernel} must be "
                              f">= 0 (0: sinusoidal positions)")
        groups = self.conv_pos_groups
        if groups is not None and (groups < 1 or self.dim % groups):
            raise ConfigError(f"transformer: conv_pos_groups={groups} must divide "
                              f"dim={self.dim}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"transformer: pooling '{self.pooling}' is unknown; choose one "
                              f"of {list(POOLINGS)}")

    def pos_groups(self) -> int:
        """Groups of the positional convolution: the setting, or (None) the largest divisor
        of ``dim`` up to 16, so that any width works with wav2vec 2.0's choice where it fits."""
        if self.conv_pos_groups is not None:
            return self.conv_pos_groups
        return max(g for g in range(1, MAX_POS_GROUPS + 1) if self.dim % g == 0)


class ConvPositionalEmbedding(nn.Module):
    """wav2vec 2.0's relative positional embedding: a wide grouped convolution over time,
    then GELU, added to the frames. Works at any length (no position table); the caller
    zeroes padded frames first, so valid frames see zeros beyond their end as when alone."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.trim = 1 - kernel % 2  # an even kernel gives one frame too many
        nn.init.normal_(self.conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[..., :-1]
        return F.gelu(y).transpose(1, 2)


def sinusoidal_positions(length, dim: int, device, dtype=torch.float32) -> torch.Tensor:
    """``[length, dim]`` absolute sinusoidal positions (Vaswani et al.): sin/cos pairs at
    geometric frequencies, computed for any length (no table, so ONNX export stays
    dynamic)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    angles = pos * freq
    table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)
    return table[:, :dim].to(dtype)


class TransformerBlock(nn.Module):
    """Multi-head self-attention + GELU feed-forward, each with a residual path; pre-LN
    (``norm_first``) or post-LN. ``key_mask`` [B, 1, 1, T] (True: a valid frame) keeps padded
    frames out of every valid frame's attention."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, norm_first: bool):
        super().__init__()
        self.heads, self.norm_first, self.attn_dropout = heads, norm_first, dropout
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def attention(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Self-attention of ``x`` [B, T, C] over the frames ``key_mask`` allows (all when
        None)."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(
            2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.attn_dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, c))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attention(self.attn_norm(x), key_mask))
            return x + self.dropout(self.ff(self.ff_norm(x)))
        x = self.attn_norm(x + self.dropout(self.attention(x, key_mask)))
        return self.ff_norm(x + self.dropout(self.ff(x)))


class FrameTransformer(Encoder):
    """Transformer frame encoder for masked prediction over log-mel frames: stacked frames ->
    input projection -> (mask embedding) -> positions -> blocks -> pooled embedding.

    A masked-prediction method sizes its mask with :meth:`frame_count` /
    :meth:`frame_lengths` (the subsampled grid) and passes it as ``forward(..., mask=...)``;
    ``EncoderOutput.frames`` are the last layer's frames to predict from. With ``lengths``,
    padded frames are zeroed before the positional convolution and masked out of attention
    and pooling, so a padded batch gives each utterance its own embedding
    (``pads_exactly``)."""

    pads_exactly = True

    def __init__(self, cfg: TransformerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TransformerConfig()
        d = cfg.dim
        self.proj = nn.Linear(cfg.n_mels * cfg.subsample, d)
        self.proj_norm = nn.LayerNorm(d)
        self.mask_emb = nn.Parameter(torch.empty(d).uniform_())  # as wav2vec 2.0
        self.pos_conv = (ConvPositionalEmbedding(d, cfg.conv_pos_kernel, cfg.pos_groups())
                         if cfg.conv_pos_kernel else None)
        self.pos_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([
            TransformerBlock(d, cfg.heads, cfg.ff_dim, cfg.dropout, cfg.norm_first)
            for _ in range(cfg.layers)])
        self.final_norm = nn.LayerNorm(d) if cfg.norm_first else None
        self.pool = (AttentiveStatsPool(d, cfg.attention_channels) if cfg.pooling == "attentive"
                     else StatsPool())
        self.embed = nn.Linear(2 * d, cfg.embedding_dim)
        self.embed_norm = nn.BatchNorm1d(cfg.embedding_dim)
        self.embedding_dim = cfg.embedding_dim

    def frame_count(self, num_frames):
        """Frames after subsampling of ``num_frames`` input frames, ``ceil(T / subsample)``:
        the time size of a ``mask`` for an input of ``T`` frames (int in, int out). Written
        with non-negative operands only: ONNX's integer division truncates towards zero, so
        ``-(-T // s)`` would export as ``floor(T / s)``."""
        s = self.cfg.subsample
        return (num_frames + (s - 1)) // s

    def frame_lengths(self, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """Valid frames after subsampling, ``ceil(lengths / subsample)`` (None: all valid),
        so a method can keep its mask on each utterance's valid frames."""
        if lengths is None:
            return None
        s = self.cfg.subsample
        return torch.div(lengths.long() + (s - 1), s, rounding_mode="floor")

    def _stack(self, feats: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """[B, T, F] -> [B, T', F * subsample]: padded input frames zeroed (so the last,
        partly padded stack is the same as when the utterance is alone), the end padded with
        zeros to a whole number of stacks."""
        b, t, f = feats.shape
        if lengths is not None:
            valid = torch.arange(t, device=feats.device)[None] < lengths.to(feats.device)[:, None]
            feats = feats.masked_fill(~valid[..., None], 0.0)
        s = self.cfg.subsample
        if s == 1:
            return feats
        t2 = self.frame_count(t)
        feats = F.pad(feats, (0, 0, 0, t2 * s - t))
        return feats.reshape(b, t2, s * f)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None, *,
                return_layers: bool = False, mask: torch.Tensor | None = None
                ) -> EncoderOutput:
        """``mask`` [B, T'] bool (True: masked), ``T' = frame_count(T)``: those input frames
        become the mask embedding. ``return_layers``: "input" (the projected input frames the
        blocks start from, mask applied, before positions) and "layer1".."layerL" (the last
        one after the final LayerNorm, equal to ``frames``), all on the subsampled grid."""
        x = self.proj_norm(self.proj(self._stack(feats, lengths)))
        b, t = x.shape[0], x.shape[1]
        frame_lengths = self.frame_lengths(lengths)
        valid = None
        if frame_lengths is not None:
            valid = torch.arange(t, device=x.device)[None] < frame_lengths.to(x.device)[:, None]
        if mask is not None:
            if tuple(mask.shape) != (b, t):
                raise ValueError(f"mask has shape {tuple(mask.shape)}; expected ({b}, {t}): "
                                 f"[batch, frame_count(T)] on the subsampled grid")
            x = torch.where(mask.to(x.device, torch.bool)[..., None],
                            self.mask_emb.to(x.dtype), x)
        inputs = x
        if self.pos_conv is not None:
            x = x + self.pos_conv(x if valid is None else x.masked_fill(~valid[..., None], 0.0))
        else:
            x = x + sinusoidal_positions(t, x.shape[-1], x.device, x.dtype)
        x = self.pos_dropout(x)
        key_mask = None if valid is None else valid[:, None, None, :]
        outs = []
        for block in self.blocks:
            x = block(x, key_mask)
            outs.append(x)
        if self.final_norm is not None:
            x = outs[-1] = self.final_norm(x)
        raw = self.embed(self.pool(x.transpose(1, 2), frame_lengths))
        emb = self.embed_norm(raw)
        layers = None
        if return_layers:
            s = self.cfg.subsample
            named = [("input", inputs)] + [(f"layer{i}", o) for i, o in enumerate(outs, 1)]
            layers = [self.frame_layer(n, y, frame_lengths, s, (s - 1) / 2) for n, y in named]
        return EncoderOutput(emb, x, frame_lengths, layers, raw)

    def layer_groups(self) -> list[list[str]]:
        """Input side (projection, mask embedding, positional convolution), one group per
        block (the final LayerNorm with the last), then the pooling/embedding head: the
        unit for "train only the top k layers"."""
        first = ["proj.", "proj_norm.", "mask_emb"]
        if self.pos_conv is not None:
            first.append("pos_conv.")
        blocks = [[f"blocks.{i}."] for i in range(len(self.blocks))]
        if self.final_norm is not None:
            blocks[-1].append("final_norm.")
        head = [f"{n}." for n in ("pool", "embed", "embed_norm")
                if any(True for _ in getattr(self, n).parameters())]
        return [first, *blocks, head]
