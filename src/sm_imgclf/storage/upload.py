"""Idempotent, parallel, resumable upload of many files to any :class:`Store`.

A sync lists what the store already holds under the common prefix once,
skips every file whose size and content tag already match, and uploads the
rest from a thread pool. Because finished files are skipped, running the same
sync again after an interruption resumes where it stopped.
"""

from __future__ import annotations

import logging
import posixpath
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from sm_imgclf._progress import bar_disabled
from sm_imgclf.contracts.storage import ObjectInfo, Store, TransferSummary, UploadItem

logger = logging.getLogger(__name__)


def upload_files(
    store: Store,
    items: Sequence[UploadItem],
    *,
    progress: bool | None = None,
    description: str = "upload",
    existing: dict[str, ObjectInfo] | None = None,
    known_md5: Mapping[str, str] | None = None,
) -> TransferSummary:
    """Upload ``items`` to ``store``, skipping those already stored unchanged.

    Args:
        store: The destination.
        items: The files and their destination keys.
        progress: Show a progress bar with files and bytes; ``None`` shows it
            only when standard error is a terminal.
        description: The label of the progress bar.
        known_md5: The MD5 of objects an earlier upload stored, by key. A store
            whose content tags are not MD5s (S3 with SSE-KMS or SSE-C) still
            skips an unchanged file whose size and MD5 match this record.
        existing: The store's listing under the items' common prefix, when the
            caller already has it; listed here otherwise.

    Returns:
        A summary listing every key as uploaded, skipped or failed. Failures do
        not stop the other transfers; the caller decides whether to raise.
    """
    started = time.perf_counter()
    summary = TransferSummary()
    if existing is None:
        existing = store.list_objects(_common_prefix([item.key for item in items]))
    pending: list[UploadItem] = []
    for item in items:
        if _unchanged(store, item, existing.get(item.key), (known_md5 or {}).get(item.key)):
            summary.skipped.append(item.key)
        else:
            pending.append(item)
    summary.skipped.sort()
    if pending:
        _upload_all(store, pending, summary, progress, description)
    summary.uploaded.sort()
    summary.seconds = time.perf_counter() - started
    logger.info("%s: %s", description, summary)
    return summary


def _unchanged(
    store: Store, item: UploadItem, stored: ObjectInfo | None, recorded_md5: str | None
) -> bool:
    if stored is None or stored.size != item.size:
        return False
    if recorded_md5 is not None and item.md5 == recorded_md5:
        return True
    try:
        return store.expected_etag(item) == stored.etag
    except OSError:
        return False  # unreadable now: let the upload report the real error


def _upload_all(
    store: Store,
    pending: Sequence[UploadItem],
    summary: TransferSummary,
    progress: bool | None,
    description: str,
) -> None:
    from tqdm.auto import tqdm

    total = sum(item.size for item in pending)
    lock = threading.Lock()
    with (
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"{description} 0/{len(pending)} files",
            disable=bar_disabled(progress),
        ) as bar,
        ThreadPoolExecutor(max_workers=store.max_concurrency) as pool,
    ):

        def advance(nbytes: int) -> None:
            with lock:
                bar.update(nbytes)

        futures = {pool.submit(store.put_file, item, advance): item for item in pending}
        for done, future in enumerate(as_completed(futures), start=1):
            item = futures[future]
            error = future.exception()
            if error is None:
                summary.uploaded.append(item.key)
                summary.bytes_uploaded += item.size
            else:
                summary.failed[item.key] = f"{type(error).__name__}: {error}"
            bar.set_description(f"{description} {done}/{len(pending)} files", refresh=False)


def _common_prefix(keys: Sequence[str]) -> str:
    if not keys:
        return ""
    folder = posixpath.commonpath([posixpath.dirname(key) for key in keys])
    return f"{folder}/" if folder else ""
