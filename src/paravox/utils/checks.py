"""Range checks for config values: one line naming the key, the value and what is allowed.

Config dataclasses call these from ``__post_init__``, so a bad value in a recipe or on the
command line fails when the config is built - before any data is read or any model trained -
with the key named, instead of a traceback deep inside training.
"""

from __future__ import annotations

from paravox.errors import ConfigError


def at_least(key: str, value, minimum, hint: str = "") -> None:
    """``value >= minimum``, else a ConfigError naming ``key``."""
    if value < minimum:
        raise ConfigError(f"{key}={value}: must be >= {minimum}" + (f" ({hint})" if hint else ""))


def above(key: str, value, minimum, hint: str = "") -> None:
    """``value > minimum``, else a ConfigError naming ``key``."""
    if not value > minimum:
        raise ConfigError(f"{key}={value}: must be > {minimum}" + (f" ({hint})" if hint else ""))


def one_of(key: str, value, allowed) -> None:
    """``value in allowed``, else a ConfigError naming ``key`` and the choices."""
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: choose one of {', '.join(map(str, allowed))}")
