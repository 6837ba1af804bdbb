"""Losses in float32 under mixed precision.

Under ``torch.autocast`` (``run.precision=bf16-mixed``, the default on bf16 hardware) matrix
products run in bf16, whose 8-bit mantissa resolves a cosine near 1 only to ~0.004. A loss
that divides similarities by a temperature of 0.04-0.1 and takes a softmax (DINO, NT-Xent,
InfoNCE, SupCon) or squares and sums them (Barlow Twins, VICReg) would inherit that error,
so every loss in :mod:`paravox.objectives` runs through :func:`float32_loss`: autocast off,
floating inputs cast to float32. The encoders keep bf16, where the speed is.
"""

from __future__ import annotations

import functools

import torch


def _float(x):
    """At least float32 (float64 stays float64); lists and plain tuples element-wise."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.promote_types(x.dtype, torch.float32)) if x.is_floating_point() else x
    if type(x) in (list, tuple) and any(isinstance(v, torch.Tensor) for v in x):
        return type(x)(_float(v) for v in x)
    return x


def _device_type(values) -> str:
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device.type
        if isinstance(v, (list, tuple)):
            for w in v:
                if isinstance(w, torch.Tensor):
                    return w.device.type
    return "cpu"


def float32_loss(fn):
    """Decorator: run ``fn`` with autocast disabled and its floating tensor arguments (also
    inside lists and tuples) in at least float32, so a loss is computed the same way in a bf16-mixed
    run as in a float32 one; gradients flow back to the bf16 activations through the cast."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = _device_type([*args, *kwargs.values()])
        with torch.autocast(device_type=device, enabled=False):
            return fn(*[_float(a) for a in args], **{k: _float(v) for k, v in kwargs.items()})

    return wrapper
