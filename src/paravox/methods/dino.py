"""DINO for speech (Cho et al., IEEE JSTSP 2022) as a LightningModule.

Student and teacher share one architecture (encoder + DINO head); the teacher is an EMA of the
student, updated after each optimiser step (momentum on a cosine schedule ``momentum_start ->
1``), and sees only the long crops, the student all crops. Loss:
:class:`~paravox.objectives.dino_loss.DINOLoss` with a teacher temperature warmed up linearly.
Learning rate (linear warm-up + cosine) and weight decay (cosine) follow the step, so a resumed
run continues them exactly. The prototypes are frozen at first. Collapse is monitored (teacher
entropy, KL to uniform, the embeddings' effective rank) and warned about.

**Schedules survive any run length.** The reference recipes run 10^5-10^6 steps; their
settings, given in epochs, break a short run. Here every warm-up and freeze is a share of the
run's steps, and the teacher's averaging is bounded by what it may keep of its random
initialisation: after ``T`` updates with momenta ``m_t`` the teacher holds ``prod(m_t)`` of
it. With 0.996 -> 1 over ``T`` steps that is about ``exp(-0.002 T)``: 67 % after 200 steps,
0.1 % only after 3500. ``max_teacher_init_share`` (default 1e-3) lowers ``momentum_start``
for a run too short for it (:func:`budget_momentum_start`); a long run keeps the paper's 0.996.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import nn

from paravox.data.dataset import CropBatch
from paravox.models import build_encoder
from paravox.models.heads import DINOHead, DINOHeadConfig
from paravox.objectives.dino_loss import DINOLoss, collapse_statistics
from paravox.objectives.regularisers import covariance_penalty, variance_penalty
from paravox.training.module import EncoderExport, EncoderMethodConfig, TrainingModule
from paravox.training.momentum import ema_update, make_teacher
from paravox.utils.checks import above, between
from paravox.utils.schedules import cosine_schedule, linear_warmup

INIT_SHARE_WARNING = 0.05  # a final teacher holding more of its initialisation is warned about


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
    teacher temperature (warmed up linearly from ``warmup_teacher_temp`` over the first
    ``warmup_teacher_temp_fraction`` of the run), the centre's momentum, the teacher EMA's
    momentum (cosine ``momentum_start -> momentum_end`` over the run, ``momentum_start``
    lowered where the run is too short for ``max_teacher_init_share``), the share of the run
    the prototypes stay frozen, the share after which collapse is warned about, and the
    RDINO regulariser. Defaults are facebookresearch/dino's, its epochs as shares of 100."""

    head: DINOHeadConfig = field(default_factory=DINOHeadConfig)
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_fraction: float = 0.3  # reference: 30 of 100 epochs
    center_momentum: float = 0.9
    momentum_start: float = 0.996
    momentum_end: float = 1.0
    # the most of its random initialisation the final teacher may keep (1: no bound)
    max_teacher_init_share: float = 1e-3
    freeze_prototypes_fraction: float = 0.01  # reference: 1 of 100 epochs
    collapse_warn_after_fraction: float = 0.5
    regulariser: RegulariserConfig = field(default_factory=RegulariserConfig)

    def __post_init__(self):
        above("dino.student_temp", self.student_temp, 0.0)
        above("dino.teacher_temp", self.teacher_temp, 0.0)
        above("dino.warmup_teacher_temp", self.warmup_teacher_temp, 0.0)
        for key in ("warmup_teacher_temp_fraction", "freeze_prototypes_fraction",
                    "collapse_warn_after_fraction", "center_momentum", "momentum_start",
                    "momentum_end"):
            between(f"dino.{key}", getattr(self, key), 0.0, 1.0)
        above("dino.max_teacher_init_share", self.max_teacher_init_share, 0.0)

    def exports(self) -> dict[str, EncoderExport]:
        """``encoder``: the teacher's backbone (the evaluated model); ``student``."""
        settings = dict(self.encoder_settings)
        return {"encoder": EncoderExport("teacher.encoder.", self.encoder, settings),
                "student": EncoderExport("student.encoder.", self.encoder, settings)}


def momentum_schedule(start: float, end: float, steps: int) -> np.ndarray:
    """The teacher's momentum at each of ``steps`` EMA updates: cosine ``start -> end``
    (:func:`~paravox.utils.schedules.cosine_schedule`, vectorised)."""
    t = np.arange(steps) / max(steps, 1)
    return end + 0.5 * (start - end) * (1 + np.cos(np.pi * t))


def teacher_init_share(start: float, end: float, steps: int) -> float:
    """What the final teacher keeps of its random initialisation after ``steps`` updates
    from ``start`` to ``end``: the product of the momenta."""
    m = momentum_schedule(start, end, steps)
    return float(np.exp(np.log(np.clip(m, 1e-300, 1.0)).sum()))


