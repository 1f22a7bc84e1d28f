"""Small helpers for the processes local jobs and endpoints run in."""

from __future__ import annotations

import os
import socket


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a finished child of ours is reaped, not counted)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
