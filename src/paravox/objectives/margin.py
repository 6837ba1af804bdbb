"""Speaker-classification objectives for the supervised baseline: softmax and additive angular
margin softmax (AAM, ArcFace; Deng et al. 2019), as used for x-vector/ECAPA training.

The modules :class:`SoftmaxClassifier` and :class:`AAMSoftmax` hold the class weights (they
are classification heads); the functions :func:`softmax_classifier_loss` and
:func:`aam_softmax_loss` take the weights as arguments.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def softmax_classifier_loss(x: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax cross-entropy of the linear logits ``x @ weight.T + bias`` (``x``
    ``[B, D]``, ``weight`` ``[C, D]``, ``bias`` ``[C]``, ``labels`` ``[B]``); returns
    ``(loss, logits)``, the cross-entropy in float32::

        L = -1/B * sum_i log( exp(w_{y_i} . x_i + b_{y_i}) / sum_j exp(w_j . x_i + b_j) )

    Example:

    >>> import torch
    >>> from paravox.objectives.margin import softmax_classifier_loss
    >>> weight, bias = torch.randn(10, 32), torch.zeros(10)
    >>> loss, logits = softmax_classifier_loss(torch.randn(8, 32), torch.randint(0, 10, (8,)),
    ...                                        weight, bias)
    >>> logits.shape
    torch.Size([8, 10])
    """
    logits = F.linear(x, weight, bias)
    return F.cross_entropy(logits.float(), labels), logits


def _cosine(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` cosine of each row of ``x`` with each row of ``weight``, in float32."""
    with torch.autocast(device_type=x.device.type, enabled=False):  # F.linear would be bf16
        return F.linear(F.normalize(x.float(), dim=-1), F.normalize(weight.float(), dim=-1))


def aam_softmax_loss(x: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                     margin: float = 0.2, scale: float = 30.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive angular margin softmax (ArcFace; Deng et al. 2019, arXiv:1801.07698) of the
    embeddings ``x`` ``[B, D]`` against the class weights ``weight`` ``[C, D]``: see
    :class:`AAMSoftmax`. Returns ``(loss, scale * cos)``, the margin-free logits::

        L = -1/B * sum_i log( e^{s cos(theta_{y_i} + m)}
                              / (e^{s cos(theta_{y_i} + m)} + sum_{j != y_i} e^{s cos theta_j}) )

    Example:

    >>> import torch
    >>> from paravox.objectives.margin import aam_softmax_loss
    >>> weight = torch.randn(10, 32)
    >>> loss, logits = aam_softmax_loss(torch.randn(8, 32), torch.randint(0, 10, (8,)), weight,
    ...                                 margin=0.2, scale=30.0)
    >>> logits.shape
    torch.Size([8, 10])
    """
    cos = _cosine(x, weight)
    theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    target = torch.cos((theta + margin).clamp(max=math.pi))
    one_hot = F.one_hot(labels, cos.shape[1]).bool()
    logits = scale * torch.where(one_hot, target, cos)
    return F.cross_entropy(logits, labels), scale * cos


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
        return softmax_classifier_loss(x, labels, self.linear.weight, self.linear.bias)


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
        return _cosine(x, self.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return aam_softmax_loss(x, labels, self.weight, margin=self.margin, scale=self.scale)
