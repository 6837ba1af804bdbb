"""Non-contrastive losses on two views: Barlow Twins (Zbontar et al. 2021; the non-contrastive
term of Lux et al., SLT 2022), VICReg (Bardes et al. 2022) and BYOL-style regression
(Grill et al. 2020).

Barlow Twins and VICReg are statistics of the whole batch: under DDP each process gathers the
global batch (with gradients) and computes the same global loss, which DDP's gradient averaging
turns into the single-process gradient on the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paravox.objectives.contrastive import gather_with_grad
from paravox.objectives.regularisers import covariance_penalty, variance_penalty


def _batch_standardise(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-dimension (z - mean) / sqrt(biased var + eps): BatchNorm1d without affine."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3
                      ) -> torch.Tensor:
    """``sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2`` with ``C`` the cross-correlation of
    the batch-standardised projections ``[N, D]`` (lambd 5e-3 is the paper's for D = 8192;
    1/D is a common choice for small D)."""
    a, _ = gather_with_grad(z1.float())
    b, _ = gather_with_grad(z2.float())
    c = _batch_standardise(a).T @ _batch_standardise(b) / a.shape[0]
    on = (torch.diagonal(c) - 1).square().sum()
    off = c.square().sum() - torch.diagonal(c).square().sum()
    return on + lambd * off


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0,
                var_weight: float = 25.0, cov_weight: float = 1.0) -> torch.Tensor:
    """Invariance (MSE) + variance hinge (std target 1) + covariance (off-diagonal squares / D)
    of both branches; weights 25 / 25 / 1 as in the paper."""
    a, _ = gather_with_grad(z1.float())
    b, _ = gather_with_grad(z2.float())
    invariance = F.mse_loss(a, b)
    variance = variance_penalty(a) + variance_penalty(b)
    covariance = covariance_penalty(a) + covariance_penalty(b)
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance


def byol_regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos(prediction, stop_grad(target))``, mean over rows (per-sample: no
    gathering)."""
    p = F.normalize(prediction.float(), dim=-1)
    t = F.normalize(target.detach().float(), dim=-1)
    return (2 - 2 * (p * t).sum(-1)).mean()
