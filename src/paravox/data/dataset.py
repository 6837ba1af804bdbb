"""Torch datasets over manifests: multi-crop views with augmentation, bad items counted.

Randomness is keyed, not stateful: every item draws from
``numpy.random.default_rng([seed, epoch, index])``, so a batch is the same whatever the
number of workers, and a resumed run sees the same crops as an uninterrupted one. The epoch
travels inside the key the sampler yields (``epoch * len(dataset) + index``), which also works
with persistent workers.
"""

from __future__ import annotations

import logging
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from paravox.audio.io import AudioSource, load_audio
from paravox.data.augment import WaveAugment
from paravox.data.crops import (
    CropConfig,
    TooShortError,
    crop_frame_targets,
    multi_crop,
    stretch_labels,
)
from paravox.data.labels import frame_label_ids
from paravox.data.manifest import Manifest, ManifestRow
from paravox.errors import AudioError, ManifestError, ParavoxError

log = logging.getLogger(__name__)


@dataclass
class BadItem:
    """Returned in place of an item that could not be loaded (when ``on_error='skip'``)."""

    id: str
    reason: str


@dataclass
class CropBatch:
    """A batch of multi-crop views: ``groups[g]`` is ``[views_g, B, samples_g]``.

    ``starts[g]`` ``[views_g, B]``: where each crop starts in its (augmented) utterance, in
    samples. ``targets[g]`` ``[views_g, B, frames_g]``: frame-level class targets aligned with
    the crop's features (10 ms frames, -100 = ignore), when the dataset was given
    ``frame_labels``; else None."""

    groups: list[torch.Tensor]
    ids: list[str]
    rows: list[ManifestRow]
    skipped: list[BadItem] = field(default_factory=list)
    starts: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] | None = None

    @property
    def batch_size(self) -> int:
        """Number of good items (skipped ones excluded): the batch the loss actually sees."""
        return len(self.ids)


class SkipCounter:
    """Accumulates skipped items across batches and reports them."""

    def __init__(self):
        self.reasons: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def update(self, skipped: list[BadItem]) -> None:
        """Count a batch's skipped items by kind (the reason's prefix), keeping up to 3
        examples of each for :meth:`summary`."""
        for item in skipped:
            kind = item.reason.split(":")[0]
            self.reasons[kind] += 1
            examples = self.examples.setdefault(kind, [])
            if len(examples) < 3:
                examples.append(item.reason.split(": ", 1)[1])

    @property
    def total(self) -> int:
        """Number of items skipped so far, all kinds together."""
        return sum(self.reasons.values())

    def summary(self) -> str:
        """One line for the log: the count of each kind of skip, with examples."""
        if not self.total:
            return "no items skipped"
        parts = [f"{n} x {k} (e.g. {'; '.join(self.examples[k])})"
                 for k, n in sorted(self.reasons.items())]
        return f"skipped {self.total} item(s): " + "; ".join(parts)


