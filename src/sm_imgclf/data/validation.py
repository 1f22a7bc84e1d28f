"""Validating a scanned dataset: every image decoded in parallel, then whole-dataset checks."""

from __future__ import annotations

import math
import random
import statistics
import time
import warnings
from collections import defaultdict
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sm_imgclf._progress import bar_disabled
from sm_imgclf.data.inspect import Inspection, inspect_file
from sm_imgclf.data.layout import ImageFile, Layout
from sm_imgclf.data.report import Finding, Severity, ValidationReport

_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Limits:
    """Thresholds for the checks; see :class:`~sm_imgclf.ImageFolderDataset`."""

    max_pixels: int
    min_side: int
    imbalance_ratio: float
    workers: int


def validate(
    root: str,
    layout: Layout,
    limits: Limits,
    progress: bool | None,
    check: str = "full",
    sample: float = 0.0,
) -> tuple[ValidationReport, dict[str, Inspection]]:
    """Inspect every file of ``layout`` and return the report and per-file inspections.

    ``check="headers"`` reads every file (its MD5 and header) but decodes none;
    ``"sample"`` decodes a seeded random ``sample`` share of them as well.
    """
    started = time.perf_counter()
    whole = _decoded(len(layout.files), check, sample)
    inspections = _inspect_all(layout.files, limits, progress, whole)
    findings = list(layout.findings)
    for image in layout.files:
        findings.extend(
            Finding(
                i.code, i.severity, i.message, image.rel, image.split, image.class_id, i.skipped
            )
            for i in inspections[image.rel].issues
        )
    usable = [f for f in layout.files if inspections[f.rel].usable]
    counts = {split: {c: 0 for c in layout.classes} for split in layout.splits}
    for image in usable:
        counts[image.split][image.class_id] += 1
    findings += _duplicates(usable, inspections)
    findings += _class_checks(layout, counts, limits.imbalance_ratio)
    findings.sort(key=lambda f: (_ORDER[f.severity], f.code, f.path or ""))
    report = ValidationReport(
        root=root,
        classes=list(layout.classes),
        counts=counts,
        findings=findings,
        image_sizes=_sizes(usable, inspections, layout.splits),
        files_checked=len(layout.files),
        seconds=time.perf_counter() - started,
        decoded=len(whole),
        check=check,
    )
    return report, inspections


def _decoded(count: int, check: str, sample: float) -> Collection[int]:
    """The files decoded whole, by position: all, none, or a seeded random share."""
    if check == "full":
        return range(count)  # not a set: a million files would hold a million ints
    if check == "headers":
        return range(0)
    return set(random.Random(0).sample(range(count), math.ceil(count * sample)))


def _inspect_all(
    files: list[ImageFile], limits: Limits, progress: bool | None, whole: Collection[int]
) -> dict[str, Inspection]:
    from PIL import Image
    from tqdm.auto import tqdm

    def one(number: int) -> Inspection:
        return inspect_file(
            files[number].path,
            max_pixels=limits.max_pixels,
            min_side=limits.min_side,
            decode=number in whole,
        )

    # Our own max_pixels check reports oversized images; Pillow's warning would only repeat it.
    with warnings.catch_warnings(), ThreadPoolExecutor(limits.workers) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        results = list(
            tqdm(
                pool.map(one, range(len(files))),
                total=len(files),
                desc="validate",
                unit="img",
                disable=bar_disabled(progress),
            )
        )
    return {image.rel: result for image, result in zip(files, results, strict=True)}


def _duplicates(usable: list[ImageFile], inspections: dict[str, Inspection]) -> list[Finding]:
    groups: dict[str, list[ImageFile]] = defaultdict(list)
    for image in usable:
        groups[inspections[image.rel].md5].append(image)
    findings: list[Finding] = []
    for group in groups.values():
        first = group[0]
        for other in group[1:]:
            findings.append(_duplicate(first, other))
    return findings


def _duplicate(first: ImageFile, other: ImageFile) -> Finding:
    if other.class_id != first.class_id:
        return Finding(
            "conflicting_labels",
            Severity.ERROR,
            f"the same image as {first.rel}, but labelled {other.class_id!r} instead "
            f"of {first.class_id!r}. Keep the right one.",
            other.rel,
            other.split,
            other.class_id,
        )
    if other.split != first.split:
        return Finding(
            "duplicate_across_splits",
            Severity.ERROR,
            f"the same image as {first.rel}: it leaks {first.split} data into "
            f"{other.split} and inflates its scores. Remove one copy.",
            other.rel,
            other.split,
            other.class_id,
        )
    return Finding(
        "duplicate_in_split",
        Severity.WARNING,
        f"the same image as {first.rel}; it counts twice in training.",
        other.rel,
        other.split,
        other.class_id,
    )


def _class_checks(layout: Layout, counts: dict[str, dict[str, int]], ratio: float) -> list[Finding]:
    findings: list[Finding] = []
    for class_id in layout.classes:
        if not any(counts[split][class_id] for split in layout.splits):
            findings.append(
                Finding(
                    "empty_class",
                    Severity.ERROR,
                    "has no usable images in any split. Add images or remove the folder.",
                    class_id,
                    class_id=class_id,
                )
            )
            continue
        for split in layout.splits:
            if counts[split][class_id] == 0:
                findings.append(_missing(class_id, split, layout.splits[0]))
    findings.extend(_imbalance(counts[layout.splits[0]], layout.splits[0], ratio))
    return findings


def _missing(class_id: str, split: str, train: str) -> Finding:
    severity = Severity.ERROR if split == train else Severity.WARNING
    effect = (
        "the model can never learn it"
        if split == train
        else f"its accuracy cannot be measured on {split}"
    )
    return Finding(
        "class_missing_from_split",
        severity,
        f"class {class_id!r} has no usable images in {split}: {effect}.",
        f"{split}/{class_id}" if split else class_id,
        split,
        class_id,
    )


def _imbalance(per_class: dict[str, int], split: str, ratio: float) -> list[Finding]:
    present = {c: n for c, n in per_class.items() if n}
    if len(present) < 2:
        return []
    largest, smallest = max(present, key=present.__getitem__), min(present, key=present.__getitem__)
    actual = present[largest] / present[smallest]
    if actual <= ratio:
        return []
    return [
        Finding(
            "class_imbalance",
            Severity.WARNING,
            f"{split} is imbalanced: {largest!r} has {present[largest]} images, "
            f"{smallest!r} only {present[smallest]} (ratio {actual:.1f} > "
            f"{ratio:g}). Consider class_weighting='balanced' or more data.",
            split=split,
        )
    ]


def _sizes(
    usable: list[ImageFile], inspections: dict[str, Inspection], splits: list[str]
) -> dict[str, dict[str, dict[str, float]]]:
    sizes: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        shapes = [inspections[f.rel] for f in usable if f.split == split]
        if shapes:
            sizes[split] = {
                axis: _stats([getattr(s, axis) for s in shapes]) for axis in ("width", "height")
            }
    return sizes


def _stats(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}
