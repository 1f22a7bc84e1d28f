"""Uploading a split as tar shards in the WebDataset layout: a few large objects, not one per image.

A shard holds, for each image, ``<key>.<ext>`` (the file as it is) and
``<key>.cls`` (its class index as text), where the key is the image's MD5.
``webdataset.WebDataset`` and ``tar`` read them as they are.

Images go into shards in MD5 order, which mixes the classes the way a shuffle
does (a shard of one class would make every batch of a streamed epoch lopsided)
and depends only on the images: an added image changes the shard it joins, a
changed one that and the shard it left. A shard ends past half its target size
where an image's MD5 says so (content-defined, about an eighth of the target
on), else at the target size, so the boundaries after a change usually fall
back into place and the shards after it are skipped as unchanged; now and then
(4% of additions, 7% of changes in ``benchmarks/streaming.py``'s simulation of
128 MiB shards) a cut moves and one or more shards more are rewritten.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from sm_imgclf._progress import bar_disabled
from sm_imgclf.contracts.storage import ObjectInfo, Store, TransferSummary, UploadItem
from sm_imgclf.data.manifest import DatasetManifest, ManifestEntry, ShardEntry
from sm_imgclf.errors import TransferError
from sm_imgclf.storage.upload import upload_files

SHARD_BYTES = 128 * 2**20
# upload(shards=None) shards a dataset holding more images than this.
AUTO_SHARD_FILES = 100_000
SHARDS_FOLDER = "shards"
_TAR_OVERHEAD = 1024  # two headers and padding per image, about
_CUT_EVERY = 8  # content-defined cuts come about every target / _CUT_EVERY bytes


@dataclass(frozen=True)
class ShardPlan:
    """One shard before it is written (see :func:`shard_plan`).

    Attributes:
        name: Its path in the split folder, named by ``content``.
        members: Its images, in order, with their local files.
        keys: Each member's sample key: its MD5, numbered when the shard holds it twice.
        content: The digest of the members' keys, labels, MD5s and paths (no image read).
    """

    name: str
    members: tuple[tuple[ManifestEntry, Path], ...]
    keys: tuple[str, ...]
    content: str


def shard_plan(members: list[tuple[ManifestEntry, Path]]) -> ShardPlan:
    """The plan of one shard holding ``members``, its keys and digest computed once."""
    seen: dict[str, int] = {}
    keys = []
    digest = hashlib.md5(usedforsecurity=False)
    for entry, _ in members:
        seen[entry.md5] = seen.get(entry.md5, -1) + 1
        key = entry.md5 if not seen[entry.md5] else f"{entry.md5}_{seen[entry.md5]}"
        keys.append(key)
        digest.update(f"{key}\t{entry.label}\t{entry.md5}\t{entry.path}\n".encode())
    content = digest.hexdigest()
    # Named by content, not number: a shard added before it leaves its name, so its object.
    return ShardPlan(f"{SHARDS_FOLDER}/{content[:20]}.tar", tuple(members), tuple(keys), content)


def plan_shards(
    entries: Sequence[ManifestEntry], paths: dict[str, Path], target: int = SHARD_BYTES
) -> list[ShardPlan]:
    """Cut ``entries`` (with their local files by entry path) into shards of about ``target``."""
    ordered = sorted(entries, key=lambda e: (e.md5, e.path))
    plans: list[ShardPlan] = []
    members: list[tuple[ManifestEntry, Path]] = []
    size = 0
    for entry in ordered:
        members.append((entry, paths[entry.path]))
        added = entry.bytes + _TAR_OVERHEAD
        size += added
        # The chance scales with the image's share of the target, so shards of any size
        # of any images cut by content alike; the MD5 makes it the same every time (its
        # last digits: the order sorts by its first).
        chance = _CUT_EVERY * added / target
        by_content = size >= target // 2 and int(entry.md5[-8:], 16) < chance * 2**32
        if size >= target or by_content:
            plans.append(shard_plan(members))
            members, size = [], 0
    if members:
        plans.append(shard_plan(members))
    return plans


def upload_shards(
    store: Store,
    split_prefix: str,
    manifest: DatasetManifest,
    paths: dict[str, Path],
    *,
    existing: dict[str, ObjectInfo],
    stored: DatasetManifest | None,
    target: int = SHARD_BYTES,
    progress: bool | None = None,
) -> tuple[DatasetManifest, TransferSummary]:
    """Write and upload the split's shards; return its manifest in shard order, and what was sent.

    A shard is named by the digest of its members: one the stored manifest
    lists, whose object is stored at that size, is skipped without reading an
    image. Shards no manifest lists any more are left in the store. The rest are
    written to a temporary folder a few at a time (``store.max_concurrency``),
    uploaded together, and deleted, so the local disk holds only those.

    Raises:
        TransferError: Some shards failed to upload; the others are stored, and a
            second call sends only the missing ones.
    """
    from tqdm.auto import tqdm

    plans = plan_shards(manifest.entries, paths, target)
    known = {s.name: s for s in stored.shards} if stored is not None else {}
    done: dict[str, ShardEntry] = {}
    pending = []
    for plan in plans:
        old = known.get(plan.name)
        stored_object = existing.get(f"{split_prefix}/{plan.name}")
        if old and stored_object and (old.content, old.bytes) == (plan.content, stored_object.size):
            done[plan.name] = old
        else:
            pending.append(plan)
    summary = TransferSummary(skipped=sorted(f"{split_prefix}/{name}" for name in done))
    group = max(1, store.max_concurrency)
    with tqdm(
        total=len(pending),
        unit="shard",
        desc=f"shards {split_prefix}",
        disable=bar_disabled(progress),
    ) as bar:
        for start in range(0, len(pending), group):
            chunk = pending[start : start + group]
            done |= _send(store, split_prefix, chunk, existing, summary)
            bar.update(len(chunk))
    if summary.failed:
        raise TransferError(
            f"{len(summary.failed)} of {len(plans)} shards failed to upload to "
            f"{store.uri(split_prefix)}; the rest are stored. Run upload() again to resume.\n"
            f"{summary}",
            summary=summary,
        )
    entries = tuple(entry for plan in plans for entry, _ in plan.members)
    shards = tuple(done[plan.name] for plan in plans)
    return replace(manifest, entries=entries, shards=shards), summary


def _send(
    store: Store,
    split_prefix: str,
    plans: list[ShardPlan],
    existing: dict[str, ObjectInfo],
    summary: TransferSummary,
) -> dict[str, ShardEntry]:
    """Write ``plans`` to temporary files and upload them in parallel."""
    with tempfile.TemporaryDirectory(prefix="sm-imgclf-shards-") as folder:
        items, entries = [], {}
        for plan in plans:
            path = Path(folder) / plan.name.replace("/", "-")
            md5, size = write_shard(path, plan)
            items.append(UploadItem(path, f"{split_prefix}/{plan.name}", size, md5))
            entries[plan.name] = ShardEntry(plan.name, len(plan.members), size, md5, plan.content)
        sent = upload_files(store, items, progress=False, existing=existing)
    summary.add(sent)
    return {n: e for n, e in entries.items() if f"{split_prefix}/{n}" not in sent.failed}


def write_shard(target: Path, plan: ShardPlan) -> tuple[str, int]:
    """Write ``plan`` as a tar file the same bytes every time; return its MD5 and size."""
    with target.open("wb") as raw:
        sink = _Hashing(raw)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[call-overload]
            for key, (entry, path) in zip(plan.keys, plan.members, strict=True):
                suffix = Path(entry.path).suffix.lower() or ".img"
                with path.open("rb") as image:
                    tar.addfile(_member(f"{key}{suffix}", entry.bytes), image)
                label = str(entry.label).encode()
                tar.addfile(_member(f"{key}.cls", len(label)), io.BytesIO(label))
    return sink.digest.hexdigest(), sink.size


def _member(name: str, size: int) -> tarfile.TarInfo:
    # Fixed owner, mode and time: the same images give the same bytes, so the same MD5.
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o444, 0
    return info


class _Hashing:
    """A write-only file that hashes what passes through it."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink, self.digest, self.size = sink, hashlib.md5(usedforsecurity=False), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.sink.write(data)
