import numpy as np
import pytest
from scipy.stats import norm

from paravox.evaluation.metrics import classification_report, equal_error_rate, min_dcf


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


def brute_force_min_dcf(scores, labels, p_target):
    best = np.inf
    for th in np.concatenate([np.unique(scores), [np.inf]]):
        miss = np.mean(scores[labels == 1] < th)
        fa = np.mean(scores[labels == 0] >= th)
        best = min(best, p_target * miss + (1 - p_target) * fa)
    return best / min(p_target, 1 - p_target)


@pytest.mark.parametrize("p_target", [0.01, 0.05])
def test_min_dcf_matches_brute_force(p_target):
    rng = np.random.default_rng(2)
    for _ in range(10):
        n = int(rng.integers(100, 500))
        labels = rng.integers(0, 2, n)
        scores = np.round(rng.standard_normal(n) + 2 * labels, 2)  # ties included
        assert min_dcf(scores, labels, p_target) == pytest.approx(
            brute_force_min_dcf(scores, labels, p_target), abs=1e-12)


def test_min_dcf_of_gaussian_scores_matches_the_analytic_minimum():
    from scipy.optimize import minimize_scalar

    rng = np.random.default_rng(3)
    d, p = 3.0, 0.05
    cost = lambda t: (p * norm.cdf(t - d) + (1 - p) * norm.sf(t)) / p  # noqa: E731
    analytic = minimize_scalar(cost, bounds=(-5, 10), method="bounded").fun
    scores = np.concatenate([rng.normal(d, 1, 300_000), rng.normal(0, 1, 300_000)])
    labels = np.concatenate([np.ones(300_000), np.zeros(300_000)]).astype(int)
    assert min_dcf(scores, labels, p) == pytest.approx(analytic, abs=0.01)
    assert min_dcf([1.0, 0.0], [1, 0]) == 0.0


def test_classification_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    rng = np.random.default_rng(4)
    for _ in range(20):
        k = int(rng.integers(2, 6))
        y = rng.integers(0, k, 60)
        pred = np.where(rng.random(60) < 0.6, y, rng.integers(0, k, 60))
        r = classification_report(y, pred, n_classes=k)
        assert r["accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert r["uar"] == pytest.approx(balanced_accuracy_score(y, pred))
        assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
        assert (r["confusion"] == confusion_matrix(y, pred, labels=range(k))).all()


def test_eer_bootstrap_interval_covers_the_analytic_eer():
    """Gaussian scores (target N(2, 1), non-target N(0, 1)): the true EER is Phi(-1). The 95 %
    interval should contain it in about 95 % of independent draws, and narrow with more
    trials."""
    from paravox.evaluation.metrics import eer_confidence_interval

    true_eer = norm.cdf(-1.0)
    rng = np.random.default_rng(0)
    hits, widths = 0, {}
    for rep in range(30):
        n = 600
        scores = np.concatenate([rng.normal(2, 1, n), rng.normal(0, 1, n)])
        labels = np.concatenate([np.ones(n), np.zeros(n)])
        lo, hi = eer_confidence_interval(scores, labels, n_boot=200, seed=rep)
        assert lo <= equal_error_rate(scores, labels) <= hi
        hits += lo <= true_eer <= hi
        widths.setdefault(n, []).append(hi - lo)
    assert hits >= 24  # binomial(30, 0.95): P(< 24) is about 0.001
    scores = np.concatenate([rng.normal(2, 1, 4 * 600), rng.normal(0, 1, 4 * 600)])
    labels = np.concatenate([np.ones(4 * 600), np.zeros(4 * 600)])
    lo, hi = eer_confidence_interval(scores, labels, n_boot=200)
    assert (hi - lo) < 0.7 * np.mean(widths[600])  # ~1/sqrt(4) of the width


def test_uar_interval_covers_the_true_uar_and_widens_with_speaker_clustering():
    """Coverage check against the simulation's known UAR (0.7 per class): speakers whose
    utterances are right or wrong together (the realistic case) need the speaker bootstrap;
    an utterance bootstrap would be too narrow there."""
    from paravox.evaluation.metrics import uar_confidence_interval

    rng = np.random.default_rng(1)
    covered, widths_spk, widths_utt = 0, [], []
    for rep in range(60):
        n_spk, per = 40, 6
        y = np.repeat(rng.integers(0, 3, n_spk), per)
        spk = np.repeat(np.arange(n_spk), per)
        # each speaker's recall is 0.4 or 1.0 (mean 0.7): errors cluster by speaker
        p_spk = np.where(rng.random(n_spk) < 0.5, 0.4, 1.0)
        right = rng.random(n_spk * per) < np.repeat(p_spk, per)
        pred = np.where(right, y, (y + 1) % 3)
        lo, hi = uar_confidence_interval(y, pred, spk, n_boot=300, seed=rep)
        covered += lo <= 0.7 <= hi
        widths_spk.append(hi - lo)
        lo_u, hi_u = uar_confidence_interval(y, pred, np.arange(len(y)), n_boot=300, seed=rep)
        widths_utt.append(hi_u - lo_u)
    assert covered >= 0.85 * 60
    assert np.mean(widths_spk) > 1.5 * np.mean(widths_utt)


def test_uar_interval_edge_cases():
    from paravox.evaluation.metrics import uar_confidence_interval

    y = np.array([0, 0, 1, 1, 2, 2])
    assert uar_confidence_interval(y, y, ["a", "a", "b", "b", "c", "c"]) == (1.0, 1.0)
    lo, hi = uar_confidence_interval(y, (y + 1) % 3, list("aabbcc"))
    assert (lo, hi) == (0.0, 0.0)
