"""Options several commands share, declared once, and the checks of their values.

A command calls :func:`check_args` first: every numeric option it has (by its ``dest``, from
:data:`NUMERIC_OPTIONS`) and ``--device`` are checked before any file is read, so a bad value
fails with one line naming the option (``--top-k -1: must be >= 1 (...)``), not a traceback
after minutes of embedding. :func:`require_file` and :func:`require_bundle` check the files a
command will read, also before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from paravox.errors import ConfigError
from paravox.inference.bundle import check_bundle
from paravox.utils.checks import above, at_least, between, finite, torch_device
from paravox.utils.wording import plural

__all__ = ["NUMERIC_OPTIONS", "add_output_options", "check_args", "flag", "plural",
           "require_bundle", "require_file"]

SEED_MAX = 2**32 - 1  # numpy, torch and Lightning all take seeds in [0, 2**32 - 1]

# every numeric option of every command, by dest: its check (flag, value) -> None or raise
NUMERIC_OPTIONS: dict[str, Callable[[str, object], None]] = {
    "chunk_seconds": lambda f, v: above(f, v, 0, "seconds per chunk; leave it out to embed "
                                        "whole utterances"),
    "max_bad_fraction": lambda f, v: between(f, v, 0, 1, "the fraction of rows that may "
                                             "fail; 0 = none"),
    "top_k": lambda f, v: at_least(f, v, 1, "AS-Norm cohort size per side"),
    "lda_dim": lambda f, v: at_least(f, v, 1, "dimensions kept before PLDA; leave it out "
                                     "for no LDA"),
    "seed": lambda f, v: between(f, v, 0, SEED_MAX, "a non-negative integer"),
    "epochs": lambda f, v: at_least(f, v, 1, "probe training epochs"),
    "max_utterances": lambda f, v: at_least(f, v, 1, "leave it out to use every utterance"),
    "max_train_frames": lambda f, v: at_least(f, v, 1, "training frames kept"),
    "per_smoothing": lambda f, v: at_least(f, v, 1, "frames in the majority filter; "
                                           "1 = none"),
    "max_listed": lambda f, v: at_least(f, v, 0, "examples listed per kind; 0 = none"),
    "min_seconds": lambda f, v: at_least(f, v, 0, "rows shorter than this are warned "
                                         "about; 0 = never"),
    "workers": lambda f, v: at_least(f, v, 1, "threads reading audio headers"),
    "shard_mb": lambda f, v: above(f, v, 0, "megabytes per shard"),
    "shard_items": lambda f, v: at_least(f, v, 1, "utterances per shard; leave it out for "
                                         "no limit"),
}


def flag(dest: str) -> str:
    """The option a ``dest`` comes from: ``chunk_seconds`` -> ``--chunk-seconds``."""
    return "--" + dest.replace("_", "-")


def check_args(args) -> None:
    """Check the shared options a parsed command has: each numeric option in
    :data:`NUMERIC_OPTIONS` that was given (finite and in range) and ``--device`` (a device
    this machine has); the first bad one raises a one-line ConfigError naming it."""
    for dest, check in NUMERIC_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        finite(flag(dest), value)
        check(flag(dest), value)
    device = getattr(args, "device", None)
    if device is not None:
        torch_device("--device", device)


def require_file(name: str, path: str | Path | None, what: str = "") -> Path | None:
    """``path`` as an existing file (``None`` passes: an option left out), else a ConfigError
    naming the argument ``name`` (``--trials``, ``manifest``) and the path; ``what`` says
    what the file should be."""
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        return p
    problem = "is a folder, not a file" if p.is_dir() else "no such file"
    raise ConfigError(f"{name} {path}: {problem}" + (f"; give {what}" if what else ""))


def require_bundle(path: str | Path, name: str = "bundle") -> Path:
    """``path`` as a bundle folder (config.json + model.safetensors), else a ConfigError
    naming the argument and saying what is missing."""
    return check_bundle(path, what=name)


def add_output_options(s, output: str, device: bool = True, seed: bool = True,
                       quiet_help: str = "no progress bars") -> None:
    """``-o/--output`` (default ``output``), ``--device``, ``--seed`` and ``-q/--quiet``."""
    s.add_argument("-o", "--output", default=output, help="output folder")
    if device:
        s.add_argument("--device", default="cpu",
                       help="cpu, cuda, cuda:N or mps (default cpu)")
    if seed:
        s.add_argument("--seed", type=int, default=0)
    s.add_argument("-q", "--quiet", action="store_true", help=quiet_help)

