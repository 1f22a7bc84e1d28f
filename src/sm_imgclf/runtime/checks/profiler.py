"""The profiler inside the job: system metrics, step time split, a torch.profiler window."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from sm_imgclf.runtime.checks.gpu import GpuProbe
from sm_imgclf.runtime.checks.records import OPERATORS, STEPS, SYSTEM

WINDOW_START, WINDOW_STEPS = 3, 3  # torch.profiler watches steps 3 to 5 of the job
WINDOW_SEARCH = 100  # steps after WINDOW_START where a window free of recording may start
TOP_OPERATORS = 15


def window_start(recorded: Callable[[int], bool] | None) -> int:
    """The first step from ``WINDOW_START`` on that starts ``WINDOW_STEPS`` unrecorded ones.

    The recorder's work on a recorded step would fill the operator table with
    its own reductions. Where every few steps are recorded, no such window
    exists and the first one is taken, recording and all.
    """
    for start in range(WINDOW_START, WINDOW_START + WINDOW_SEARCH):
        if recorded is None or not any(map(recorded, range(start, start + WINDOW_STEPS))):
            return start
    return WINDOW_START


class SystemSampler:
    """Samples CPU, memory, disk, network and GPU every ``interval`` seconds.

    The GPU comes from NVML, else ``nvidia-smi``, else torch (memory only); see
    :class:`~sm_imgclf.runtime.checks.gpu.GpuProbe`.

    Args:
        folder: The ``debug`` folder.
        interval: Seconds between samples.
    """

    def __init__(self, folder: Path, interval: float) -> None:
        self.interval = interval
        self._out: TextIO = (folder / SYSTEM).open("a")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sm-imgclf-system", daemon=True)
        self._gpu = GpuProbe()

    def start(self) -> None:
        """Start sampling in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and close the file."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._out.close()

    def _run(self) -> None:
        import psutil

        process = psutil.Process()
        psutil.cpu_percent()
        started, base = time.time(), _io_counters()
        while not self._stop.wait(self.interval):
            now = _io_counters()  # since the job started, not since boot
            row: dict[str, Any] = {
                "t": round(time.time() - started, 2),
                "cpu": psutil.cpu_percent(),
                "memory": psutil.virtual_memory().percent,
                "rss_mb": process.memory_info().rss / 2**20,
                **{k: (now[k] - base[k]) / 2**20 for k in now},
            }
            row.update(self._gpu.sample())
            self._out.write(json.dumps(row) + "\n")
            self._out.flush()


def _io_counters() -> dict[str, float]:
    import psutil

    disk, net = psutil.disk_io_counters(), psutil.net_io_counters()
    return {
        "read_mb": float(disk.read_bytes) if disk else 0.0,
        "write_mb": float(disk.write_bytes) if disk else 0.0,
        "sent_mb": float(net.bytes_sent),
        "recv_mb": float(net.bytes_recv),
    }


class StepProfiler:
    """Times every step and splits recorded ones into data, forward, backward, optimizer.

    Args:
        folder: The ``debug`` folder.
        device: The training device (GPU work is synchronised on recorded steps only).
        recorded: Which steps the recorder records; the operator window avoids them.
    """

    def __init__(
        self, folder: Path, device: Any, recorded: Callable[[int], bool] | None = None
    ) -> None:
        self.folder, self.device = folder, device
        self._out: TextIO = (folder / STEPS).open("a")
        self._durations: list[float] = []
        self._window: Any = None
        self._first = window_start(recorded)

    def sync(self) -> None:
        """Wait for queued GPU work, so the next timestamp is true."""
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def step(
        self, step: int, marks: list[float], split: bool, own: list[float] | None = None
    ) -> None:
        """Record one step's timestamps (start, data ready, forward, backward, optimizer).

        ``own`` holds the recorder's seconds inside each phase; they are left out
        of the phases and the step's duration and written apart as ``recorder``.
        """
        own = own or [0.0] * 4
        self._durations.append(marks[-1] - marks[0] - sum(own))
        if split:
            names = ("data", "forward", "backward", "optimizer")
            row: dict[str, Any] = {"type": "split", "step": step}
            for name, a, b, mine in zip(names, marks[:-1], marks[1:], own, strict=True):
                row[name] = round(max(b - a - mine, 0.0), 6)
            row["recorder"] = round(sum(own), 6)
            self._out.write(json.dumps(row) + "\n")
        self._operators(step)

    def epoch(self, epoch: int) -> None:
        """Write the epoch's step durations."""
        row = {
            "type": "durations",
            "epoch": epoch,
            "seconds": [round(d, 5) for d in self._durations],
        }
        self._out.write(json.dumps(row) + "\n")
        self._out.flush()
        self._durations = []

    def _operators(self, step: int) -> None:
        if step == self._first - 1 and not (self.folder / OPERATORS).exists():
            from torch.profiler import ProfilerActivity, profile

            kinds = [ProfilerActivity.CPU] + (
                [ProfilerActivity.CUDA] if self.device.type == "cuda" else []
            )
            self._window = profile(activities=kinds)
            self._window.__enter__()
        elif self._window is not None and step == self._first + WINDOW_STEPS - 1:
            self._window.__exit__(None, None, None)
            (self.folder / OPERATORS).write_text(json.dumps(top_operators(self._window)))
            self._window = None

    def close(self) -> None:
        """Close the file (ending an open profiler window)."""
        if self._window is not None:
            self._window.__exit__(None, None, None)
        self._out.close()


def top_operators(window: Any) -> list[dict[str, Any]]:
    """The operators that took the most time in the window, per call and in all."""
    rows = []
    for event in window.key_averages():
        device = getattr(event, "self_device_time_total", 0.0) or 0.0
        rows.append(
            {
                "name": event.key,
                "calls": int(event.count),
                "self_cpu_ms": event.self_cpu_time_total / 1000,
                "cpu_ms": event.cpu_time_total / 1000,
                "self_gpu_ms": device / 1000,
            }
        )
    rows.sort(key=lambda r: r["self_cpu_ms"] + r["self_gpu_ms"], reverse=True)
    return rows[:TOP_OPERATORS]
