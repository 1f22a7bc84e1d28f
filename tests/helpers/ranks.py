"""Two processes on this machine, joined in one gloo group by the target they run."""

from __future__ import annotations

import multiprocessing
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HANG = 600  # seconds: only a process left waiting in a collective takes this long


def run_two(target: Callable[..., None], folder: Path, *args: Any) -> list[dict[str, Any]]:
    """Run ``target(rank, port, *args)`` as ranks 0 and 1; return what each saved.

    Each rank saves its results to ``folder / f"rank-{rank}.pt"``.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    ranks = [context.Process(target=target, args=(r, port, *args)) for r in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=HANG)
    hung = [process.pid for process in ranks if process.is_alive()]
    for process in ranks:
        process.kill()
    assert not hung, "a process was left waiting for the other"
    assert [p.exitcode for p in ranks] == [0, 0]
    return [torch.load(folder / f"rank-{r}.pt", weights_only=True) for r in range(2)]
