"""Masked-prediction losses: frame reconstruction and span-level contrastive prediction.

The two losses of MGF (Zhao, Wang, Chen et al. 2021, "MGF: Multi-Granularity Self-Supervised
Learning of Speech Representations", arXiv:2102.01930): a generative loss at the frame scale
(reconstruct the masked frames, as TERA / Mockingjay do) and masked prediction with a
contrastive loss at the phoneme scale (each masked span must pick its own content out of the
other spans, as in wav2vec 2.0).

Span masking draws overlapping spans that merge into runs; :func:`spans_of_mask` finds those
runs in a frame mask, :func:`pool_spans` averages frame features over them, and
:func:`span_info_nce` scores one prediction per run against the runs' targets.

Each loss is a function and a module holding its settings: :func:`masked_reconstruction_loss`
and :class:`MaskedReconstructionLoss`, :func:`span_info_nce` and :class:`SpanContrastiveLoss`.

Under DDP, both losses average over the *global* number of terms (masked frames, spans), so
that DDP's gradient averaging gives the single-process gradient on the global batch even when
processes hold different numbers of terms; :func:`span_info_nce` also draws negatives from
every process's targets (all-gathered with gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paravox.errors import ConfigError
from paravox.objectives.distributed import gather_with_grad, is_distributed
from paravox.objectives.distributed import global_mean as _global_mean  # also an argument
from paravox.objectives.precision import float32_loss

RECONSTRUCTION_KINDS = ("l1", "l2")


@float32_loss
def masked_reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                               kind: str = "l1", global_mean: bool = False) -> torch.Tensor:
    """Reconstruction error on the masked frames only (Liu, Yang, Chi, Hsu and Lee 2020,
    "Mockingjay", ICASSP 2020, arXiv:1910.12638; Liu, Li and Lee 2021, "TERA", IEEE/ACM TASLP,
    arXiv:2007.06028: L1 on the masked frames; the frame-scale loss of MGF, Zhao et al. 2021,
    arXiv:2102.01930).

    ``pred`` and ``target`` are ``[B, T, F]``, ``mask`` ``[B, T]`` bool (True = masked
    frame). With ``M = {(b, t): mask[b, t]}`` and ``e = |x|`` (``kind="l1"``) or ``e = x^2``
    (``kind="l2"``)::

        L = 1 / (|M| * F) * sum_{(b, t) in M} sum_f e(pred[b, t, f] - target[b, t, f])

    Unmasked frames affect neither the value nor the gradient (not even when they hold
    non-finite values). No masked frame gives a zero loss that still has a graph. The target
    is used as given: detach it yourself if it must not receive gradients.

    With ``global_mean=True`` and an initialised process group, ``|M|`` is the number of
    masked frames of *every* process (all-reduced) and the local sum is multiplied by the
    world size, so DDP's gradient averaging gives the gradient of the global mean even when
    the processes hold different numbers of masked frames (every process must then call it,
    also one without masked frames). Without a process group it is the local mean.

    Example:

    >>> import torch
    >>> from paravox.objectives.masked import masked_reconstruction_loss
    >>> target = torch.randn(2, 10, 4)
    >>> mask = torch.zeros(2, 10, dtype=torch.bool)
    >>> mask[0, 2:5] = True
    >>> pred = target.clone()
    >>> pred[0, 2:5] += 1.0      # wrong by 1 on every masked frame
    >>> pred[1] += 100.0         # unmasked frames do not count
    >>> float(masked_reconstruction_loss(pred, target, mask, kind="l1"))
    1.0
    >>> float(masked_reconstruction_loss(pred, target, torch.zeros_like(mask)))
    0.0
    """
    if kind not in RECONSTRUCTION_KINDS:
        raise ConfigError(f"masked_reconstruction_loss: kind={kind!r}; allowed values: "
                          + ", ".join(repr(k) for k in RECONSTRUCTION_KINDS))
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"masked_reconstruction_loss: pred {tuple(pred.shape)} and target "
                         f"{tuple(target.shape)} must both be [B, T, F]")
    if tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"masked_reconstruction_loss: mask {tuple(mask.shape)} must be "
                         f"[B, T] = {tuple(pred.shape[:2])}")
    mask = mask.to(device=pred.device, dtype=torch.bool)
    diff = pred[mask].float() - target[mask].float()  # [|M|, F]: masked frames only
    err = diff.abs() if kind == "l1" else diff.square()
    n_frames, n_features = err.shape
    local_sum = err.sum() / max(n_features, 1)  # an empty sum still has the graph
    if global_mean:
        return _global_mean(local_sum, n_frames)
    return local_sum / max(n_frames, 1)


class MaskedReconstructionLoss(nn.Module):
    """:func:`masked_reconstruction_loss` as a module holding ``kind`` (``"l1"`` or ``"l2"``)
    and ``global_mean`` (TERA / Mockingjay; the frame-scale loss of MGF, Zhao et al. 2021,
    arXiv:2102.01930): the reconstruction error of the masked frames only::

        L = 1 / (|M| * F) * sum_{(b, t) in M} sum_f e(pred[b, t, f] - target[b, t, f])

    ``forward(pred [B, T, F], target [B, T, F], mask [B, T])``.

    Example:

    >>> import torch
    >>> from paravox.objectives.masked import MaskedReconstructionLoss
    >>> criterion = MaskedReconstructionLoss(kind="l1")
    >>> target = torch.randn(2, 10, 4)
    >>> mask = torch.zeros(2, 10, dtype=torch.bool)
    >>> mask[0, 2:5] = True
    >>> float(criterion(target + 1.0, target, mask))  # wrong by 1 on every masked frame
    1.0
    """

    def __init__(self, kind: str = "l1", global_mean: bool = False):
        super().__init__()
        if kind not in RECONSTRUCTION_KINDS:
            raise ConfigError(f"MaskedReconstructionLoss: kind={kind!r}; allowed values: "
                              + ", ".join(repr(k) for k in RECONSTRUCTION_KINDS))
        self.kind = kind
        self.global_mean = global_mean

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        return masked_reconstruction_loss(pred, target, mask, kind=self.kind,
                                          global_mean=self.global_mean)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return f"kind={self.kind!r}, global_mean={self.global_mean}"


def spans_of_mask(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The maximal runs of True in each row of a ``[B, T]`` bool mask.

    Span masking (wav2vec 2.0, Baevski et al. 2020, arXiv:2006.11477; MGF, Zhao et al. 2021,
    arXiv:2102.01930) draws spans that may overlap; overlapping and touching spans merge into
    one run, and each run is one span target. Returns ``(utt_index, start, end)``, each
    ``[N]`` long, sorted by row then start, with ``end`` exclusive::

        mask[utt_index[n], start[n]:end[n]] all True, and False (or the row's edge)
        at start[n] - 1 and at end[n]

    Example:

    >>> import torch
    >>> from paravox.objectives.masked import spans_of_mask
    >>> mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)
    >>> utt, start, end = spans_of_mask(mask)
    >>> utt.tolist(), start.tolist(), end.tolist()
    ([0, 0, 1], [1, 4, 0], [3, 5, 4])
    """
    if mask.dim() != 2:
        raise ValueError(f"spans_of_mask: mask must be [B, T], got {tuple(mask.shape)}")
    m = F.pad(mask.to(torch.int8), (1, 1))  # [B, T + 2], False at both edges
    step = m[:, 1:] - m[:, :-1]  # [B, T + 1]: +1 where a run starts, -1 one past its end
    begins = (step == 1).nonzero()  # row-major: sorted by (row, position)
    ends = (step == -1).nonzero()  # runs alternate within a row, so the two lists pair up
    return begins[:, 0], begins[:, 1], ends[:, 1]


