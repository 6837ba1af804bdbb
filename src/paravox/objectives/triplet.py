"""Cosine triplet loss with margin and label-aware triplet mining (the contrastive term of
Lux et al., SLT 2022): ``max(0, cos(a, n) - cos(a, p) + margin)``.

:func:`cosine_triplet_loss` (module: :class:`CosineTripletLoss`) takes explicit (anchor,
positive, negative) embeddings, e.g. from a class-balanced triplet sampler.
:func:`mined_triplet_loss` (module: :class:`MinedTripletLoss`) mines inside a labelled
batch: every (anchor, positive) pair of one class with either a random negative or the
*semi-hard* one (FaceNet; as TensorFlow Addons' ``triplet_semihard_loss``): the most similar
negative that is still less similar than the positive, else the least similar negative. Under
DDP, candidates come from the global batch (gathered with gradients) and the mean runs over
all processes' pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paravox.objectives.distributed import gather_with_grad, global_mean
from paravox.objectives.precision import float32_loss


@float32_loss
def cosine_triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                        margin: float = 0.2) -> torch.Tensor:
    """Cosine triplet loss on explicit ``[B, D]`` (anchor, positive, negative) rows.

    Triplet loss with margin (Schroff, Kalenichenko and Philbin 2015, "FaceNet", CVPR 2015,
    arXiv:1503.03832), with cosine similarity in place of squared Euclidean distance since
    embeddings are cosine-scored: each anchor must be ``margin`` more similar to its
    positive than to its negative, and triplets already that far apart cost nothing::

        L = 1/B * sum_b max(0, cos(a_b, n_b) - cos(a_b, p_b) + margin)

    Example:

    >>> import torch
    >>> from paravox.objectives.triplet import cosine_triplet_loss
    >>> a, p, n = torch.randn(8, 32), torch.randn(8, 32), torch.randn(8, 32)
    >>> loss = cosine_triplet_loss(a, p, n, margin=0.2)
    >>> float(cosine_triplet_loss(a, a, -a, margin=0.2))  # positive = anchor, negative opposite
    0.0
    """
    sim_p = F.cosine_similarity(anchor.float(), positive.float(), dim=-1)
    sim_n = F.cosine_similarity(anchor.float(), negative.float(), dim=-1)
    return F.relu(sim_n - sim_p + margin).mean()


class CosineTripletLoss(nn.Module):
    """:func:`cosine_triplet_loss` as a module holding ``margin``: explicit ``[B, D]``
    (anchor, positive, negative) rows, e.g. from a class-balanced triplet sampler::

        L = 1/B * sum_b max(0, cos(a_b, n_b) - cos(a_b, p_b) + margin)

    Example:

    >>> import torch
    >>> from paravox.objectives.triplet import CosineTripletLoss
    >>> criterion = CosineTripletLoss(margin=0.2)
    >>> a = torch.randn(8, 32)
    >>> float(criterion(a, a, -a))  # positive = anchor, negative opposite: no cost
    0.0
    """

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor,
                negative: torch.Tensor) -> torch.Tensor:
        return cosine_triplet_loss(anchor, positive, negative, margin=self.margin)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return f"margin={self.margin}"


def mine_triplets(sim: torch.Tensor, anchor_labels: torch.Tensor, labels: torch.Tensor,
                  anchor_index: torch.Tensor, strategy: str = "semihard",
                  generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triplets as (anchor row, positive column, negative column) of ``sim`` ``[A, N]``
    (anchors x candidates; anchor ``i`` is candidate ``anchor_index[i]``). Anchors of a class
    with no other member, or with no negative in the batch, give no triplet.

    Every (anchor, positive) pair is kept; ``strategy`` picks one negative per pair:
    ``"semihard"`` (FaceNet's choice: the hardest negatives can collapse early training) or
    ``"random"`` (uniform over the negatives, drawn with ``generator``). Similarities are
    only read to choose: gradients are not taken here.

    Example:

    >>> import torch
    >>> from paravox.objectives.triplet import mine_triplets
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> sim = torch.randn(4, 4)
    >>> a, p, n = mine_triplets(sim, labels, labels, torch.arange(4))
    >>> a.tolist(), p.tolist()  # every ordered same-class pair
    ([0, 1, 2, 3], [1, 0, 3, 2])
    """
    same = anchor_labels[:, None] == labels[None, :]
    not_self = torch.ones_like(same)
    not_self[torch.arange(len(anchor_index)), anchor_index] = False
    pos_mask, neg_mask = same & not_self, ~same
    a, p = pos_mask.nonzero(as_tuple=True)
    keep = neg_mask[a].any(1)
    a, p = a[keep], p[keep]
    if strategy == "random":
        weights = neg_mask[a].float()
        n = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    elif strategy == "semihard":
        s_ap = sim[a, p].detach()[:, None]
        s_an = sim[a].detach()
        below = neg_mask[a] & (s_an < s_ap)
        semihard = torch.where(below, s_an, torch.full_like(s_an, -float("inf"))).argmax(1)
        easiest = torch.where(neg_mask[a], s_an, torch.full_like(s_an, float("inf"))).argmin(1)
        n = torch.where(below.any(1), semihard, easiest)
    else:
        raise ValueError(f"triplet mining '{strategy}': choose 'semihard' or 'random'")
    return a, p, n


