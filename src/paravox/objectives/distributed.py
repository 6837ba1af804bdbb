"""Helpers for losses computed over the global batch of a DDP run.

Under DDP every process holds a shard of the batch. Two things keep a loss's DDP-averaged
gradient equal to the single-process gradient on the global batch:

* :func:`gather_with_grad` all-gathers a tensor *with* gradients (the backward pass sums the
  gradients each process computed for every slice and returns this process's slice), for
  losses that need every process's rows: negatives from other processes (NT-Xent, SupCon,
  mined triplets, span InfoNCE) or batch statistics (Barlow Twins, VICReg);
* :func:`global_mean` divides a local sum by the number of terms of *every* process, for
  losses whose number of terms differs between processes (mined triplets, SupCon anchors
  with positives, masked frames, spans).

Without an initialised process group (or with one process) both are the plain local values.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised (a DDP run)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        largest = max(sizes)
        padded = x.new_zeros((largest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every process's loss depends on every slice
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``x`` from every process, concatenated in rank order, and this process's offset.

    Losses that need the global batch (negatives from other processes, batch statistics) call
    it so that gradients still flow back to every process's own rows; without DDP it returns
    ``(x, 0)`` unchanged.
    """
    if not is_distributed():
        return x, 0
    counts = torch.zeros(dist.get_world_size(), dtype=torch.long, device=x.device)
    counts[dist.get_rank()] = x.shape[0]
    dist.all_reduce(counts)  # batch sizes may differ (skipped items)
    sizes = counts.tolist()
    return _GatherWithGrad.apply(x, sizes), sum(sizes[: dist.get_rank()])


def global_mean(local_sum: torch.Tensor, local_count: int) -> torch.Tensor:
    """``local_sum`` scaled so that DDP's average over processes gives the mean over every
    process's terms: ``local_sum * world / global_count``. Without DDP: the local mean.

    Losses with a varying number of terms per process (mined triplets, SupCon anchors with
    positives) need this: averaging per-process means would weight a term from a process with
    few terms more than one from a process with many.
    """
    count = torch.tensor(float(local_count), device=local_sum.device)
    world = 1
    if is_distributed():
        dist.all_reduce(count)
        world = dist.get_world_size()
    return local_sum * world / count.clamp(min=1)
