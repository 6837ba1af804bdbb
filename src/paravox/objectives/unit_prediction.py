"""HuBERT's masked unit prediction: cross-entropy of the masked frames' discrete units.

HuBERT (Hsu, Bolte, Tsai, Lakhotia, Salakhutdinov and Mohamed 2021, "HuBERT: Self-Supervised
Speech Representation Learning by Masked Prediction of Hidden Units", IEEE/ACM TASLP,
arXiv:2106.07447) predicts, for every masked frame, the unit an offline k-means gave it
(:class:`~paravox.models.codebook.KMeansCodebook`). :func:`masked_cluster_loss` is the
function, :class:`MaskedClusterLoss` the module holding its ``global_mean`` switch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# aliased: `global_mean` is also the name of masked_cluster_loss's switch
from paravox.objectives.distributed import global_mean as _global_mean
from paravox.objectives.precision import float32_loss

IGNORE_INDEX = -100  # the padding target of F.cross_entropy, ignored even on masked frames


@float32_loss
def masked_cluster_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                        global_mean: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """HuBERT's masked prediction loss: cross-entropy of the cluster targets of the masked
    frames (Hsu et al. 2021, "HuBERT", IEEE/ACM TASLP, arXiv:2106.07447, eq. 2 / 3 with
    ``alpha = 1``: the unmasked frames are left out).

    ``logits`` are ``[B, T, K]`` (the model's scores for the ``K`` units, e.g. HuBERT's cosine
    similarities over a temperature), ``targets`` ``[B, T]`` long (from
    :meth:`~paravox.models.codebook.KMeansCodebook.assign`), ``mask`` ``[B, T]`` bool (True =
    masked frame). With ``M = {(b, t): mask[b, t] and targets[b, t] != -100}``::

        L = -1 / |M| * sum_{(b, t) in M} log softmax(logits[b, t])[targets[b, t]]

    The paper sums over the masked frames; the mean keeps the scale independent of the batch
    and masking rate. Targets equal to ``-100`` (padding) are ignored even where masked. The
    unmasked frames affect neither the value nor the gradient (not even when their logits are
    NaN). No frame in ``M`` gives a zero loss that still has a graph. Returns ``(loss,
    accuracy)``: the accuracy is the fraction of ``M`` whose arg-max logit is the target, a
    detached scalar (0 when ``M`` is empty), for logging.

    With ``global_mean=True`` and an initialised process group, ``|M|`` is the number of
    masked frames of *every* process (all-reduced) and the local sum is multiplied by the
    world size, so DDP's gradient averaging gives the gradient of the global mean even when
    the processes hold different numbers of masked frames (every process must then call it,
    also one without masked frames). Without a process group it is the local mean. The
    accuracy is always this process's.

    Example:

    >>> import torch
    >>> from paravox.objectives.unit_prediction import masked_cluster_loss
    >>> targets = torch.tensor([[0, 1, 2, 1]])
    >>> logits = 20.0 * torch.nn.functional.one_hot(targets, 3).float()  # confident, right
    >>> logits[0, 3] = float("nan")  # an unmasked frame: does not count
    >>> logits = logits.requires_grad_()
    >>> mask = torch.tensor([[True, True, True, False]])
    >>> loss, acc = masked_cluster_loss(logits, targets, mask)
    >>> round(loss.item(), 6), acc.item()
    (0.0, 1.0)
    >>> loss, acc = masked_cluster_loss(logits, targets, torch.zeros_like(mask))
    >>> loss.item(), acc.item(), loss.grad_fn is not None  # no masked frame
    (0.0, 0.0, True)
    """
    if logits.dim() != 3:
        raise ValueError(f"masked_cluster_loss: logits must be [B, T, K], got "
                         f"{tuple(logits.shape)}")
    bt = tuple(logits.shape[:2])
    if tuple(targets.shape) != bt or tuple(mask.shape) != bt:
        raise ValueError(f"masked_cluster_loss: targets {tuple(targets.shape)} and mask "
                         f"{tuple(mask.shape)} must both be [B, T] = {bt}")
    k = logits.shape[2]
    targets = targets.to(device=logits.device, dtype=torch.long)
    keep = mask.to(device=logits.device, dtype=torch.bool) & (targets != IGNORE_INDEX)
    t = targets[keep]  # [|M|]
    n_kept, n_bad = torch.stack([keep.sum(), ((t < 0) | (t >= k)).sum()]).tolist()
    if n_bad:
        raise ValueError(f"masked_cluster_loss: {n_bad} masked targets outside [0, {k}) "
                         f"(K = logits.shape[-1]); -100 marks a frame to ignore")
    scores = logits[keep].float()  # [|M|, K]: the kept frames only, so NaN elsewhere is inert
    local_sum = F.cross_entropy(scores, t, reduction="sum")  # an empty sum still has the graph
    with torch.no_grad():
        correct = (scores.argmax(dim=1) == t).float().sum()
        accuracy = correct / max(n_kept, 1)
    if global_mean:
        return _global_mean(local_sum, n_kept), accuracy
    return local_sum / max(n_kept, 1), accuracy


class MaskedClusterLoss(nn.Module):
    """:func:`masked_cluster_loss` as a module holding ``global_mean`` (HuBERT, Hsu et al.
    2021, arXiv:2106.07447): the cross-entropy of the unit targets of the masked frames,
    ``-100`` targets ignored. With ``M = {(b, t): mask[b, t] and targets[b, t] != -100}``::

        L = -1 / |M| * sum_{(b, t) in M} log softmax(logits[b, t])[targets[b, t]]

    ``forward(logits [B, T, K], targets [B, T], mask [B, T])`` returns ``(loss, accuracy)``.

    Example:

    >>> import torch
    >>> from paravox.objectives.unit_prediction import MaskedClusterLoss
    >>> criterion = MaskedClusterLoss()
    >>> targets = torch.tensor([[0, 1, 2, 1]])
    >>> logits = 20.0 * torch.nn.functional.one_hot(targets, 3).float()  # confident, right
    >>> loss, acc = criterion(logits, targets, torch.ones(1, 4, dtype=torch.bool))
    >>> round(loss.item(), 6), acc.item()
    (0.0, 1.0)
    """

    def __init__(self, global_mean: bool = False):
        super().__init__()
        self.global_mean = global_mean

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_cluster_loss(logits, targets, mask, global_mean=self.global_mean)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return f"global_mean={self.global_mean}"
