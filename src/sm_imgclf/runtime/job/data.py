"""Loading a channel once: every image decoded and resized a single time into a uint8 tensor."""

from __future__ import annotations

import itertools
import logging
import math
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sm_imgclf.data.layout import IMAGE_EXTENSIONS, display_name, scan
from sm_imgclf.data.manifest import MANIFEST_NAME, DatasetManifest
from sm_imgclf.errors import ConfigurationError, DatasetError
from sm_imgclf.runtime.images import decode_square, resize_size
from sm_imgclf.runtime.job.room import Need, Room, gib, total_bytes

if TYPE_CHECKING:
    import torch

    from sm_imgclf.runtime.job.host_share import HostShare
    from sm_imgclf.runtime.job.stream import StreamedSplit

logger = logging.getLogger(__name__)
PROGRESS_SECONDS = 30.0


@dataclass
class SplitData:
    """A split in memory: images as one uint8 NCHW tensor, labels, and the class list.

    ``side`` is the square the model's pipeline takes the images at; a split of
    images smaller than that holds them at their own size, and every batch is
    enlarged to ``side`` (:func:`~sm_imgclf.runtime.images.grow`) where it is used.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    side: int = 0

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Listing:
    """A channel's images before decoding: files with labels, classes, and shorter sides."""

    files: list[tuple[Path, int]]
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    shorter_sides: list[int]
    # A channel uploaded as shards: each tar file and the entry index it starts at.
    shards: tuple[tuple[Path, int], ...] = ()

    def held_side(self, side: int) -> int:
        """The square the images are held at (see :func:`held_side`)."""
        return held_side(self.shorter_sides, side)


def held_side(shorter_sides: list[int], side: int) -> int:
    """The square images are held at: ``side``, or their own when all are smaller."""
    return min(side, max(shorter_sides, default=side))


def list_channel(folder: Path, workers: int = 0, *, sizes: bool = True) -> Listing:
    """The channel's images: from the manifest, else from its folders.

    Without a manifest, ``sizes`` reads every image's header for its size.
    """
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.is_file():
        manifest = DatasetManifest.from_json(manifest_path.read_bytes())
        starts = itertools.accumulate((s.count for s in manifest.shards), initial=0)
        return Listing(
            [(folder / entry.path, entry.label) for entry in manifest.entries],
            manifest.class_ids,
            manifest.class_names,
            manifest.shorter_sides(),
            tuple((folder / s.name, i) for s, i in zip(manifest.shards, starts, strict=False)),
        )
    layout = scan(folder, ())
    index = {class_id: i for i, class_id in enumerate(layout.classes)}
    files = [
        (f.path, index[f.class_id])
        for f in layout.files
        if f.path.suffix.lower() in IMAGE_EXTENSIONS
    ]
    sides: list[int] = []
    if sizes:
        with ThreadPoolExecutor(decode_workers(workers)) as pool:
            sides = list(pool.map(_shorter_side, (path for path, _ in files)))
    names = tuple(display_name(c) for c in layout.classes)
    return Listing(files, tuple(layout.classes), names, sides)