def pool_spans(x: torch.Tensor, utt_index: torch.Tensor, start: torch.Tensor,
               end: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` ``[B, T, D]`` over each span: ``[N, D]``, differentiable.

    The span-level (phoneme-scale) representation of MGF (Zhao et al. 2021, arXiv:2102.01930)
    for the spans of :func:`spans_of_mask`::

        out[n] = 1 / (end[n] - start[n]) * sum_{t = start[n]}^{end[n] - 1} x[utt_index[n], t]

    Vectorised: the frames of all spans are gathered in one indexing and summed with
    ``index_add`` (exact, unlike differences of cumulative sums); spans may overlap. Every
    span must be non-empty (``end > start``).

    Example:

    >>> import torch
    >>> from paravox.objectives.masked import pool_spans
    >>> x = torch.arange(12.0).reshape(1, 6, 2)  # frame t holds [2t, 2t + 1]
    >>> pool_spans(x, torch.tensor([0, 0]), torch.tensor([0, 3]), torch.tensor([2, 6]))
    tensor([[1., 2.],
            [8., 9.]])
    """
    if x.dim() != 3:
        raise ValueError(f"pool_spans: x must be [B, T, D], got {tuple(x.shape)}")
    if not (utt_index.shape == start.shape == end.shape) or utt_index.dim() != 1:
        raise ValueError("pool_spans: utt_index, start and end must be [N] each, got "
                         f"{tuple(utt_index.shape)}, {tuple(start.shape)}, {tuple(end.shape)}")
    utt_index, start, end = (v.to(device=x.device, dtype=torch.long)
                             for v in (utt_index, start, end))
    lengths = end - start
    if len(lengths) and (bool((lengths <= 0).any()) or bool((start < 0).any())
                         or bool((end > x.shape[1]).any())):
        raise ValueError(f"pool_spans: every span needs 0 <= start < end <= T = {x.shape[1]}")
    n = len(lengths)
    span = torch.repeat_interleave(torch.arange(n, device=x.device), lengths)  # [L]
    first = torch.cumsum(lengths, 0) - lengths  # position of each span's first frame in [L]
    frame = start[span] + torch.arange(len(span), device=x.device) - first[span]
    out = x.new_zeros((n, x.shape[2])).index_add(0, span, x[utt_index[span], frame])
    return out / lengths.unsqueeze(1).to(x.dtype)


def sample_negatives(candidates: torch.Tensor, n_negatives: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Per row of the ``[N, M]`` bool ``candidates``, ``n_negatives`` of its True entries drawn
    uniformly without replacement (all of them where the row has fewer): an ``[N, M]`` bool.

    Sampled distractors as in wav2vec 2.0 (Baevski et al. 2020, arXiv:2006.11477, K = 100)
    and CPC (van den Oord et al. 2018, arXiv:1807.03748). Each candidate gets an independent
    uniform key ``u ~ U[0, 1)`` (from ``generator``, on its device); a row keeps its
    ``n_negatives`` candidates with the smallest keys, which is a uniform sample without
    replacement::

        chosen[i] = the min(n_negatives, |C_i|) members j of C_i with the smallest u_ij

    :func:`span_info_nce` calls it, so the same seed reproduces its negatives.

    Example:

    >>> import torch
    >>> from paravox.objectives.masked import sample_negatives
    >>> candidates = ~torch.eye(5, dtype=torch.bool)  # everything but the diagonal
    >>> chosen = sample_negatives(candidates, 3, torch.Generator().manual_seed(0))
    >>> chosen.sum(1).tolist(), bool((chosen & ~candidates).any())
    ([3, 3, 3, 3, 3], False)
    """
    if n_negatives < 1:
        raise ConfigError(f"sample_negatives: n_negatives={n_negatives}; must be >= 1 (or "
                          "None for all negatives in span_info_nce)")
    device = generator.device if generator is not None else candidates.device
    keys = torch.rand(candidates.shape, generator=generator, device=device)
    keys = keys.to(candidates.device).masked_fill(~candidates, 2.0)  # non-candidates last
    order = keys.argsort(dim=1)
    rank = torch.empty_like(order)
    positions = torch.arange(candidates.shape[1], device=candidates.device)
    rank.scatter_(1, order, positions.expand_as(order).contiguous())
    return (rank < n_negatives) & candidates


@float32_loss
def span_info_nce(pred: torch.Tensor, target: torch.Tensor, utt_index: torch.Tensor,
                  temperature: float = 0.1, n_negatives: int | None = None,
                  same_utterance_only: bool = False,
                  generator: torch.Generator | None = None, gather: bool = True,
                  return_accuracy: bool = False
                  ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over masked spans: each span's prediction must pick its own target out of the
    other spans' targets (wav2vec 2.0, Baevski, Zhou, Mohamed and Auli 2020, arXiv:2006.11477,
    eq. 3; CPC, van den Oord, Li and Vinyals 2018, arXiv:1807.03748; the phoneme-scale loss
    of MGF, Zhao et al. 2021, arXiv:2102.01930).

    ``pred`` and ``target`` are ``[N, D]``, one row per masked span (the context network's
    prediction of the span and a representation of the span's true content, e.g.
    :func:`pool_spans` of the unmasked features), ``utt_index`` ``[N]`` the utterance of each
    span. With ``s_ij = cos(pred_i, target_j) / t`` (``t = temperature``) and ``Q_i`` the
    negatives of span ``i``::

        l_i = -log( exp(s_ii) / (exp(s_ii) + sum_{j in Q_i} exp(s_ij)) )
        L   = 1 / |{i : Q_i non-empty}| * sum_{i : Q_i non-empty} l_i

    ``Q_i`` holds the targets of the *other* spans: of the same utterance and of the rest of
    the batch, or of the same utterance only (``same_utterance_only``). With
    ``n_negatives=None`` every such span is a negative; otherwise ``n_negatives`` of them are
    drawn uniformly without replacement per span (:func:`sample_negatives`, seeded by
    ``generator``; all of them where fewer are available). A span with no negative at all
    contributes nothing: it is left out of both the sum and the count. No spans give a zero
    loss that still has a graph.

    With ``gather=True`` and an initialised process group, the negatives come from the
    targets of every process (all-gathered with gradients, as :func:`nt_xent` does; spans of
    different processes are different utterances), and the mean runs over the global number
    of spans with negatives, so that DDP's averaged gradient equals the single-process
    gradient on the global batch even with unequal shards (every process must then call it).

    With ``return_accuracy=True`` it returns ``(loss, accuracy)``: the fraction of this
    process's spans with negatives whose positive is strictly the most similar of
    ``{i} + Q_i`` (a detached scalar tensor, 0 when no span has a negative; for logging).

    Example:

    >>> import torch
    >>> from paravox.objectives.masked import span_info_nce
    >>> target = torch.randn(6, 16)
    >>> utt = torch.tensor([0, 0, 0, 1, 1, 1])  # 3 spans in each of 2 utterances
    >>> loss, acc = span_info_nce(target + 0.01 * torch.randn(6, 16), target, utt,
    ...                           temperature=0.1, return_accuracy=True)
    >>> float(acc)  # good predictions: every span picks its own target
    1.0
    >>> bool(loss < span_info_nce(torch.randn(6, 16), target, utt))
    True
    """
    if temperature <= 0:
        raise ConfigError(f"span_info_nce: temperature={temperature}; must be > 0")
    if n_negatives is not None and n_negatives < 1:
        raise ConfigError(f"span_info_nce: n_negatives={n_negatives}; must be >= 1, or None "
                          "for every other span")
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"span_info_nce: pred {tuple(pred.shape)} and target "
                         f"{tuple(target.shape)} must both be [N, D]")
    if tuple(utt_index.shape) != (pred.shape[0],):
        raise ValueError(f"span_info_nce: utt_index {tuple(utt_index.shape)} must be "
                         f"[N] = [{pred.shape[0]}]")
    distributed = gather and is_distributed()
    n = pred.shape[0]
    p = F.normalize(pred, dim=-1)
    t = F.normalize(target, dim=-1)
    if n == 0 and not distributed:
        loss = pred.sum() * 0 + target.sum() * 0
        return (loss, torch.zeros((), device=pred.device)) if return_accuracy else loss
    all_t, offset = gather_with_grad(t) if distributed else (t, 0)
    m = all_t.shape[0]
    device = pred.device
    logits = p @ all_t.T / temperature  # [N, M]
    rows = torch.arange(n, device=device)
    positive = rows + offset
    is_positive = torch.zeros((n, m), dtype=torch.bool, device=device)
    is_positive[rows, positive] = True
    if same_utterance_only:
        # this process's slice only: other processes' spans are other utterances
        utt = utt_index.to(device)
        candidates = torch.zeros((n, m), dtype=torch.bool, device=device)
        candidates[:, offset:offset + n] = utt[:, None] == utt[None, :]
        candidates &= ~is_positive
    else:
        candidates = ~is_positive
    negatives = (candidates if n_negatives is None
                 else sample_negatives(candidates, n_negatives, generator))
    has = negatives.any(dim=1)
    scored = logits.masked_fill(~(negatives | is_positive), float("-inf"))
    pos_logit = logits[rows, positive]
    per_span = torch.logsumexp(scored[has], dim=1) - pos_logit[has]
    local_sum = per_span.sum()  # an empty sum still has the graph (to pred and target)
    count = int(has.sum())
    loss = _global_mean(local_sum, count) if distributed else local_sum / max(count, 1)
    if not return_accuracy:
        return loss
    with torch.no_grad():
        best_negative = logits.masked_fill(~negatives, float("-inf")).amax(dim=1) \
            if m else logits.new_full((n,), float("-inf"))
        correct = (pos_logit > best_negative)[has]
        accuracy = correct.float().sum() / max(count, 1)
    return loss, accuracy


class SpanContrastiveLoss(nn.Module):
    """:func:`span_info_nce` as a module holding ``temperature``, ``n_negatives``,
    ``same_utterance_only`` and ``gather`` (the MGF phoneme-scale loss, Zhao et al. 2021,
    arXiv:2102.01930; wav2vec 2.0, Baevski et al. 2020, eq. 3)::

        l_i = -log( exp(s_ii) / (exp(s_ii) + sum_{j in Q_i} exp(s_ij)) ),  L = mean_i l_i

    with ``s_ij = cos(pred_i, target_j) / temperature`` and ``Q_i`` the negatives of span
    ``i`` (see :func:`span_info_nce`). ``forward(pred, target, utt_index, generator=None,
    return_accuracy=False)``; the generator seeds the negative sampling when ``n_negatives``
    is set.

    Example:

    >>> import torch
    >>> from paravox.objectives.masked import SpanContrastiveLoss
    >>> criterion = SpanContrastiveLoss(temperature=0.1, n_negatives=2)
    >>> target = torch.randn(6, 16)
    >>> utt = torch.tensor([0, 0, 0, 1, 1, 1])
    >>> loss = criterion(torch.randn(6, 16), target, utt, torch.Generator().manual_seed(0))
    >>> loss.shape
    torch.Size([])
    """

    def __init__(self, temperature: float = 0.1, n_negatives: int | None = None,
                 same_utterance_only: bool = False, gather: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"SpanContrastiveLoss: temperature={temperature}; must be > 0")
        if n_negatives is not None and n_negatives < 1:
            raise ConfigError(f"SpanContrastiveLoss: n_negatives={n_negatives}; must be >= 1, "
                              "or None for every other span")
        self.temperature = temperature
        self.n_negatives = n_negatives
        self.same_utterance_only = same_utterance_only
        self.gather = gather

    def forward(self, pred: torch.Tensor, target: torch.Tensor, utt_index: torch.Tensor,
                generator: torch.Generator | None = None, return_accuracy: bool = False):
        return span_info_nce(pred, target, utt_index, temperature=self.temperature,
                             n_negatives=self.n_negatives,
                             same_utterance_only=self.same_utterance_only,
                             generator=generator, gather=self.gather,
                             return_accuracy=return_accuracy)

    def extra_repr(self) -> str:
        """The settings, for ``print(module)``."""
        return (f"temperature={self.temperature}, n_negatives={self.n_negatives}, "
                f"same_utterance_only={self.same_utterance_only}, gather={self.gather}")
