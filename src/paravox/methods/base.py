"""What every training method shares: the front end (log-mel + SpecAugment), step-based
learning-rate and weight-decay schedules, optimiser construction, skipped-item logging.

A method subclasses :class:`TrainingModule`, builds its networks in ``__init__`` and lists the
trainable ones in ``trainable()``. Schedules are plain functions of ``global_step``, so a
resumed run continues them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from paravox.audio.features import FeatureConfig, build_frontend
from paravox.data.augment import AugmentConfig
from paravox.data.crops import CropConfig
from paravox.data.dataset import CropBatch
from paravox.data.specaugment import SpecAugment, SpecAugmentConfig
from paravox.errors import ConfigError
from paravox.utils.schedules import cosine_schedule


@dataclass
class OptimConfig:
    """Optimiser and schedules: linear lr warm-up then cosine decay; cosine weight decay."""

    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.2
    min_lr: float = 1e-5
    warmup_epochs: int = 10
    weight_decay: float = 5e-5
    weight_decay_end: float = 5e-5
    clip_grad: float = 3.0  # max gradient norm (0 = no clipping)


@dataclass
class MethodConfig:
    """Settings common to all methods: encoder, features, crops, augmentation, optimiser."""

    encoder: str = "ecapa"
    encoder_settings: dict[str, Any] = field(default_factory=lambda: {"channels": 512})
    features: FeatureConfig = field(default_factory=FeatureConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


class TrainingModule(L.LightningModule):
    """Base LightningModule: front end, schedules and optimiser; see the module docstring."""

    def __init__(self, cfg: MethodConfig, steps_per_epoch: int, max_epochs: int):
        super().__init__()
        if cfg.optim.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optim.optimizer='{cfg.optim.optimizer}': choose 'sgd' or "
                              f"'adamw'")
        self.cfg = cfg
        self.steps_per_epoch, self.max_epochs = steps_per_epoch, max_epochs
        self.fbank = build_frontend(cfg.features)
        self.specaugment = SpecAugment(cfg.specaugment)

    augment_seed: int = 0  # the engine sets the run seed; SpecAugment masks are keyed by it

    def trainable(self) -> nn.Module:
        """The networks the optimiser updates."""
        raise NotImplementedError

    def embedding_encoder(self) -> nn.Module:
        """The encoder whose embeddings are evaluated and exported."""
        raise NotImplementedError

    # -- schedules ---------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.max_epochs

    def lr_at(self, step: int) -> float:
        o = self.cfg.optim
        return cosine_schedule(step, self.total_steps, o.lr, o.min_lr,
                               o.warmup_epochs * self.steps_per_epoch, 0.0)

    def weight_decay_at(self, step: int) -> float:
        o = self.cfg.optim
        return cosine_schedule(step, self.total_steps, o.weight_decay, o.weight_decay_end)

    # -- front end ---------------------------------------------------------------------------
    def features(self, waves: torch.Tensor, augment: bool) -> torch.Tensor:
        """``[N, samples]`` crops of one length -> log-mel ``[N, T, F]`` (+ SpecAugment).

        SpecAugment masks spectrograms: a waveform front end gets only the waveform
        augmentation of the data pipeline."""
        feats, _ = self.fbank(waves)
        if not augment or self.cfg.features.kind != "logmel":
            return feats
        return self.specaugment(feats, generator=self._next_mask_generator())

    def _next_mask_generator(self) -> torch.Generator | None:
        """Masks keyed by (seed, step, rank, call): a resumed run draws the same masks."""
        if self._trainer is None:
            return None  # outside a Trainer: the global RNG
        self._mask_calls = getattr(self, "_mask_calls", 0) + 1
        key = [self.augment_seed, self.global_step, self.global_rank, self._mask_calls]
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def log_skipped(self, batch: CropBatch) -> bool:
        """Log skipped items; False when nothing in the batch is usable."""
        if batch.skipped:
            self.log("data/skipped", float(len(batch.skipped)), reduce_fx="sum",
                     batch_size=max(batch.batch_size, 1))
        return batch.batch_size > 0

    # -- hooks -------------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._mask_calls = 0
        lr, wd = self.lr_at(self.global_step), self.weight_decay_at(self.global_step)
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = lr
            if group.get("regularised", True):
                group["weight_decay"] = wd

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.trainable().named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        groups = [{"params": decay, "regularised": True},
                  {"params": no_decay, "weight_decay": 0.0, "regularised": False}]
        o = self.cfg.optim
        if o.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=o.lr, momentum=0.9)
        return torch.optim.AdamW(groups, lr=o.lr)
