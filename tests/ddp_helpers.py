"""Helpers shared by the multi-process (gloo DDP) tests."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A free TCP port on the loopback interface for a test's process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