def process_world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(number of processes, this process's rank): the given values, else those of the
    initialised process group, else (1, 0). A rank outside the world fails."""
    initialised = dist.is_available() and dist.is_initialized()
    replicas = num_replicas or (dist.get_world_size() if initialised else 1)
    rank = rank if rank is not None else (dist.get_rank() if initialised else 0)
    if not 0 <= rank < replicas:
        raise ParavoxError(f"sampler: rank {rank} is not in [0, {replicas})")
    return replicas, rank


def check_dataset_args(manifest: Manifest, on_error: str) -> None:
    """What every dataset here refuses: an empty manifest and an unknown ``on_error``."""
    if on_error not in ("skip", "raise"):
        raise ParavoxError(f"on_error='{on_error}': choose 'skip' or 'raise'")
    if len(manifest) == 0:
        raise ParavoxError(f"manifest {manifest.source} has no rows")


def read_item(manifest: Manifest, key: int, seed: int, augment: WaveAugment | None
              ) -> tuple[ManifestRow, np.random.Generator, np.ndarray]:
    """Dataset key ``epoch * n + index`` -> the row, its keyed generator
    ``default_rng([seed, epoch, index])`` and its audio (utterance-level augmentation, e.g.
    speed perturbation, applied): the shared first step of every dataset here."""
    epoch, index = divmod(int(key), len(manifest))
    row = manifest[index]
    rng, wave = read_wave(row, manifest.audio_path(row), seed, epoch, index, augment)
    return row, rng, wave


def read_wave(row: ManifestRow, source: AudioSource, seed: int, epoch: int, index: int,
              augment: WaveAugment | None) -> tuple[np.random.Generator, np.ndarray]:
    """The keyed generator ``default_rng([seed, epoch, index])`` of item ``index`` in
    ``epoch`` and the row's audio read from ``source`` (a file, or a member of a shard), with
    utterance-level augmentation applied: one reading step for files and shards alike."""
    rng = np.random.default_rng([seed, epoch, index])
    wave = load_audio(source, row.offset, row.duration)
    if augment is not None:
        wave = augment.utterance(wave, rng)
    return rng, wave


def utterance_frame_labels(row: ManifestRow, frame_labels: dict[str, int], n_samples: int,
                           hop: int = 160) -> np.ndarray:
    """The row's phone alignment as class indices, one per feature frame of its (possibly
    speed-perturbed) wave of ``n_samples`` samples."""
    return stretch_labels(frame_label_ids(row, frame_labels), n_samples // hop + 1)


class EpochSampler(Sampler[int]):
    """Yields keys ``epoch * n + index`` over a seeded permutation; call ``set_epoch``.

    Under DDP each process takes every ``num_replicas``-th key of the same permutation
    (``rank`` and ``num_replicas`` default to the initialised process group), so the global
    batch of ``W`` processes with batch ``B`` holds exactly the keys a single process with
    batch ``W * B`` would see. The tail that does not divide evenly is dropped.
    ``skip_next(k)`` drops the first ``k`` keys of the next pass (mid-epoch resume).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True,
                 num_replicas: int | None = None, rank: int | None = None):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self._replicas, self._rank, self._skip = num_replicas, rank, 0

    def _world(self) -> tuple[int, int]:
        return process_world(self._replicas, self._rank)

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation (and the epoch in the keys) of the next pass."""
        self.epoch = epoch

    def skip_next(self, n_keys: int) -> None:
        """Drop the first ``n_keys`` keys (of this process) of the next pass only, so that a
        resumed run does not repeat the batches it had already done."""
        self._skip = n_keys

    def __iter__(self) -> Iterator[int]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        replicas, rank = self._world()
        order = order[: len(self) * replicas][rank::replicas][self._skip:]
        self._skip = 0
        return iter((self.epoch * self.n + order).tolist())

    def __len__(self) -> int:
        return self.n // self._world()[0]


def ignore_sigint(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave Ctrl-C to the main process, which finishes
    the step and saves a checkpoint (a worker killed by SIGINT would crash the run instead)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class SpawnableLoader(DataLoader):
    """A DataLoader that can be sent to spawned DDP processes with its own generator: the
    generator travels as plain bytes (a generator's state tensor fails to pass through shared
    memory)."""

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if isinstance(state.get("generator"), torch.Generator):
            state["generator"] = ("generator-state", bytes(state["generator"].get_state()
                                                           .numpy().tobytes()))
        return state

    def __setstate__(self, state: dict) -> None:
        gen = state.get("generator")
        if isinstance(gen, tuple) and gen[:1] == ("generator-state",):
            g = torch.Generator()
            g.set_state(torch.frombuffer(bytearray(gen[1]), dtype=torch.uint8))
            state = {**state, "generator": g}
        self.__dict__.update(state)


class ResumableLoader(SpawnableLoader):
    """A DataLoader over an :class:`EpochSampler` that resumes mid-epoch.

    Implements the ``state_dict``/``load_state_dict`` protocol Lightning uses for stateful
    loaders; the training engine sets ``batches_done`` after every batch. With ``drop_last``
    batches are full, so the batches done give the keys to skip.
    """

    batches_done: int = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, EpochSampler) or not self.drop_last:
            raise ParavoxError("ResumableLoader needs sampler=EpochSampler(...) and "
                               "drop_last=True")

    def state_dict(self) -> dict[str, int]:
        """Where the loader stands (epoch, batches done), saved in the checkpoint."""
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state_dict`: set the sampler's epoch and skip the batches
        already done (a state saved at an epoch's end starts the next epoch)."""
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):  # saved at the end of an epoch: start the next one
            epoch, done = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self.sampler.skip_next(done * self.batch_size)
        self.batches_done = done


