"""Whether a job's decoded images fit, and where: memory, a file on local disk, or nowhere.

Every split is decoded once into a uint8 tensor. Allocating one larger than
the host fails with a raw allocator error or, worse, lets the kernel kill the
job mid-decode with no failure file. So before allocating, the job adds up the
bytes its splits need and compares them with the memory it may use (the
smallest of ``MemAvailable``, the container's cgroup limit, the process's
address-space limit and ``SM_IMGCLF_CACHE_MEMORY``, less :data:`RESERVE` for
training itself) and the free space of its local disk.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sm_imgclf.errors import DatasetError

# What training needs beside the cache: torch, the model, its optimiser and batches
# (the job measured 718 MB resident before decoding anything), with room to spare.
RESERVE = 1536 * 2**20
CACHE_MEMORY_VARIABLE = "SM_IMGCLF_CACHE_MEMORY"


@dataclass(frozen=True)
class Need:
    """What one split's decoded images take: ``count`` squares of ``side`` pixels."""

    name: str
    count: int
    side: int

    @property
    def bytes(self) -> int:
        """Bytes of the split's uint8 tensor."""
        return self.count * 3 * self.side * self.side

    def __str__(self) -> str:
        return (
            f"{self.count:,} {self.name} images at 3x{self.side}x{self.side} "
            f"({3 * self.side * self.side:,} B each)"
        )


@dataclass(frozen=True)
class Room:
    """The bytes a job may fill: in memory (and what limits it), and on each local disk."""

    memory: int
    memory_limit: str
    address_space: int | None
    disks: tuple[tuple[Path, int], ...]

    @classmethod
    def measure(cls, folders: Sequence[Path], root: Path = Path("/")) -> Room:
        """Measure this process's room now; ``root`` stands for ``/`` in tests."""
        limits = memory_limits(root, os.environ)
        limit, name = min(limits)
        disks = tuple(
            (folder, shutil.disk_usage(folder).free) for folder in folders if folder.is_dir()
        )
        return cls(max(0, limit - RESERVE), name, address_space_left(root), disks)

    def place(self, needs: Sequence[Need]) -> Path | None:
        """Where the splits go: ``None`` for memory, else the disk folder to map a file in.

        Raises:
            DatasetError: Neither memory nor any disk has room; the message has the numbers.
        """
        needed = total_bytes(needs)
        if self.address_space is not None and needed > self.address_space:
            raise DatasetError(self._refusal(needs, "this process's address-space limit"))
        if needed <= self.memory:
            return None
        roomy = [(free, folder) for folder, free in self.disks if free > needed * 1.1]
        if not roomy:
            raise DatasetError(self._refusal(needs, "memory or local disk"))
        return max(roomy)[1]

    def _refusal(self, needs: Sequence[Need], short_of: str) -> str:
        needed = total_bytes(needs)
        disks = ", ".join(f"{gib(free)} free at {folder}" for folder, free in self.disks)
        space = "" if self.address_space is None else f", address space {gib(self.address_space)}"
        return (
            f"The decoded images need {gib(needed)} ({'; '.join(map(str, needs))}), more than "
            f"{short_of} holds: memory {gib(self.memory)} usable ({self.memory_limit}, less "
            f"{gib(RESERVE)} kept for training){space}; disk {disks or 'none found'}. Use a "
            "smaller image_size, an instance type with more memory or local disk, or fewer "
            "images."
        )


def total_bytes(needs: Sequence[Need]) -> int:
    """Bytes all of ``needs`` take together."""
    return sum(need.bytes for need in needs)


def gib(size: int) -> str:
    """Bytes in GiB for messages."""
    return f"{size / 2**30:,.2f} GiB"


def memory_limits(root: Path, env: Mapping[str, str]) -> list[tuple[int, str]]:
    """Every bound on the memory this process may still take, each with its name."""
    limits = [(_meminfo(root / "proc/meminfo"), "MemAvailable")]
    for limit_file, usage_file, name in (
        ("sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory.current", "cgroup limit"),
        (
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "sys/fs/cgroup/memory/memory.usage_in_bytes",
            "cgroup v1 limit",
        ),
    ):
        limit, usage = _number(root / limit_file), _number(root / usage_file)
        if limit is not None and limit < 2**60:  # v1 writes a huge number for "no limit"
            limits.append((limit - (usage or 0), name))
    if env.get(CACHE_MEMORY_VARIABLE, "").strip():
        limits.append((_bytes_setting(env[CACHE_MEMORY_VARIABLE]), CACHE_MEMORY_VARIABLE))
    return limits


def address_space_left(root: Path) -> int | None:
    """What ``RLIMIT_AS`` still allows this process to map, or ``None`` without a limit."""
    try:
        import resource
    except ImportError:  # not Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = _status_kib(root / "proc/self/status", "VmSize:")
    return max(0, soft - used * 1024)


def _bytes_setting(value: str) -> int:
    try:
        found = int(float(value))
    except ValueError:
        found = -1
    if found < 0:
        raise DatasetError(
            f"{CACHE_MEMORY_VARIABLE}={value!r} is not a number of bytes; set it to the "
            "most memory the decoded images may take, such as 8000000000."
        )
    return found


def _meminfo(path: Path) -> int:
    found = _status_kib(path, "MemAvailable:")
    return found * 1024 if found else 2**62  # no /proc (not Linux): nothing to go by


def _status_kib(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _number(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):  # absent, or "max"
        return None
