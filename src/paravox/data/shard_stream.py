"""Training items streamed from tar shards: shuffled, split over processes and loader workers,
counted exactly, resumable.

Each epoch ``e`` lays the shards end to end in the order ``default_rng([seed, e])`` draws,
giving a stream of ``N`` items. With ``W`` processes (DDP ranks) each rank takes ``M = N // W``
consecutive items of it (rank ``r``: positions ``[r M, (r + 1) M)``; the ``N - W M`` left over
are dropped, as :class:`~paravox.data.dataset.EpochSampler` drops them), so every rank trains
``M // B`` batches of ``B``: exactly the steps of the file-based loader. The rank's batches are
dealt to its ``K`` loader workers in consecutive runs (worker ``k`` gets ``T // K`` batches, one
more for the first ``T % K``), each a contiguous stretch of shards read front to back, and
each worker shuffles its items within a buffer of ``buffer`` items (generator keyed by
seed, epoch, rank, worker). A rank reads only its ``1 / W`` of the shards, a worker only its
share of those.

Per item, the work is the file-based dataset's own
(:meth:`~paravox.data.dataset.MultiCropDataset.make_item`, keyed by the item's index in the
source manifest), so an item gets the same crops and augmentation in epoch ``e`` from shards as
from files; what differs is which items share a batch, and that depends on ``W`` and ``K``.

Resume: :class:`ShardLoader` saves (epoch, batches done, W, K). The DataLoader takes batches
from its workers in turn, starting with worker 0, so batch ``i`` of a pass is part
``i % K``'s, and after ``d`` batches part ``k`` had delivered ``d // K + (k < d % K)``. A
resumed pass gives worker ``j`` part ``(j + d) % K``; each worker replays its part's shuffled
stream and drops the batches already delivered without reading them, so the rest of the
epoch is exactly, and in the same order, what the uninterrupted run would have trained on.
With another W or K the epoch still has its number of steps, but its remaining items are
those of the new split (a warning says so).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from paravox.audio.io import AudioMember
from paravox.data.dataset import BadItem, MultiCropDataset, SpawnableLoader, process_world
from paravox.data.shards import ShardedManifest, ShardIndex
from paravox.errors import AudioError, ConfigError, ParavoxError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stretch:
    """Items ``[lo, hi)`` of shard ``shard`` (positions within the shard)."""

    shard: int
    lo: int
    hi: int


def epoch_order(n_shards: int, seed: int, epoch: int) -> np.ndarray:
    """The shards' order in ``epoch``: a permutation drawn from ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(n_shards)


def stretches(sizes: list[int], order: np.ndarray, start: int, stop: int) -> list[Stretch]:
    """Positions ``[start, stop)`` of the epoch's stream (shards of ``sizes`` items laid end
    to end in ``order``) as runs of items within shards."""
    out, pos = [], 0
    for s in order.tolist():
        lo, hi = max(start - pos, 0), min(stop - pos, sizes[s])
        if lo < hi:
            out.append(Stretch(s, lo, hi))
        pos += sizes[s]
        if pos >= stop:
            break
    return out


def worker_batches(total: int, workers: int, worker: int) -> tuple[int, int]:
    """(first batch, number of batches) of ``worker`` among ``workers`` sharing ``total``
    batches in consecutive runs, the first ``total % workers`` one batch longer."""
    base, extra = divmod(total, workers)
    return worker * base + min(worker, extra), base + (worker < extra)


def delivered(done: int, workers: int, worker: int) -> int:
    """Batches ``worker`` had delivered when the loader had yielded ``done``: the loader takes
    one batch from each worker in turn (workers with more batches come first)."""
    return done // workers + (worker < done % workers)


def shuffle_buffer(records: Iterator[Any], size: int, rng: np.random.Generator
                   ) -> Iterator[Any]:
    """The records in a random order: fill a buffer of ``size``, then yield a random one and
    put the next record in its place; the buffer is emptied in random order at the end. The
    order depends only on the number of records and ``rng``, never on their content."""
    buf: list[Any] = []
    for rec in records:
        if len(buf) < size:
            buf.append(rec)
            continue
        j = int(rng.integers(size))
        buf[j], rec = rec, buf[j]
        yield rec
    for j in rng.permutation(len(buf)).tolist():
        yield buf[j]


