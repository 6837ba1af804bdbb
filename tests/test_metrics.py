import numpy as np
import pytest
from scipy.stats import norm

from paravox.evaluation.metrics import equal_error_rate


def brute_force_eer(scores, labels):
    """Independent: sweep every threshold, take the one where |miss - fa| is smallest."""
    best = None
    for th in np.concatenate([np.unique(scores), [np.inf]]):
        miss = np.mean(scores[labels == 1] < th)
        fa = np.mean(scores[labels == 0] >= th)
        if best is None or abs(miss - fa) < best[0]:
            best = (abs(miss - fa), (miss + fa) / 2)
    return best[1]


def test_eer_matches_brute_force_on_random_scores():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(50, 400))
        labels = rng.integers(0, 2, n)
        scores = rng.standard_normal(n) + 1.5 * labels
        assert equal_error_rate(scores, labels) == pytest.approx(
            brute_force_eer(scores, labels), abs=1.5 / min(labels.sum(), n - labels.sum()))


def test_eer_of_gaussian_scores_matches_the_analytic_value():
    rng = np.random.default_rng(1)
    d = 2.0  # targets N(d, 1), non-targets N(0, 1): EER = Phi(-d/2)
    scores = np.concatenate([rng.normal(d, 1, 200_000), rng.normal(0, 1, 200_000)])
    labels = np.concatenate([np.ones(200_000), np.zeros(200_000)]).astype(int)
    assert equal_error_rate(scores, labels) == pytest.approx(norm.cdf(-d / 2), abs=0.003)


def test_eer_edge_cases():
    assert equal_error_rate([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.0
    assert equal_error_rate([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 1.0
    assert equal_error_rate([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both target"):
        equal_error_rate([1, 2], [1, 1])
