"""Embedding-space quality: nearest-centroid accuracy vs a loop, Davies-Bouldin vs its
definition."""

import numpy as np
import pytest

from paravox.evaluation.embedding_space import davies_bouldin, nearest_centroid_accuracy


def _clusters(n=30, d=5, k=3, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 3
    y = np.arange(n) % k
    return centres[y] + spread * rng.standard_normal((n, d)), y


def test_nearest_centroid_matches_a_loop():
    xs, ys = _clusters(seed=1, spread=2.0)
    xq, yq = _clusters(seed=2, spread=2.0)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    correct = 0
    for x, y in zip(xq, yq):
        sims = {c: unit(np.mean([unit(s) for s, l in zip(xs, ys) if l == c], axis=0))
                @ unit(x) for c in set(ys)}
        correct += max(sims, key=sims.get) == y
    assert nearest_centroid_accuracy(xs, ys, xq, yq) == pytest.approx(correct / len(yq))
    # few-shot: 1 shot per class is noisier than all shots, on average no better
    one = nearest_centroid_accuracy(xs, ys, xq, yq, shots=1, episodes=50)
    assert 0 <= one <= 1 and one <= nearest_centroid_accuracy(xs, ys, xq, yq) + 0.05


def test_davies_bouldin_matches_the_definition():
    x, y = _clusters(spread=0.5)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    classes = np.unique(y)
    cent = np.stack([x[y == c].mean(0) for c in classes])
    s = np.array([np.mean(np.linalg.norm(x[y == c] - cent[i], axis=1))
                  for i, c in enumerate(classes)])
    r = [max((s[i] + s[j]) / np.linalg.norm(cent[i] - cent[j])
             for j in range(len(classes)) if j != i) for i in range(len(classes))]
    assert davies_bouldin(x, y) == pytest.approx(np.mean(r), rel=1e-9)
    tight, _ = _clusters(spread=0.1)
    loose, _ = _clusters(spread=1.5)
    assert davies_bouldin(tight, y) < davies_bouldin(loose, y)
