"""Metrics of the field: EER, minDCF and DET points for verification; accuracy, unweighted
average recall (UAR) and macro-F1 with the confusion matrix for classification."""

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


def min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> float:
    """Minimum normalised detection cost over all thresholds (NIST SRE definition):
    ``min_t [c_miss p_target P_miss(t) + c_fa (1 - p_target) P_fa(t)] / min(c_miss p_target,
    c_fa (1 - p_target))``."""
    p_miss, p_fa = error_rates(scores, labels)
    cost = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def eer_confidence_interval(scores, labels, level: float = 0.95, n_boot: int = 1000,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the EER, resampling target and non-target trials
    separately (their counts stay fixed). Trials sharing utterances are not independent, so
    read it as a lower bound on the uncertainty."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    tar, non = scores[labels == 1], scores[labels == 0]
    y = np.concatenate([np.ones(len(tar), int), np.zeros(len(non), int)])
    rng = np.random.default_rng(seed)
    eers = [equal_error_rate(np.concatenate([rng.choice(tar, len(tar)),
                                             rng.choice(non, len(non))]), y)
            for _ in range(n_boot)]
    lo, hi = np.quantile(eers, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def uar_confidence_interval(y_true, y_pred, groups, level: float = 0.95, n_boot: int = 1000,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the UAR, resampling whole ``groups`` (speakers) with
    replacement: one speaker's utterances share a voice and a channel, so their errors are
    correlated and resampling utterances one by one would give too narrow an interval.
    A resample that loses a class is scored on the classes it keeps (as UAR does)."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    groups = np.asarray(groups)
    _, gid = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(gid == g) for g in range(gid.max() + 1)]
    k = int(max(y_true.max(), y_pred.max())) + 1
    rng = np.random.default_rng(seed)
    uars = np.empty(n_boot)
    for b in range(n_boot):
        ix = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        t, hit = y_true[ix], y_true[ix] == y_pred[ix]
        support = np.bincount(t, minlength=k)
        correct = np.bincount(t, weights=hit, minlength=k)
        present = support > 0
        uars[b] = (correct[present] / support[present]).mean()
    lo, hi = np.quantile(uars, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def det_points(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(P_fa, P_miss) pairs for a DET curve (plot on normal-deviate axes)."""
    p_miss, p_fa = error_rates(scores, labels)
    return p_fa, p_miss


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of items of true class ``i`` predicted as ``j``."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    n = n_classes or int(max(y_true.max(), y_pred.max())) + 1
    c = np.zeros((n, n), dtype=np.int64)
    np.add.at(c, (y_true, y_pred), 1)
    return c


def classification_report(y_true, y_pred, n_classes: int | None = None) -> dict:
    """Accuracy, UAR (mean per-class recall over classes present in ``y_true``) and macro-F1
    (mean per-class F1 over classes present in ``y_true`` or ``y_pred``; 0 where undefined)."""
    c = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(c).astype(float)
    support, predicted = c.sum(1), c.sum(0)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    used = present | (predicted > 0)
    return {"accuracy": float(tp.sum() / c.sum()), "uar": float(recall[present].mean()),
            "macro_f1": float(f1[used].mean()), "confusion": c}