def budget_momentum_start(start: float, end: float, steps: int, max_share: float) -> float:
    """``start``, or the largest momentum below it whose cosine schedule to ``end`` over
    ``steps`` updates leaves the final teacher at most ``max_share`` of its initialisation
    (bisection; the share grows with the start momentum)."""
    if max_share >= 1.0 or teacher_init_share(start, end, steps) <= max_share:
        return start
    lo, hi = 0.0, start
    if teacher_init_share(lo, end, steps) > max_share:
        return lo  # even no averaging at first cannot reach it (end = 1 and very few steps)
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if teacher_init_share(mid, end, steps) <= max_share else (lo, mid)
    return lo


@rank_zero_only
def _say(line: str) -> None:
    print(line, flush=True)


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
        self.momentum_start = self._teacher_averaging()

    def _teacher_averaging(self) -> float:
        """The start momentum this run's length allows (one line when it is lowered, a
        warning when the final teacher would keep over 5 % of its initialisation)."""
        c, steps = self.cfg, self.total_steps
        start = budget_momentum_start(c.momentum_start, c.momentum_end, steps,
                                      c.max_teacher_init_share)
        if start < c.momentum_start:
            _say(f"dino.momentum_start {c.momentum_start:g} -> {start:.4f} for this "
                 f"{steps}-step run, so that the final teacher keeps at most "
                 f"{c.max_teacher_init_share:g} of its random initialisation "
                 f"(dino.max_teacher_init_share)")
        share = teacher_init_share(start, c.momentum_end, steps)
        if share > INIT_SHARE_WARNING:
            rank_zero_warn(f"dino.momentum_start={start:g} over {steps} steps leaves the final "
                           f"teacher {100 * share:.0f} % random initialisation: lower "
                           f"dino.max_teacher_init_share (or momentum_start) or train longer")
        return start

    def trainable(self) -> nn.Module:
        """The student: the teacher follows it by EMA, never by gradient."""
        return self.student

    def embedding_encoder(self) -> nn.Module:
        """The teacher's encoder: the EMA is the better (and DINO's reported) model."""
        return self.teacher["encoder"]

    # -- schedules (lr and weight decay: TrainingModule) -------------------------------------
    def teacher_temp(self, step: int) -> float:
        """Teacher temperature at ``step``: low at first (a sharp teacher keeps the
        student from collapsing early), then ``teacher_temp``."""
        c = self.cfg
        return linear_warmup(step, self.steps_of(c.warmup_teacher_temp_fraction),
                             c.warmup_teacher_temp, c.teacher_temp)

    def momentum(self, step: int) -> float:
        """Teacher EMA momentum of update ``step`` (0-based): cosine from the start momentum
        (:meth:`_teacher_averaging`) to ``momentum_end`` over the run, so the teacher settles
        as training ends."""
        return cosine_schedule(step, self.total_steps, self.momentum_start,
                               self.cfg.momentum_end)

    # -- forward -----------------------------------------------------------------------------
    def embed(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher backbone embeddings (the default for evaluation)."""
        return self.teacher["encoder"](feats, lengths).embedding

    def _forward_views(self, net: nn.ModuleDict, groups: list[torch.Tensor], augment: bool
                       ) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        """Each length group through the network in one batched call.

        Returns logits per view, all backbone embeddings before the encoder's final
        normalisation (for the collapse monitor), and the bottleneck per group."""
        embeddings, bottlenecks, views = [], [], []
        for g in groups:
            v, b, n = g.shape
            out = net["encoder"](self.features(g.reshape(v * b, n), augment))
            embeddings.append(out.unnormalised)
            bottlenecks.append(net["head"].mlp(out.embedding))
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
        temp = self.teacher_temp(self.global_step)
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
        stats = collapse_statistics(torch.cat(t_logits), center, temp)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"collapse/{k}": v for k, v in stats.items()}, batch_size=bs)
        self.log_embedding_rank(t_emb, bs)
        self.log_dict({"sched/lr": self.lr_at(self.global_step), "sched/teacher_temp": temp,
                       "sched/momentum": self.momentum(self.global_step)}, batch_size=bs)
        self._last_stats = stats
        return loss

    # -- hooks -------------------------------------------------------------------------------
    def on_after_backward(self) -> None:
        if self.global_step < self.steps_of(self.cfg.freeze_prototypes_fraction):
            self.student["head"].cancel_last_layer_gradients()

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """The optimiser's step, then the teacher's EMA update from the student it made
        (once per optimiser step, so gradient accumulation does not change the EMA)."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # Lightning counts the step as completed after this hook: global_step is its index
        ema_update(self.teacher, self.student, self.momentum(self.global_step))

    def on_train_epoch_end(self) -> None:
        stats = getattr(self, "_last_stats", None)
        if stats is None or self.global_step < self.steps_of(
                self.cfg.collapse_warn_after_fraction):
            return
        log_k = stats["log_prototypes"]
        if stats["kl_to_uniform"] > 0.9 * log_k or stats["teacher_entropy"] > 0.98 * log_k:
            rank_zero_warn(
                f"DINO may be collapsing at epoch {self.current_epoch}: teacher entropy "
                f"{stats['teacher_entropy']:.2f}, KL to uniform {stats['kl_to_uniform']:.2f} "
                f"(log K = {log_k:.2f}). Try a lower teacher_temp, a higher center_momentum, "
                f"a lower lr or more warm-up.")
