"""Which folders are paravox runs, and which of their files paravox wrote.

A run folder is paravox's only when it says so: the first time a run trains in a folder,
paravox writes ``.paravox-run.json`` there (the marker), listing the files and folders it
creates in it (``config.yaml``, ``checkpoints/``, ``logs/``, ...). A folder made before the
marker existed counts as a run when it holds a paravox ``config.yaml`` (a recipe: ``method``,
``out_dir``, ``run``). Any other folder that holds anything is not a run: paravox refuses to
train into it (:func:`check_run_folder`), so it never writes among, nor deletes, a user's files.

``--restart`` (:func:`clear_run`) deletes only what the marker lists (for an older run: the
known run files), and inside those folders only files paravox writes: ``checkpoints/last.ckpt``
and the step checkpoints ``epoch=E-step=S.ckpt``, ``logs/version_K`` and
``tensorboard/version_K`` with their ``metrics.csv`` / ``hparams.yaml`` / event files, the
stages of a multi-stage run (each a run folder itself), and the temporary files of interrupted
writes. Anything else (``logs/notes.txt``, ``checkpoints/other_model.ckpt``, symbolic links)
is kept and named.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import yaml

from paravox import __version__
from paravox.errors import ConfigError
from paravox.utils.atomic_files import temp_target, write_text
from paravox.utils.folder_lock import LOCK_FILE

MARKER = ".paravox-run.json"
MARKER_FORMAT = "paravox-run"
RUN_DONE = "run_done.json"
RUN_STOPPED = "run_stopped.json"  # training stopped on a non-finite loss or on bad data
CONFIG = "config.yaml"
# what a run writes in its folder (and so the most --restart may delete)
RUN_FILES = ("checkpoints", "logs", "tensorboard", "stages", CONFIG, "skipped_items.tsv",
             RUN_DONE, RUN_STOPPED)
SINGLE_RUN_FILES = tuple(n for n in RUN_FILES if n != "stages")
STAGED_RUN_FILES = (CONFIG, "stages", RUN_DONE)


def mark_stopped(folder: str | Path, reason: str, message: str) -> None:
    """Record in ``folder`` that its training stopped before finishing (``reason``: what
    stopped it; ``message``: the line the user saw), so that ``paravox export`` does not make
    a bundle of its last checkpoint as if the run had finished. A run that trains again in
    the folder removes the record first."""
    data = {"reason": reason, "message": message,
            "time": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    write_text(Path(folder) / RUN_STOPPED, json.dumps(data, indent=2) + "\n")


def read_stopped(folder: str | Path) -> dict | None:
    """The record :func:`mark_stopped` left in ``folder`` (None: the run did not stop; an
    unreadable record still counts as a stop, with reason ``unknown``)."""
    path = Path(folder) / RUN_STOPPED
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    return data if isinstance(data, dict) else {"reason": "unknown", "message": ""}
CHECKPOINT_NAME = re.compile(r"^(last|epoch=\d+-step=\d+)\.ckpt$")
LOG_VERSION = re.compile(r"^version_\d+$")
LOG_FILE = re.compile(r"^(metrics\.csv|hparams\.yaml|events\.out\.tfevents\..+)$")


def read_marker(folder: str | Path) -> dict | None:
    """The marker of a run folder, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
        return None
    return data


