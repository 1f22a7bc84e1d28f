"""GPU telemetry for the profiler: NVML, else ``nvidia-smi``, else torch's own memory query.

Containers do not always ship NVML's Python binding; without a fallback, GPU
samples (and the insights built on them) would silently disappear. Each sample
names its source, so the report can say where its GPU figures came from.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

NVML, SMI, TORCH = "nvml", "nvidia-smi", "torch.cuda"


class GpuProbe:
    """Samples GPU ``index``'s utilisation and memory from the best source present.

    Attributes:
        source: ``"nvml"``, ``"nvidia-smi"``, ``"torch.cuda"`` (memory only) or
            ``None`` when there is no GPU to sample.
    """

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self._handle: Any = None
        self.source = self._choose()

    def _choose(self) -> str | None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            return NVML
        except Exception:  # no binding, no driver library, or no GPU
            pass
        if shutil.which("nvidia-smi") and self._smi() is not None:
            return SMI
        try:
            import torch

            return TORCH if torch.cuda.is_available() else None
        except ImportError:
            return None

    def sample(self) -> dict[str, Any]:
        """``gpu_util`` (percent busy, where known), ``gpu_memory`` (percent used), source."""
        found: dict[str, float] | None = None
        if self.source == NVML:
            import pynvml

            use = pynvml.nvmlDeviceGetUtilizationRates(self._handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
            found = {"gpu_util": float(use.gpu), "gpu_memory": 100.0 * memory.used / memory.total}
        elif self.source == SMI:
            found = self._smi()
        elif self.source == TORCH:
            import torch

            free, total = torch.cuda.mem_get_info(self.index)
            found = {"gpu_memory": 100.0 * (total - free) / total}
        return {} if found is None else {**found, "gpu_source": self.source}

    def _smi(self) -> dict[str, float] | None:
        try:
            answer = subprocess.run(
                [
                    "nvidia-smi",
                    f"--id={self.index}",
                    "--query-gpu=utilization.gpu,memory.used,memory.total",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout
            use, used, total = (float(v) for v in answer.strip().splitlines()[0].split(","))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None
        return {"gpu_util": use, "gpu_memory": 100.0 * used / total}
