"""``paravox <command>``: the command-line entry point.

Each command group lives in its own module (data, training, evaluation, experiments); each
command parses its arguments, calls one library function and prints what it did.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings

from paravox import __version__
from paravox.cli import (
    data_commands,
    eval_commands,
    experiment_commands,
    shard_commands,
    train_commands,
)
from paravox.errors import ParavoxError


def cmd_version(args) -> int:
    """``paravox version``."""
    print(f"paravox {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every command group's subcommands)."""
    p = argparse.ArgumentParser(prog="paravox", description=(
        "Self-supervised utterance-level speech representations and their transfer."))
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)
    s = sub.add_parser("version", help="print the paravox version")
    s.set_defaults(func=cmd_version)
    for group in (data_commands, shard_commands, train_commands, eval_commands,
                  experiment_commands):
        group.add_parsers(sub)
    return p


def one_line_warnings() -> None:
    """Show paravox's own warnings as one line, ``paravox: warning: <message>``, instead of
    Python's file:line header and source line (which name paravox's code, not the user's
    setting the message names); other packages' warnings keep Python's format. Installed
    once per process."""
    shown = warnings.showwarning
    if getattr(shown, "paravox_one_line", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if f"{os.sep}paravox{os.sep}" in str(filename):
            print(f"paravox: warning: {message}", file=file or sys.stderr, flush=True)
        else:
            shown(message, category, filename, lineno, file, line)

    show.paravox_one_line = True
    warnings.showwarning = show


DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)  # errors of the machine, not of paravox


def main(argv: list[str] | None = None) -> int:
    """Run one command; a :class:`~paravox.errors.ParavoxError` becomes one line on stderr
    and exit status 2, and so does a permission error (a read-only output folder, a read-only
    file system) that no check of paravox's named first: it is the machine's, not a bug."""
    one_line_warnings()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow an option (`pretrain dino_demo -q run.epochs=2`)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except ParavoxError as exc:  # what paravox knows and can name; anything else is a bug
        print(f"paravox: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:  # no permission / a read-only file system, where no check names it
        if exc.errno not in DENIED:
            raise
        where = exc.filename or "a file or folder"
        print(f"paravox: error: {where}: {exc.strerror or exc}: paravox must read its inputs and "
              f"write its outputs; give an output folder you can write to (and inputs you can "
              f"read)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
