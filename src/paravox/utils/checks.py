"""Range checks for config values: one line naming the key, the value and what is allowed.

Config dataclasses call these from ``__post_init__``, so a bad value in a recipe or on the
command line fails when the config is built - before any data is read or any model trained -
with the key named, instead of a traceback deep inside training. The command line uses them
too, with the option as the key (``--top-k``): a key that starts with ``-`` is written
``--top-k -1`` instead of ``key=-1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral, Real

import torch

from paravox.errors import ConfigError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def _named(key: str, value) -> str:
    """``key=value`` for a config key, ``--flag value`` for a command-line option."""
    return f"{key} {value}" if key.startswith("-") else f"{key}={value}"


def _hint(hint: str) -> str:
    return f" ({hint})" if hint else ""


def number(key: str, value, hint: str = "") -> None:
    """A real number (int or float, not a bool or a string), else a ConfigError naming
    ``key``: values read from JSON or YAML files arrive with whatever type the file gave."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{_named(key, repr(value))}: must be a number{_hint(hint)}")


def integer(key: str, value, hint: str = "") -> None:
    """An integer (not a bool, a float or a string), else a ConfigError naming ``key``: sizes
    and counts read from JSON files are not typed by a dataclass."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{_named(key, repr(value))}: must be an integer{_hint(hint)}")


def at_least(key: str, value, minimum, hint: str = "") -> None:
    """``value >= minimum``, else a ConfigError naming ``key`` (NaN fails too)."""
    number(key, value, hint)
    if not value >= minimum:
        raise ConfigError(f"{_named(key, value)}: must be >= {minimum}{_hint(hint)}")


def above(key: str, value, minimum, hint: str = "") -> None:
    """``value > minimum``, else a ConfigError naming ``key`` (NaN fails too)."""
    number(key, value, hint)
    if not value > minimum:
        raise ConfigError(f"{_named(key, value)}: must be > {minimum}{_hint(hint)}")


def between(key: str, value, low, high, hint: str = "") -> None:
    """``low <= value <= high``, else a ConfigError naming ``key`` and the range (NaN fails
    too)."""
    number(key, value, hint)
    if not low <= value <= high:
        raise ConfigError(f"{_named(key, value)}: must be in [{low}, {high}]{_hint(hint)}")


def finite(key: str, value, hint: str = "") -> None:
    """A finite number (not NaN or +-Inf), else a ConfigError naming ``key``."""
    if isinstance(value, Real) and not isinstance(value, bool) and not math.isfinite(value):
        raise ConfigError(f"{_named(key, value)}: must be a finite number{_hint(hint)}")


def positive_finite(key: str, value, maximum=None, hint: str = "") -> None:
    """A finite number ``> 0`` (and ``<= maximum`` when given), else a ConfigError naming
    ``key``: temperatures, scales, learning rates, where 0, a negative value, NaN or Inf
    would train a model to non-finite weights without any other error."""
    number(key, value, hint)
    finite(key, value, hint)
    above(key, value, 0, hint)
    if maximum is not None and value > maximum:
        raise ConfigError(f"{_named(key, value)}: must be <= {maximum}{_hint(hint)}")


def one_of(key: str, value, allowed) -> None:
    """``value in allowed``, else a ConfigError naming ``key`` and the choices."""
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: choose one of {', '.join(map(str, allowed))}")


def torch_device(key: str, value: str) -> None:
    """``value`` names a torch device this machine has: ``cpu``, ``cuda`` / ``cuda:N`` (N a
    visible GPU) or ``mps``; else a ConfigError naming ``key`` and what to use instead."""
    use_cpu = f"use {key} cpu" if key.startswith("-") else f"use {key}=cpu"
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise ConfigError(f"{_named(key, value)}: not a device; choose cpu, cuda, cuda:N "
                          f"(a GPU index) or mps")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{_named(key, value)}: no CUDA GPU is visible on this "
                              f"machine; {use_cpu}")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"{_named(key, value)}: this machine has {count} visible CUDA "
                              f"GPU(s), cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{_named(key, value)}: no Apple GPU (MPS) is available on this "
                          f"machine; {use_cpu}")


def nonfinite_tensor(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The first floating-point tensor of ``tensors`` holding NaN or +-Inf, described as
    ``"'name' (3 of 1024 values are NaN/Inf)"``; None when every one is finite. Checkpoints
    and bundles are checked with it, so a diverged model is never saved or loaded silently."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                return f"'{name}' ({bad} of {t.numel()} values are NaN/Inf)"
    return None