class MultiCropDataset(Dataset):
    """Manifest rows -> groups of augmented crops (``CropConfig`` + ``WaveAugment``).

    ``on_error='skip'`` returns a :class:`BadItem` for unreadable audio (collated into
    ``CropBatch.skipped``); ``'raise'`` fails at once with the file named.
    ``frame_labels`` (phone -> class index): also cut each row's phone alignment to every crop
    (stretched first when speed perturbation changed the utterance's length).
    """

    def __init__(self, manifest: Manifest, crops: CropConfig, augment: WaveAugment | None = None,
                 seed: int = 0, on_error: str = "skip",
                 frame_labels: dict[str, int] | None = None, hop: int = 160):
        check_dataset_args(manifest, on_error)
        self.manifest, self.crops, self.augment = manifest, crops, augment
        self.seed, self.on_error = seed, on_error
        self.frame_labels, self.hop = frame_labels, hop

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, key: int) -> dict[str, Any] | BadItem:
        epoch, index = divmod(int(key), len(self.manifest))
        row = self.manifest[index]
        return self.make_item(row, self.manifest.audio_path(row), epoch, index)

    def make_item(self, row: ManifestRow, source: AudioSource, epoch: int, index: int
                  ) -> dict[str, Any] | BadItem:
        """The crops (and frame targets) of ``row`` whose audio is ``source``, drawn from the
        generator of item ``index`` in ``epoch``: the one per-item step that the file-based
        keys and the shard stream (:mod:`paravox.data.shard_stream`) share."""
        try:
            rng, wave = read_wave(row, source, self.seed, epoch, index, self.augment)
            groups, starts = multi_crop(wave, self.crops, rng, return_starts=True)
            if self.augment is not None:
                groups = [np.stack([self.augment.crop(v, rng) for v in g]) for g in groups]
            item = {"id": row.id, "row": row, "groups": groups, "starts": starts}
            if self.frame_labels is not None:
                labels = utterance_frame_labels(row, self.frame_labels, wave.size, self.hop)
                item["targets"] = [
                    np.stack([crop_frame_targets(labels, wave.size, int(st), g.shape[-1],
                                                 self.crops.short_policy, self.hop)
                              for st in ss])
                    for g, ss in zip(groups, starts)]
        except (AudioError, TooShortError, ManifestError) as exc:
            if self.on_error == "raise":
                raise
            kind = ("too_short" if isinstance(exc, TooShortError) else
                    "no_alignment" if isinstance(exc, ManifestError) else exc.kind)
            return BadItem(row.id, f"{kind}: {exc}")
        return item


def collate_crops(items: list[dict[str, Any] | BadItem]) -> CropBatch:
    """Stack equal-length crops of the good items per group; bad items go to ``skipped``."""
    good = [it for it in items if not isinstance(it, BadItem)]
    bad = [it for it in items if isinstance(it, BadItem)]
    if not good:
        return CropBatch(groups=[], ids=[], rows=[], skipped=bad)
    n_groups = len(good[0]["groups"])
    groups = [torch.from_numpy(np.stack([it["groups"][g] for it in good], axis=1))
              for g in range(n_groups)]
    starts = [torch.from_numpy(np.stack([it["starts"][g] for it in good], axis=1))
              for g in range(n_groups)] if "starts" in good[0] else []
    targets = None
    if "targets" in good[0]:
        targets = [torch.from_numpy(np.stack([it["targets"][g] for it in good], axis=1))
                   for g in range(n_groups)]
    return CropBatch(groups=groups, ids=[it["id"] for it in good],
                     rows=[it["row"] for it in good], skipped=bad, starts=starts,
                     targets=targets)
