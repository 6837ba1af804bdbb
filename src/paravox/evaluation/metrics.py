"""Speaker-verification metrics: equal error rate."""

from __future__ import annotations

import numpy as np


def error_rates(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every threshold (accept when score >= threshold),
    from the highest threshold (accept nothing) to the lowest (accept all)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    if labels.min() == labels.max():
        raise ValueError("need both target (1) and non-target (0) trials")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    tp = np.concatenate([[0], np.cumsum(y)])
    fp = np.concatenate([[0], np.cumsum(1 - y)])
    keep = np.concatenate([[True], s[1:] != s[:-1], [True]])  # only between distinct scores
    n_t, n_n = y.sum(), (1 - y).sum()
    return (1 - tp / n_t)[keep], (fp / n_n)[keep]


def equal_error_rate(scores, labels) -> float:
    """EER: where miss and false-alarm rates cross (linear interpolation between points)."""
    p_miss, p_fa = error_rates(scores, labels)
    diff = p_miss - p_fa  # decreasing from 1 to -1
    i = int(np.flatnonzero(diff <= 0)[0])
    if diff[i] == 0 or i == 0:
        return float(p_fa[i])
    # interpolate between points i-1 (miss > fa) and i (miss <= fa)
    w = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(p_miss[i - 1] + w * (p_miss[i] - p_miss[i - 1]))
