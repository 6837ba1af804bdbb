"""The DINO objective (Caron et al. 2021; for speech: Cho et al. 2022).

Cross-entropy between the teacher's centred and sharpened distribution over K prototypes and
the student's, averaged over every (teacher crop, different student crop) pair. The teacher
sees only the long crops; the student sees all crops, long ones first in the same order, so
student crop ``i`` and teacher crop ``i`` are the same view for ``i < n_teacher_crops``.

Centering: an EMA of the teacher's mean output (averaged over all processes under DDP)
is subtracted before the teacher softmax; with sharpening (a low teacher temperature) it
prevents both collapse modes (one prototype dominating, or a uniform output).

:class:`DINOLoss` is the module (it holds the centre, a buffer); :func:`dino_distillation_loss`
the cross-entropy for a given centre, without the centre's update.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from paravox.objectives.precision import float32_loss


@float32_loss
def dino_distillation_loss(student_logits: list[torch.Tensor],
                           teacher_logits: list[torch.Tensor], center: torch.Tensor,
                           teacher_temp: float, student_temp: float = 0.1) -> torch.Tensor:
    """DINO's cross-entropy between the centred, sharpened teacher distributions and the
    student's, over every (teacher crop, different student crop) pair (Caron et al. 2021,
    arXiv:2104.14294); see :class:`DINOLoss`, which also keeps the centre up to date::

        P_t = softmax((g_t - center) / teacher_temp)      (no gradient)
        P_s = softmax(g_s / student_temp)
        L   = 1/|pairs| * sum_{t} sum_{s != t} mean_batch( -sum_k P_t[k] * log P_s[k] )

    ``student_logits``: one ``[B, K]`` tensor per student crop (teacher crops first, in the
    same order); ``teacher_logits``: one ``[B, K]`` tensor per teacher crop; ``center``
    ``[1, K]``. Computed in float32 with autocast off (:func:`float32_loss`: a softmax over K
    prototypes at a temperature of 0.04 is where bf16 would hurt). The pair sum is regrouped
    per student crop, ``sum_{t != s} P_t = (sum_t P_t) - P_s``: one product per student crop
    instead of one per pair.

    Example:

    >>> import torch
    >>> from paravox.objectives.dino_loss import dino_distillation_loss
    >>> teacher = [torch.randn(4, 16) for _ in range(2)]
    >>> student = [torch.randn(4, 16) for _ in range(4)]  # long crops first, same order
    >>> dino_distillation_loss(student, teacher, torch.zeros(1, 16), teacher_temp=0.04).shape
    torch.Size([])
    """
    teacher = [F.softmax((t - center) / teacher_temp, dim=-1).detach() for t in teacher_logits]
    teacher_sum = torch.stack(teacher).sum(0)
    total, terms = 0.0, 0
    for si, s in enumerate(student_logits):
        others = len(teacher) - (si < len(teacher))
        if others == 0:
            continue
        target = teacher_sum - teacher[si] if si < len(teacher) else teacher_sum
        log_p = F.log_softmax(s / student_temp, dim=-1)
        total = total + torch.sum(-target * log_p, dim=-1).mean()
        terms += others
    return total / terms


class DINOLoss(nn.Module):
    """The DINO self-distillation loss with teacher centering (Caron et al. 2021, "Emerging
    Properties in Self-Supervised Vision Transformers", ICCV 2021, arXiv:2104.14294).

    The student learns to predict, from every crop, the teacher's distribution over ``K``
    prototypes for the *other* crops of the same utterance: no negatives are needed, and the
    centre (a buffer, saved with the module) together with a low teacher temperature keeps the
    outputs from collapsing. With teacher logits ``g_t``, student logits ``g_s`` and centre
    ``c``::

        P_t = softmax((g_t - c) / t_teacher)          (no gradient)
        P_s = softmax(g_s / t_student)
        L   = 1/|pairs| * sum_{t} sum_{s != t} mean_batch( -sum_k P_t[k] * log P_s[k] )
        c  <- m * c + (1 - m) * mean_batch(g_t)       (m = ``center_momentum``)

    ``student_temp`` and ``center_momentum`` are the paper's 0.1 and 0.9; the teacher
    temperature is passed per step because it is warmed up by a schedule.

    Example (two long crops seen by the teacher, two more short crops by the student):

    >>> import torch
    >>> from paravox.objectives.dino_loss import DINOLoss
    >>> loss_fn = DINOLoss(n_prototypes=16)
    >>> teacher = [torch.randn(4, 16) for _ in range(2)]
    >>> student = [torch.randn(4, 16) for _ in range(4)]  # long crops first, same order
    >>> loss = loss_fn(student, teacher, teacher_temp=0.04)
    >>> loss.shape, loss_fn.center.shape
    (torch.Size([]), torch.Size([1, 16]))
    """

    def __init__(self, n_prototypes: int, student_temp: float = 0.1,
                 center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, n_prototypes))

    @float32_loss
    def forward(self, student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor],
                teacher_temp: float) -> torch.Tensor:
        """``student_logits``: one [B, K] tensor per student crop (teacher crops first);
        ``teacher_logits``: one [B, K] tensor per teacher crop. Updates the center.

        The loss is :func:`dino_distillation_loss` with the centre before this step's update
        (in float32 with autocast off, :func:`float32_loss`)."""
        loss = dino_distillation_loss(student_logits, teacher_logits, self.center,
                                      teacher_temp, self.student_temp)
        self.update_center(torch.cat(teacher_logits).detach())
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA update of the centre with this step's mean teacher logit (over all processes).

        Called by ``forward``; subtracting the centre stops one prototype from dominating
        every teacher output (collapse). ``teacher_logits``: ``[N, K]``, every teacher crop.
        """
        batch_sum = teacher_logits.float().sum(dim=0, keepdim=True)
        count = torch.tensor([teacher_logits.shape[0]], device=batch_sum.device,
                             dtype=torch.float)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        batch_center = batch_sum / count
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))


@torch.no_grad()
def collapse_statistics(teacher_logits: torch.Tensor, center: torch.Tensor, teacher_temp: float
                        ) -> dict[str, float]:
    """Signals of collapse, logged during training.

    * ``teacher_entropy``: mean entropy of the teacher distributions (-> 0: one-hot collapse,
      -> log K: uniform collapse);
    * ``kl_to_uniform``: KL(mean teacher distribution || uniform) = log K - H(mean) (-> log K:
      every input mapped to the same prototype). Measured on one batch: with a sharp teacher and
      N rows it cannot fall below log(K / N), and should not fall below log(K / B) for B
      utterances whose crops share prototypes, so read it against that floor.

    Dimensional collapse of the embeddings is read by
    :func:`~paravox.objectives.collapse_monitor.effective_rank`, which every method logs.
    """
    q = F.softmax((teacher_logits.float() - center) / teacher_temp, dim=-1)
    k = q.shape[-1]
    entropy = -(q * torch.log(q.clamp_min(1e-12))).sum(-1).mean()
    mean_q = q.mean(0)
    h_mean = -(mean_q * torch.log(mean_q.clamp_min(1e-12))).sum()
    stats = {"teacher_entropy": float(entropy), "kl_to_uniform": float(math.log(k) - h_mean),
             "log_prototypes": math.log(k)}
    return stats
