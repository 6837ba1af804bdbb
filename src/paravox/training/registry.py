"""The method registry: one entry per training method, the only place a method is announced.

An entry (:class:`MethodSpec`) says what the rest of paravox needs to know about a method: its
config dataclass (the recipe key of the same name; it also declares the encoders the method
exports, :meth:`~paravox.training.module.MethodConfig.exports`), its LightningModule, and which
command runs it. Recipes, ``paravox pretrain`` / ``train-supervised`` and ``paravox export``
read the registry; nothing else names a method.

The built-in methods live one layer up, in :mod:`paravox.methods`, whose ``__init__`` registers
each with one :func:`register` call; the registry imports that package by name the first time
a method is looked up (:class:`~paravox.utils.named_registry.NamedRegistry`), so this layer
never imports the methods themselves. Code outside paravox calls :func:`register` with its own
entry - see docs/adding-a-method.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from paravox.errors import ConfigError
from paravox.training.module import MethodConfig, TrainingModule
from paravox.utils.named_registry import NamedRegistry

COMMANDS = ("pretrain", "train-supervised")
BUILTIN_PACKAGE = "paravox.methods"  # registers the built-in methods when imported


@dataclass(frozen=True)
class MethodSpec:
    """What paravox needs to know about a training method (see the module docstring).

    ``command``: which CLI command runs it; ``train_manifest``: the default training split of
    its recipes (the supervised method trains on the labelled ``train`` split).
    """

    name: str
    config: type[MethodConfig]
    module: type[TrainingModule]
    command: str = "pretrain"
    train_manifest: str = "data/demo/pretrain.jsonl"

    def __post_init__(self):
        if self.command not in COMMANDS:
            raise ConfigError(f"method '{self.name}': command '{self.command}' is not one of "
                              f"{COMMANDS}")


METHODS: NamedRegistry[MethodSpec] = NamedRegistry("method", [BUILTIN_PACKAGE])


def register(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add a method; a second, different entry under one name fails unless ``replace``."""
    return METHODS.register(spec.name, spec, replace)


def unregister(name: str) -> None:
    """Remove a method (tests that register a throw-away method clean up with it)."""
    METHODS.unregister(name)


def method_names() -> list[str]:
    """Every registered method's name, sorted."""
    return sorted(METHODS.entries())


def get_method(name: str, where: str = "recipe") -> MethodSpec:
    """The entry of ``name``; an unknown name fails with the choices."""
    return METHODS.get(name, where)


def methods_for(command: str) -> list[str]:
    """The methods a CLI command runs."""
    return sorted(n for n, s in METHODS.entries().items() if s.command == command)
