"""Torch datasets over manifests: multi-crop views with augmentation, bad items counted.

Randomness is keyed, not stateful: every item draws from
``numpy.random.default_rng([seed, epoch, index])``, so a batch is the same whatever the
number of workers, and a resumed run sees the same crops as an uninterrupted one. The epoch
travels inside the key the sampler yields (``epoch * len(dataset) + index``), which also works
with persistent workers.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from paravox.audio.io import load_audio
from paravox.data.augment import WaveAugment
from paravox.data.crops import CropConfig, TooShortError, multi_crop
from paravox.data.manifest import Manifest, ManifestRow
from paravox.errors import AudioError, ParavoxError

log = logging.getLogger(__name__)


@dataclass
class BadItem:
    """Returned in place of an item that could not be loaded (when ``on_error='skip'``)."""

    id: str
    reason: str


@dataclass
class CropBatch:
    """A batch of multi-crop views: ``groups[g]`` is ``[views_g, B, samples_g]``."""

    groups: list[torch.Tensor]
    ids: list[str]
    rows: list[ManifestRow]
    skipped: list[BadItem] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return len(self.ids)


class SkipCounter:
    """Accumulates skipped items across batches and reports them."""

    def __init__(self):
        self.reasons: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def update(self, skipped: list[BadItem]) -> None:
        for item in skipped:
            kind = item.reason.split(":")[0]
            self.reasons[kind] += 1
            examples = self.examples.setdefault(kind, [])
            if len(examples) < 3:
                examples.append(item.reason.split(": ", 1)[1])

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.total:
            return "no items skipped"
        parts = [f"{n} x {k} (e.g. {'; '.join(self.examples[k])})"
                 for k, n in sorted(self.reasons.items())]
        return f"skipped {self.total} item(s): " + "; ".join(parts)


class EpochSampler(Sampler[int]):
    """Yields keys ``epoch * n + index`` over a seeded permutation; call ``set_epoch``."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        return iter((self.epoch * self.n + order).tolist())

    def __len__(self) -> int:
        return self.n


class MultiCropDataset(Dataset):
    """Manifest rows -> groups of augmented crops (``CropConfig`` + ``WaveAugment``).

    ``on_error='skip'`` returns a :class:`BadItem` for unreadable audio (collated into
    ``CropBatch.skipped``); ``'raise'`` fails at once with the file named.
    """

    def __init__(self, manifest: Manifest, crops: CropConfig, augment: WaveAugment | None = None,
                 seed: int = 0, on_error: str = "skip"):
        if on_error not in ("skip", "raise"):
            raise ParavoxError(f"on_error='{on_error}': choose 'skip' or 'raise'")
        if len(manifest) == 0:
            raise ParavoxError(f"manifest {manifest.source} has no rows")
        self.manifest, self.crops, self.augment = manifest, crops, augment
        self.seed, self.on_error = seed, on_error

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, key: int) -> dict[str, Any] | BadItem:
        epoch, index = divmod(int(key), len(self.manifest))
        row = self.manifest[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        try:
            wave = load_audio(self.manifest.audio_path(row), row.offset, row.duration)
            if self.augment is not None:
                wave = self.augment.utterance(wave, rng)
            groups = multi_crop(wave, self.crops, rng)
            if self.augment is not None:
                groups = [np.stack([self.augment.crop(v, rng) for v in g]) for g in groups]
        except (AudioError, TooShortError) as exc:
            if self.on_error == "raise":
                raise
            kind = "too_short" if isinstance(exc, TooShortError) else exc.kind
            return BadItem(row.id, f"{kind}: {exc}")
        return {"id": row.id, "row": row, "groups": groups}


def collate_crops(items: list[dict[str, Any] | BadItem]) -> CropBatch:
    good = [it for it in items if not isinstance(it, BadItem)]
    bad = [it for it in items if isinstance(it, BadItem)]
    if not good:
        return CropBatch(groups=[], ids=[], rows=[], skipped=bad)
    n_groups = len(good[0]["groups"])
    groups = [torch.from_numpy(np.stack([it["groups"][g] for it in good], axis=1))
              for g in range(n_groups)]
    return CropBatch(groups=groups, ids=[it["id"] for it in good],
                     rows=[it["row"] for it in good], skipped=bad)
