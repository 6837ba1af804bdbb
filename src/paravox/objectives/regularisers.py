"""Variance and covariance regularisers (VICReg, Bardes et al. 2022), used by RDINO
(Chen et al., ICASSP 2023) on the DINO head's bottleneck output to keep its dimensions
spread (diversity) and decorrelated (redundancy elimination): the functions
:func:`variance_penalty`, :func:`covariance_penalty` and the modules :class:`VariancePenalty`,
:class:`CovariancePenalty`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paravox.objectives.precision import float32_loss


@float32_loss
def variance_penalty(z: torch.Tensor, target_std: float = 1.0, eps: float = 1e-4
                     ) -> torch.Tensor:
    """VICReg's variance term (Bardes et al. 2022): mean hinge ``max(0, target - std_d)`` over
    dimensions ``d`` of ``z`` ``[N, D]``.

    It penalises dimensions whose spread across the batch falls below ``target_std``, which
    prevents the collapse of every embedding onto one point::

        v(z) = 1/D * sum_d max(0, target_std - sqrt(Var(z_d) + eps))

    Example:

    >>> import torch
    >>> from paravox.objectives.regularisers import variance_penalty
    >>> round(float(variance_penalty(torch.zeros(16, 8))), 2)  # collapsed: std 0 everywhere
    0.99
    """
    std = torch.sqrt(z.float().var(dim=0) + eps)
    return F.relu(target_std - std).mean()


@float32_loss
def covariance_penalty(z: torch.Tensor) -> torch.Tensor:
    """VICReg's covariance term (Bardes et al. 2022): sum of squared off-diagonal covariances
    of ``z`` ``[N, D]``, divided by ``D``.

    Decorrelating the dimensions stops them from all encoding the same information
    (redundancy); ``Cov`` uses the unbiased ``N - 1`` normaliser::

        c(z) = 1/D * sum_{i != j} Cov(z)_ij^2

    Example:

    >>> import torch
    >>> from paravox.objectives.regularisers import covariance_penalty
    >>> x = torch.randn(64, 1)
    >>> float(covariance_penalty(torch.cat([x, x], dim=1))) > 0  # two copies: redundant
    True
    """
    z = z.float()
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.T @ z) / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.square().sum() / d


class VariancePenalty(nn.Module):
    """:func:`variance_penalty` as a module holding ``target_std`` and ``eps`` (VICReg's
    variance term, Bardes et al. 2022): a mean hinge on the per-dimension std of ``z``
    ``[N, D]``::

        v(z) = 1/D * sum_d max(0, target_std - sqrt(Var(z_d) + eps))

    Example:

    >>> import torch
    >>> from paravox.objectives.regularisers import VariancePenalty
    >>> penalty = VariancePenalty(target_std=1.0)
    >>> round(float(penalty(torch.zeros(16, 8))), 2)  # collapsed: std 0 everywhere
    0.99
    """

    def __init__(self, target_std: float = 1.0, eps: float = 1e-4):
        super().__init__()
        self.target_std, self.eps = target_std, eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return variance_penalty(z, target_std=self.target_std, eps=self.eps)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return f"target_std={self.target_std}, eps={self.eps}"


class CovariancePenalty(nn.Module):
    """:func:`covariance_penalty` as a module (VICReg's covariance term, Bardes et al. 2022):
    the squared off-diagonal covariances of ``z`` ``[N, D]`` over ``D``. It has no settings::

        c(z) = 1/D * sum_{i != j} Cov(z)_ij^2

    Example:

    >>> import torch
    >>> from paravox.objectives.regularisers import CovariancePenalty
    >>> x = torch.randn(64, 1)
    >>> float(CovariancePenalty()(torch.cat([x, x], dim=1))) > 0  # two copies: redundant
    True
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return covariance_penalty(z)
