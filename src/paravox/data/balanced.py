"""Class-balanced batches for label-aware contrastive training (two-step fine-tuning):
every batch holds ``batch_size / per_class`` classes with ``per_class`` utterances each, so
each utterance has same-class partners (anchor/positive pairs) and other-class negatives,
whatever the class frequencies. Minority classes are drawn again once their pool is spent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from paravox.data.dataset import EpochSampler
from paravox.errors import ConfigError

# a repeated draw of an item within an epoch gets its own key, hence its own crop/augmentation:
# the dataset reads ``key // n`` as the epoch of its random stream
ROUNDS_PER_EPOCH = 1000


class ClassBalancedSampler(EpochSampler):
    """Keys for :class:`~paravox.data.dataset.MultiCropDataset`, ``per_class`` consecutive keys
    per class. Under DDP the global batch (``batch_size * world``) is drawn once and each
    process takes its contiguous block of ``batch_size``, so classes are never split across
    processes. An epoch has as many batches as the plain sampler would; resumable like it."""

    def __init__(self, labels: Sequence[str], batch_size: int, per_class: int, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None):
        super().__init__(len(labels), seed, True, num_replicas, rank)
        if per_class < 2 or batch_size % per_class:
            raise ConfigError(f"class-balanced batches: per_class={per_class} must be >= 2 and "
                              f"divide batch_size={batch_size}")
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ConfigError(f"class-balanced batches need at least 2 classes, got {classes}")
        self.batch_size, self.per_class = batch_size, per_class
        labels = np.asarray(labels)
        self.members = [np.flatnonzero(labels == c) for c in classes]

    def __len__(self) -> int:
        replicas = self._world()[0]
        return (self.n // (self.batch_size * replicas)) * self.batch_size

    def global_batches(self) -> np.ndarray:
        """``[batches, batch_size * world]`` keys of this epoch, the same on every process."""
        replicas = self._world()[0]
        n_batches, width = len(self) // self.batch_size, self.batch_size * replicas
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        pools = [rng.permutation(m) for m in self.members]
        used, rounds = [0] * len(pools), [0] * len(pools)
        cycle: list[int] = []
        out = np.empty((n_batches, width), dtype=np.int64)
        for b in range(n_batches):
            keys = []
            for _ in range(width // self.per_class):
                if not cycle:
                    cycle = list(rng.permutation(len(pools)))
                c = cycle.pop()
                for _ in range(self.per_class):
                    if used[c] == len(pools[c]):  # pool spent: a fresh permutation
                        pools[c], used[c] = rng.permutation(self.members[c]), 0
                        rounds[c] += 1
                    index = int(pools[c][used[c]])
                    used[c] += 1
                    keys.append((self.epoch * ROUNDS_PER_EPOCH + rounds[c]) * self.n + index)
            out[b] = keys
        return out

    def __iter__(self) -> Iterator[int]:
        replicas, rank = self._world()
        batches = self.global_batches()
        mine = batches[:, rank * self.batch_size:(rank + 1) * self.batch_size].reshape(-1)
        mine = mine[self._skip:]
        self._skip = 0
        return iter(mine.tolist())