def _shorter_side(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the header only
            return min(image.size)
    except (OSError, ValueError, SyntaxError):
        return 2**31  # not readable: decoding names it; never shrinks the held size


def load_split(
    name: str,
    folder: Path,
    side: int,
    *,
    shorter: int,
    workers: int,
    share: HostShare | None = None,
    spill: Path | None = None,
    listing: Listing | None = None,
) -> SplitData:
    """Decode every image of a channel once into ``side``-pixel squares.

    Images all smaller than ``side`` are held at their own size. With
    ``share`` the host's training processes each decode their part into one
    tensor they all map, instead of each decoding everything; with ``spill``
    the tensor is a file in that folder, for data larger than memory.
    """
    import torch

    listing = listing or list_channel(folder, workers)
    files = listing.files
    if not files:
        raise DatasetError(f"The {name!r} channel at {folder} holds no images.")
    held = listing.held_side(side)
    shape = (len(files), 3, held, held)
    share = None if listing.shards else share  # read in one pass: each process reads all
    with _image_tensor(name, shape, share, spill) as (images, mine):

        def decode(index: int, data: bytes | None = None) -> None:
            path = files[index][0]
            try:
                data = path.read_bytes() if data is None else data
                images[index] = decode_square(data, side, held, shorter)
            except (OSError, ValueError, SyntaxError) as error:
                where = f"image {index} of the shards" if listing.shards else str(path)
                raise DatasetError(
                    f"Cannot decode {where} in the {name!r} channel: {error}. "
                    "Validate the dataset and upload it again."
                ) from error

        if listing.shards:
            _decode_shards(name, decode, listing.shards, len(files), decode_workers(workers))
        else:
            _decode_all(name, decode, mine, decode_workers(workers))
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    shared = (
        ""
        if share is None or len(mine) == len(files)
        else f" ({len(mine)} here, shared by {share.local_world})"
    )
    own = f", their own size (enlarged to {side} per batch)" if held < side else ""
    logger.info("%s: %d images decoded once into %s%s%s", name, len(files), shape, own, shared)
    return SplitData(images, labels, listing.class_ids, listing.class_names, side)


def _decode_shards(
    name: str,
    decode: Callable[[int, bytes], None],
    shards: tuple[tuple[Path, int], ...],
    total: int,
    workers: int,
) -> None:
    """Read the shards in one pass and decode their images in threads, a bounded few at a time."""
    from sm_imgclf.runtime.job.stream import shard_images

    def images() -> Iterator[tuple[int, bytes]]:
        for path, start in shards:
            yield from shard_images(path, start)

    report = progress_logger(name, total)
    with ThreadPoolExecutor(workers) as pool:
        window: deque[Future[None]] = deque()
        for done, (index, data) in enumerate(images(), 1):
            window.append(pool.submit(decode, index, data))
            if len(window) >= 4 * workers:  # the read runs ahead of decoding by this much
                window.popleft().result()
            report(done)
        for future in window:
            future.result()


def progress_logger(name: str, total: int) -> Callable[[int], None]:
    """A function to call with the count done; it logs every :data:`PROGRESS_SECONDS`."""
    started = time.monotonic()
    last = [started]

    def report(done: int) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_SECONDS or done >= total:
            return
        last[0], rate = now, done / (now - started)
        logger.info(
            "%s: decoded %d of %d images, %.0f images/s, about %.0fs left",
            name,
            done,
            total,
            rate,
            (total - done) / rate,
        )

    return report


def _decode_all(name: str, decode: Callable[[int], None], rows: range, workers: int) -> None:
    """Run ``decode`` over ``rows`` in threads, logging progress every :data:`PROGRESS_SECONDS`."""
    report = progress_logger(name, len(rows))
    with ThreadPoolExecutor(workers) as pool:
        for done, _ in enumerate(pool.map(decode, rows), 1):  # re-raises the first error
            report(done)


@contextmanager
def _image_tensor(
    name: str, shape: tuple[int, ...], share: HostShare | None, spill: Path | None
) -> Iterator[tuple[torch.Tensor, range]]:
    """The tensor the images go into, and the rows this process decodes."""
    if share is not None:
        if spill is not None:
            share = replace(share, folders=(spill,))
        with share.tensor(name, shape) as (images, mine):
            yield images, mine
        return
    import torch

    if spill is None:
        # Filled in place: stacking a list of decoded images would hold two copies at the peak.
        yield torch.empty(shape, dtype=torch.uint8), range(shape[0])
        return
    size = math.prod(shape)
    with tempfile.NamedTemporaryFile(prefix=f"sm-imgclf-{name}-", dir=spill) as file:
        file.truncate(size)
        images = torch.from_file(file.name, shared=True, size=size, dtype=torch.uint8)
    # Unlinked now: the mapping keeps the pages, and nothing is left behind on the disk.
    yield images.view(shape), range(shape[0])


def decode_workers(workers: int, env: dict[str, str] | None = None) -> int:
    """Decoding threads: ``workers`` if set, else this process's share of the cores.

    torchrun starts one process per GPU on a host (``LOCAL_WORLD_SIZE``); each
    taking every core would make them all wait on each other.
    """
    if workers > 0:
        return workers
    env = dict(os.environ) if env is None else env
    processes = max(1, int(env.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, (os.cpu_count() or 1) // processes)


def load_splits(
    channels: dict[str, Path],
    image_size: int,
    augmentation: str,
    workers: int,
    share: HostShare | None = None,
) -> dict[str, SplitData | StreamedSplit]:
    """Load ``train`` (with a margin for random crops) and the evaluation channels.

    A training channel uploaded as shards is streamed (:class:`StreamedSplit`);
    every other channel is decoded into memory, or a file when memory is short.

    Raises:
        DatasetError: The decoded images fit neither in memory nor on local disk
            (checked before anything is decoded; the message has the numbers).
    """
    shorter = resize_size(image_size)
    sides = split_sides(channels, image_size, augmentation)
    listings = {name: list_channel(folder, workers) for name, folder in channels.items()}
    streamed = "train" if listings["train"].shards else None
    needs = [
        Need(name, len(found.files), found.held_side(sides[name]))
        for name, found in listings.items()
        if name != streamed
    ]
    room = Room.measure(_local_disks(channels))
    spill = room.place(needs)
    _log_place(needs, room, spill)
    splits: dict[str, SplitData | StreamedSplit] = {
        name: load_split(
            name,
            folder,
            sides[name],
            shorter=shorter,
            workers=workers,
            share=share,
            spill=spill,
            listing=listings[name],
        )
        for name, folder in channels.items()
        if name != streamed
    }
    if streamed:
        splits[streamed] = _streamed(listings[streamed], sides[streamed], shorter, workers)
    _check_classes(splits)
    return splits


def _streamed(listing: Listing, side: int, shorter: int, workers: int) -> StreamedSplit:
    import torch

    from sm_imgclf.runtime.job.stream import StreamedSplit

    split = StreamedSplit(
        list(listing.shards),
        torch.tensor([label for _, label in listing.files], dtype=torch.long),
        listing.class_ids,
        listing.class_names,
        side,
        listing.held_side(side),
        shorter,
        decode_workers(workers),
    )
    logger.info(
        "train: %d images in %d shards, streamed each epoch and decoded by %d workers "
        "(not held in memory)",
        len(split),
        len(split.shards),
        split.workers,
    )
    return split


def split_sides(names: Iterable[str], image_size: int, augmentation: str) -> dict[str, int]:
    """The square each split is decoded at: ``train`` with a margin for random crops."""
    margin = resize_size(image_size)
    return {
        name: margin if name == "train" and augmentation != "none" else image_size for name in names
    }


def _local_disks(channels: dict[str, Path]) -> list[Path]:
    """Where a spilled tensor may go: beside the channels (the job's own volume), or temp."""
    folders = {folder.parent for folder in channels.values()} | {Path(tempfile.gettempdir())}
    return sorted(folder for folder in folders if os.access(folder, os.W_OK))


def _log_place(needs: list[Need], room: Room, spill: Path | None) -> None:
    needed = gib(total_bytes(needs))
    usable = f"{gib(room.memory)} usable, {room.memory_limit}"
    if spill is None:
        logger.info("decoded images: %s in memory (%s)", needed, usable)
    else:
        logger.warning(
            "decoded images: %s do not fit in memory (%s), so they are mapped to a file "
            "on local disk at %s; batches read it through the page cache, slower where "
            "it is not in memory",
            needed,
            usable,
            spill,
        )


def _check_classes(splits: dict[str, SplitData | StreamedSplit]) -> None:
    import torch

    train = splits["train"]
    for name, split in splits.items():
        if split.class_ids != train.class_ids and set(split.class_ids) <= set(train.class_ids):
            # Folders without a manifest: a split may lack a class; use train's indices.
            index = torch.tensor([train.class_ids.index(c) for c in split.class_ids])
            split.labels = index[split.labels]
            split.class_ids, split.class_names = train.class_ids, train.class_names
        elif split.class_ids != train.class_ids:
            missing = sorted(set(split.class_ids) ^ set(train.class_ids))[:5]
            raise ConfigurationError(
                f"The {name!r} channel has {len(split.class_ids)} classes but 'train' has "
                f"{len(train.class_ids)} (differing: {missing}). Upload all splits together "
                "with ImageFolderDataset.upload() so they share one class list."
            )
