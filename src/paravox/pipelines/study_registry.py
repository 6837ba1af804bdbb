"""The study registry: ``paravox study NAME`` and its options come from here, one entry per
study (:class:`StudySpec`), so a new study adds no CLI code.

Built-in studies register at the bottom of their own module; :data:`BUILTIN_STUDIES` names
those modules, imported the first time the registry is read. Code outside paravox calls
:func:`register_study` (docs/adding-a-study.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from paravox.errors import ConfigError
from paravox.utils.named_registry import NamedRegistry

BUILTIN_STUDIES = ("paravox.pipelines.dino_study", "paravox.pipelines.mgf_study",
                   "paravox.pipelines.learn2diss_study")


@dataclass(frozen=True)
class StudyOption:
    """One extra command-line option of a study: ``flag`` (``--variant``), the keyword
    argument of the study's run function it fills (``dest``), and argparse's ``nargs`` /
    ``default`` / ``help``."""

    flag: str
    dest: str
    help: str
    default: object = None
    nargs: str | None = None


@dataclass(frozen=True)
class StudySpec:
    """A study as ``paravox study NAME`` runs it.

    ``run(preset, out_dir, corpus, reuse, progress, **options)`` trains, scores and writes
    ``results.json`` + the report; ``presets``: its preset names (the first is the default);
    ``output``: the default output folder; ``help`` / ``description``: the command's texts.
    """

    name: str
    run: Callable[..., dict]
    help: str
    description: str
    output: str
    presets: tuple[str, ...] = ("demo", "tiny")
    options: tuple[StudyOption, ...] = field(default_factory=tuple)


STUDIES: NamedRegistry[StudySpec] = NamedRegistry("study", BUILTIN_STUDIES)


def register_study(spec: StudySpec, replace: bool = False) -> StudySpec:
    """Add a study; a second, different entry under one name fails unless ``replace``."""
    return STUDIES.register(spec.name, spec, replace)


def unregister_study(name: str) -> None:
    """Remove a study (tests that register a throw-away study clean up with it)."""
    STUDIES.unregister(name)


def studies() -> dict[str, StudySpec]:
    """Every registered study by name, the built-in ones loaded on first use."""
    return STUDIES.entries()


def check_preset(spec_presets, preset: str, what: str) -> None:
    """A preset name a study does not have fails with the choices."""
    if preset not in spec_presets:
        raise ConfigError(f"{what} preset '{preset}' unknown; choose one of "
                          f"{sorted(spec_presets)}")
