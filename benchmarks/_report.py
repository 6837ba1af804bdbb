"""Shared helpers of the benchmark scripts: the machine line and writing a result table."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch


def machine_line() -> str:
    return (f"cpu_count={os.cpu_count()}, processor={platform.processor() or platform.machine()}, "
            f"python={platform.python_version()}, torch={torch.__version__}, "
            f"torch_threads={torch.get_num_threads()}")


def emit_table(lines: list[str], out: Path) -> None:
    """Print the Markdown table and save it under benchmarks/results/."""
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
