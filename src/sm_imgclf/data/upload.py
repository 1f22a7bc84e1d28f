"""Copying a validated dataset into a store, with its manifests."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING

from sm_imgclf.contracts.storage import ObjectInfo, Store, TransferSummary, UploadItem
from sm_imgclf.data.layout import ImageFile, Layout, display_name
from sm_imgclf.data.manifest import MANIFEST_NAME, DatasetManifest, ManifestEntry
from sm_imgclf.data.report import ValidationReport
from sm_imgclf.data.shards import AUTO_SHARD_FILES, SHARD_BYTES, upload_shards
from sm_imgclf.errors import DatasetError, DatasetValidationError, StorageError, TransferError
from sm_imgclf.storage.upload import upload_files

if TYPE_CHECKING:
    from sm_imgclf.data.inspect import Inspection

logger = logging.getLogger(__name__)
# Errors about a class as a whole: leaving files out cannot fix them.
_DATASET_LEVEL = frozenset({"empty_class", "class_missing_from_split"})
REPORT_NAME = "validation.json"


class Channels(dict[str, str]):
    """The channel URIs of an uploaded dataset, by split; a plain ``dict`` to pass on.

    Attributes:
        summary: What the transfer did (uploaded, skipped unchanged, failed).
        skipped: Dataset files left out, relative to the dataset root, each
            listed with its reason in the validation report.
        manifests: The URI of each split's ``manifest.json``.
    """

    def __init__(
        self,
        uris: dict[str, str],
        *,
        summary: TransferSummary,
        skipped: list[str],
        manifests: dict[str, str],
    ) -> None:
        super().__init__(uris)
        self.summary = summary
        self.skipped = skipped
        self.manifests = manifests


def upload_dataset(
    layout: Layout,
    store: Store,
    prefix: str,
    report: ValidationReport,
    inspections: dict[str, Inspection],
    *,
    skip_invalid: bool,
    progress: bool | None,
    shards: bool | None = None,
    shard_bytes: int = SHARD_BYTES,
) -> Channels:
    """Upload the usable files of ``layout`` and one manifest per split; see ``upload()``."""
    refused = _refused(report, skip_invalid)
    chosen = [f for f in layout.files if inspections[f.rel].usable and f.rel not in refused]
    skipped = sorted({f.rel for f in layout.files} - {f.rel for f in chosen} | set(report.skipped))
    if skipped:
        log = logger.warning if refused else logger.info
        log(
            "%d file(s) left out of the upload, listed in .skipped and the validation report",
            len(skipped),
        )
    store.check_access()
    if shards is None:
        shards = len(chosen) > AUTO_SHARD_FILES
    if shards:
        return _upload_sharded(
            layout, store, prefix, report, (chosen, skipped), inspections, progress, shard_bytes
        )
    items = [
        UploadItem(f.path, _key(prefix, f), inspections[f.rel].size, inspections[f.rel].md5)
        for f in chosen
    ]
    existing = store.list_objects(f"{prefix}/")
    summary = upload_files(
        store,
        items,
        progress=progress,
        description=f"upload {prefix}",
        existing=existing,
        known_md5=_stored_md5s(store, prefix, layout.splits, existing),
    )
    if not summary.ok:
        raise TransferError(
            f"{len(summary.failed)} of {len(items)} files failed to upload to "
            f"{store.uri(prefix)}; the rest are stored. Run upload() again to resume.\n{summary}",
            summary=summary,
        )
    # Written after the images, so a manifest never lists a file that is not stored.
    built = {s: _manifest(s, layout.classes, chosen, inspections) for s in layout.splits}
    return _finish(store, prefix, report, built, existing, summary, skipped)


def _upload_sharded(
    layout: Layout,
    store: Store,
    prefix: str,
    report: ValidationReport,
    files: tuple[list[ImageFile], list[str]],
    inspections: dict[str, Inspection],
    progress: bool | None,
    shard_bytes: int,
) -> Channels:
    """Upload every split as tar shards (see :mod:`sm_imgclf.data.shards`), then the manifests."""
    chosen, skipped = files
    existing = store.list_objects(f"{prefix}/")
    summary = TransferSummary()
    built = {}
    for split in layout.splits:
        paths = {f"{f.class_id}/{f.name}": f.path for f in chosen if f.split == split}
        manifest, sent = upload_shards(
            store,
            f"{prefix}/{split}",
            _manifest(split, layout.classes, chosen, inspections),
            paths,
            existing=existing,
            stored=_stored_manifest(store, f"{prefix}/{split}/{MANIFEST_NAME}", existing),
            target=shard_bytes,
            progress=progress,
        )
        built[split] = manifest
        summary.add(sent)
    logger.info("upload %s as shards: %s", prefix, summary)
    return _finish(store, prefix, report, built, existing, summary, skipped)


def _finish(
    store: Store,
    prefix: str,
    report: ValidationReport,
    built: dict[str, DatasetManifest],
    existing: dict[str, ObjectInfo],
    summary: TransferSummary,
    skipped: list[str],
) -> Channels:
    """Write each split's manifest and the validation report; return the channels."""
    manifests = {}
    for split, manifest in built.items():
        key = f"{prefix}/{split}/{MANIFEST_NAME}"
        _put_if_changed(store, key, manifest.to_json().encode(), existing)
        manifests[split] = store.uri(key)
    stored_report = report.to_dict()
    del stored_report["seconds"]  # varies run to run; would force a rewrite every time
    _put_if_changed(
        store, f"{prefix}/{REPORT_NAME}", json.dumps(stored_report, indent=2).encode(), existing
    )
    uris = {split: store.uri(f"{prefix}/{split}") for split in built}
    return Channels(uris, summary=summary, skipped=skipped, manifests=manifests)


