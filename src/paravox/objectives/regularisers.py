"""Variance and covariance regularisers (VICReg, Bardes et al. 2022), used by RDINO
(Chen et al., ICASSP 2023) on the DINO head's bottleneck output to keep its dimensions
spread (diversity) and decorrelated (redundancy elimination)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def variance_penalty(z: torch.Tensor, target_std: float = 1.0, eps: float = 1e-4
                     ) -> torch.Tensor:
    """Mean hinge ``max(0, target - std_d)`` over dimensions ``d`` of ``z`` ``[N, D]``."""
    std = torch.sqrt(z.float().var(dim=0) + eps)
    return F.relu(target_std - std).mean()


def covariance_penalty(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances of ``z`` ``[N, D]``, divided by ``D``."""
    z = z.float()
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.T @ z) / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.square().sum() / d
