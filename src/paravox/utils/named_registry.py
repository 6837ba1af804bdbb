"""A registry of named entries (training methods, studies): what both registries share, so
that each says only what its entries are and where its built-in ones come from."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Generic, TypeVar

from paravox.errors import ConfigError

T = TypeVar("T")


class NamedRegistry(Generic[T]):
    """Entries by name; ``builtin_modules`` are imported the first time the registry is read
    (each registers its own entries), the way a plugin registry loads its plugins, so the
    registry never imports what sits above it. ``kind`` names an entry in messages."""

    def __init__(self, kind: str, builtin_modules: Iterable[str] = ()):
        self.kind, self.builtin_modules = kind, tuple(builtin_modules)
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, replace: bool = False) -> T:
        """Add ``entry``; a second, different entry under one name fails unless
        ``replace``."""
        if name in self._entries and not replace and self._entries[name] != entry:
            raise ConfigError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a throw-away one clean up with it)."""
        self._entries.pop(name, None)

    def entries(self) -> dict[str, T]:
        """Every entry by name, the built-in ones loaded on first use."""
        for module in self.builtin_modules:
            importlib.import_module(module)
        return dict(self._entries)

    def get(self, name: str, where: str = "") -> T:
        """The entry ``name``; an unknown name fails with the choices (and ``where`` it was
        asked for)."""
        entries = self.entries()
        if name not in entries:
            at = f" (in {where})" if where else ""
            raise ConfigError(f"{self.kind} '{name}'{at} is unknown; choose one of "
                              f"{sorted(entries)}")
        return entries[name]
