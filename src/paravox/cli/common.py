"""Options several commands share, declared once."""

from __future__ import annotations


def add_output_options(s, output: str, device: bool = True, seed: bool = True,
                       quiet_help: str = "no progress bars") -> None:
    """``-o/--output`` (default ``output``), ``--device``, ``--seed`` and ``-q/--quiet``."""
    s.add_argument("-o", "--output", default=output, help="output folder")
    if device:
        s.add_argument("--device", default="cpu")
    if seed:
        s.add_argument("--seed", type=int, default=0)
    s.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
