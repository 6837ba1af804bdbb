"""Helpers for losses whose terms are averaged over a set whose size differs across processes."""

from __future__ import annotations

import torch
import torch.distributed as dist

from paravox.objectives.contrastive import _distributed


def global_mean(local_sum: torch.Tensor, local_count: int) -> torch.Tensor:
    """``local_sum`` scaled so that DDP's average over processes gives the mean over every
    process's terms: ``local_sum * world / global_count``. Without DDP: the local mean.

    Losses with a varying number of terms per process (mined triplets, SupCon anchors with
    positives) need this: averaging per-process means would weight a term from a process with
    few terms more than one from a process with many.
    """
    count = torch.tensor(float(local_count), device=local_sum.device)
    world = 1
    if _distributed():
        dist.all_reduce(count)
        world = dist.get_world_size()
    return local_sum * world / count.clamp(min=1)
