"""Non-contrastive losses on two views: Barlow Twins (Zbontar et al. 2021; the non-contrastive
term of Lux et al., SLT 2022), VICReg (Bardes et al. 2022) and BYOL-style regression
(Grill et al. 2020): the functions :func:`barlow_twins_loss`, :func:`vicreg_loss`,
:func:`byol_regression_loss` and the modules :class:`BarlowTwinsLoss`, :class:`VICRegLoss`,
:class:`BYOLRegressionLoss` holding their settings.

Barlow Twins and VICReg are statistics of the whole batch: under DDP each process gathers the
global batch (with gradients) and computes the same global loss, which DDP's gradient averaging
turns into the single-process gradient on the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paravox.objectives.distributed import gather_with_grad
from paravox.objectives.precision import float32_loss
from paravox.objectives.regularisers import covariance_penalty, variance_penalty


def _batch_standardise(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-dimension (z - mean) / sqrt(biased var + eps): BatchNorm1d without affine."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


@float32_loss
def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3
                      ) -> torch.Tensor:
    """Barlow Twins redundancy reduction (Zbontar, Jing, Misra, LeCun and Deny 2021, "Barlow
    Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021, arXiv:2103.03230).

    Makes the two views' embeddings agree dimension by dimension (diagonal of ``C`` -> 1)
    while decorrelating the dimensions (off-diagonal -> 0), which prevents collapse without
    negatives or a momentum teacher::

        C_ij = 1/N * sum_n za_ni * zb_nj    (za, zb: z1, z2 standardised per dimension)
        L    = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2

    on projections ``[N, D]`` of the global batch (lambd 5e-3 is the paper's for D = 8192;
    1/D is a common choice for small D).

    Example:

    >>> import torch
    >>> from paravox.objectives.redundancy import barlow_twins_loss
    >>> z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    >>> loss = barlow_twins_loss(z1, z2, lambd=1 / 8)
    >>> bool(barlow_twins_loss(z1, z1, lambd=1 / 8) < loss)  # identical views agree
    True
    """
    a, _ = gather_with_grad(z1)
    b, _ = gather_with_grad(z2)
    c = _batch_standardise(a).T @ _batch_standardise(b) / a.shape[0]
    on = (torch.diagonal(c) - 1).square().sum()
    off = c.square().sum() - torch.diagonal(c).square().sum()
    return on + lambd * off


@float32_loss
def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0,
                var_weight: float = 25.0, cov_weight: float = 1.0) -> torch.Tensor:
    """VICReg: variance-invariance-covariance regularisation (Bardes, Ponce and LeCun 2022,
    ICLR 2022, arXiv:2105.04906).

    Invariance (MSE) + variance hinge (std target 1) + covariance (off-diagonal squares / D)
    of both branches; weights 25 / 25 / 1 as in the paper. The invariance term pulls the
    views together; the other two keep every dimension informative and decorrelated, so the
    embeddings cannot collapse to a constant::

        L = sim_weight * mean((a - b)^2)
            + var_weight * (v(a) + v(b)) + cov_weight * (c(a) + c(b))
        v(z) = 1/D * sum_d max(0, 1 - sqrt(Var(z_d) + 1e-4))
        c(z) = 1/D * sum_{i != j} Cov(z)_ij^2

    on the global batch ``a``, ``b`` of ``z1``, ``z2`` ``[N, D]`` (see
    :mod:`paravox.objectives.regularisers` for ``v`` and ``c``).

    Example:

    >>> import torch
    >>> from paravox.objectives.redundancy import vicreg_loss
    >>> z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    >>> loss = vicreg_loss(z1, z2)
    >>> loss.shape
    torch.Size([])
    """
    a, _ = gather_with_grad(z1)
    b, _ = gather_with_grad(z2)
    invariance = F.mse_loss(a, b)
    variance = variance_penalty(a) + variance_penalty(b)
    covariance = covariance_penalty(a) + covariance_penalty(b)
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance


@float32_loss
def byol_regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL-style regression of a target embedding (Grill et al. 2020, "Bootstrap Your Own
    Latent", NeurIPS 2020, arXiv:2006.07733): the online branch's predictor output is pulled
    towards the (momentum) target branch, whose gradient is stopped::

        L = 1/N * sum_n (2 - 2 * cos(prediction_n, stop_grad(target_n)))

    i.e. the squared distance of the L2-normalised vectors, in [0, 4]; mean over rows
    (per-sample: no gathering).

    Example:

    >>> import torch
    >>> from paravox.objectives.redundancy import byol_regression_loss
    >>> p, t = torch.randn(8, 32, requires_grad=True), torch.randn(8, 32)
    >>> loss = byol_regression_loss(p, t)
    >>> loss.backward()  # gradient reaches the prediction only
    >>> abs(float(byol_regression_loss(t, t))) < 1e-6  # a perfect prediction costs nothing
    True
    """
    p = F.normalize(prediction.float(), dim=-1)
    t = F.normalize(target.detach().float(), dim=-1)
    return (2 - 2 * (p * t).sum(-1)).mean()


