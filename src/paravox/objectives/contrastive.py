"""NT-Xent, the SimCLR objective (Chen et al. 2020), with negatives gathered from all processes:
:func:`nt_xent` and the module :class:`NTXentLoss`.

Under DDP every process contributes its embeddings as negatives for every other process.
:func:`~paravox.objectives.distributed.gather_with_grad` all-gathers them *with* gradients
(the backward pass sums the gradients each process computed for every slice and returns this
process's slice), so the DDP-averaged gradient equals the single-process gradient on the
global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paravox.objectives.distributed import gather_with_grad
from paravox.objectives.precision import float32_loss


@float32_loss
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy over two views ``z1``, ``z2`` ``[B, D]``.

    The SimCLR objective (Chen, Kornblith, Norouzi and Hinton 2020, "A Simple Framework for
    Contrastive Learning of Visual Representations", ICML 2020, arXiv:2002.05709): it pulls
    the two views of one utterance together and pushes every other utterance away, which is
    how the unlabelled pretraining learns speaker-discriminative embeddings.

    Every embedding is an anchor; its positive is the other view of the same utterance, its
    negatives the other ``2N - 2`` embeddings of the (global) batch. Mean over this process's
    ``2B`` anchors (DDP averaging over processes then gives the global mean). With
    ``s_ij = cos(z_i, z_j)`` and ``j(i)`` the other view of anchor ``i``::

        l_i = -log( exp(s_{i,j(i)} / t) / sum_{k != i} exp(s_ik / t) )
        L   = 1/(2N) * sum_i l_i                 (t = ``temperature``)

    Example:

    >>> import torch
    >>> from paravox.objectives.contrastive import nt_xent
    >>> z1, z2 = torch.randn(8, 32), torch.randn(8, 32)  # two views of 8 utterances
    >>> loss = nt_xent(z1, z2, temperature=0.1)
    >>> loss.shape
    torch.Size([])
    >>> bool(nt_xent(z1, z1) < nt_xent(z1, z2))  # identical views: the positive wins
    True
    """
    z1, z2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    b = z1.shape[0]
    all1, offset = gather_with_grad(z1)
    all2, _ = gather_with_grad(z2)
    n = all1.shape[0]
    candidates = torch.cat([all1, all2])  # [2N, D]
    anchors = torch.cat([z1, z2])  # [2B, D]
    logits = anchors @ candidates.T / temperature
    local = torch.arange(b, device=z1.device) + offset
    self_index = torch.cat([local, local + n])
    positive = torch.cat([local + n, local])
    rows = torch.arange(2 * b, device=z1.device)
    logits[rows, self_index] = float("-inf")
    return F.cross_entropy(logits, positive)


class NTXentLoss(nn.Module):
    """:func:`nt_xent` as a module holding ``temperature``: the SimCLR objective (Chen et al.
    2020, arXiv:2002.05709) on two views ``z1``, ``z2`` ``[B, D]``, negatives from the global
    batch under DDP::

        l_i = -log( exp(s_{i,j(i)} / t) / sum_{k != i} exp(s_ik / t) ),  L = mean_i l_i

    Example:

    >>> import torch
    >>> from paravox.objectives.contrastive import NTXentLoss
    >>> criterion = NTXentLoss(temperature=0.1)
    >>> z1, z2 = torch.randn(8, 32), torch.randn(8, 32)  # two views of 8 utterances
    >>> criterion(z1, z2).shape
    torch.Size([])
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent(z1, z2, temperature=self.temperature)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return f"temperature={self.temperature}"
