"""Speaker-verification back-ends: cosine (optionally after mean subtraction), adaptive
symmetric score normalisation (AS-Norm) with a top-k cohort, and a two-covariance PLDA.

All take ``{utterance id: embedding}`` and VoxCeleb-format trials ``(label, enrol, test)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paravox.errors import ManifestError


def _check(embeddings: dict[str, np.ndarray], trials) -> None:
    missing = {u for _, a, b in trials for u in (a, b)} - embeddings.keys()
    if missing:
        raise ManifestError(f"{len(missing)} trial utterance(s) have no embedding, e.g. "
                            f"'{sorted(missing)[0]}': is the trial list for this manifest?")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_scores(embeddings: dict[str, np.ndarray], trials,
                  mean: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity per trial; ``mean`` (e.g. of a training set) is subtracted first."""
    _check(embeddings, trials)
    shift = 0.0 if mean is None else mean
    a = _unit(np.stack([embeddings[x] for _, x, _ in trials]) - shift)
    b = _unit(np.stack([embeddings[y] for _, _, y in trials]) - shift)
    return (a * b).sum(-1)


def as_norm(embeddings: dict[str, np.ndarray], trials, cohort: np.ndarray, top_k: int = 100,
            mean: np.ndarray | None = None) -> np.ndarray:
    """AS-Norm (Matejka et al. 2017): each raw cosine score is normalised by the mean and std of
    the ``top_k`` highest scores of the enrolment side against the cohort, and likewise for the
    test side; the two normalised scores are averaged."""
    raw = cosine_scores(embeddings, trials, mean)
    shift = 0.0 if mean is None else mean
    coh = _unit(np.asarray(cohort, float) - shift)
    k = min(top_k, len(coh))
    ids = sorted({u for _, a, b in trials for u in (a, b)})
    index = {u: i for i, u in enumerate(ids)}
    emb = _unit(np.stack([embeddings[u] for u in ids]) - shift)
    top = -np.sort(-(emb @ coh.T), axis=1)[:, :k]  # [U, k]
    mu, sd = top.mean(1), np.maximum(top.std(1), 1e-12)
    e = np.array([index[a] for _, a, _ in trials])
    t = np.array([index[b] for _, _, b in trials])
    return 0.5 * ((raw - mu[e]) / sd[e] + (raw - mu[t]) / sd[t])


@dataclass
class PLDA:
    """Two-covariance PLDA on centred, whitened, length-normalised (and optionally LDA-reduced)
    embeddings: a speaker mean ``y ~ N(0, B)``, an utterance ``x = y + e``, ``e ~ N(0, W)``.
    ``score`` is the log-likelihood ratio of same vs different speaker."""

    mean: np.ndarray
    transform: np.ndarray  # [D, d]: whitening (+ LDA)
    between: np.ndarray
    within: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, speakers, lda_dim: int | None = None,
            ridge: float = 1e-6) -> PLDA:
        """Estimate the model from training embeddings ``x`` ``[N, D]`` and their speakers.

        Whitening and length normalisation make the Gaussian assumptions hold better;
        ``lda_dim`` keeps only the directions that separate speakers most, and ``ridge``
        keeps the covariances invertible when there are few speakers.
        """
        x = np.asarray(x, float)
        labels = np.unique(np.asarray(speakers), return_inverse=True)[1]
        n_spk = labels.max() + 1
        if n_spk < 2:
            raise ValueError("PLDA needs at least two speakers")
        mean = x.mean(0)
        xc = x - mean
        cov = np.cov(xc, rowvar=False) + ridge * np.eye(x.shape[1])
        vals, vecs = np.linalg.eigh(cov)
        whiten = vecs / np.sqrt(np.maximum(vals, 1e-12))
        transform = whiten
        if lda_dim:
            z = xc @ whiten
            means = np.stack([z[labels == s].mean(0) for s in range(n_spk)])
            between = np.cov(means, rowvar=False)
            _, lda = np.linalg.eigh(between)
            transform = whiten @ lda[:, ::-1][:, :lda_dim]  # largest between-class directions
        z = cls._project(xc, transform)
        means = np.stack([z[labels == s].mean(0) for s in range(n_spk)])
        within = sum(np.cov(z[labels == s] - means[s], rowvar=False, bias=True) *
                     (labels == s).sum() for s in range(n_spk)) / len(z)
        between = np.cov(means, rowvar=False, bias=True)
        eye = ridge * np.eye(z.shape[1])
        return cls(mean, transform, between + eye, within + eye)

    @staticmethod
    def _project(xc: np.ndarray, transform: np.ndarray) -> np.ndarray:
        z = xc @ transform
        return z / np.linalg.norm(z, axis=-1, keepdims=True) * np.sqrt(z.shape[-1])

    def project(self, x: np.ndarray) -> np.ndarray:
        """Raw embeddings ``[N, D]`` -> the model's space ``[N, d]`` (centred, whitened, LDA-
        reduced if fitted with ``lda_dim``, length-normalised to norm sqrt(d)) for :meth:`llr`."""
        return self._project(np.asarray(x, float) - self.mean, self.transform)

    def llr(self, z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
        """Log-likelihood ratio for projected pairs ``z1``, ``z2`` ``[N, d]``."""
        b, t = self.between, self.between + self.within
        t_inv = np.linalg.inv(t)
        schur_inv = np.linalg.inv(t - b @ t_inv @ b)
        q = 0.5 * (t_inv - schur_inv)
        p = 0.5 * t_inv @ b @ schur_inv
        _, logdet_t = np.linalg.slogdet(t)
        _, logdet_joint = np.linalg.slogdet(np.block([[t, b], [b, t]]))
        const = 0.5 * (2 * logdet_t - logdet_joint)
        return (np.einsum("nd,de,ne->n", z1, q, z1) + np.einsum("nd,de,ne->n", z2, q, z2)
                + 2 * np.einsum("nd,de,ne->n", z1, p, z2) + const)

    def score(self, embeddings: dict[str, np.ndarray], trials) -> np.ndarray:
        """Log-likelihood ratio per trial ``(label, enrol, test)``; the same interface as
        :func:`cosine_scores`, so back-ends can be swapped."""
        _check(embeddings, trials)
        z1 = self.project(np.stack([embeddings[x] for _, x, _ in trials]))
        z2 = self.project(np.stack([embeddings[y] for _, _, y in trials]))
        return self.llr(z1, z2)