def _stored_manifest(
    store: Store, key: str, existing: dict[str, ObjectInfo]
) -> DatasetManifest | None:
    """The manifest an earlier upload stored at ``key``, if there is a readable one."""
    if key not in existing:
        return None
    try:
        return DatasetManifest.from_json(store.get_bytes(key))
    except (StorageError, DatasetError, ValueError):
        return None  # unreadable: every shard is written again


def _stored_md5s(
    store: Store, prefix: str, splits: list[str], existing: dict[str, ObjectInfo]
) -> dict[str, str]:
    """The MD5 of every file the stored manifests list, by key (one read per split).

    A manifest is written only after all its files are stored, so it vouches for
    them where the store's tags cannot (S3's ETag is no MD5 under SSE-KMS).
    """
    found: dict[str, str] = {}
    for split in splits:
        # Unreadable, or absent: its files are compared by tag, or sent again.
        manifest = _stored_manifest(store, f"{prefix}/{split}/{MANIFEST_NAME}", existing)
        if manifest is not None and not manifest.shards:
            found |= {f"{prefix}/{split}/{entry.path}": entry.md5 for entry in manifest.entries}
    return found


def _refused(report: ValidationReport, skip_invalid: bool) -> set[str]:
    errors = report.errors
    if not errors:
        return set()
    if not skip_invalid:
        report.raise_for_errors()
    structural = [f for f in errors if f.code in _DATASET_LEVEL]
    if structural:
        raise DatasetValidationError(
            "These errors concern whole classes, so skip_invalid cannot leave them out:\n"
            + "\n".join(f"  {f}" for f in structural)
            + "\nAdd images to those classes or remove their folders.",
            report=report,
        )
    return {f.path for f in errors if f.path is not None}


def _put_if_changed(store: Store, key: str, data: bytes, existing: dict[str, ObjectInfo]) -> None:
    stored = existing.get(key)
    if stored is None or stored.etag != hashlib.md5(data, usedforsecurity=False).hexdigest():
        store.put_bytes(key, data)


def _key(prefix: str, image: ImageFile) -> str:
    return f"{prefix}/{image.split}/{image.class_id}/{image.name}"


def _manifest(
    split: str, classes: list[str], chosen: list[ImageFile], inspections: dict[str, Inspection]
) -> DatasetManifest:
    index = {class_id: i for i, class_id in enumerate(classes)}
    entries = tuple(
        ManifestEntry(
            f"{f.class_id}/{f.name}",
            index[f.class_id],
            inspections[f.rel].size,
            inspections[f.rel].md5,
            inspections[f.rel].width,
            inspections[f.rel].height,
        )
        for f in chosen
        if f.split == split
    )
    return DatasetManifest(split, tuple(classes), tuple(display_name(c) for c in classes), entries)
