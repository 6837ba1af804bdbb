"""Verification back-ends against independent computations: cosine, AS-Norm (a loop over
trials), PLDA (the LLR from scipy's multivariate normal densities) and PLDA's benefit on data
drawn from its own model."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from paravox.errors import ManifestError
from paravox.evaluation.metrics import equal_error_rate
from paravox.evaluation.scoring import PLDA, as_norm, cosine_scores


def toy(seed=0, n_spk=8, per=5, d=6):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_spk, d)) * 2
    emb, spk = {}, {}
    for s in range(n_spk):
        for u in range(per):
            emb[f"s{s}u{u}"] = centres[s] + rng.standard_normal(d)
            spk[f"s{s}u{u}"] = s
    ids = sorted(emb)
    trials = [(int(spk[a] == spk[b]), a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
    return emb, trials, rng


def test_cosine_with_mean_subtraction():
    emb, trials, _ = toy()
    mean = np.mean(list(emb.values()), axis=0)
    s = cosine_scores(emb, trials[:5], mean)
    for (_, a, b), v in zip(trials[:5], s):
        x, y = emb[a] - mean, emb[b] - mean
        assert v == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
    with pytest.raises(ManifestError, match="no embedding"):
        cosine_scores(emb, [(1, "s0u0", "nope")])


def test_as_norm_matches_a_loop():
    emb, trials, rng = toy(1)
    cohort = rng.standard_normal((30, 6)) * 2
    k = 7
    got = as_norm(emb, trials[:20], cohort, top_k=k)

    def cos(x, y):
        return x @ y / np.linalg.norm(x) / np.linalg.norm(y)

    for (_, a, b), v in zip(trials[:20], got):
        raw = cos(emb[a], emb[b])
        stats = []
        for u in (a, b):
            top = sorted((cos(emb[u], c) for c in cohort), reverse=True)[:k]
            stats.append((np.mean(top), np.std(top)))
        expected = 0.5 * ((raw - stats[0][0]) / stats[0][1] + (raw - stats[1][0]) / stats[1][1])
        assert v == pytest.approx(expected, rel=1e-9)


def test_plda_llr_matches_gaussian_densities():
    rng = np.random.default_rng(2)
    d = 3
    a = rng.standard_normal((d, d))
    b_cov = a @ a.T + 0.1 * np.eye(d)
    w = rng.standard_normal((d, d))
    w_cov = w @ w.T + 0.5 * np.eye(d)
    plda = PLDA(np.zeros(d), np.eye(d), b_cov, w_cov)
    z1, z2 = rng.standard_normal((4, d)), rng.standard_normal((4, d))
    t = b_cov + w_cov
    joint = np.block([[t, b_cov], [b_cov, t]])
    for i in range(4):
        same = multivariate_normal(np.zeros(2 * d), joint).logpdf(np.concatenate([z1[i], z2[i]]))
        diff = (multivariate_normal(np.zeros(d), t).logpdf(z1[i]) +
                multivariate_normal(np.zeros(d), t).logpdf(z2[i]))
        assert plda.llr(z1[i:i + 1], z2[i:i + 1])[0] == pytest.approx(same - diff, rel=1e-8)


def test_plda_beats_cosine_when_nuisance_dominates():
    """A strong within-speaker nuisance direction fools cosine; PLDA learns to ignore it."""
    rng = np.random.default_rng(3)
    d, n_spk, per = 8, 60, 6
    nuisance = np.zeros(d)
    nuisance[0] = 1.0

    def sample(n):
        centres = rng.standard_normal((n, d))
        x, s = [], []
        for k in range(n):
            for _ in range(per):
                x.append(centres[k] + 0.3 * rng.standard_normal(d) +
                         6 * rng.standard_normal() * nuisance)
                s.append(k)
        return np.array(x), np.array(s)

    x_train, s_train = sample(n_spk)
    x_test, s_test = sample(20)
    emb = {f"u{i}": v for i, v in enumerate(x_test)}
    trials = [(int(s_test[i] == s_test[j]), f"u{i}", f"u{j}")
              for i in range(len(x_test)) for j in range(i + 1, len(x_test))]
    labels = np.array([t for t, _, _ in trials])
    plda = PLDA.fit(x_train, s_train)
    eer_plda = equal_error_rate(plda.score(emb, trials), labels)
    eer_cos = equal_error_rate(cosine_scores(emb, trials), labels)
    assert eer_plda < 0.5 * eer_cos
    reduced = PLDA.fit(x_train, s_train, lda_dim=4)
    assert reduced.transform.shape == (d, 4)
    assert equal_error_rate(reduced.score(emb, trials), labels) < eer_cos
