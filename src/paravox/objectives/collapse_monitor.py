"""Collapse monitors that every method can log: how many directions an embedding batch
really uses.

Per-dimension spreads cannot see *dimensional* collapse (embeddings that vary along only a
few directions) once a final batch norm has rescaled every dimension to unit variance; the
effective rank of the batch's embedding matrix can. It is read before any final
normalisation of the encoder (ECAPA's and the x-vector's last BatchNorm), where the encoder
exposes that tensor (:attr:`paravox.models.base.EncoderOutput.raw_embedding`).
"""

from __future__ import annotations

import torch


@torch.no_grad()
def effective_rank(embeddings: torch.Tensor, eps: float = 1e-7) -> float:
    """``exp(H(p))`` with ``p_i = s_i / sum(s)`` over the singular values ``s`` of the
    ``[N, D]`` batch (Roy and Vetterli 2007; the RankMe measure of Garrido et al. 2023): ``D``
    (or ``N`` if smaller) for a batch spread evenly over its directions, 1 for a batch on
    one line, and in between for partial dimensional collapse.

    >>> x = torch.randn(512, 8)
    >>> round(effective_rank(x))  # eight independent directions
    8
    >>> round(effective_rank(x[:, :1] * torch.ones(1, 8)))  # one direction repeated
    1
    """
    s = torch.linalg.svdvals(embeddings.detach().float())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))
