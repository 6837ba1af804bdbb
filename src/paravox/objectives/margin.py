"""Speaker-classification objectives for the supervised baseline: softmax and additive angular
margin softmax (AAM, ArcFace; Deng et al. 2019), as used for x-vector/ECAPA training."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SoftmaxClassifier(nn.Module):
    """A linear layer to the classes + cross-entropy: the plain-softmax baseline against
    which margin losses are compared (x-vector training).

    ``L = -1/B * sum_i log( exp(w_{y_i} . x_i + b_{y_i}) / sum_j exp(w_j . x_i + b_j) )``;
    ``forward`` returns ``(loss, logits)`` so accuracy can be logged from the same pass.

    Example:

    >>> import torch
    >>> from paravox.objectives.margin import SoftmaxClassifier
    >>> head = SoftmaxClassifier(in_dim=32, n_classes=10)
    >>> loss, logits = head(torch.randn(8, 32), torch.randint(0, 10, (8,)))
    >>> logits.shape
    torch.Size([8, 10])
    """

    def __init__(self, in_dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, n_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(x)
        return F.cross_entropy(logits.float(), labels), logits


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (AAM-softmax; Deng, Guo, Xue and Zafeiriou 2019,
    "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019,
    arXiv:1801.07698), the standard loss for supervised speaker embeddings (ECAPA-TDNN).

    ``s * cos(theta_y + m)`` for the true class, ``s * cos(theta_j)`` for the others, where
    ``theta`` is the angle between the embedding and a class weight vector (both normalised).
    The margin forces each class into a tighter angular cone than plain softmax would, which
    is what cosine scoring of verification trials rewards::

        L = -1/B * sum_i log( e^{s cos(theta_{y_i} + m)}
                              / (e^{s cos(theta_{y_i} + m)} + sum_{j != y_i} e^{s cos theta_j}) )

    ``margin`` can be changed during training (the supervised method warms it up); the angle
    plus margin is capped at pi so the target logit stays monotonic. ``forward`` returns
    ``(loss, s * cos)``: the margin-free logits, for accuracy.

    Example:

    >>> import torch
    >>> from paravox.objectives.margin import AAMSoftmax
    >>> aam = AAMSoftmax(in_dim=32, n_classes=10, margin=0.2, scale=30.0)
    >>> loss, logits = aam(torch.randn(8, 32), torch.randint(0, 10, (8,)))
    >>> logits.shape
    torch.Size([8, 10])
    >>> aam.margin = 0.1  # e.g. during a margin warm-up
    """

    def __init__(self, in_dim: int, n_classes: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, in_dim))
        nn.init.xavier_uniform_(self.weight)
        self.margin, self.scale = margin, scale

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` cosine of each embedding with each class weight vector, in float32
        (under autocast too): the quantity the margin is added to, as an angle."""
        with torch.autocast(device_type=x.device.type, enabled=False):  # F.linear would be bf16
            return F.linear(F.normalize(x.float(), dim=-1),
                            F.normalize(self.weight.float(), dim=-1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = self.cosine(x)
        theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
        target = torch.cos((theta + self.margin).clamp(max=math.pi))
        one_hot = F.one_hot(labels, cos.shape[1]).bool()
        logits = self.scale * torch.where(one_hot, target, cos)
        return F.cross_entropy(logits, labels), self.scale * cos
