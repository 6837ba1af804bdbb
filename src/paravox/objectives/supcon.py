"""Supervised contrastive loss (Khosla et al. 2020, the ``L_out`` form): for anchor ``i`` with
positives ``P(i)`` (same label, not itself), ``-1/|P(i)| sum_p log(exp(s_ip / t) /
sum_{a != i} exp(s_ia / t))`` on cosine similarities. Candidates come from the global batch
under DDP; the mean runs over every process's anchors that have a positive."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paravox.objectives._dist import global_mean
from paravox.objectives.contrastive import gather_with_grad


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1
                ) -> torch.Tensor:
    z = F.normalize(embeddings.float(), dim=-1)
    all_z, offset = gather_with_grad(z)
    all_labels, _ = gather_with_grad(labels)
    logits = z @ all_z.T / temperature
    rows = torch.arange(len(z), device=z.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, rows + offset] = True
    logits = logits.masked_fill(self_mask, -float("inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == all_labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has])
    return global_mean(per_anchor.sum(), int(has.sum()))
