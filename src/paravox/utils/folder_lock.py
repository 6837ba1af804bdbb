"""One paravox process per output folder.

Two runs writing one run folder (or one study folder, or one bundle) would interleave their
checkpoints, logs and results, and both would report success. :func:`hold_folder` takes an
exclusive lock on ``<folder>/.paravox-lock`` for as long as the block runs (``fcntl.flock``:
the kernel drops it when the process ends, however it ends); the file says who holds it
(pid, host, start time), so a second process fails at once with one line naming the holder.
A lock file left by a process that died holds no lock and is simply taken over.

The lock file is removed when the block ends (while still locked, and a process that locked
a file that was meanwhile removed tries again, so two processes never both hold the folder),
and a folder that the lock created and that stayed empty is removed too. Within one process
the lock is re-entrant. Under DDP only rank 0 takes it: the other ranks belong to rank 0's run.
On platforms without ``fcntl`` (Windows) folders are not locked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paravox.errors import ConfigError

try:  # optional: POSIX only; without it folders are not locked (see the module docstring)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".paravox-lock"
_HELD: dict[str, list] = {}  # resolved folder -> [fd, depth]
_GUARD = threading.Lock()


class FolderBusyError(ConfigError):
    """Another paravox process holds the folder (the message names it: pid, host, start)."""


def _rank_nonzero() -> bool:
    """A DDP process other than the first (its folder is rank 0's, which holds the lock)."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value) != 0
    return False


def lock_holder(folder: str | Path) -> dict:
    """What the lock file of ``folder`` says about its holder (``pid``, ``host``,
    ``started``, ``command``); empty when there is none or it cannot be read."""
    try:
        data = json.loads((Path(folder) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _busy(folder: Path, what: str) -> FolderBusyError:
    h = lock_holder(folder)
    who = (f"process {h.get('pid', '?')} on {h.get('host', '?')}, started "
           f"{h.get('started', '?')}" if h else "a process that is starting")
    return FolderBusyError(f"{what} {folder} is in use by another paravox run ({who}): wait "
                           f"for it to finish or stop it, or give another {what}")


def _acquire(folder: Path, what: str) -> int:
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, what) from None
        try:  # the file may have been removed by a holder that just finished: lock the new one
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": " ".join(sys.argv)[:300]}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(info) + "\n").encode())
    return fd


@contextmanager
def hold_folder(folder: str | Path, what: str = "folder") -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for this process while the block runs; another
    process holding it raises :class:`FolderBusyError` (``what`` names the folder's role in
    the message: ``out_dir``, ``output folder``, ``bundle folder``)."""
    folder = Path(folder)
    if fcntl is None or _rank_nonzero():
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    key = str(folder.resolve())
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
    if held is not None:  # re-entrant within this process
        try:
            yield folder
        finally:
            with _GUARD:
                held[1] -= 1
        return
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _acquire(folder, what)
    except OSError as exc:
        _remove_if_empty(folder, created)
        raise ConfigError(f"{what} {folder}: cannot be created or locked ({exc.strerror or exc});"
                          f" give a folder you can write to") from None
    except BaseException:
        _remove_if_empty(folder, created)
        raise
    with _GUARD:
        _HELD[key] = [fd, 1]
    try:
        yield folder
    finally:
        with _GUARD:
            _HELD.pop(key, None)
        try:
            (folder / LOCK_FILE).unlink(missing_ok=True)  # still locked: nobody else has it
        except OSError:
            pass
        os.close(fd)
        _remove_if_empty(folder, created)


def _remove_if_empty(folder: Path, created: bool) -> None:
    """A folder the lock created and nothing else used is not left behind."""
    if created:
        try:
            folder.rmdir()
        except OSError:
            pass
