"""The dataset manifest: the exact files of one split, so a job never lists a bucket."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sm_imgclf._version import __version__
from sm_imgclf.errors import DatasetError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ManifestEntry:
    """One image of a split.

    Attributes:
        path: Path inside the split folder (``<class_id>/<file>``), ``/``-separated.
        label: The class index.
        bytes: File size.
        md5: Hex MD5 of the file.
        width: Width in pixels.
        height: Height in pixels.
    """

    path: str
    label: int
    bytes: int
    md5: str
    width: int
    height: int


@dataclass(frozen=True)
class ShardEntry:
    """One tar shard of a split uploaded with ``shards=True``.

    A shard holds the next ``count`` images of the manifest's entries, in
    entry order, in the WebDataset layout: ``<key>.<ext>`` (the image file as
    uploaded) and ``<key>.cls`` (its class index) for each image, where the
    key is the entry's index in the split.

    Attributes:
        name: The tar file's path inside the split folder
            (``shards/<first 20 hex digits of content>.tar``).
        count: Images it holds.
        bytes: Its size.
        md5: Hex MD5 of the tar file.
        content: Digest of its members' keys, labels and MD5s: an unchanged
            shard is recognised without reading its images.
    """

    name: str
    count: int
    bytes: int
    md5: str
    content: str


@dataclass(frozen=True)
class DatasetManifest:
    """The files of one split with their labels; written as ``<split>/manifest.json``.

    Every split's manifest carries the full class list, so class indices agree
    across channels even when a class is missing from one split.

    Attributes:
        split: The split name (``train``, ``valid``, ``test`` ...).
        class_ids: Class folder names in index order.
        class_names: Display names in index order.
        entries: The images.
        shards: The tar shards holding the images, in entry order, when the
            split was uploaded with ``shards=True``; empty when each image is
            its own object at ``<split>/<path>``.
        library_version: The sm-imgclf version that wrote it.
    """

    split: str
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    entries: tuple[ManifestEntry, ...] = field(default_factory=tuple)
    shards: tuple[ShardEntry, ...] = field(default_factory=tuple)
    library_version: str = __version__

    def shorter_sides(self) -> list[int]:
        """Every image's shorter side, in entry order."""
        return [min(entry.width, entry.height) for entry in self.entries]

    def to_json(self) -> str:
        """Return the manifest as JSON."""
        data = asdict(self)
        data["format_version"] = FORMAT_VERSION
        return json.dumps(data, indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> DatasetManifest:
        """Read a manifest written by :meth:`to_json`."""
        try:
            data: dict[str, Any] = json.loads(text)
            if data.pop("format_version", None) != FORMAT_VERSION:
                raise ValueError(f"format_version is not {FORMAT_VERSION}")
            entries = tuple(ManifestEntry(**entry) for entry in data.pop("entries"))
            shards = tuple(ShardEntry(**shard) for shard in data.pop("shards", ()))
            return cls(
                entries=entries,
                shards=shards,
                class_ids=tuple(data.pop("class_ids")),
                class_names=tuple(data.pop("class_names")),
                **data,
            )
        except (ValueError, TypeError, KeyError) as error:
            raise DatasetError(
                f"Not a valid sm-imgclf manifest ({error}). Upload the dataset again with "
                "ImageFolderDataset.upload() to rewrite it."
            ) from error
