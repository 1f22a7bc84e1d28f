"""One decode per host: the training processes of a host fill one shared image tensor.

torchrun starts one process per GPU. Each decoding the whole dataset into its
own tensor would hold ``GPUs x`` the decoded images in host memory (eight
copies on an 8-GPU host) and spend ``GPUs x`` the CPU time. Instead the first
process of a host creates a file-backed tensor, every process of the host
decodes its share of the images into it, and all of them read the one copy.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MEMORY_FOLDER = Path("/dev/shm")  # memory, not disk, where the container gives it room


@dataclass(frozen=True)
class HostShare:
    """The processes of one host that share decoded images.

    Attributes:
        local_rank: This process's index on its host.
        local_world: How many training processes the host runs.
        token: A name part every process of this host agrees on, unique to the run.
        barrier: Waits until every process of the job got there.
        folders: Where the shared file may go, most preferred first.
    """

    local_rank: int
    local_world: int
    token: str
    barrier: Callable[[], None]
    folders: tuple[Path, ...] = (MEMORY_FOLDER, Path(tempfile.gettempdir()))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> HostShare | None:
        """The host's share under torchrun with several local processes, else ``None``."""
        env = dict(os.environ) if env is None else env
        local_world = int(env.get("LOCAL_WORLD_SIZE", "1") or 1)
        if local_world < 2 or "LOCAL_RANK" not in env:
            return None
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        # torchrun's agent is the parent of every worker on its host, and of no other run's.
        from sm_imgclf.runtime.job.distributed import barrier

        return cls(int(env["LOCAL_RANK"]), local_world, f"{os.getppid()}", barrier)

    def mine(self, count: int) -> range:
        """The indices of ``count`` images this process decodes."""
        return range(self.local_rank, count, self.local_world)

    @contextmanager
    def tensor(self, name: str, shape: tuple[int, ...]) -> Iterator[tuple[torch.Tensor, range]]:
        """A uint8 tensor of ``shape`` the host's processes map, and the rows to fill here.

        On leaving, every process has filled its rows and the file is unlinked
        (the mappings stay valid), so nothing is left behind on the host. Where
        no folder has room, each process gets a private tensor and every row, as
        if it were alone: more memory, but the job runs as it would unshared.
        """
        import torch

        size = math.prod(shape)
        filename = f"sm-imgclf-{self.token}-{name}-{'x'.join(map(str, shape))}.u8"
        path = self._place(filename, size) if self.local_rank == 0 else None
        self.barrier()  # the file exists, whole, before anyone else looks for it
        if self.local_rank != 0:
            path = self._find(filename)
        if path is None:
            yield torch.empty(shape, dtype=torch.uint8), range(shape[0])
            return
        images = torch.from_file(str(path), shared=True, size=size, dtype=torch.uint8)
        try:
            yield images.view(shape), self.mine(shape[0])
            self.barrier()  # every share is decoded
        finally:
            if self.local_rank == 0:
                path.unlink(missing_ok=True)

    def _find(self, filename: str) -> Path | None:
        return next((f / filename for f in self.folders if (f / filename).is_file()), None)

    def _place(self, filename: str, size: int) -> Path | None:
        """A file of ``size`` bytes in the first folder with room (and a tenth more)."""
        for folder in self.folders:
            if folder.is_dir() and shutil.disk_usage(folder).free > size * 1.1:
                logger.info(
                    "decoded images shared by %d processes through %s (%.1f MiB)",
                    self.local_world,
                    folder,
                    size / 2**20,
                )
                path = folder / filename
                with path.open("wb") as file:
                    file.truncate(size)
                return path
        logger.warning(
            "no room for %.1f MiB of decoded images in %s: each of the %d "
            "processes decodes every image into its own memory",
            size / 2**20,
            ", ".join(map(str, self.folders)),
            self.local_world,
        )
        return None
