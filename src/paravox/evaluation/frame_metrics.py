"""Scores of frame-level label predictions against reference frame labels: frame accuracy,
and phone error rate (PER) of the collapsed frame sequences (consecutive identical labels
merged, silence dropped by default) against the collapsed reference, summed over utterances:
``PER = sum_u edit(ref_u, hyp_u) / sum_u len(ref_u)`` with unit-cost Levenshtein distance.
The phone probe (:mod:`paravox.evaluation.phone_probe`) reports these for every layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def collapse(labels: Sequence) -> list:
    """Consecutive identical labels merged into one: frame labels -> a phone sequence."""
    out: list = []
    for lab in labels:
        if not out or out[-1] != lab:
            out.append(lab)
    return out


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (unit-cost substitutions, insertions, deletions) by the
    classic dynamic programme: ``d[i][j] = min(d[i-1][j] + 1, d[i][j-1] + 1,
    d[i-1][j-1] + [ref_i != hyp_j])``."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def phone_sequence(frame_labels: Sequence, silence: str | None = "sil") -> list:
    """The phone sequence of frame labels: collapsed first, then ``silence`` dropped (so a
    pause between two identical phones still separates them); ``None`` keeps silence."""
    return [p for p in collapse(frame_labels) if silence is None or p != silence]


def phone_error_rate(refs: Sequence[Sequence], hyps: Sequence[Sequence],
                     silence: str | None = "sil") -> float:
    """PER over utterances of frame labels: ``sum_u edit(R_u, H_u) / sum_u |R_u|`` with
    ``R_u``, ``H_u`` the :func:`phone_sequence` of reference and predicted frame labels."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    errors = total = 0
    for ref, hyp in zip(refs, hyps):
        r, h = phone_sequence(ref, silence), phone_sequence(hyp, silence)
        errors += edit_distance(r, h)
        total += len(r)
    return errors / max(total, 1)


def mode_filter(labels: np.ndarray, window: int) -> np.ndarray:
    """Each frame's label replaced by the most frequent label in the ``window`` frames
    centred on it (ties: the smallest label; the window shrinks at the edges): the smoothing
    that turns frame-wise predictions into a phone sequence without spurious one-frame runs."""
    labels = np.asarray(labels)
    if window <= 1 or labels.size == 0:
        return labels
    half = window // 2
    classes, inverse = np.unique(labels, return_inverse=True)
    onehot = np.zeros((labels.size + 1, classes.size), dtype=np.int32)
    onehot[np.arange(labels.size) + 1, inverse] = 1
    csum = onehot.cumsum(0)
    lo = np.clip(np.arange(labels.size) - half, 0, labels.size)
    hi = np.clip(np.arange(labels.size) + half + 1, 0, labels.size)
    return classes[(csum[hi] - csum[lo]).argmax(1)]


def frame_accuracy(refs: Sequence[Sequence], hyps: Sequence[Sequence]) -> float:
    """Fraction of frames whose predicted label equals the reference, over all utterances:
    ``sum_u sum_k [ref_uk == hyp_uk] / sum_u |ref_u|``."""
    correct = total = 0
    for ref, hyp in zip(refs, hyps):
        if len(ref) != len(hyp):
            raise ValueError(f"reference of {len(ref)} frames, hypothesis of {len(hyp)}")
        correct += int(np.sum(np.asarray(ref, dtype=object) == np.asarray(hyp, dtype=object)))
        total += len(ref)
    return correct / max(total, 1)
