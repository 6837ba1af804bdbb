"""MGF: multi-granular self-supervised learning (Zhao et al. 2021, arXiv 2102.01930).

Speech is hierarchical, so each time scale gets its own target and loss, all on one
frame-level encoder (by default the ``transformer`` encoder over log-mel frames):

- **frame scale, generative**: short spans of frames are hidden (replaced by the encoder's
  learned mask embedding) and a linear head reconstructs their log-mel frames from the
  encoder's output, L1 on the hidden frames only (TERA / Mockingjay);
- **phoneme scale, masked prediction with a contrastive loss**: phone-length spans are hidden;
  for each hidden span the context network's output, pooled over the span, must pick out the
  span's true content - a projection of its clean log-mel frames, pooled the same way - among
  the other spans of the utterance and of the batch (InfoNCE, as wav2vec 2.0 does per frame);
- **utterance scale, discriminative**: the pooled embeddings of two crops of one utterance are
  pulled together and pushed away from the other utterances' crops (NT-Xent, as SimCLR).

Only the abstract and introduction of the paper could be read; the targets, heads, mask
settings, layer choices and weights here are paravox's choices from the field's established
pieces, each a setting (see docs/training.md, "MGF"). Both crops of an utterance are masked
in one encoder pass with the union of the two scales' masks; each loss reads its own mask.
With the ``hf`` encoder (wav2vec 2.0 / HuBERT / WavLM, ``features.kind: waveform``) the
spans are drawn on the model's 20 ms CNN frames and hidden by the model's own mask embedding;
the log-mel targets are computed from the same waves (10 ms) and averaged onto the model's
frames (:func:`~paravox.models.base.pool_onto`) instead of stacked.
``phone_loss: generative`` replaces the phoneme-scale contrastive loss by reconstruction of
the phone-length spans (the ablation of "each scale needs its own loss"). A weight of 0
switches a scale off: its loss is neither computed nor logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from paravox.audio.features import LogMelFilterbank
from paravox.data.crops import CropConfig
from paravox.data.dataset import CropBatch
from paravox.data.specaugment import draw_span_mask
from paravox.errors import ConfigError
from paravox.models import build_encoder
from paravox.models.base import check_front_end, pool_onto
from paravox.models.hf import check_hf_source
from paravox.objectives.contrastive import nt_xent
from paravox.objectives.masked import (
    masked_reconstruction_loss,
    pool_spans,
    span_info_nce,
    spans_of_mask,
)
from paravox.training.module import EncoderMethodConfig, OptimConfig, TrainingModule
from paravox.utils.checks import at_least, finite, one_of, positive_finite

PHONE_LOSSES = ("contrastive", "generative")
TARGET_NORMS = ("utterance", "none")
RECONSTRUCTIONS = ("l1", "l2")


@dataclass
class MGFConfig(EncoderMethodConfig):
    """MGF on top of :class:`EncoderMethodConfig`: the weight of each scale (0 = off), each scale's
    span mask (probability of a span start per frame and span length, wav2vec 2.0 style),
    the layer each frame-level loss reads (index into the encoder's layers, -1 = last), the
    phoneme-scale loss and its InfoNCE settings, the reconstruction norm, and the utterance
    scale's projector and temperature."""

    encoder: str = "transformer"
    # empty: the encoder's own defaults (the transformer's: width 192, 4 layers); not filled
    # in here, or they would merge into the settings of a recipe with another encoder
    encoder_settings: dict = field(default_factory=dict)
    crops: CropConfig = field(default_factory=lambda: CropConfig(
        n_long=2, long_seconds=2.0, n_short=0))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adamw", lr=1e-3, min_lr=1e-5, warmup_epochs=1, weight_decay=1e-2,
        weight_decay_end=1e-2, clip_grad=3.0))
    frame_weight: float = 1.0
    phone_weight: float = 1.0
    utterance_weight: float = 1.0
    # draw_span_mask's mask_prob: mask_prob * L / span spans per crop of L frames (overlaps merge)
    frame_mask_prob: float = 0.15  # ~14 % of frames hidden (TERA: 15 %)
    frame_span: int = 2  # frames (20 ms)
    phone_mask_prob: float = 0.3  # ~26 % of frames hidden in phone-length spans
    phone_span: int = 8  # frames (80 ms, about one phone)
    frame_layer: int = -1
    phone_layer: int = -1
    phone_loss: str = "contrastive"  # contrastive | generative
    phone_dim: int = 128  # projection width of span predictions and targets
    phone_temperature: float = 0.1
    phone_negatives: int = 0  # distractors per span (0 = every other span of the batch)
    reconstruction: str = "l1"  # l1 | l2
    # targets standardised per crop and mel bin (CMVN, as TERA's input features) | none
    target_norm: str = "utterance"
    projector_hidden: int = 512
    projector_dim: int = 128
    utterance_temperature: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        one_of("mgf.phone_loss", self.phone_loss, PHONE_LOSSES)
        one_of("mgf.target_norm", self.target_norm, TARGET_NORMS)
        one_of("mgf.reconstruction", self.reconstruction, RECONSTRUCTIONS)
        weights = {k: getattr(self, k) for k in ("frame_weight", "phone_weight",
                                                  "utterance_weight")}
        for key, value in weights.items():
            finite(f"mgf.{key}", value)
            at_least(f"mgf.{key}", value, 0.0, "0 switches the scale off")
        if not any(weights.values()):
            raise ConfigError("mgf: frame_weight, phone_weight and utterance_weight are all 0; "
                              "at least one scale must train")
        for key in ("phone_temperature", "utterance_temperature"):
            positive_finite(f"mgf.{key}", getattr(self, key), hint="InfoNCE / NT-Xent divide "
                            "by it: 0 or less trains to NaN")
        for key in ("frame_mask_prob", "phone_mask_prob"):
            positive_finite(f"mgf.{key}", getattr(self, key), 1.0)
        for key in ("frame_span", "phone_span", "phone_dim", "projector_hidden",
                    "projector_dim"):
            at_least(f"mgf.{key}", getattr(self, key), 1)
        at_least("mgf.phone_negatives", self.phone_negatives, 0, "0 = every other span")
        if self.utterance_weight and (self.crops.n_long != 2 or self.crops.n_short != 0):
            raise ConfigError("mgf.crops: the utterance scale contrasts two crops of one length "
                              "(set crops.n_long=2 crops.n_short=0, or utterance_weight=0)")

    def min_batch_size(self) -> tuple[int, str]:
        """Two utterances when the utterance scale is on (NT-Xent across the batch)."""
        if self.utterance_weight:
            return 2, "the utterance scale's NT-Xent contrasts each utterance with the others"
        return 1, ""


