"""Files written whole or not at all.

Every file paravox writes (checkpoints, bundles, manifests, embeddings, configs, reports,
``results.json``) goes through this module: the content is written to a temporary file in the
same folder (a hidden ``.<name>.<pid>.<random>.tmp``), flushed to disk (``fsync``) and only then
renamed onto its name (``os.replace``, atomic on POSIX file systems). A failure half-way (a
full disk, a quota, a crash, a killed process) therefore leaves the previous file as it was
and no partial file under the real name; the temporary file is removed on an error (a
SIGKILL can leave one behind: it is hidden, named after its target and ends in ``.tmp``,
:func:`is_temp_name`).

An ``OSError`` while writing becomes :class:`WriteError`, one line naming the file and saying
that its previous version is intact; it is still an ``OSError`` for callers that catch those.
"""

from __future__ import annotations

import errno
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from paravox.errors import ParavoxError

TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.\d+\.[0-9a-f]{8}\.tmp$")


class WriteError(ParavoxError, OSError):
    """A file could not be written (disk full, no permission, ...): its previous version, if
    any, is intact and no partial file was left under its name."""


def is_temp_name(name: str, target: str | None = None) -> bool:
    """Whether ``name`` is a temporary file this module makes (of ``target``, when given)."""
    match = TEMP_NAME.match(name)
    return bool(match) and (target is None or match.group("target") == target)


def temp_target(name: str) -> str | None:
    """The file a temporary file of this module was to become (None: not one of them)."""
    match = TEMP_NAME.match(name)
    return match.group("target") if match else None


def temp_beside(path: str | Path) -> Path:
    """A new, empty file beside ``path`` to write and then rename onto it. Created like
    ``open(..., 'x')``, so it gets the usual permissions (``0666`` less the umask), not
    ``mkstemp``'s ``0600``."""
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            open(tmp, "xb").close()
            return tmp
        except FileExistsError:
            continue


def fsync_path(path: str | Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries, ``directory=True``) to disk. A folder that cannot
    be opened for syncing (some file systems, other platforms) is left to the OS."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def describe_write_error(path: str | Path, exc: OSError, existed: bool) -> str:
    """The one line a failed write becomes: the file, why, and that nothing was lost."""
    why = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space and run the command again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make its folder writable or write somewhere else, and run the command again"
    else:
        fix = "fix the cause and run the command again"
    kept = "its previous version is intact" if existed else "no partial file was left"
    return f"could not write {path} ({why}): {kept}; {fix}"


def make_folder(path: str | Path, what: str = "output folder") -> Path:
    """``mkdir -p path``; a folder that cannot be made (a read-only parent, a file in the
    way, no permission) is one line naming it (:class:`WriteError`) rather than a
    traceback. Returns ``path``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise WriteError(f"{what} {path}: cannot be created ({why}); give a folder you can "
                         f"write to") from exc
    return path


def check_writable(path: str | Path, what: str = "output folder") -> Path:
    """Check, before a command spends minutes computing what it will write into folder
    ``path``, that a file can be created there: in ``path`` or, when it does not exist yet,
    in its nearest existing parent (where it would be made). A hidden temporary file is made
    and removed at once; nothing else is written and no folder is made. A read-only folder
    (or file system, or one not the user's) is one line naming it (:class:`WriteError`)."""
    path = Path(path)
    base = path
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise WriteError(f"{what} {path}: {base} is a file, not a folder; give a folder")
    try:
        temp_beside(base / ".paravox-write-check").unlink()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        where = "" if base == path else f"its parent {base} "
        raise WriteError(f"{what} {path}: {where}cannot be written to ({why}); make it "
                         f"writable or give a folder you can write to") from exc
    return path


@contextmanager
def atomic_path(path: str | Path, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for any writer (``torch.save``, ``savefig``,
    safetensors); once the block ends without error it is synced and renamed onto ``path``.
    On an error the temporary file is removed and ``path`` keeps its previous content; an
    ``OSError`` is raised as :class:`WriteError`. ``sync=False`` skips the two ``fsync``
    calls (half the cost of writing a small file): the rename is still atomic, but after a
    power loss the file may be empty, so use it only for bulk copies whose content is
    checked again on the next run (``prepare --to-wav``)."""
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(path)
    except OSError as exc:
        raise WriteError(describe_write_error(path, exc, existed)) from exc
    try:
        yield tmp
        if sync:
            fsync_path(tmp)
        os.replace(tmp, path)
        if sync:
            fsync_path(path.parent, directory=True)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(describe_write_error(path, exc, existed)) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` for writing (``w``/``wb`` and keyword arguments as ``open``
    takes them) through :func:`atomic_path`: ``path`` appears only once the block ends."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes whole files: mode '{mode}' is not a 'w' mode")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` whole or not at all; returns ``path``."""
    with atomic_open(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all; returns ``path``."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)
