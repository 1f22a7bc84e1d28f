"""Loading a channel once: every image decoded and resized a single time into a uint8 tensor."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sm_imgclf.data.layout import IMAGE_EXTENSIONS, display_name, scan
from sm_imgclf.data.manifest import MANIFEST_NAME, DatasetManifest
from sm_imgclf.errors import ConfigurationError, DatasetError
from sm_imgclf.runtime.images import open_rgb, resize_size, square_tensor

if TYPE_CHECKING:
    import torch

    from sm_imgclf.runtime.job.host_share import HostShare

logger = logging.getLogger(__name__)


@dataclass
class SplitData:
    """A split in memory: images as one uint8 NCHW tensor, labels, and the class list."""

    images: torch.Tensor
    labels: torch.Tensor
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def list_channel(folder: Path) -> tuple[list[tuple[Path, int]], tuple[str, ...], tuple[str, ...]]:
    """Return (file, label) pairs and the class list: from the manifest, else from folders."""
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.is_file():
        manifest = DatasetManifest.from_json(manifest_path.read_bytes())
        files = [(folder / entry.path, entry.label) for entry in manifest.entries]
        return files, manifest.class_ids, manifest.class_names
    layout = scan(folder, ())
    index = {class_id: i for i, class_id in enumerate(layout.classes)}
    files = [
        (f.path, index[f.class_id])
        for f in layout.files
        if f.path.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return files, tuple(layout.classes), tuple(display_name(c) for c in layout.classes)


def load_split(
    name: str,
    folder: Path,
    side: int,
    *,
    shorter: int,
    workers: int,
    share: HostShare | None = None,
) -> SplitData:
    """Decode every image of a channel once into ``side``-pixel squares.

    With ``share`` the host's training processes each decode their part into
    one tensor they all map, instead of each decoding everything.
    """
    import torch

    files, class_ids, class_names = list_channel(folder)
    if not files:
        raise DatasetError(f"The {name!r} channel at {folder} holds no images.")
    shape = (len(files), 3, side, side)
    with _image_tensor(name, shape, share) as (images, mine):

        def decode(index: int) -> None:
            path = files[index][0]
            try:
                images[index] = square_tensor(
                    open_rgb(path.read_bytes(), shorter), side, shorter=shorter
                )
            except (OSError, ValueError, SyntaxError) as error:
                raise DatasetError(
                    f"Cannot decode {path} in the {name!r} channel: {error}. "
                    "Validate the dataset and upload it again."
                ) from error

        with ThreadPoolExecutor(decode_workers(workers)) as pool:
            for _ in pool.map(decode, mine):
                pass  # re-raises the first decoding error
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    shared = (
        ""
        if share is None or len(mine) == len(files)
        else f" ({len(mine)} here, shared by {share.local_world})"
    )
    logger.info("%s: %d images decoded once into %s%s", name, len(files), shape, shared)
    return SplitData(images, labels, class_ids, class_names)


@contextmanager
def _image_tensor(
    name: str, shape: tuple[int, ...], share: HostShare | None
) -> Iterator[tuple[torch.Tensor, range]]:
    """The tensor the images go into, and the rows this process decodes."""
    if share is not None:
        with share.tensor(name, shape) as (images, mine):
            yield images, mine
        return
    import torch

    # Filled in place: stacking a list of decoded images would hold two copies at the peak.
    yield torch.empty(shape, dtype=torch.uint8), range(shape[0])


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
) -> dict[str, SplitData]:
    """Load ``train`` (with a margin for random crops) and the evaluation channels."""
    shorter = resize_size(image_size)
    splits = {}
    for name, folder in channels.items():
        side = shorter if name == "train" and augmentation != "none" else image_size
        splits[name] = load_split(name, folder, side, shorter=shorter, workers=workers, share=share)
    _check_classes(splits)
    return splits


def _check_classes(splits: dict[str, SplitData]) -> None:
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