class MGFModule(TrainingModule):
    """One frame encoder, a reconstruction head, span prediction/target projections and an
    utterance projector; the three scales' losses weighted and summed."""

    def __init__(self, cfg: MGFConfig, steps_per_epoch: int, max_epochs: int):
        super().__init__(cfg, steps_per_epoch, max_epochs)
        check_hf_source(cfg.encoder, cfg.encoder_settings, "mgf.encoder_settings")
        self.encoder = build_encoder(cfg.encoder, n_mels=cfg.features.n_mels,
                                     **cfg.encoder_settings)
        if not hasattr(self.encoder, "frame_count"):
            raise ConfigError(f"mgf.encoder='{cfg.encoder}' cannot take frame masks; use "
                              f"'transformer' (log-mel) or 'hf' (waveform)")
        check_front_end("mgf", cfg.encoder, self.encoder, cfg.features.kind)
        # a waveform encoder: log-mel targets from the same waves, averaged onto its frames
        self.target_fbank = (LogMelFilterbank(replace(cfg.features, kind="logmel"))
                             if cfg.features.kind == "waveform" else None)
        self.subsample = int(getattr(getattr(self.encoder, "cfg", None), "subsample", 1))
        width = self._layer_width()
        target_dim = cfg.features.n_mels * (1 if self.target_fbank else self.subsample)
        self.frame_head = nn.Linear(width, target_dim) if cfg.frame_weight else None
        self.phone_head = self.phone_target = None
        if cfg.phone_weight and cfg.phone_loss == "contrastive":
            self.phone_head = nn.Linear(width, cfg.phone_dim)
            self.phone_target = nn.Linear(target_dim, cfg.phone_dim)
        elif cfg.phone_weight:
            self.phone_head = nn.Linear(width, target_dim)
        self.projector = None
        if cfg.utterance_weight:
            d = self.encoder.embedding_dim
            self.projector = nn.Sequential(
                nn.Linear(d, cfg.projector_hidden), nn.BatchNorm1d(cfg.projector_hidden),
                nn.ReLU(), nn.Linear(cfg.projector_hidden, cfg.projector_dim))

    def _layer_width(self) -> int:
        out = self.encoder.probe(self.cfg.features.n_mels, 4 * self.subsample)
        self.grid = (out.layers[0].shift, out.layers[0].offset)  # the frames' timing, seconds
        widths = {out.layers[i].frames.shape[-1] for i in (self.cfg.frame_layer,
                                                            self.cfg.phone_layer)}
        if len(widths) != 1:
            raise ConfigError(f"mgf: frame_layer and phone_layer have different widths "
                              f"{sorted(widths)}")
        return widths.pop()

    def trainable(self) -> nn.Module:
        """The encoder and every head that is switched on."""
        parts = [self.encoder, self.frame_head, self.phone_head, self.phone_target,
                 self.projector]
        return nn.ModuleList([p for p in parts if p is not None])

    def embedding_encoder(self) -> nn.Module:
        """The frame encoder: its pooled embedding and its layers are what is exported."""
        return self.encoder

    def stacked_targets(self, feats: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Log-mel frames ``[N, T, F]`` (standardised per crop and mel bin when
        ``target_norm='utterance'``) stacked ``subsample`` at a time onto the encoder's grid of
        ``n_frames`` frames (zero-padded at the end): the reconstruction targets. A waveform
        encoder's ``feats`` are samples ``[N, samples, 1]``: their log-mel frames (10 ms) are
        averaged onto its frames instead."""
        if self.target_fbank is not None:
            feats = self.target_fbank(feats[..., 0])[0]
        if self.cfg.target_norm == "utterance":
            feats = (feats - feats.mean(1, keepdim=True)) / feats.std(1, keepdim=True).clamp(
                min=1e-3)
        if self.target_fbank is not None:
            hop = self.target_fbank.hop_length / self.cfg.features.sample_rate
            return pool_onto(feats, hop, 0.0, *self.grid, n_frames)
        s = self.subsample
        n, t, f = feats.shape
        if n_frames * s > t:
            feats = torch.cat([feats, feats.new_zeros(n, n_frames * s - t, f)], 1)
        return feats[:, :n_frames * s].reshape(n, n_frames, s * f)

    def masks(self, n: int, frames: int, generator: torch.Generator | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The frame-scale and the phoneme-scale span masks ``[n, frames]`` (all False for a
        scale that is off)."""
        c = self.cfg
        off = torch.zeros(n, frames, dtype=torch.bool)
        m_frame = (draw_span_mask(n, frames, c.frame_mask_prob, c.frame_span,
                                  generator=generator) if c.frame_weight else off)
        m_phone = (draw_span_mask(n, frames, c.phone_mask_prob, c.phone_span,
                                  generator=generator) if c.phone_weight else off)
        return m_frame.to(self.device), m_phone.to(self.device)

    def losses(self, feats: torch.Tensor, generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """Each active scale's loss on features ``[2B, T, F]`` (the two crops of each of B
        utterances, first crops first), plus ``phone_accuracy`` for the contrastive loss."""
        c = self.cfg
        frames = int(self.encoder.frame_count(feats.shape[1]))
        targets = self.stacked_targets(feats, frames)
        m_frame, m_phone = self.masks(len(feats), frames, generator)
        out = self.encoder(feats, mask=m_frame | m_phone, return_layers=True)
        parts: dict[str, torch.Tensor] = {}
        if c.frame_weight:
            pred = self.frame_head(out.layers[c.frame_layer].frames)
            parts["frame"] = masked_reconstruction_loss(pred, targets, m_frame, c.reconstruction,
                                                        global_mean=True)
        if c.phone_weight:
            hidden = out.layers[c.phone_layer].frames
            if c.phone_loss == "generative":
                parts["phone"] = masked_reconstruction_loss(
                    self.phone_head(hidden), targets, m_phone, c.reconstruction,
                    global_mean=True)
            else:
                utt, start, end = spans_of_mask(m_phone)
                pred = pool_spans(self.phone_head(hidden), utt, start, end)
                true = pool_spans(self.phone_target(targets), utt, start, end)
                loss, acc = span_info_nce(pred, true, utt, c.phone_temperature,
                                          c.phone_negatives or None, generator=generator,
                                          gather=True, return_accuracy=True)
                parts["phone"], parts["phone_accuracy"] = loss, acc
        self.last_embeddings = out.unnormalised  # for the collapse monitor
        if c.utterance_weight:
            z1, z2 = self.projector(out.embedding).chunk(2)
            parts["utterance"] = nt_xent(z1, z2, c.utterance_temperature)
        return parts

    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """``frame_weight * L_frame + phone_weight * L_phone + utterance_weight * L_utt``
        over the active scales."""
        c = self.cfg
        weights = {"frame": c.frame_weight, "phone": c.phone_weight,
                   "utterance": c.utterance_weight}
        return sum(w * parts[k] for k, w in weights.items() if w)

    def training_step(self, batch: CropBatch, batch_idx: int):
        if not self.log_skipped(batch):
            return None
        views = batch.groups[0]  # [2, B, samples] (or [1, B, samples] without the utterance
        v, b, n = views.shape    # scale)
        feats = self.features(views.reshape(v * b, n), augment=False)  # masking is MGF's own
        parts = self.losses(feats, self._next_mask_generator())
        loss = self.total(parts)
        for name, value in parts.items():
            self.log(f"train/{name}", value.detach(), batch_size=b)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=b)
        self.log("sched/lr", self.lr_at(self.schedule_step), batch_size=b)
        self.log_embedding_rank(self.last_embeddings, b)
        return loss
