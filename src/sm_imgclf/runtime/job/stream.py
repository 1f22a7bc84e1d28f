"""A training split read from its tar shards as it trains: never held whole, in memory or on disk.

This module imports torch: only the job program imports it, and only when it streams.

Every epoch the shards are put in an order drawn from the seed and the epoch;
each process (rank) takes every ``world``-th of them, and each of its
DataLoader workers every ``workers``-th of those. A worker reads its shards in
turn, shuffles their images through a buffer, and decodes each batch itself,
so decoding runs beside training on every core the process has. The
compressed bytes are shuffled, not the pixels: skipping batches to resume
mid-epoch costs reading, never decoding.

All ranks take the same number of steps (the fewest any rank has batches for),
or the gradient all-reduce of the rank with more would wait forever.
"""

from __future__ import annotations

import itertools
import logging
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import IterableDataset

from sm_imgclf.errors import DatasetError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
SHUFFLE_BUFFER = 1000  # images a worker shuffles among; their compressed bytes only


@dataclass
class StreamedSplit:
    """A split kept in its shards; batches come from :meth:`epoch`.

    Attributes:
        shards: Each shard's file and the entry index of its first image.
        labels: Every image's class index, in manifest (shard) order.
        class_ids: Class folder names in index order.
        class_names: Display names in index order.
        side: The square the model's pipeline takes the images at.
        held: The square images are decoded at (their own, when smaller).
        shorter: The shorter side a JPEG is decoded towards.
        workers: DataLoader worker processes decoding batches.
    """

    shards: list[tuple[Path, int]]
    labels: torch.Tensor
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    side: int
    held: int
    shorter: int
    workers: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def counts(self) -> list[int]:
        """Images in each shard."""
        starts = [start for _, start in self.shards] + [len(self)]
        return [b - a for a, b in itertools.pairwise(starts)]

    def plan(self, epoch: int, seed: int, batch_size: int, rank: int = 0, world: int = 1) -> Plan:
        """This rank's shards for ``epoch``, split among its workers, and the steps all take."""
        import torch

        if len(self.shards) < world:
            raise DatasetError(
                f"The training split has {len(self.shards)} shards for {world} processes: "
                "each needs at least one. Upload it again with a smaller shard_bytes."
            )
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.shards), generator=generator).tolist()
        # Every rank computes every rank's count, from the manifest: no communication.
        parts = [self._parts(order[r::world]) for r in range(world)]
        steps = min(self._steps(mine, batch_size, True) for mine in parts)
        seed_of_rank = seed * 7919 + epoch * 104_729 + rank * 15_485_863
        return Plan(parts[rank], steps, seed_of_rank)

    def once(self, batch_size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Every image once, in batches, unshuffled (the backbone's feature pass)."""
        parts = self._parts(list(range(len(self.shards))))
        steps = self._steps(parts, batch_size, False)
        return self.epoch(Plan(parts, steps, 0, shuffle=False), batch_size)

    def _parts(self, shards: list[int]) -> list[list[int]]:
        """``shards`` dealt out to this process's workers (no more workers than shards)."""
        n = max(1, min(self.workers, len(shards)))
        return [shards[w::n] for w in range(n)]

    def _steps(self, parts: list[list[int]], batch_size: int, training: bool) -> int:
        """The batches the workers given ``parts`` yield between them."""
        counts = self.counts()
        return sum(_batches(sum(counts[i] for i in part), batch_size, training) for part in parts)

    def epoch(
        self, plan: Plan, batch_size: int, skip: list[int] | None = None
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``plan.steps`` batches: (worker, entry indices, uint8 images at ``held``).

        ``skip`` gives, per worker, how many of its batches to pass over undecoded.
        """
        from torch.utils.data import DataLoader

        skip = list(skip or [0] * len(plan.parts))  # a copy: the caller counts on in its own
        remaining = plan.steps - sum(skip)
        stream = _Stream(self, plan, batch_size, skip)
        loader = DataLoader(stream, batch_size=None, num_workers=len(plan.parts))
        for taken, batch in enumerate(loader):
            if taken >= remaining:
                break
            yield batch


@dataclass(frozen=True)
class Plan:
    """One rank's epoch: shard numbers per worker, the steps every rank takes, and a seed."""

    parts: list[list[int]]
    steps: int
    seed: int
    shuffle: bool = True


class _Stream(IterableDataset[tuple[int, "torch.Tensor", "torch.Tensor"]]):
    """What each DataLoader worker runs: its shards, shuffled and decoded in batches."""

    def __init__(self, split: StreamedSplit, plan: Plan, batch_size: int, skip: list[int]):
        super().__init__()
        self.split, self.plan, self.batch_size, self.skip = split, plan, batch_size, skip

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        import torch
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        worker = info.id if info is not None else 0
        torch.set_num_threads(1)  # the trainer's process has the cores' threads
        rng = random.Random(self.plan.seed * 131 + worker)
        samples = self._samples(self.plan.parts[worker])
        if self.plan.shuffle:
            samples = _shuffled(samples, rng, SHUFFLE_BUFFER)
        batch: list[tuple[int, bytes]] = []
        number = 0
        for sample in samples:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield from self._emit(worker, number, batch)
                batch, number = [], number + 1
        # A training batch of one image breaks batch norm: a worker's last lone image waits
        # for the next epoch, which puts it elsewhere in the order.
        if len(batch) > (1 if self.plan.shuffle else 0):
            yield from self._emit(worker, number, batch)

    def _emit(
        self, worker: int, number: int, batch: list[tuple[int, bytes]]
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        if number < self.skip[worker]:
            return
        import torch

        from sm_imgclf.runtime.images import decode_square

        split = self.split
        images = torch.empty((len(batch), 3, split.held, split.held), dtype=torch.uint8)
        for row, (index, data) in enumerate(batch):
            try:
                images[row] = decode_square(data, split.side, split.held, split.shorter)
            except (OSError, ValueError, SyntaxError) as error:
                raise DatasetError(
                    f"Cannot decode image {index} of the training shards: {error}. "
                    "Validate the dataset and upload it again."
                ) from error
        yield worker, torch.tensor([index for index, _ in batch]), images

    def _samples(self, shards: list[int]) -> Iterator[tuple[int, bytes]]:
        for number in shards:
            path, start = self.split.shards[number]
            yield from shard_images(path, start)


def _batches(images: int, size: int, training: bool) -> int:
    """The batches a worker yields for ``images``: a lone last image is no training batch."""
    full, left = divmod(images, size)
    return full + (left > (1 if training else 0))


def shard_images(path: Path, start: int) -> Iterator[tuple[int, bytes]]:
    """Each image of a shard with its entry index (``start`` onwards), read in one pass."""
    index = start
    try:
        with tarfile.open(path, mode="r|") as tar:
            for member in tar:
                if not member.isfile() or member.name.endswith(".cls"):
                    continue
                opened = tar.extractfile(member)
                if opened is None:
                    continue
                yield index, opened.read()
                index += 1
    except (OSError, tarfile.TarError) as error:
        raise DatasetError(
            f"Cannot read the shard {path}: {error}. Upload the dataset again with "
            "ImageFolderDataset.upload(..., shards=True)."
        ) from error


def _shuffled(
    samples: Iterator[tuple[int, bytes]], rng: random.Random, size: int
) -> Iterator[tuple[int, bytes]]:
    """``samples`` in a random order drawn from a buffer of ``size``."""
    buffer: list[tuple[int, bytes]] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        slot = rng.randrange(size)
        yield buffer[slot]
        buffer[slot] = sample
    rng.shuffle(buffer)
    yield from buffer
