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

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from paravox.data.dataset import CropBatch
from paravox.models import build_encoder
from paravox.models.heads import DINOHead, DINOHeadConfig
from paravox.objectives.dino_loss import DINOLoss, collapse_statistics
from paravox.objectives.regularisers import covariance_penalty, variance_penalty
from paravox.training.module import EncoderExport, EncoderMethodConfig, TrainingModule
from paravox.training.momentum import ema_update, make_teacher
from paravox.utils.schedules import cosine_schedule, linear_warmup


@dataclass
class RegulariserConfig:
    """RDINO's variance/covariance regulariser on the student bottleneck (``weight`` 0 = off;
    RDINO uses weight 0.2, std_coeff 10, cov_coeff 1)."""

    weight: float = 0.0
    std_coeff: float = 10.0
    cov_coeff: float = 1.0


@dataclass
class DINOConfig(EncoderMethodConfig):
    """DINO on top of :class:`EncoderMethodConfig`: the head, the student temperature, the
    teacher temperature (warmed up linearly from ``warmup_teacher_temp`` over
    ``warmup_teacher_temp_epochs``), the centre's momentum, the teacher EMA's momentum
    (cosine ``momentum_start -> momentum_end`` over the run), the epochs the prototypes stay
    frozen, the epoch collapse warnings start, and the RDINO regulariser."""

    head: DINOHeadConfig = field(default_factory=DINOHeadConfig)
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 30
    center_momentum: float = 0.9
    momentum_start: float = 0.996
    momentum_end: float = 1.0
    freeze_last_layer_epochs: int = 1
    collapse_warn_after_epochs: int = 2
    regulariser: RegulariserConfig = field(default_factory=RegulariserConfig)

    def exports(self) -> dict[str, EncoderExport]:
        """``encoder``: the teacher's backbone (the evaluated model); ``student``."""
        settings = dict(self.encoder_settings)
        return {"encoder": EncoderExport("teacher.encoder.", self.encoder, settings),
                "student": EncoderExport("student.encoder.", self.encoder, settings)}


class DINOModule(TrainingModule):
    """Student (encoder + DINO head) trained on all crops against an EMA teacher that sees
    the long crops; the teacher's encoder gives the embeddings."""

    def __init__(self, cfg: DINOConfig, steps_per_epoch: int, max_epochs: int):
        super().__init__(cfg, steps_per_epoch, max_epochs)
        encoder = build_encoder(cfg.encoder, n_mels=cfg.features.n_mels, **cfg.encoder_settings)
        self.student = nn.ModuleDict({"encoder": encoder,
                                      "head": DINOHead(encoder.embedding_dim, cfg.head)})
        self.teacher = make_teacher(self.student)
        self.loss_fn = DINOLoss(cfg.head.n_prototypes, cfg.student_temp, cfg.center_momentum)

    def trainable(self) -> nn.Module:
        """The student: the teacher follows it by EMA, never by gradient."""
        return self.student

    def embedding_encoder(self) -> nn.Module:
        """The teacher's encoder: the EMA is the better (and DINO's reported) model."""
        return self.teacher["encoder"]

    # -- schedules (lr and weight decay: TrainingModule) -------------------------------------
    def teacher_temp(self, epoch: int) -> float:
        """Teacher temperature at ``epoch``: low at first (a sharp teacher keeps the
        student from collapsing early), then ``teacher_temp``."""
        c = self.cfg
        return linear_warmup(epoch, c.warmup_teacher_temp_epochs, c.warmup_teacher_temp,
                             c.teacher_temp)

    def momentum(self, step: int) -> float:
        """Teacher EMA momentum at ``step``: cosine from ``momentum_start`` to
        ``momentum_end`` over the run, so the teacher settles as training ends."""
        return cosine_schedule(step, self.total_steps, self.cfg.momentum_start,
                               self.cfg.momentum_end)

    # -- forward -----------------------------------------------------------------------------
    def embed(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher backbone embeddings (the default for evaluation)."""
        return self.teacher["encoder"](feats, lengths).embedding

    def _forward_views(self, net: nn.ModuleDict, groups: list[torch.Tensor], augment: bool
                       ) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        """Each length group through the network in one batched call.

        Returns logits per view, all backbone embeddings, and the bottleneck per group."""
        embeddings, bottlenecks, views = [], [], []
        for g in groups:
            v, b, n = g.shape
            emb = net["encoder"](self.features(g.reshape(v * b, n), augment)).embedding
            embeddings.append(emb)
            bottlenecks.append(net["head"].mlp(emb))
            views.append(v)
        # the prototypes once for every group (normalising the K x D matrix is not free)
        logits = list(net["head"].logits(torch.cat(bottlenecks)).chunk(sum(views)))
        return logits, torch.cat(embeddings), bottlenecks

    def regulariser_loss(self, bottlenecks: list[torch.Tensor], n_views: list[int]
                         ) -> torch.Tensor:
        """RDINO: variance + covariance penalties per view on the student bottleneck."""
        r = self.cfg.regulariser
        terms = [r.std_coeff * variance_penalty(view) + r.cov_coeff * covariance_penalty(view)
                 for z, v in zip(bottlenecks, n_views) for view in z.chunk(v)]
        return torch.stack(terms).mean()

    def training_step(self, batch: CropBatch, batch_idx: int):
        if not self.log_skipped(batch):
            return None
        temp = self.teacher_temp(self.current_epoch)
        with torch.no_grad():
            t_logits, t_emb, _ = self._forward_views(self.teacher, batch.groups[:1],
                                                     augment=False)
        s_logits, _, s_bottlenecks = self._forward_views(self.student, batch.groups,
                                                         augment=True)
        center = self.loss_fn.center.clone()
        loss = self.loss_fn(s_logits, t_logits, temp)
        bs = batch.batch_size
        if self.cfg.regulariser.weight > 0:
            reg = self.regulariser_loss(s_bottlenecks, [g.shape[0] for g in batch.groups])
            self.log("train/regulariser", reg, batch_size=bs)
            loss = loss + self.cfg.regulariser.weight * reg
        stats = collapse_statistics(torch.cat(t_logits), center, temp, t_emb)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"collapse/{k}": v for k, v in stats.items()}, batch_size=bs)
        self.log_dict({"sched/lr": self.lr_at(self.global_step), "sched/teacher_temp": temp,
                       "sched/momentum": self.momentum(self.global_step)}, batch_size=bs)
        self._last_stats = stats
        return loss

    # -- hooks -------------------------------------------------------------------------------
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
