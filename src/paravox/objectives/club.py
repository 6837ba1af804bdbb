"""CLUB: a learned upper bound on the mutual information between two representations.

Disentangling methods want two encoders' outputs (say content ``x`` and speaker ``y``) to share
no information. Mutual information cannot be computed from samples directly, so CLUB (Cheng,
Hao, Dai, Liu, Gan and Carin 2020, "CLUB: A Contrastive Log-ratio Upper Bound of Mutual
Information", ICML 2020, arXiv:2006.12013) fits a variational Gaussian ``q(y|x)`` and contrasts
its log-density on matched pairs with that on mismatched pairs. The contrast is an *upper*
bound on ``I(x; y)`` when ``q`` fits well, so the encoders can minimise it as a penalty, while
``q`` itself is trained (with its own optimiser) to maximise the log-likelihood of matched
pairs. Two optimisers alternate::

    q step:        minimise club.learning_loss(x.detach(), y.detach())   (q's parameters)
    encoder step:  add weight * club.mi_for_encoders(x, y) to the loss    (encoders' parameters)

Conventions (and how they compare with the authors' ``mi_estimators.py``,
github.com/Linear95/CLUB):

- ``log q(y|x)`` is the full Gaussian log-density in nats, constants included, summed over the
  dimensions of ``y``: ``log_likelihood`` equals ``Normal(mu, exp(logvar / 2)).log_prob(y)``
  summed over dims and averaged over pairs. The authors' ``loglikeli`` drops ``log 2 pi`` and the
  ``1/2`` (it is ``2 * log q + y_dim * log 2 pi``): same minimiser, gradients twice ours (Adam
  hardly notices; SGD would want half their learning rate to match).
- The estimate is in nats for the whole vector ``y``, the same value as the authors' ``CLUB``
  (which divides the squares by 2) and ``CLUBSample`` (which leaves the 1/2 out of both terms and
  divides the difference by 2 at the end): the log-variance and the constants cancel between
  the matched and the mismatched term, since both use ``q(.|x_i)``.
- The variational net is theirs: two MLPs of one hidden layer of ``hidden // 2`` ReLU units,
  one for the mean and one for the log-variance, the latter ending in ``tanh``, so each
  conditional variance lies in ``[1/e, e]`` (std in ``[0.61, 1.65]``). Keep ``y`` roughly at unit
  scale (e.g. standardised): a conditional spread outside that range cannot be represented.
- The full estimate averages the mismatched term over *all* ``j``, ``j = i`` included (the
  paper's ``1/N^2`` double sum), computed from the batch mean and variance of ``y`` in
  ``O(N * y_dim)`` rather than on an ``N x N`` matrix. The sampled one pairs ``x_i`` with
  ``y_perm(i)`` for one uniform random permutation (as their code does; a fixed point pairs a
  sample with itself), an unbiased estimate of the full one.

The estimate is a statistic of the local batch: under DDP each process estimates on its own
shard (no all-gather).

:class:`CLUB` is the module (it holds ``q``'s networks); :func:`club_estimate` and
:func:`gaussian_log_likelihood` are the functional forms of its estimate and of ``q``'s fit,
computed from ``q``'s outputs ``mu`` and ``logvar``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from paravox.errors import ConfigError

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_likelihood(mu: torch.Tensor, logvar: torch.Tensor,
                            y: torch.Tensor) -> torch.Tensor:
    """Mean log-density of the rows of ``y`` ``[N, D]`` under ``N(mu, diag(exp(logvar)))``
    (``mu``, ``logvar`` ``[N, D]``), in nats per row, constants included::

        LL = 1/N sum_i sum_d -1/2 [log(2 pi) + logvar_id + (y_id - mu_id)^2 / exp(logvar_id)]

    CLUB's variational net maximises it on matched pairs (:meth:`CLUB.learning_loss` is its
    negative; Cheng et al. 2020, arXiv:2006.12013).

    Example:

    >>> import torch
    >>> from paravox.objectives.club import gaussian_log_likelihood
    >>> zeros = torch.zeros(5, 1)  # N(0, 1) at 0: -log(2 pi) / 2
    >>> round(gaussian_log_likelihood(zeros, zeros, zeros).item(), 4)
    -0.9189
    """
    per_dim = -0.5 * (_LOG_2PI + logvar + (y - mu).square() * torch.exp(-logvar))
    return per_dim.sum(-1).mean()


def club_estimate(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor,
                  sampled: bool = True) -> torch.Tensor:
    """The CLUB estimate of ``I(x; y)`` in nats (Cheng et al. 2020, arXiv:2006.12013) from
    ``q(y|x_i) = N(mu_i, diag(exp(logvar_i)))`` (``mu``, ``logvar`` ``[N, D]``: ``q``'s outputs
    for the ``x`` rows) and the matched ``y`` ``[N, D]``; see :class:`CLUB`::

        full     (sampled=False):  I = 1/N sum_i [ log q(y_i|x_i) - 1/N sum_j log q(y_j|x_i) ]
        sampled  (sampled=True):   I = 1/N sum_i [ log q(y_i|x_i) - log q(y_perm(i)|x_i) ]

    ``perm`` is drawn with ``torch.randperm`` (the global generator) on every call.

    Example:

    >>> import torch
    >>> from paravox.objectives.club import club_estimate
    >>> mu, logvar = torch.randn(8, 2), torch.zeros(8, 2)
    >>> abs(club_estimate(mu, logvar, torch.ones(8, 2), sampled=False).item()) < 1e-6  # constant y
    True
    """
    inv_var = torch.exp(-logvar)
    # log q(y|x_i) without the terms shared by every y (log 2 pi and s(x_i)): they cancel
    positive = -0.5 * ((y - mu).square() * inv_var).sum(-1)
    if sampled:
        perm = torch.randperm(y.shape[0], device=y.device)
        negative = -0.5 * ((y[perm] - mu).square() * inv_var).sum(-1)
    else:
        # 1/N sum_j (y_j - mu_i)^2 = (mu_i - mean(y))^2 + var(y)  (population variance)
        y_mean = y.mean(0)
        y_var = (y - y_mean).square().mean(0)
        negative = -0.5 * (((mu - y_mean).square() + y_var) * inv_var).sum(-1)
    return (positive - negative).mean()


def _run(net: nn.Sequential, h: torch.Tensor, detach: bool) -> torch.Tensor:
    """``net(h)``, with the Linear layers' parameters detached when ``detach`` (thread-safe:
    nothing on the module is swapped or mutated)."""
    if not detach:
        return net(h)
    for layer in net:
        if isinstance(layer, nn.Linear):
            bias = None if layer.bias is None else layer.bias.detach()
            h = F.linear(h, layer.weight.detach(), bias)
        else:  # ReLU / Tanh: no parameters
            h = layer(h)
    return h


class CLUB(nn.Module):
    """The CLUB mutual-information upper bound (Cheng et al. 2020, ICML, arXiv:2006.12013) with
    a Gaussian variational net ``q(y|x) = N(mu(x), diag(exp(s(x))))``, ``s = tanh(MLP(x))``.

    Why: minimising the estimate w.r.t. the encoders that produce ``x`` and ``y`` removes the
    information they share (disentanglement); ``q`` is fitted separately, by maximum likelihood
    on matched pairs (:meth:`learning_loss`). With ``log q`` the per-pair log-density in nats
    summed over the ``y_dim`` dimensions::

        full     (sampled=False):  I = 1/N sum_i [ log q(y_i|x_i) - 1/N sum_j log q(y_j|x_i) ]
        sampled  (sampled=True):   I = 1/N sum_i [ log q(y_i|x_i) - log q(y_perm(i)|x_i) ]

    with ``perm`` a fresh uniform random permutation per call (CLUB-S of the paper: cheaper,
    unbiased for the full value, noisier). The paper's Theorem 3.2: it is an upper bound on
    ``I(x; y)`` when ``KL(p(x, y) || q(x, y)) <= KL(p(x) p(y) || q(x, y))``, which holds when
    ``q`` fits well. It is a loose one: with ``q`` the exact conditional of a jointly Gaussian
    pair of per-dimension correlation ``rho`` it equals ``d * rho^2 / (1 - rho^2)`` against the
    true ``-d/2 * log(1 - rho^2)`` (and with this net's variance floor ``1/e`` about
    ``d * rho^2 / max(1 - rho^2, 1/e)``), so read it as a penalty that is 0 at independence and
    grows with the dependence, not as an accurate MI value.

    Inputs are ``x [N, x_dim]`` and ``y [N, y_dim]`` (row ``i`` of each is one matched pair);
    ``[B, T, dim]`` (or any ``[..., dim]``) is flattened to ``[B*T, dim]``, each frame one pair,
    the negatives drawn from every frame of the batch. Wrong shapes raise
    :class:`~paravox.errors.ConfigError`.

    Example:

    >>> import torch
    >>> from paravox.objectives.club import CLUB
    >>> _ = torch.manual_seed(0)
    >>> club = CLUB(x_dim=3, y_dim=2, hidden=16, sampled=False)
    >>> x, y = torch.randn(8, 3, requires_grad=True), torch.randn(8, 2)
    >>> mu, logvar = club.mu_logvar(x)    # pair[i, j] = log q(y_j | x_i), in nats
    >>> pair = torch.distributions.Normal(mu[:, None], (0.5 * logvar[:, None]).exp()
    ...                                   ).log_prob(y[None]).sum(-1)
    >>> bool(torch.isclose(club(x, y), (pair.diag() - pair.mean(1)).mean()))
    True
    >>> bool(torch.isclose(club.learning_loss(x, y), -pair.diag().mean()))
    True
    >>> abs(club(x, y[:1].expand(8, 2)).item()) < 1e-6    # a constant y shares nothing with x
    True
    >>> club.mi_for_encoders(x, y).backward()      # the encoders' penalty: q gets no gradient
    >>> x.grad is not None, all(p.grad is None for p in club.parameters())
    (True, True)
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256, sampled: bool = True):
        """Build ``q(y|x)``: mean and log-variance heads of ``hidden // 2`` ReLU units each
        (the authors' layout), the log-variance squashed by ``tanh`` so that ``q``'s variance
        stays in ``[1/e, e]`` and the log-likelihood cannot blow up early in training."""
        super().__init__()
        for name, value, least in (("x_dim", x_dim, 1), ("y_dim", y_dim, 1),
                                   ("hidden", hidden, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"CLUB: {name}={value!r}; it must be an int >= {least}")
        self.x_dim, self.y_dim, self.sampled = x_dim, y_dim, bool(sampled)
        half = hidden // 2
        self.p_mu = nn.Sequential(nn.Linear(x_dim, half), nn.ReLU(), nn.Linear(half, y_dim))
        self.p_logvar = nn.Sequential(nn.Linear(x_dim, half), nn.ReLU(),
                                      nn.Linear(half, y_dim), nn.Tanh())

    def _pairs(self, x: torch.Tensor, y: torch.Tensor, caller: str
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``, ``y`` checked and flattened to ``[N, x_dim]``, ``[N, y_dim]``."""
        if x.dim() < 2 or y.dim() < 2:
            raise ConfigError(f"CLUB.{caller}: x {tuple(x.shape)} and y {tuple(y.shape)} must "
                              "be [N, dim] or [B, T, dim]")
        if x.shape[-1] != self.x_dim or y.shape[-1] != self.y_dim:
            raise ConfigError(f"CLUB.{caller}: x {tuple(x.shape)} and y {tuple(y.shape)} must "
                              f"end in x_dim={self.x_dim} and y_dim={self.y_dim}")
        if x.shape[:-1] != y.shape[:-1]:
            raise ConfigError(f"CLUB.{caller}: x {tuple(x.shape)} and y {tuple(y.shape)} must "
                              "have the same leading dims (row i of each is one pair)")
        x, y = x.reshape(-1, self.x_dim), y.reshape(-1, self.y_dim)
        if x.shape[0] == 0:
            raise ConfigError(f"CLUB.{caller}: x and y hold no pairs")
        return x, y

    def _heads(self, x: torch.Tensor, y: torch.Tensor, detach: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``mu``, ``logvar`` and ``y``, in a common floating dtype of at least float32 (so that
        half-precision activations do not square and exponentiate in half precision)."""
        mu, logvar = _run(self.p_mu, x, detach), _run(self.p_logvar, x, detach)
        dtype = torch.promote_types(torch.promote_types(mu.dtype, y.dtype), torch.float32)
        return mu.to(dtype), logvar.to(dtype), y.to(dtype)

    def mu_logvar(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of ``q(y|x)`` (``[..., y_dim]`` each; ``logvar`` in
        ``[-1, 1]``), exposed so that callers and tests can check the density by hand."""
        if x.dim() < 1 or x.shape[-1] != self.x_dim:
            raise ConfigError(f"CLUB.mu_logvar: x {tuple(x.shape)} must end in "
                              f"x_dim={self.x_dim}")
        return self.p_mu(x), self.p_logvar(x)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean log-density of the matched pairs under ``q``, in nats per ``y`` vector,
        constants included (what the variational net maximises, and a readable fit measure)::

            LL = 1/N sum_i sum_d -1/2 [log(2 pi) + s_d(x_i) + (y_id - mu_d(x_i))^2 / exp(s_d(x_i))]

        (Cheng et al. 2020, arXiv:2006.12013, Sec. 3; the authors' ``loglikeli`` is
        ``2 * LL + y_dim * log(2 pi)``.) A scalar; gradients reach ``q``, ``x`` and ``y``.

        Example:

        >>> import torch
        >>> from paravox.objectives.club import CLUB
        >>> club = CLUB(x_dim=2, y_dim=1, hidden=4)
        >>> for p in club.parameters():       # q = N(0, 1) whatever x: mu = 0, logvar = 0
        ...     _ = torch.nn.init.zeros_(p)
        >>> round(club.log_likelihood(torch.randn(5, 2), torch.zeros(5, 1)).item(), 4)
        -0.9189
        """
        x, y = self._pairs(x, y, "log_likelihood")
        mu, logvar, y = self._heads(x, y, detach=False)
        return gaussian_log_likelihood(mu, logvar, y)

    def learning_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The variational net's loss, ``-log_likelihood(x, y)`` (nats per pair): fitting ``q``
        to the true conditional is what makes the estimate an upper bound (Cheng et al. 2020,
        arXiv:2006.12013, Algorithm 1). Pass ``x.detach(), y.detach()`` and step only ``q``'s
        optimiser on it, so the encoders are not trained to make ``y`` predictable.

        Example:

        >>> import torch
        >>> from paravox.objectives.club import CLUB
        >>> _ = torch.manual_seed(0)
        >>> club, x, y = CLUB(3, 2, hidden=8), torch.randn(6, 3), torch.randn(6, 2)
        >>> bool(club.learning_loss(x, y) == -club.log_likelihood(x, y))
        True
        """
        return -self.log_likelihood(x, y)

    def _estimate(self, x: torch.Tensor, y: torch.Tensor, detach: bool, caller: str
                  ) -> torch.Tensor:
        """The full or sampled estimate (see the class docstring), q's parameters detached
        when ``detach``."""
        x, y = self._pairs(x, y, caller)
        mu, logvar, y = self._heads(x, y, detach)
        return club_estimate(mu, logvar, y, self.sampled)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The CLUB estimate of ``I(x; y)`` in nats (sampled or full, as built); gradients
        reach ``x``, ``y`` and ``q``'s parameters (see :meth:`mi_for_encoders`)."""
        return self._estimate(x, y, detach=False, caller="forward")

    def mi_for_encoders(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The same estimate as ``forward``, with ``q``'s parameters detached: the encoders'
        penalty. Minimising the estimate w.r.t. ``q`` would shrink the bound without fitting
        ``q`` (the bound holds only for a good ``q``), so only ``x`` and ``y`` get gradients.
        Thread-safe: the parameters are detached per call, nothing on the module changes.

        Example:

        >>> import torch
        >>> from paravox.objectives.club import CLUB
        >>> _ = torch.manual_seed(0)
        >>> club = CLUB(3, 2, hidden=8, sampled=False)
        >>> x, y = torch.randn(6, 3), torch.randn(6, 2, requires_grad=True)
        >>> est = club.mi_for_encoders(x, y)
        >>> bool(torch.isclose(est, club(x, y)))
        True
        >>> est.backward()
        >>> y.grad is not None, club.p_mu[0].weight.grad is None
        (True, True)
        """
        return self._estimate(x, y, detach=True, caller="mi_for_encoders")
