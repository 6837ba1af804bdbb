"""Where a command may write: never over one of its own inputs, never into a folder that holds
far more than the command's output.

- :func:`check_output_folder`: an output folder (a run's ``out_dir``, ``paravox demo -o``,
  ``study -o``, ``export -o``) may not be the file-system root, the home folder, or the
  current folder or one above it: paravox writes, and on ``--restart`` deletes, files there.
- :func:`check_not_input`: an output file may not be one of the command's inputs (compared
  after resolving ``..`` and symbolic links, and by inode for hard links): ``manifest validate
  m.jsonl --fix m.jsonl`` would replace the manifest it is reading with a subset of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from paravox.errors import ConfigError


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def check_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """``path`` as an output folder, else a one-line :class:`ConfigError` naming ``what``
    (the setting or option: ``out_dir``, ``-o``) and why: the root, the home folder, the
    current folder or a folder above it, or an existing file."""
    p = Path(path).expanduser()
    resolved = _resolved(p)
    reason = None
    if resolved == Path(resolved.anchor):
        reason = "the root of the file system"
    else:
        try:
            home = Path.home().resolve()
        except (RuntimeError, KeyError, OSError):  # no home folder known
            home = None
        cwd = Path.cwd().resolve()
        if home is not None and resolved == home:
            reason = "your home folder"
        elif resolved == cwd:
            reason = "the current folder"
        elif resolved in cwd.parents:
            reason = "a folder above the current folder"
    if reason is None and p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {path}: is a file, not a folder; give a folder for the "
                          f"output")
    if reason is not None:
        raise ConfigError(f"{what} {path}: is {reason}, where paravox would write its files "
                          f"among yours; give a folder of its own, e.g. runs/NAME")
    return p


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once ``..`` and symbolic links
    are resolved, or (both existing) the same inode, as hard links are."""
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(output: str | Path, inputs: Iterable[tuple[str, str | Path | None]],
                    what: str = "output") -> None:
    """Refuse an ``output`` file that is one of the command's ``inputs`` (``(name, path)``
    pairs; a ``None`` path is skipped) with one line naming both and what to do."""
    for name, path in inputs:
        if path is not None and same_file(output, path):
            how = ("" if Path(output).expanduser().absolute() == Path(path).expanduser()
                   .absolute() else f" ({output} and {path} are the same file)")
            raise ConfigError(f"{what} {output}: is the {name} this command reads{how}; "
                              f"writing it would destroy the input: write to another file")


def check_not_inputs(outputs: Iterable[str | Path], inputs: Iterable[tuple[str, str | Path | None]],
                     what: str = "output") -> None:
    """:func:`check_not_input` for each of several output files (the files a command writes
    into its output folder)."""
    inputs = list(inputs)
    for out in outputs:
        check_not_input(out, inputs, what)


def check_not_among(output: str | Path, paths: Iterable[str | Path], name: str,
                    what: str = "output") -> None:
    """Refuse an ``output`` that is one of many input files (e.g. the audio files a manifest
    lists); only paths with the output's file name are resolved, so a long list is cheap."""
    target = Path(output).name
    for path in paths:
        if Path(path).name == target and same_file(output, path):
            raise ConfigError(f"{what} {output}: is one of the {name} this command reads "
                              f"({path}); writing it would destroy the input: write to another "
                              f"file")