class ShardStream(IterableDataset):
    """Multi-crop items streamed from the shards of ``index`` (see the module docstring).

    ``items`` is a :class:`~paravox.data.dataset.MultiCropDataset` over the shard folder's
    manifest: its per-item step is the one used. ``batch_size`` must be the loader's (the
    split is in whole batches); :class:`ShardLoader` sets it, with the epoch and the batches
    to skip."""

    def __init__(self, index: ShardIndex, items: MultiCropDataset, seed: int = 0,
                 buffer: int = 256, num_replicas: int | None = None, rank: int | None = None):
        if not isinstance(items.manifest, ShardedManifest):
            raise ParavoxError("ShardStream needs a MultiCropDataset over "
                               "ShardIndex.manifest()")
        if buffer < 1:
            raise ConfigError(f"run.shuffle_buffer={buffer}: must be >= 1 (1 = no shuffling "
                              f"within shards)")
        self.index, self.items, self.seed, self.buffer = index, items, seed, buffer
        self._replicas, self._rank = num_replicas, rank
        self.epoch, self.skip_batches, self.batch_size = 0, 0, 1
        self.pinned: tuple[int, int] | None = None
        self.starts = index.starts()
        self.sizes = [s.items for s in index.shards]

    def world(self) -> tuple[int, int]:
        """(processes, this rank), as the sampler of the file-based loader finds them; in a
        loader worker, the values the main process pinned before starting it."""
        return self.pinned or process_world(self._replicas, self._rank)

    def pin_world(self) -> None:
        """Fix (processes, rank) in the main process, for the workers it starts next (a
        worker process does not see the process group reliably)."""
        self.pinned = process_world(self._replicas, self._rank)

    def __len__(self) -> int:
        return self.index.items // self.world()[0]

    def plan(self, epoch: int, worker: int, workers: int) -> list[Stretch]:
        """The stretches of shards that ``worker`` (of ``workers``) of this rank reads in
        ``epoch``: whole batches only."""
        replicas, rank = self.world()
        per_rank = self.index.items // replicas
        first, count = worker_batches(per_rank // self.batch_size, workers, worker)
        start = rank * per_rank + first * self.batch_size
        return stretches(self.sizes, epoch_order(len(self.sizes), self.seed, epoch),
                         start, start + count * self.batch_size)

    def positions(self, plan: list[Stretch]) -> list[int]:
        """The manifest positions of the items of ``plan``, in reading order."""
        return [self.starts[st.shard] + i for st in plan for i in range(st.lo, st.hi)]

    def records(self, plan: list[Stretch], unread: frozenset[int] = frozenset()
                ) -> Iterator[tuple[int, AudioMember | None]]:
        """(manifest position, the item's audio) for every item of ``plan``, each shard read
        front to back through one open file; items in ``unread`` (already trained on) and
        those of a shard that cannot be read come with ``None`` audio (the latter reported as
        unreadable items, never dropped silently)."""
        m = self.items.manifest
        for st in plan:
            path = self.index.folder / self.index.shards[st.shard].file
            positions = range(self.starts[st.shard] + st.lo, self.starts[st.shard] + st.hi)
            done = 0
            try:
                with open(path, "rb") as fh:
                    for pos in positions:
                        if pos in unread:
                            done += 1
                            yield pos, None
                            continue
                        member = m.audio_path(m.rows[pos])
                        fh.seek(member.offset)
                        data = fh.read(member.size)
                        done += 1
                        yield pos, AudioMember(member.container, member.name, member.offset,
                                               member.size, data)
            except OSError:
                yield from ((pos, None) for pos in positions[done:])  # named when processed

    def __iter__(self) -> Iterator[dict[str, Any] | BadItem]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # the loader asks worker 0 first in every pass; after d batches the uninterrupted
        # pass would ask worker d % K next, so a resumed pass shifts the workers' parts by d
        done = self.skip_batches
        part = (worker + done) % workers
        skip = delivered(done, workers, part)
        return self.stream(self.epoch, part, workers, skip * self.batch_size)

    def stream(self, epoch: int, worker: int, workers: int, skip: int = 0
               ) -> Iterator[dict[str, Any] | BadItem]:
        """The items of part ``worker`` (of ``workers``) in ``epoch``, the first ``skip``
        (already trained on) dropped before they are read: the shuffle's order depends only
        on the number of items, so replaying it on their positions names them."""
        key = [self.seed, epoch, self.world()[1], worker, 1]
        plan = self.plan(epoch, worker, workers)
        unread: frozenset[int] = frozenset()
        if skip:
            order = shuffle_buffer(iter(self.positions(plan)), self.buffer,
                                   np.random.default_rng(key))
            unread = frozenset(pos for _, pos in zip(range(skip), order))
        m = self.items.manifest
        for n, (pos, audio) in enumerate(shuffle_buffer(
                self.records(plan, unread), self.buffer, np.random.default_rng(key))):
            if n < skip:  # one of ``unread``: the same draws give the same order
                continue
            row = m.rows[pos]
            if audio is None:
                source = m.audio_path(row)  # read again: the error names the shard
                try:
                    source.read_bytes()
                except AudioError as exc:
                    yield BadItem(row.id, f"{exc.kind}: {exc}")
                    continue
                audio = source
            yield self.items.make_item(row, audio, epoch, m.key(pos))


class ShardLoader(SpawnableLoader):
    """A DataLoader over a :class:`ShardStream`, resumable mid-epoch like
    :class:`~paravox.data.dataset.ResumableLoader` (the same ``state_dict`` protocol and
    ``batches_done``). Its workers are started per epoch (not persistent), so each gets the
    epoch and the batches to skip; ``set_epoch`` (the engine calls it when an epoch starts)
    selects the next pass."""

    batches_done: int = 0

    def __init__(self, stream: ShardStream, batch_size: int, **kwargs):
        kwargs.pop("persistent_workers", None)
        if kwargs.get("drop_last") is False:
            raise ParavoxError("ShardLoader keeps only full batches (drop_last=True)")
        kwargs["drop_last"] = True
        stream.batch_size = batch_size
        super().__init__(stream, batch_size=batch_size, persistent_workers=False, **kwargs)

    @property
    def epoch(self) -> int:
        """The epoch the next pass streams."""
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        """Stream ``epoch`` next (from its start unless a resume set the batches to skip)."""
        if epoch != self.dataset.epoch:
            self.dataset.epoch, self.dataset.skip_batches = epoch, 0

    def __iter__(self):
        self.dataset.pin_world()
        it = super().__iter__()  # workers now hold the epoch, the skip and the world
        self.dataset.skip_batches = 0  # the next pass starts at its beginning
        return it

    def workers(self) -> int:
        """Loader workers streaming (one when the main process reads)."""
        return max(self.num_workers, 1)

    def state_dict(self) -> dict[str, int]:
        """Where the loader stands, and the split it stood in (processes, workers)."""
        return {"epoch": self.dataset.epoch, "batches_done": self.batches_done,
                "world": self.dataset.world()[0], "workers": self.workers()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state_dict`: the epoch and the batches to skip (a state saved at
        an epoch's end starts the next one)."""
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):
            epoch, done = epoch + 1, 0
        then = (state.get("world"), state.get("workers"))
        now = (self.dataset.world()[0], self.workers())
        if done and then[0] is not None and tuple(then) != now:
            log.warning("resuming epoch %d of the shard stream with %d process(es) x %d "
                        "loader worker(s) instead of %d x %d: the epoch keeps its number of "
                        "steps, but its remaining items follow the new split (some repeat, "
                        "some are left out); resume with the same run.devices x "
                        "run.num_nodes and run.num_workers for an exact resume", epoch,
                        *now, *then)
        self.dataset.epoch, self.dataset.skip_batches = epoch, done
        self.batches_done = done
