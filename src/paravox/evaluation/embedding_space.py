"""How well an embedding space separates classes, without training a classifier: few-shot
nearest-centroid accuracy (cosine) and the Davies-Bouldin index (lower = tighter, better
separated clusters), as reported for the two-step fine-tuning method's step-1 space."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import davies_bouldin_score


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_centroid_accuracy(support: np.ndarray, support_labels, query: np.ndarray,
                              query_labels, shots: int | None = None, episodes: int = 20,
                              seed: int = 0) -> float:
    """Accuracy of assigning each query to the class whose centroid of length-normalised support
    embeddings is most cosine-similar. ``shots``: use ``shots`` random support examples per
    class, averaged over ``episodes`` draws; ``None``: all support examples (one episode)."""
    support, query = _unit(support), _unit(query)
    support_labels, query_labels = np.asarray(support_labels), np.asarray(query_labels)
    classes = np.unique(support_labels)
    members = {c: np.flatnonzero(support_labels == c) for c in classes}
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(1 if shots is None else episodes):
        centroids = []
        for c in classes:
            idx = members[c]
            if shots is not None:
                idx = rng.choice(idx, size=min(shots, len(idx)), replace=False)
            centroids.append(support[idx].mean(0))
        pred = classes[np.argmax(query @ _unit(np.stack(centroids)).T, axis=1)]
        accs.append(float(np.mean(pred == query_labels)))
    return float(np.mean(accs))


def davies_bouldin(embeddings: np.ndarray, labels, normalise: bool = True) -> float:
    """Davies-Bouldin index (scikit-learn's) of the labelled clusters, on length-normalised
    embeddings by default (the cosine geometry the embeddings are scored in)."""
    x = _unit(embeddings) if normalise else np.asarray(embeddings, dtype=np.float64)
    return float(davies_bouldin_score(x, np.asarray(labels)))
