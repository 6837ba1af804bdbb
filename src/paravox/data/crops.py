"""Random crops and multi-crop views (N long + M short), grouped by length.

Crops of one length are stacked into one tensor so that a model can run each group through
its encoder in a single batched call (DINO's multi-crop trick).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paravox.audio.io import TARGET_SR

SHORT_POLICIES = ("repeat", "pad", "drop")


class TooShortError(ValueError):
    """Raised under ``short_policy='drop'`` for an utterance shorter than the crop."""


@dataclass
class CropConfig:
    n_long: int = 2
    long_seconds: float = 3.0
    n_short: int = 4
    short_seconds: float = 2.0
    # What to do with an utterance shorter than a crop: 'repeat' tiles it (Kaldi/WeSpeaker
    # practice), 'pad' appends zeros, 'drop' skips the item (counted as skipped).
    short_policy: str = "repeat"
    sample_rate: int = TARGET_SR

    def __post_init__(self):
        if self.short_policy not in SHORT_POLICIES:
            from paravox.errors import ConfigError

            raise ConfigError(f"short_policy='{self.short_policy}': choose one of "
                              f"{SHORT_POLICIES}")

    def groups(self) -> list[tuple[int, int]]:
        """(number of views, samples per view) per length group, longest first."""
        out = []
        if self.n_long > 0:
            out.append((self.n_long, int(round(self.long_seconds * self.sample_rate))))
        if self.n_short > 0:
            out.append((self.n_short, int(round(self.short_seconds * self.sample_rate))))
        return out


def fit_length(wave: np.ndarray, length: int, policy: str) -> np.ndarray:
    """Make ``wave`` at least ``length`` samples long according to ``policy``."""
    if wave.size >= length:
        return wave
    if policy == "drop":
        raise TooShortError(f"utterance of {wave.size} samples is shorter than a crop of "
                            f"{length}")
    if policy == "repeat":
        reps = -(-length // max(wave.size, 1))
        return np.tile(wave, reps)[:length]
    return np.pad(wave, (0, length - wave.size))


def random_crop(wave: np.ndarray, length: int, rng: np.random.Generator,
                policy: str = "repeat") -> np.ndarray:
    wave = fit_length(wave, length, policy)
    start = int(rng.integers(0, wave.size - length + 1))
    return wave[start:start + length]


def multi_crop(wave: np.ndarray, cfg: CropConfig, rng: np.random.Generator
               ) -> list[np.ndarray]:
    """One array ``[views, samples]`` per length group, each view cropped independently."""
    return [np.stack([random_crop(wave, n, rng, cfg.short_policy) for _ in range(v)])
            for v, n in cfg.groups()]
