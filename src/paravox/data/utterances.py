"""Variable-length batches: whole utterances (or crops of at most ``max_seconds``), padded,
with per-item lengths, padding masks and aligned frame targets; and a sampler that groups
utterances of similar length so that little of each batch is padding.

The frame-level methods (masked prediction over whole utterances) read these; the multi-crop
methods read :class:`~paravox.data.dataset.MultiCropDataset`. Randomness is keyed the same
way: item ``index`` of epoch ``e`` draws from ``default_rng([seed, e, index])``, so batches do
not depend on the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from paravox.data.augment import WaveAugment
from paravox.data.crops import IGNORE, crop_frame_targets, random_crop
from paravox.data.dataset import (
    BadItem,
    check_dataset_args,
    process_world,
    read_item,
    utterance_frame_labels,
)
from paravox.data.manifest import Manifest, ManifestRow
from paravox.errors import AudioError, ManifestError, ParavoxError


@dataclass
class PaddedBatch:
    """Utterances of different lengths in one batch.

    ``waves`` ``[B, N]`` zero-padded; ``lengths`` ``[B]`` valid samples; ``mask`` ``[B, N]``
    True on valid samples; ``targets`` ``[B, F]`` frame targets (10 ms frames, -100 on padding)
    or None; ``starts`` ``[B]`` where each wave starts in its utterance (samples)."""

    waves: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor
    ids: list[str]
    rows: list[ManifestRow]
    starts: torch.Tensor
    targets: torch.Tensor | None = None
    skipped: list[BadItem] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        """Usable items in the batch."""
        return len(self.ids)


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``[B, max_len]`` True where position < length: valid (not padded) positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None] < lengths[:, None]


class UtteranceDataset(Dataset):
    """Manifest rows -> whole utterances (a random crop of ``max_seconds`` when longer),
    waveform-augmented when ``augment`` is given, with frame targets when ``frame_labels``
    (phone -> class index) is given. Bad items come back as :class:`BadItem`."""

    def __init__(self, manifest: Manifest, max_seconds: float | None = None,
                 augment: WaveAugment | None = None, seed: int = 0,
                 frame_labels: dict[str, int] | None = None, sample_rate: int = 16000,
                 hop: int = 160, on_error: str = "skip"):
        check_dataset_args(manifest, on_error)
        self.manifest, self.augment, self.seed = manifest, augment, seed
        self.max_samples = None if max_seconds is None else int(max_seconds * sample_rate)
        self.frame_labels, self.hop, self.on_error = frame_labels, hop, on_error

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, key: int) -> dict[str, Any] | BadItem:
        row = self.manifest[int(key) % len(self.manifest)]
        try:
            row, rng, wave = read_item(self.manifest, key, self.seed, self.augment)
            start, full = 0, wave
            if self.max_samples is not None and wave.size > self.max_samples:
                wave, start = random_crop(wave, self.max_samples, rng, return_start=True)
            if self.augment is not None:
                wave = self.augment.crop(wave, rng)
            item = {"id": row.id, "row": row, "wave": wave, "start": start}
            if self.frame_labels is not None:
                labels = utterance_frame_labels(row, self.frame_labels, full.size, self.hop)
                item["targets"] = crop_frame_targets(labels, full.size, start, wave.size,
                                                     "pad", self.hop)
        except (AudioError, ManifestError) as exc:
            if self.on_error == "raise":
                raise
            kind = "no_alignment" if isinstance(exc, ManifestError) else exc.kind
            return BadItem(row.id, f"{kind}: {exc}")
        return item


def collate_padded(items: list[dict[str, Any] | BadItem]) -> PaddedBatch:
    """Zero-pad waves to the longest (targets with -100) and record the lengths."""
    good = [it for it in items if not isinstance(it, BadItem)]
    bad = [it for it in items if isinstance(it, BadItem)]
    lengths = torch.tensor([it["wave"].size for it in good], dtype=torch.long)
    n = int(lengths.max()) if good else 0
    waves = torch.zeros(len(good), n)
    for i, it in enumerate(good):
        waves[i, :it["wave"].size] = torch.from_numpy(np.asarray(it["wave"], dtype=np.float32))
    targets = None
    if good and "targets" in good[0]:
        f = max(it["targets"].size for it in good)
        targets = torch.full((len(good), f), IGNORE, dtype=torch.long)
        for i, it in enumerate(good):
            targets[i, :it["targets"].size] = torch.from_numpy(it["targets"])
    return PaddedBatch(waves, lengths, padding_mask(lengths, n), [it["id"] for it in good],
                       [it["row"] for it in good],
                       torch.tensor([it["start"] for it in good], dtype=torch.long),
                       targets, bad)


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of utterances of similar duration (a batch sampler).

    Each epoch: shuffle (seeded by ``(seed, epoch)``), cut the shuffled order into pools of
    ``pool_batches`` batches, sort each pool by duration and cut it into batches, then shuffle
    the batches - the usual bucketing of speech toolkits, which keeps batches random while
    padding little. Yields dataset keys ``epoch * n + index``. Under DDP each process takes
    every ``num_replicas``-th batch (the remainder is dropped, so all processes see the same
    number of batches). ``max_seconds``: durations above it count as ``max_seconds`` (they are
    cropped by the dataset)."""

    def __init__(self, durations: list[float], batch_size: int, seed: int = 0,
                 pool_batches: int = 50, shuffle: bool = True, drop_last: bool = False,
                 num_replicas: int | None = None, rank: int | None = None):
        if batch_size < 1:
            raise ParavoxError(f"batch_size={batch_size} must be >= 1")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_size, self.seed, self.pool = batch_size, seed, max(pool_batches, 1)
        self.shuffle, self.drop_last, self.epoch = shuffle, drop_last, 0
        self._replicas, self._rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        """Draw the next epoch's batches."""
        self.epoch = epoch

    def _world(self) -> tuple[int, int]:
        return process_world(self._replicas, self._rank)

    def _batches(self) -> list[np.ndarray]:
        n = len(self.durations)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        size = self.batch_size * self.pool
        batches = []
        for p in range(0, n, size):
            pool = order[p:p + size]
            pool = pool[np.argsort(self.durations[pool], kind="stable")]
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool),
                                                                    self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        replicas, rank = self._world()
        return batches[: len(batches) // replicas * replicas][rank::replicas]

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.durations)
        return iter([(self.epoch * n + b).tolist() for b in self._batches()])

    def __len__(self) -> int:
        return len(self._batches())


def manifest_durations(manifest: Manifest, max_seconds: float | None = None) -> list[float]:
    """Each row's duration in seconds (from the row, else from the file's header), capped at
    ``max_seconds``: what :class:`LengthBucketSampler` sorts by."""
    import soundfile as sf

    out = []
    for r in manifest:
        d = r.duration
        if d is None:
            try:
                d = sf.info(str(manifest.audio_path(r))).duration - r.offset
            except RuntimeError:
                d = 0.0  # unreadable: the dataset reports it
        out.append(min(d, max_seconds) if max_seconds else d)
    return out