class BarlowTwinsLoss(nn.Module):
    """:func:`barlow_twins_loss` as a module holding ``lambd`` (Zbontar et al. 2021,
    arXiv:2103.03230): the cross-correlation ``C`` of the two views' batch-standardised
    projections ``[N, D]`` of the global batch is pulled towards the identity::

        L = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2

    Example:

    >>> import torch
    >>> from paravox.objectives.redundancy import BarlowTwinsLoss
    >>> criterion = BarlowTwinsLoss(lambd=1 / 8)
    >>> z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    >>> bool(criterion(z1, z1) < criterion(z1, z2))  # identical views agree
    True
    """

    def __init__(self, lambd: float = 5e-3):
        super().__init__()
        self.lambd = lambd

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return barlow_twins_loss(z1, z2, lambd=self.lambd)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return f"lambd={self.lambd}"


class VICRegLoss(nn.Module):
    """:func:`vicreg_loss` as a module holding the three weights (Bardes et al. 2022,
    arXiv:2105.04906; 25 / 25 / 1 as in the paper)::

        L = sim_weight * mean((a - b)^2) + var_weight * (v(a) + v(b))
            + cov_weight * (c(a) + c(b))

    Example:

    >>> import torch
    >>> from paravox.objectives.redundancy import VICRegLoss
    >>> criterion = VICRegLoss(sim_weight=25.0, var_weight=25.0, cov_weight=1.0)
    >>> criterion(torch.randn(16, 8), torch.randn(16, 8)).shape
    torch.Size([])
    """

    def __init__(self, sim_weight: float = 25.0, var_weight: float = 25.0,
                 cov_weight: float = 1.0):
        super().__init__()
        self.sim_weight, self.var_weight, self.cov_weight = sim_weight, var_weight, cov_weight

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return vicreg_loss(z1, z2, sim_weight=self.sim_weight, var_weight=self.var_weight,
                           cov_weight=self.cov_weight)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return (f"sim_weight={self.sim_weight}, var_weight={self.var_weight}, "
                f"cov_weight={self.cov_weight}")


class BYOLRegressionLoss(nn.Module):
    """:func:`byol_regression_loss` as a module (Grill et al. 2020, arXiv:2006.07733): the
    predictor output regresses the stop-gradient target, ``2 - 2 cos(p, stop_grad(t))``
    averaged over rows. It has no settings.

    Example:

    >>> import torch
    >>> from paravox.objectives.redundancy import BYOLRegressionLoss
    >>> criterion = BYOLRegressionLoss()
    >>> t = torch.randn(8, 32)
    >>> abs(float(criterion(t, t))) < 1e-6  # a perfect prediction costs nothing
    True
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return byol_regression_loss(prediction, target)
