"""Range checks for config values: one line naming the key, the value and what is allowed.

Config dataclasses call these from ``__post_init__``, so a bad value in a recipe or on the
command line fails when the config is built - before any data is read or any model trained -
with the key named, instead of a traceback deep inside training. The command line uses them
too, with the option as the key (``--top-k``): a key that starts with ``-`` is written
``--top-k -1`` instead of ``key=-1``.
"""

from __future__ import annotations

import math

import torch

from paravox.errors import ConfigError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def _named(key: str, value) -> str:
    """``key=value`` for a config key, ``--flag value`` for a command-line option."""
    return f"{key} {value}" if key.startswith("-") else f"{key}={value}"


def _hint(hint: str) -> str:
    return f" ({hint})" if hint else ""


def at_least(key: str, value, minimum, hint: str = "") -> None:
    """``value >= minimum``, else a ConfigError naming ``key`` (NaN fails too)."""
    if not value >= minimum:
        raise ConfigError(f"{_named(key, value)}: must be >= {minimum}{_hint(hint)}")


def above(key: str, value, minimum, hint: str = "") -> None:
    """``value > minimum``, else a ConfigError naming ``key``."""
    if not value > minimum:
        raise ConfigError(f"{_named(key, value)}: must be > {minimum}{_hint(hint)}")


def between(key: str, value, low, high, hint: str = "") -> None:
    """``low <= value <= high``, else a ConfigError naming ``key`` and the range."""
    if not low <= value <= high:
        raise ConfigError(f"{_named(key, value)}: must be in [{low}, {high}]{_hint(hint)}")


def finite(key: str, value, hint: str = "") -> None:
    """A finite number (not NaN or +-Inf), else a ConfigError naming ``key``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{_named(key, value)}: must be a finite number{_hint(hint)}")


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
