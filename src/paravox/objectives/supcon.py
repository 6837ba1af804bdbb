"""Supervised contrastive loss (Khosla et al. 2020, the ``L_out`` form): for anchor ``i`` with
positives ``P(i)`` (same label, not itself), ``-1/|P(i)| sum_p log(exp(s_ip / t) /
sum_{a != i} exp(s_ia / t))`` on cosine similarities. Candidates come from the global batch
under DDP; the mean runs over every process's anchors that have a positive.

:func:`supcon_loss` is the function, :class:`SupConLoss` the module holding the temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paravox.objectives.distributed import gather_with_grad, global_mean
from paravox.objectives.precision import float32_loss


@float32_loss
def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1
                ) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "Supervised Contrastive Learning",
    NeurIPS 2020, arXiv:2004.11362), ``L_out`` form, on ``embeddings`` ``[B, D]`` with class
    ``labels`` ``[B]``.

    Like NT-Xent, but every other item of the same class is a positive, so the embedding
    space clusters by the label (speaker, emotion, ...) rather than by utterance. With
    ``s_ij`` the cosine similarity and ``P(i)`` the same-label items other than ``i``::

        l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / t) / sum_{a != i} exp(s_ia / t) )
        L   = mean of l_i over the anchors with |P(i)| > 0     (t = ``temperature``)

    Candidates come from the global batch under DDP. A batch in which no item shares a label
    with another gives 0 (use a class-balanced sampler so that every anchor has positives).

    Example:

    >>> import torch
    >>> from paravox.objectives.supcon import supcon_loss
    >>> z = torch.randn(8, 32)
    >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    >>> loss = supcon_loss(z, labels, temperature=0.1)
    >>> loss.shape
    torch.Size([])
    """
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


class SupConLoss(nn.Module):
    """:func:`supcon_loss` as a module holding ``temperature`` (Khosla et al. 2020,
    arXiv:2004.11362, ``L_out``): every other item with the same label is a positive::

        l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / t) / sum_{a != i} exp(s_ia / t) )
        L   = mean of l_i over the anchors with |P(i)| > 0

    Example:

    >>> import torch
    >>> from paravox.objectives.supcon import SupConLoss
    >>> criterion = SupConLoss(temperature=0.1)
    >>> z, labels = torch.randn(8, 32), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    >>> criterion(z, labels).shape
    torch.Size([])
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supcon_loss(embeddings, labels, temperature=self.temperature)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return f"temperature={self.temperature}"
