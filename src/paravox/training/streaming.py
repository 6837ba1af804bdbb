"""Training batches streamed from tar shards instead of read file by file.

A recipe with ``train_shards: SHARDS/index.json`` trains on :func:`shard_loader`'s batches:
the per-item work, the epoch's number of steps and the checkpoint/resume protocol are those of
:func:`~paravox.training.engine.crop_loader`; only the reading differs
(:mod:`paravox.data.shard_stream`).
"""

from __future__ import annotations

import torch

from paravox.data.dataset import collate_crops, ignore_sigint
from paravox.data.manifest import Manifest
from paravox.data.shard_stream import ShardLoader, ShardStream
from paravox.data.shards import ShardIndex
from paravox.training.engine import RunConfig, check_batch_size, crop_dataset
from paravox.training.module import MethodConfig


def shard_loader(index: ShardIndex, cfg: MethodConfig, run: RunConfig,
                 manifest: Manifest | None = None, num_replicas: int | None = None,
                 rank: int | None = None) -> ShardLoader:
    """The batches of :func:`~paravox.training.engine.crop_loader`, streamed from the shards
    of ``index``: the same number per epoch, the same crops per item; ``manifest`` is
    ``index.manifest()`` when the caller has read it already."""
    check_batch_size(cfg, run)
    ds = crop_dataset(manifest if manifest is not None else index.manifest(), cfg, run)
    stream = ShardStream(index, ds, run.seed, run.shuffle_buffer, num_replicas, rank)
    return ShardLoader(stream, batch_size=run.batch_size, num_workers=run.num_workers,
                       collate_fn=collate_crops,
                       worker_init_fn=ignore_sigint if run.num_workers > 0 else None,
                       # as crop_loader: the loader's own generator, not the global one
                       generator=torch.Generator().manual_seed(run.seed))
