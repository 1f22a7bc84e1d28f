"""ImageFolderDataset: a folder of labelled images, validated and uploaded."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sm_imgclf._params import bad_value, check_identifier, check_number
from sm_imgclf.data.layout import UNSPLIT, ImageFile, Layout, display_name, scan
from sm_imgclf.data.report import ValidationReport
from sm_imgclf.data.shards import SHARD_BYTES
from sm_imgclf.data.upload import Channels, upload_dataset
from sm_imgclf.data.validation import Limits, validate

if TYPE_CHECKING:
    from sm_imgclf.data.inspect import Inspection
    from sm_imgclf.session import Session

logger = logging.getLogger(__name__)
PIL_MAX_PIXELS = 89_478_485


class ImageFolderDataset:
    """Images in one folder per class, optionally under split folders.

    Two layouts are understood::

        root/train/001.Affenpinscher/x.jpg   root/valid/...   root/test/...
        root/cat/x.jpg  root/dog/y.jpg        (one folder; see split())

    Classes are the class folder names, sorted; their order gives the label
    indices, identical across splits. Nothing is read until it is needed.

    Args:
        root: The dataset folder.
        splits: Names of the split folders to look for, training split first.
        min_side: Images with a shorter side are reported as very small.
        max_pixels: Images with more pixels are refused without being decoded.
        imbalance_ratio: The largest to smallest class ratio in the training
            split above which imbalance is reported.
        workers: Threads decoding images during validation; defaults to the CPU count.

    Example:
        >>> data = ImageFolderDataset("dogImages")             # doctest: +SKIP
        >>> report = data.validate()                            # doctest: +SKIP
        >>> channels = data.upload(LocalSession(), "dogs")      # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        splits: Sequence[str] = ("train", "valid", "test"),
        min_side: int = 32,
        max_pixels: int = PIL_MAX_PIXELS,
        imbalance_ratio: float = 10.0,
        workers: int | None = None,
    ) -> None:
        if isinstance(splits, str) or not splits:
            raise bad_value("splits", "a non-empty sequence of folder names", splits)
        for name in splits:
            check_identifier("each split name", name)
        workers = workers if workers is not None else min(32, (os.cpu_count() or 1) + 4)
        self.root = Path(root).expanduser()
        self.split_names = tuple(splits)
        self.limits = Limits(
            max_pixels=check_number("max_pixels", max_pixels, low=1, integer=True),
            min_side=check_number("min_side", min_side, low=1, integer=True),
            imbalance_ratio=check_number("imbalance_ratio", imbalance_ratio, low=1.0),
            workers=check_number("workers", workers, low=1, integer=True),
        )
        self._layout: Layout | None = None
        self._cut: tuple[dict[str, float], int] | None = None
        self._validated: tuple[ValidationReport, dict[str, Inspection]] | None = None

    def __repr__(self) -> str:
        return f"ImageFolderDataset({str(self.root)!r})"

    @property
    def layout(self) -> Layout:
        """The scanned folder layout (scanned once, on first use)."""
        if self._layout is None:
            layout = scan(self.root, self.split_names)
            self._layout = layout if self._cut is None else _cut(layout, *self._cut)
        return self._layout

    @property
    def class_ids(self) -> tuple[str, ...]:
        """Class folder names in label order."""
        return tuple(self.layout.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Display names in label order (``001.Affenpinscher`` shows as ``Affenpinscher``)."""
        return tuple(display_name(c) for c in self.layout.classes)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits present, training split first."""
        return tuple(self.layout.splits)

    def files(self, split: str | None = None) -> list[Path]:
        """Return the candidate image files, of one split or all, before validation."""
        return [f.path for f in self.layout.files if split is None or f.split == split]

    def split(self, valid: float = 0.1, test: float = 0.1, *, seed: int = 0) -> ImageFolderDataset:
        """Return a copy cut into ``train``/``valid``/``test``, stratified by class.

        Only a single-folder dataset can be split; the files stay where they are.

        Args:
            valid: Share of each class for validation.
            test: Share of each class for testing.
            seed: Seed of the shuffle; the same folder and seed give the same split.

        Raises:
            ConfigurationError: The dataset already has split folders, or the
                fractions are out of range.
        """
        layout = self.layout
        if self._cut is not None or any((self.root / name).is_dir() for name in self.split_names):
            raise bad_value(
                "split()",
                "called on a dataset without split folders",
                f"{self.root} with splits {list(layout.splits)}",
                "Its split folders already define the splits.",
            )
        fractions = {name: share for name, share in (("valid", valid), ("test", test)) if share}
        copy = ImageFolderDataset.__new__(ImageFolderDataset)
        copy.__dict__.update(self.__dict__)
        copy._cut, copy._validated = (fractions, seed), None
        copy._layout = _cut(layout, fractions, seed)
        return copy

    def validate(
        self, *, progress: bool | None = None, check: str = "full", sample: float = 0.01
    ) -> ValidationReport:
        """Decode every image and check the dataset as a whole.

        The result is kept; call again after changing files on disk to refresh it.
        ``upload()`` validates with the defaults unless this ran first, so call
        it with ``check="headers"`` before uploading a very large folder.

        Args:
            progress: Show a progress bar; ``None`` shows it on a terminal only.
            check: ``"full"`` decodes every image. ``"headers"`` reads every file
                (checksum, format, size, EXIF) but decodes none: several times
                faster, and a truncated or corrupt image then fails only in the
                job that decodes it. ``"sample"`` also decodes a random share
                ``sample`` of the images (seeded: the same files every time).
                The report says which ran.
            sample: The share decoded whole with ``check="sample"``.

        Returns:
            The report. It raises nothing for bad files: call
            :meth:`ValidationReport.raise_for_errors` for that.
        """
        if check not in ("full", "headers", "sample"):
            raise bad_value("check", "'full', 'headers' or 'sample'", check)
        check_number("sample", sample, low=0.0, high=1.0)
        self._layout = None  # rescan: files may have changed since the last look
        report, inspections = validate(
            str(self.root), self.layout, self.limits, progress, check, sample
        )
        self._validated = (report, inspections)
        return report

    def upload(
        self,
        session: Session,
        prefix: str,
        *,
        skip_invalid: bool = False,
        progress: bool | None = None,
        shards: bool | None = None,
        shard_bytes: int = SHARD_BYTES,
    ) -> Channels:
        """Validate (unless already done) and copy the dataset into the session's store.

        Unchanged files already in the store are skipped, so a second call, or a
        call after an interruption, sends only what is missing. Each split gets a
        ``manifest.json`` listing its files, labels and checksums, and the
        validation report is stored as ``<prefix>/validation.json``.

        Args:
            session: Where to upload (:class:`~sm_imgclf.LocalSession`,
                :class:`~sm_imgclf.SageMakerSession` ...).
            prefix: Key prefix in the store, such as ``"datasets/dogs"``.
            skip_invalid: Leave out files with errors instead of refusing.
            progress: Show progress bars; ``None`` shows them on a terminal only.
            shards: Store each split as tar shards of about ``shard_bytes``
                (WebDataset layout) instead of one object per image: a training
                job then streams its training split instead of decoding it into
                memory, and S3 holds thousands of objects, not millions. ``None``
                shards a dataset of more than
                :data:`~sm_imgclf.data.shards.AUTO_SHARD_FILES` images. See
                :doc:`/dataset-size`.
            shard_bytes: The target size of a shard; a training job needs at
                least one shard per process.

        Returns:
            The channel URIs by split, e.g. ``{"train": "s3://bucket/dogs/train", ...}``,
            with the transfer summary in ``.summary`` and left-out files in ``.skipped``.

        Raises:
            DatasetValidationError: Validation found errors and ``skip_invalid`` is False.
            StorageError: The store refused the upload; see its subclasses.
            TransferError: Some files failed to upload; run again to resume.
        """
        prefix = _check_prefix(prefix)
        if self._validated is None:
            self.validate(progress=progress)
        assert self._validated is not None
        report, inspections = self._validated
        return upload_dataset(
            self.layout,
            session.store,
            prefix,
            report,
            inspections,
            skip_invalid=skip_invalid,
            progress=progress,
            shards=shards,
            shard_bytes=check_number("shard_bytes", shard_bytes, low=2**16, integer=True),
        )


def _cut(layout: Layout, fractions: dict[str, float], seed: int) -> Layout:
    from sm_imgclf.data.split import stratified_split

    names = stratified_split([f.class_id for f in layout.files], fractions, seed)
    splits = [UNSPLIT, *fractions]
    files: list[ImageFile] = [replace(f, split=n) for f, n in zip(layout.files, names, strict=True)]
    folders = {
        c: {f.split for f in files if f.class_id == c} or {splits[0]} for c in layout.classes
    }
    return Layout(list(layout.classes), splits, files, list(layout.findings), folders)


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise bad_value("prefix", "a non-empty key prefix such as 'datasets/dogs'", prefix)
    cleaned = prefix.strip("/")
    if ".." in cleaned.split("/") or "\\" in cleaned or "//" in cleaned:
        raise bad_value("prefix", "a '/'-separated key prefix without '..' or empty parts", prefix)
    return cleaned
