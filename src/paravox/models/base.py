"""The interface every encoder shares: features [B, T, F] -> utterance embedding [B, D], with
the frame-level sequence available for the methods that need it, and (``return_layers=True``)
every layer's frame-level output with the time of each frame (:class:`FrameLayer`), for
frame-level probes such as phone classification.

Time convention: input feature frame ``k`` is centred at ``k * input_frame_shift`` seconds
from the start of the wave (log-mel with ``center=True``: hop 10 ms; a waveform front end:
one sample). A layer's frame ``k`` is centred at ``offset + k * shift`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from paravox.errors import ConfigError
from paravox.utils.checks import between, integer

# the largest size (channels, widths, layers, mel bins) an encoder setting may ask for: far
# above any speech encoder, low enough that a typo (or a hostile bundle config) cannot ask
# for gigabytes before anything runs
MAX_SIZE = 100_000


def check_sizes(encoder: str, cfg, keys: tuple[str, ...]) -> None:
    """Each setting ``keys`` of ``cfg`` (an encoder config) an integer in [1, MAX_SIZE], else
    a ConfigError naming ``encoder.key``: a size of 0 or less builds a model that trains to
    nothing (or fails deep inside torch), a huge one exhausts memory."""
    for key in keys:
        integer(f"{encoder}.{key}", getattr(cfg, key))
        between(f"{encoder}.{key}", getattr(cfg, key), 1, MAX_SIZE)


@dataclass
class FrameLayer:
    """One layer's frame-level output and where its frames sit in time: what a frame-level
    probe needs to read any layer on another time grid (e.g. 10 ms phone labels)."""

    name: str  # e.g. "stem", "block1", "mfa", "tdnn3", "stage2", "hidden4"
    frames: torch.Tensor  # [B, T_l, C_l]
    lengths: torch.Tensor | None  # [B] valid frames (None: all valid)
    shift: float  # seconds between consecutive frames
    offset: float  # seconds: time of the centre of frame 0, from the start of the input wave

    def times(self, n: int | None = None) -> np.ndarray:
        """Centre times in seconds of frames ``0 .. n-1`` (default: all ``T_l`` frames):
        ``offset + k * shift``."""
        n = self.frames.shape[1] if n is None else int(n)
        return self.offset + self.shift * np.arange(n, dtype=np.float64)


def frames_at(layer: FrameLayer, times_seconds, item: int | None = None):
    """Index of the frame of ``layer`` whose centre is nearest to each time in
    ``times_seconds``: ``round((t - offset) / shift)``, clamped to the valid frames.

    Valid frames: all ``T_l`` when ``layer.lengths`` is None, else ``lengths[item]``; with
    lengths and ``item=None`` the result is ``[B, N]`` (each utterance clamped to its own
    length), otherwise ``[N]``. A torch tensor of times gives a long tensor, anything else a
    numpy int64 array."""
    is_torch = isinstance(times_seconds, torch.Tensor)
    t = (times_seconds.detach().cpu().double().numpy() if is_torch
         else np.asarray(times_seconds, dtype=np.float64))
    # floor(x + 0.5): ties go to the later frame, independent of numpy's round-half-even
    idx = np.floor((t - layer.offset) / layer.shift + 0.5).astype(np.int64)
    total = layer.frames.shape[1]
    if layer.lengths is None:
        out = np.clip(idx, 0, total - 1)
    else:
        valid = layer.lengths.detach().cpu().long().numpy().clip(1, total)
        if item is not None:
            out = np.clip(idx, 0, int(valid[item]) - 1)
        else:
            out = np.clip(idx[None], 0, valid.reshape(-1, *([1] * idx.ndim)) - 1)
    return torch.from_numpy(out) if is_torch else out


def pool_onto(feats: torch.Tensor, src_shift: float, src_offset: float, shift: float,
              offset: float, n_frames: int) -> torch.Tensor:
    """Frames ``[N, T, F]`` on a fine grid (frame ``k`` centred at ``src_offset + k *
    src_shift`` seconds) averaged onto a coarser grid of ``n_frames`` frames (centres
    ``offset + j * shift``): each fine frame goes to the coarse frame whose centre is nearest
    (the rule of :func:`frames_at`), fine frames beyond the coarse grid's ends are left out,
    and a coarse frame that receives none is zeros. How 10 ms log-mel targets meet a 20 ms
    encoder (a wav2vec 2.0-style CNN: frames 1-2, 3-4, ... for frame 0, 1, ...)."""
    t = feats.shape[1]
    times = src_offset + src_shift * torch.arange(t, dtype=torch.float64)
    idx = torch.floor((times - offset) / shift + 0.5).long()
    keep = (idx >= 0) & (idx < n_frames)
    idx = idx[keep].to(feats.device)
    keep = keep.to(feats.device)
    total = feats.new_zeros(feats.shape[0], n_frames, feats.shape[2]).index_add(
        1, idx, feats[:, keep])
    count = feats.new_zeros(n_frames).index_add(0, idx, feats.new_ones(len(idx)))
    return total / count.clamp(min=1.0)[None, :, None]


@dataclass
class EncoderOutput:
    """What every encoder returns: the utterance embedding, the frame sequence it pooled
    (with valid lengths), and every layer's frames when asked (``return_layers``)."""

    embedding: torch.Tensor  # [B, D]
    frames: torch.Tensor  # [B, T', C] frame-level features before pooling
    frame_lengths: torch.Tensor | None  # [B] valid frames in ``frames`` (None: all valid)
    layers: list[FrameLayer] | None = None  # every layer, input side first (return_layers)
    # the embedding before the encoder's final normalisation (ECAPA's last BatchNorm), where
    # dimensional collapse shows (None: the encoder has none, ``embedding`` is it)
    raw_embedding: torch.Tensor | None = None

    @property
    def unnormalised(self) -> torch.Tensor:
        """The embedding before any final normalisation: what a collapse monitor reads."""
        return self.embedding if self.raw_embedding is None else self.raw_embedding