def mined_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2,
                       strategy: str = "semihard", generator: torch.Generator | None = None
                       ) -> torch.Tensor:
    """Cosine triplet loss with triplets mined inside a labelled batch ``embeddings`` ``[B, D]``,
    ``labels`` ``[B]`` (the contrastive term of Lux et al., SLT 2022): see
    :class:`MinedTripletLoss`. Candidates come from the global batch under DDP and the mean
    runs over every process's triplets::

        L = 1/|T| * sum_{(a, p, n) in T} max(0, cos(z_a, z_n) - cos(z_a, z_p) + margin)

    ``strategy`` (``"semihard"`` or ``"random"``, drawn with ``generator``) picks the
    negatives (:func:`mine_triplets`). A batch without any valid triplet gives 0.

    Example:

    >>> import torch
    >>> from paravox.objectives.triplet import mined_triplet_loss
    >>> z, labels = torch.randn(8, 32), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    >>> mined_triplet_loss(z, labels, margin=0.2).shape
    torch.Size([])
    """
    z = F.normalize(embeddings.float(), dim=-1)
    all_z, offset = gather_with_grad(z)
    all_labels, _ = gather_with_grad(labels)
    sim = z @ all_z.T
    index = torch.arange(len(z), device=z.device) + offset
    a, p, n = mine_triplets(sim, labels, all_labels, index, strategy, generator)
    hinge = F.relu(sim[a, n] - sim[a, p] + margin)
    return global_mean(hinge.sum(), len(a))


class MinedTripletLoss(nn.Module):
    """Cosine triplet loss with triplets mined inside a labelled batch (the contrastive term
    of Lux et al., SLT 2022), so no triplet sampler is needed: only labels.

    Every (anchor, positive) pair of one class is combined with one negative chosen by
    :func:`mine_triplets` (``strategy`` ``"semihard"``, as in Schroff et al. 2015 FaceNet,
    CVPR 2015, arXiv:1503.03832, or ``"random"``); the loss is the mean hinge over all of
    them, and over all processes' triplets under DDP::

        L = 1/|T| * sum_{(a, p, n) in T} max(0, cos(z_a, z_n) - cos(z_a, z_p) + margin)

    A batch without any valid triplet gives 0.

    Example:

    >>> import torch
    >>> from paravox.objectives.triplet import MinedTripletLoss
    >>> loss_fn = MinedTripletLoss(margin=0.2, strategy="semihard")
    >>> z, labels = torch.randn(8, 32), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    >>> loss = loss_fn(z, labels)
    >>> loss.shape
    torch.Size([])
    """

    def __init__(self, margin: float = 0.2, strategy: str = "semihard"):
        super().__init__()
        self.margin, self.strategy = margin, strategy

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return mined_triplet_loss(embeddings, labels, margin=self.margin,
                                  strategy=self.strategy, generator=generator)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return f"margin={self.margin}, strategy={self.strategy!r}"
