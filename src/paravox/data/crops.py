"""Random crops and multi-crop views (N long + M short), grouped by length.

Crops of one length are stacked into one tensor so that a model can run each group through
its encoder in a single batched call (DINO's multi-crop trick). Every crop keeps its start
(in samples of the utterance it came from), so frame-level labels - the phone alignment of a
manifest row - can be cut to the same span (:func:`crop_frame_targets`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paravox.audio.io import TARGET_SR
from paravox.errors import ConfigError
from paravox.utils.checks import at_least, positive_finite

SHORT_POLICIES = ("repeat", "pad", "drop")
MAX_CROP_SECONDS = 600.0  # a crop is a few seconds; longer is a typo (or minutes of memory)


class TooShortError(ValueError):
    """Raised under ``short_policy='drop'`` for an utterance shorter than the crop."""


@dataclass
class CropConfig:
    """Settings of :func:`multi_crop`: how many long and short views to cut, their lengths
    in seconds (``n_short=0`` turns the short group off; at least one long crop is always
    cut: it is what a teacher sees and what a single-view method trains on), what to do with
    an utterance shorter than a crop, and the sample rate that turns seconds into samples."""

    n_long: int = 2
    long_seconds: float = 3.0
    n_short: int = 4
    short_seconds: float = 2.0
    # What to do with an utterance shorter than a crop: 'repeat' tiles it (Kaldi/WeSpeaker
    # practice), 'pad' appends zeros, 'drop' skips the item (counted as skipped).
    short_policy: str = "repeat"
    sample_rate: int = TARGET_SR

    def __post_init__(self):
        at_least("crops.n_long", self.n_long, 1, "the long crops are the teacher's views "
                 "(DINO) and the views every other method trains on")
        at_least("crops.n_short", self.n_short, 0)
        for key in ("long_seconds", "short_seconds"):
            positive_finite(f"crops.{key}", getattr(self, key), MAX_CROP_SECONDS, "seconds")
        at_least("crops.sample_rate", self.sample_rate, 1)
        if self.short_policy not in SHORT_POLICIES:
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
                policy: str = "repeat", return_start: bool = False):
    """A crop of ``length`` samples at a uniformly drawn start (after :func:`fit_length`);
    with ``return_start`` also the start, in samples of the (fitted) wave."""
    wave = fit_length(wave, length, policy)
    start = int(rng.integers(0, wave.size - length + 1))
    crop = wave[start:start + length]
    return (crop, start) if return_start else crop


def multi_crop(wave: np.ndarray, cfg: CropConfig, rng: np.random.Generator,
               return_starts: bool = False):
    """One array ``[views, samples]`` per length group, each view cropped independently;
    with ``return_starts`` also one array ``[views]`` of crop starts per group."""
    groups, starts = [], []
    for v, n in cfg.groups():
        crops = [random_crop(wave, n, rng, cfg.short_policy, return_start=True)
                 for _ in range(v)]
        groups.append(np.stack([c for c, _ in crops]))
        starts.append(np.array([s for _, s in crops], dtype=np.int64))
    return (groups, starts) if return_starts else groups


IGNORE = -100  # frame target of padding / unlabelled frames (cross-entropy's ignore_index)


def crop_frame_targets(labels: np.ndarray, n_samples: int, start: int, length: int,
                       policy: str = "repeat", hop: int = 160) -> np.ndarray:
    """Frame labels of a crop, aligned with the crop's features.

    ``labels``: one integer per feature frame of the whole utterance of ``n_samples`` samples
    (frame ``k`` centred on sample ``k * hop``, ``n_samples // hop + 1`` frames, as the log-mel
    front end and :class:`~paravox.data.manifest.Alignment` count them). The crop covers
    samples ``[start, start + length)`` of the utterance after :func:`fit_length` with
    ``policy``; its frame ``j`` is centred on sample ``start + j * hop`` and takes the label of
    the utterance frame nearest to that sample (the tiled copy's, for ``repeat``;
    :data:`IGNORE` more than half a hop into the zero padding of ``pad``).
    Returns ``length // hop + 1`` labels."""
    labels = np.asarray(labels)
    pos = start + np.arange(length // hop + 1) * hop
    out = np.full(pos.shape, IGNORE, dtype=np.int64)
    if n_samples <= 0 or labels.size == 0:
        return out
    if policy == "repeat":
        pos = pos % n_samples  # a short utterance was tiled; a long one is unchanged
    inside = pos < n_samples + hop // 2  # False only in the zero padding of 'pad'
    idx = np.minimum(np.floor(pos / hop + 0.5).astype(np.int64), labels.size - 1)
    out[inside] = labels[idx[inside]]
    return out


def stretch_labels(labels: np.ndarray, n_frames: int) -> np.ndarray:
    """Frame labels resampled to ``n_frames`` (nearest frame in time): the alignment of an
    utterance after speed perturbation changed its length."""
    labels = np.asarray(labels)
    if labels.size == n_frames or labels.size == 0:
        return labels
    idx = np.minimum(np.rint(np.arange(n_frames) * (labels.size / n_frames)).astype(np.int64),
                     labels.size - 1)
    return labels[idx]