class Encoder(nn.Module):
    """Base class. Subclasses set ``embedding_dim`` and implement ``forward``; with
    ``return_layers=True`` it also fills ``EncoderOutput.layers`` (input side first).

    ``input_frame_shift``: seconds between input feature frames (log-mel hop; a waveform
    encoder reads samples), the unit of every layer's ``shift`` and ``offset``;
    ``input_kind``: the front end it reads (``features.kind``)."""

    embedding_dim: int
    input_frame_shift: float = 0.01
    # the front end it reads (FeatureConfig.kind): "logmel" frames, or "waveform" samples
    input_kind: str = "logmel"
    # whether a zero-padded batch with ``lengths`` gives each utterance the embedding of its
    # own forward (to float rounding): inference may then batch utterances of unequal length
    # (:mod:`paravox.inference.batching`); False: one utterance at a time
    pads_exactly: bool = False

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None, *,
                return_layers: bool = False) -> EncoderOutput:
        raise NotImplementedError

    def frame_layer(self, name: str, frames: torch.Tensor, lengths: torch.Tensor | None,
                    shift_frames: float, offset_frames: float) -> FrameLayer:
        """A :class:`FrameLayer` from ``frames`` [B, T_l, C_l] with its shift and offset in
        input frames (converted to seconds with ``input_frame_shift``)."""
        s = float(self.input_frame_shift)
        return FrameLayer(name, frames, lengths, shift_frames * s, offset_frames * s)

    def probe(self, n_mels: int, frames: int = 8) -> EncoderOutput:
        """Every layer of this encoder on a silent input (``return_layers``, eval mode, no
        gradient; the training mode is restored): how a method learns its layers' widths
        and timing before training. The input is ``frames`` frames of ``n_mels`` log-mel
        bins, or, for a waveform encoder, samples (at least twice its receptive field); an
        encoder that takes span masks gets an empty one, so one that cannot mask fails
        here, at construction."""
        channels = 1 if self.input_kind == "waveform" else n_mels
        x = torch.zeros(1, max(frames, 2 * self.min_frames()), channels)
        extra = {}
        if hasattr(self, "frame_count"):
            extra["mask"] = torch.zeros(1, int(self.frame_count(x.shape[1])), dtype=torch.bool)
        was = self.training
        with torch.no_grad():
            out = self.eval()(x, return_layers=True, **extra)
        self.train(was)
        return out

    head_modules: tuple[str, ...] = ("pool", "pool_norm", "embed", "embed_norm")

    def layer_groups(self) -> list[list[str]]:
        """Parameter-name prefixes grouped by layer, input side first, the pooling/embedding
        head (``head_modules``) as the last group: the unit for "train only the top k layers".
        Default: the top-level children, a stack of blocks (ModuleList/Sequential of
        composite modules) counting one group per block;
        encoders with another notion of a layer override it."""
        groups, head = [], []
        for name, child in self.named_children():
            if not any(True for _ in child.parameters()):
                continue
            if name in self.head_modules:
                head.append(f"{name}.")
            elif isinstance(child, (nn.ModuleList, nn.Sequential)) and all(
                    any(True for _ in mod.children()) for mod in child):  # a stack of blocks
                groups += [[f"{name}.{sub}."] for sub, mod in child.named_children()
                           if any(True for _ in mod.parameters())]
            else:
                groups.append([f"{name}."])
        return groups + ([head] if head else [])

    def min_frames(self) -> int:
        """The fewest input frames a forward accepts (what
        :attr:`paravox.inference.Embedder.min_samples` pads short audio up to). Default 1,
        raised by three rules that cover the registry's encoders:

        - an encoder that loses ``context`` frames to unpadded convolutions (the x-vector's
          TDNN: 14) needs ``context + 1``;
        - a wrapped transformers model with a CNN waveform encoder (``model.config``'s
          ``conv_kernel``/``conv_stride``: wav2vec 2.0, HuBERT, WavLM) needs its receptive
          field in samples (400 for the base models);
        - an encoder that wraps other encoders (the projected encoder) needs the most any of
          them needs.

        ECAPA-TDNN (padded convolutions), the ResNet and the frame transformer run on a
        single frame. An encoder with another limit overrides this method."""
        need = 1
        context = getattr(self, "context", None)
        if isinstance(context, int) and not isinstance(context, bool):
            need = max(need, context + 1)
        conf = getattr(getattr(self, "model", None), "config", None)
        kernel, stride = getattr(conf, "conv_kernel", None), getattr(conf, "conv_stride", None)
        if kernel and stride:
            field, step = 1, 1
            for k, s in zip(kernel, stride):
                field += (int(k) - 1) * step
                step *= int(s)
            need = max(need, field)
        for child in self.children():
            if isinstance(child, Encoder):
                need = max(need, child.min_frames())
        return need

    def bundle_settings(self, settings: dict) -> dict:
        """The encoder settings a bundle records (:func:`paravox.inference.bundle.write_bundle`):
        enough to rebuild this architecture with nothing but the bundle. Default: unchanged;
        an encoder built from outside files (e.g. a pretrained model's folder) replaces them
        by what they hold."""
        return settings


def check_front_end(where: str, name: str, encoder: Encoder, kind: str) -> None:
    """A ConfigError naming ``<where>.features.kind`` unless the front end ``kind`` is what
    ``encoder`` (registry ``name``) reads: a log-mel encoder fed samples, or a waveform model
    fed log-mel frames, would train on nonsense without failing."""
    if kind != encoder.input_kind:
        raise ConfigError(f"{where}.features.kind='{kind}': encoder '{name}' reads "
                          f"{encoder.input_kind}; set {where}.features.kind="
                          f"{encoder.input_kind}")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
