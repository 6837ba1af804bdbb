"""Per-step schedules (learning rate, weight decay, EMA momentum, teacher temperature).

Plain functions of the global step, so a resumed run recomputes them exactly from the step.
"""

from __future__ import annotations

import math


def cosine_schedule(step: int, total_steps: int, base: float, final: float,
                    warmup_steps: int = 0, warmup_start: float = 0.0) -> float:
    """Linear warm-up ``warmup_start -> base`` over ``warmup_steps``, then a half cosine
    ``base -> final`` over the remaining steps (facebookresearch/dino's ``cosine_scheduler``)."""
    if step < warmup_steps:
        return warmup_start + (base - warmup_start) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    t = min(step - warmup_steps, decay_steps)
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * t / decay_steps))


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """``start -> end`` linearly over ``warmup_steps``, then ``end`` (DINO teacher temperature)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps
