"""The DINO objective (Caron et al. 2021; for speech: Cho et al. 2022).

Cross-entropy between the teacher's centred and sharpened distribution over K prototypes and
the student's, averaged over every (teacher crop, different student crop) pair. The teacher
sees only the long crops; the student sees all crops, long ones first in the same order, so
student crop ``i`` and teacher crop ``i`` are the same view for ``i < n_teacher_crops``.

Centering: an EMA of the teacher's mean output (averaged over all processes under DDP)
is subtracted before the teacher softmax; with sharpening (a low teacher temperature) it
prevents both collapse modes (one prototype dominating, or a uniform output).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class DINOLoss(nn.Module):
    def __init__(self, n_prototypes: int, student_temp: float = 0.1,
                 center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, n_prototypes))

    def forward(self, student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor],
                teacher_temp: float) -> torch.Tensor:
        """``student_logits``: one [B, K] tensor per student crop (teacher crops first);
        ``teacher_logits``: one [B, K] tensor per teacher crop. Updates the center."""
        teacher = [F.softmax((t.float() - self.center) / teacher_temp, dim=-1).detach()
                   for t in teacher_logits]
        student = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_logits]
        total, terms = 0.0, 0
        for ti, q in enumerate(teacher):
            for si, log_p in enumerate(student):
                if si == ti:
                    continue  # the same view
                total = total + torch.sum(-q * log_p, dim=-1).mean()
                terms += 1
        self.update_center(torch.cat(teacher_logits).detach())
        return total / terms

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        batch_sum = teacher_logits.float().sum(dim=0, keepdim=True)
        count = torch.tensor([teacher_logits.shape[0]], device=batch_sum.device,
                             dtype=torch.float)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        batch_center = batch_sum / count
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))


@torch.no_grad()
def collapse_statistics(teacher_logits: torch.Tensor, center: torch.Tensor, teacher_temp: float,
                        embeddings: torch.Tensor | None = None) -> dict[str, float]:
    """Signals of collapse, logged during training.

    * ``teacher_entropy``: mean entropy of the teacher distributions (-> 0: one-hot collapse,
      -> log K: uniform collapse);
    * ``kl_to_uniform``: KL(mean teacher distribution || uniform) = log K - H(mean) (-> log K:
      every input mapped to the same prototype);
    * ``embedding_std``: mean per-dimension std of L2-normalised embeddings (-> 0: collapse;
      1/sqrt(D) for well-spread embeddings).
    """
    q = F.softmax((teacher_logits.float() - center) / teacher_temp, dim=-1)
    k = q.shape[-1]
    entropy = -(q * torch.log(q.clamp_min(1e-12))).sum(-1).mean()
    mean_q = q.mean(0)
    h_mean = -(mean_q * torch.log(mean_q.clamp_min(1e-12))).sum()
    stats = {"teacher_entropy": float(entropy), "kl_to_uniform": float(math.log(k) - h_mean),
             "log_prototypes": math.log(k)}
    if embeddings is not None and embeddings.shape[0] > 1:
        stats["embedding_std"] = float(F.normalize(embeddings.float(), dim=-1).std(0).mean())
    return stats
