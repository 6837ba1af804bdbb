"""The EMA (momentum) teacher shared by DINO-like methods (cf. sslsv's BaseMomentumMethod)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` (same architecture and initial weights)."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher <- momentum * teacher + (1 - momentum) * student`` for every parameter.

    Buffers (batch-norm statistics) are not averaged: the teacher keeps its own, updated by its
    forward passes, as in facebookresearch/dino.
    """
    t_params = list(teacher.parameters())
    s_params = list(student.parameters())
    if len(t_params) != len(s_params):
        raise ValueError("teacher and student differ in their parameters")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, [s.detach() for s in s_params], alpha=1 - momentum)
