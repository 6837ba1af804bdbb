"""DINO for speech (Cho et al., IEEE JSTSP 2022) as a LightningModule.

Student and teacher share one architecture (encoder + DINO head); the teacher is an EMA of the
student (momentum on a cosine schedule 0.996 -> 1) and sees only the long crops, the student
all crops. Loss: ``objectives.dino.DINOLoss`` with a teacher temperature warmed up linearly.
Learning rate (linear warm-up + cosine) and weight decay (cosine) follow the step, so a resumed
run continues them exactly. The prototypes are frozen for the first epoch(s). Collapse is
monitored (teacher entropy, KL to uniform, embedding spread) and warned about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from paravox.audio.features import FeatureConfig, LogMelFilterbank
from paravox.data.augment import AugmentConfig
from paravox.data.crops import CropConfig
from paravox.data.dataset import CropBatch
from paravox.data.specaugment import SpecAugment, SpecAugmentConfig
from paravox.methods.momentum import ema_update, make_teacher
from paravox.models import build_encoder
from paravox.models.heads import DINOHead, DINOHeadConfig
from paravox.objectives.dino import DINOLoss, collapse_statistics
from paravox.utils.schedules import cosine_schedule, linear_warmup


@dataclass
class DINOConfig:
    encoder: str = "ecapa"
    encoder_settings: dict[str, Any] = field(default_factory=lambda: {"channels": 512})
    head: DINOHeadConfig = field(default_factory=DINOHeadConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 30
    center_momentum: float = 0.9
    momentum_start: float = 0.996
    momentum_end: float = 1.0
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.2
    min_lr: float = 1e-5
    warmup_epochs: int = 10
    weight_decay: float = 5e-5
    weight_decay_end: float = 5e-5
    clip_grad: float = 3.0
    freeze_last_layer_epochs: int = 1
    collapse_warn_after_epochs: int = 2


class DINOModule(L.LightningModule):
    def __init__(self, cfg: DINOConfig, steps_per_epoch: int, max_epochs: int):
        super().__init__()
        self.cfg = cfg
        self.steps_per_epoch, self.max_epochs = steps_per_epoch, max_epochs
        encoder = build_encoder(cfg.encoder, n_mels=cfg.features.n_mels, **cfg.encoder_settings)
        self.student = nn.ModuleDict({"encoder": encoder,
                                      "head": DINOHead(encoder.embedding_dim, cfg.head)})
        self.teacher = make_teacher(self.student)
        self.fbank = LogMelFilterbank(cfg.features)
        self.specaugment = SpecAugment(cfg.specaugment)
        self.loss_fn = DINOLoss(cfg.head.n_prototypes, cfg.student_temp, cfg.center_momentum)
        if cfg.optimizer not in ("sgd", "adamw"):
            from paravox.errors import ConfigError

            raise ConfigError(f"optimizer='{cfg.optimizer}': choose 'sgd' or 'adamw'")

    # -- schedules ---------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.max_epochs

    def teacher_temp(self, epoch: int) -> float:
        c = self.cfg
        return linear_warmup(epoch, c.warmup_teacher_temp_epochs, c.warmup_teacher_temp,
                             c.teacher_temp)

    def momentum(self, step: int) -> float:
        return cosine_schedule(step, self.total_steps, self.cfg.momentum_start,
                               self.cfg.momentum_end)

    def lr_at(self, step: int) -> float:
        c = self.cfg
        return cosine_schedule(step, self.total_steps, c.lr, c.min_lr,
                               c.warmup_epochs * self.steps_per_epoch, 0.0)

    def weight_decay_at(self, step: int) -> float:
        return cosine_schedule(step, self.total_steps, self.cfg.weight_decay,
                               self.cfg.weight_decay_end)

    # -- forward -----------------------------------------------------------------------------
    def embed(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher backbone embeddings (the default for evaluation)."""
        return self.teacher["encoder"](feats, lengths).embedding

    def _forward_views(self, net: nn.ModuleDict, groups: list[torch.Tensor], augment: bool
                       ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each length group through the network in one batched call; logits per view."""
        logits, embeddings = [], []
        for g in groups:
            v, b, n = g.shape
            feats, _ = self.fbank(g.reshape(v * b, n))
            if augment:
                feats = self.specaugment(feats)
            emb = net["encoder"](feats).embedding
            logits += list(net["head"](emb).chunk(v))
            embeddings.append(emb)
        return logits, torch.cat(embeddings)

    def training_step(self, batch: CropBatch, batch_idx: int):
        if batch.skipped:
            self.log("data/skipped", float(len(batch.skipped)), reduce_fx="sum",
                     batch_size=max(batch.batch_size, 1))
        if batch.batch_size == 0:
            return None
        temp = self.teacher_temp(self.current_epoch)
        with torch.no_grad():
            t_logits, t_emb = self._forward_views(self.teacher, batch.groups[:1], augment=False)
        s_logits, _ = self._forward_views(self.student, batch.groups, augment=True)
        center = self.loss_fn.center.clone()
        loss = self.loss_fn(s_logits, t_logits, temp)
        bs = batch.batch_size
        stats = collapse_statistics(torch.cat(t_logits), center, temp, t_emb)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"collapse/{k}": v for k, v in stats.items()}, batch_size=bs)
        self.log_dict({"sched/lr": self.lr_at(self.global_step), "sched/teacher_temp": temp,
                       "sched/momentum": self.momentum(self.global_step)}, batch_size=bs)
        self._last_stats = stats
        return loss

    # -- hooks -------------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        lr, wd = self.lr_at(self.global_step), self.weight_decay_at(self.global_step)
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = lr
            if group.get("regularised", True):
                group["weight_decay"] = wd

    def on_after_backward(self) -> None:
        if self.current_epoch < self.cfg.freeze_last_layer_epochs:
            self.student["head"].cancel_last_layer_gradients()

    def on_before_zero_grad(self, optimizer) -> None:
        # called once per optimiser step (after it), so accumulation does not change the EMA
        ema_update(self.teacher, self.student, self.momentum(self.global_step))

    def on_train_epoch_end(self) -> None:
        stats = getattr(self, "_last_stats", None)
        if stats is None or self.current_epoch + 1 < self.cfg.collapse_warn_after_epochs:
            return
        log_k = stats["log_prototypes"]
        if stats["kl_to_uniform"] > 0.9 * log_k or stats["teacher_entropy"] > 0.98 * log_k:
            rank_zero_warn(
                f"DINO may be collapsing at epoch {self.current_epoch}: teacher entropy "
                f"{stats['teacher_entropy']:.2f}, KL to uniform {stats['kl_to_uniform']:.2f} "
                f"(log K = {log_k:.2f}). Try a lower teacher_temp, a higher center_momentum, "
                f"a lower lr or more warm-up.")

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.student.named_parameters():
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        groups = [{"params": decay, "regularised": True},
                  {"params": no_decay, "weight_decay": 0.0, "regularised": False}]
        if self.cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.cfg.lr, momentum=0.9)
        return torch.optim.AdamW(groups, lr=self.cfg.lr)