def is_paravox_config(path: str | Path) -> bool:
    """Whether ``path`` is a ``config.yaml`` paravox wrote (a resolved recipe)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return (isinstance(data, dict) and isinstance(data.get("method"), str)
            and "out_dir" in data and isinstance(data.get("run"), dict))


def folder_kind(folder: str | Path) -> str:
    """``new`` (missing or empty), ``run`` (has the marker), ``legacy`` (a run from before
    the marker: a paravox ``config.yaml``) or ``foreign`` (anything else that holds files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return "new"
    if read_marker(folder) is not None:
        return "run"
    if is_paravox_config(folder / CONFIG):
        return "legacy"
    if all(p.name == LOCK_FILE for p in folder.iterdir()):
        return "new"
    return "foreign"


def check_run_folder(folder: str | Path, what: str = "out_dir") -> str:
    """The :func:`folder_kind` of a folder a run is about to use; a folder that holds files
    but no paravox run fails with one line naming it and what to do. Reads only."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {folder}: is a file, not a folder; give a folder for the run")
    kind = folder_kind(folder)
    if kind == "foreign":
        raise ConfigError(f"{what} {folder}: holds files but no paravox run (no {MARKER} or "
                          f"paravox {CONFIG}); paravox neither trains into nor deletes from a "
                          f"folder it did not make: give a new or empty folder, e.g. "
                          f"{what}={folder}/run")
    return kind


def mark_run_folder(folder: str | Path, files: tuple[str, ...] = SINGLE_RUN_FILES) -> None:
    """Write the marker that makes ``folder`` a paravox run (kept when it is there already:
    its creation time stays), listing the names paravox writes there."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is not None and set(files) <= set(marker.get("files", [])):
        return
    data = {"format": MARKER_FORMAT, "version": 1,
            "created": (marker or {}).get("created", time.strftime("%Y-%m-%d %H:%M:%S %z")),
            "paravox_version": __version__,
            "files": sorted(set(files) | set((marker or {}).get("files", []))),
            "note": "written by paravox: this folder is a paravox run; --restart deletes only "
                    "the files listed here (and within them only files paravox wrote)"}
    write_text(folder / MARKER, json.dumps(data, indent=2) + "\n")


def _owned_names(folder: Path) -> list[str]:
    marker = read_marker(folder)
    listed = marker.get("files", []) if marker is not None else RUN_FILES
    return [n for n in RUN_FILES if n in listed]


def _clear_files(folder: Path, ours, base: Path, kept: list[str]) -> bool:
    """Delete the files of ``folder`` that ``ours(name)`` accepts (and their temporary
    files); the folder too when nothing else is left. True when anything was deleted."""
    removed = False
    for child in sorted(folder.iterdir()):
        target = temp_target(child.name)
        temp_of_ours = target is not None and ours(target)
        if not child.is_symlink() and child.is_file() and (ours(child.name) or temp_of_ours):
            child.unlink()
            removed = True
        else:
            kept.append(str(child.relative_to(base)))
    if not any(folder.iterdir()):
        folder.rmdir()
    return removed


def _clear_logs(folder: Path, base: Path, kept: list[str]) -> bool:
    removed = False
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.is_symlink() and LOG_VERSION.match(child.name):
            removed = _clear_files(child, LOG_FILE.match, base, kept) or removed
        else:
            kept.append(str(child.relative_to(base)))
    if not any(folder.iterdir()):
        folder.rmdir()
    return removed


def _clear_stages(folder: Path, base: Path, kept: list[str]) -> bool:
    removed = False
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.is_symlink() and folder_kind(child) in ("run", "legacy"):
            names, inner = clear_run(child)
            removed = removed or bool(names)
            inner = [str((child / k).relative_to(base)) for k in inner]
            rest = [p for p in child.iterdir() if p.name not in (MARKER, LOCK_FILE)]
            kept += inner + [name for p in rest if (name := str(p.relative_to(base)))
                             not in inner and (p.is_file() or p.is_symlink())]
            if not rest:
                (child / MARKER).unlink(missing_ok=True)
                if not any(child.iterdir()):
                    child.rmdir()
        else:
            kept.append(str(child.relative_to(base)))
    if not any(folder.iterdir()):
        folder.rmdir()
    return removed


def clear_run(folder: str | Path) -> tuple[list[str], list[str]]:
    """Delete what a run wrote in ``folder`` (see the module docstring); returns the names
    of the entries it deleted from and the files it kept (relative to ``folder``): files
    paravox did not write stay where they are. The marker stays: the folder is still a run."""
    folder = Path(folder)
    removed: list[str] = []
    kept: list[str] = []
    if not folder.is_dir():
        return removed, kept
    for name in _owned_names(folder):
        p = folder / name
        if p.is_symlink():  # paravox makes no links: someone else's
            kept.append(name)
            continue
        if not p.exists():
            continue
        if name == "checkpoints" and p.is_dir():
            done = _clear_files(p, CHECKPOINT_NAME.match, folder, kept)
        elif name in ("logs", "tensorboard") and p.is_dir():
            done = _clear_logs(p, folder, kept)
        elif name == "stages" and p.is_dir():
            done = _clear_stages(p, folder, kept)
        elif p.is_file():
            p.unlink()
            done = True
        else:
            kept.append(name)
            done = False
        if done:
            removed.append(name)
    return removed, kept
