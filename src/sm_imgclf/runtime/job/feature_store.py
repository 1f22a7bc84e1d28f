"""Backbone features shared across jobs: computed once per key, read by every later job.

A head-only job without augmentation trains on the frozen backbone's features.
They depend only on the model, its weights, the image pipeline and the data,
so a job keys them by exactly that (:func:`feature_key`) and looks in the store
named by ``SM_IMGCLF_FEATURE_STORE`` before decoding a single image. The first
job to need a key holds its lock while it computes; jobs that start meanwhile
wait and then read. Files appear under their final name only when complete,
so a writer killed mid-way leaves nothing another job would read.

On SageMaker the trials of a tuning job cannot share a folder: a features job
(``--features-only true``) writes the store into its checkpoint folder, which
SageMaker copies to S3, and every trial receives that prefix as its read-only
``features`` channel
(:data:`sm_imgclf.contracts.search.FEATURES_CHANNEL`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf._version import __version__
from sm_imgclf.runtime.images import IMAGE_PIPELINE, resize_size
from sm_imgclf.runtime.job.control import FEATURE_STORE
from sm_imgclf.runtime.weights import kind_of

if TYPE_CHECKING:
    from sm_imgclf.contracts.hyperparameters import Hyperparameters
    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.sources import Backbone

MANIFEST = "manifest.json"
FORMAT = 2


@dataclass(frozen=True)
class Sharing:
    """Where a job's features live in the store, and what they depend on."""

    folder: Path
    key: str
    described: dict[str, Any]
    writable: bool = True

    @property
    def path(self) -> Path:
        """The features file."""
        return self.folder / f"{self.key}.pt"


def plan(
    settings: Mapping[str, Any],
    hp: Hyperparameters,
    channels: Mapping[str, Path],
    found: Backbone,
    *,
    distributed: bool,
    env: Mapping[str, str] | None = None,
    shared: Path | None = None,
) -> tuple[Sharing | None, str]:
    """Return the sharing plan of a job, or ``None`` with the reason it does not apply.

    Args:
        settings: The job settings.
        hp: The job's hyperparameters.
        channels: The data channels' folders.
        found: The resolved backbone.
        distributed: Whether the job runs on several processes.
        env: Read ``SM_IMGCLF_FEATURE_STORE`` here (``os.environ`` by default).
        shared: A read-only store (the ``features`` channel), used when no
            writable store is configured.
    """
    env = os.environ if env is None else env
    store = env.get(FEATURE_STORE) or (str(shared) if shared else None)
    trainable = list(settings["trainable"])
    reason = (
        "no feature store is configured"
        if not store
        else f"trainable={','.join(trainable)}, not head"
        if trainable != ["head"]
        else f"augmentation={hp.augmentation}, not none"
        if hp.augmentation != "none"
        else "the job runs on several processes"
        if distributed
        else next(
            (
                f"the {n!r} channel has no {MANIFEST} to key it by"
                for n, f in channels.items()
                if not (f / MANIFEST).is_file()
            ),
            "",
        )
    )
    if reason:
        return None, reason
    described = feature_key(settings, hp, channels, found)
    key = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]
    writable = bool(env.get(FEATURE_STORE))
    return Sharing(Path(str(store)), key, described, writable), ""


def feature_key(
    settings: Mapping[str, Any], hp: Hyperparameters, channels: Mapping[str, Path], found: Backbone
) -> dict[str, Any]:
    """Everything the features depend on, and nothing else (not the head's settings).

    Not the device either: features computed under autocast on a GPU are stored
    in float32 and serve trials on a CPU as well.
    """
    return {
        "format": FORMAT,
        "pipeline": IMAGE_PIPELINE,
        "library": __version__,
        "model": found.model,
        "weights": _weights_identity(str(settings["weights"]), found),
        "image_size": hp.image_size,
        "resize": resize_size(hp.image_size),
        "mean": list(found.mean),
        "std": list(found.std),
        "splits": {
            name: hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
            for name, folder in sorted(channels.items())
        },
    }


def _weights_identity(weights: str, found: Backbone) -> Any:
    """The weights value, and for files their content's digest.

    Not their change time: a trial on another machine holds another copy of the file.
    """
    kind = kind_of(weights)
    if kind == "default" and found.default_weights not in (None, "DEFAULT"):
        return _weights_identity(str(found.default_weights), found)
    if kind in {"file", "package"}:
        from sm_imgclf.runtime.weights import file_digest, package_file

        path = package_file(weights) if kind == "package" else Path(weights).expanduser()
        if path.is_file():
            return [weights, file_digest(path)]
    return weights


@contextlib.contextmanager
def claimed(sharing: Sharing | None) -> Iterator[dict[str, SplitData] | None]:
    """Yield the stored features, or ``None`` while holding the key's lock to compute them."""
    if sharing is None:
        yield None
        return
    if not sharing.writable:  # a channel: complete before the job began, nobody writes
        yield read(sharing)
        return
    sharing.folder.mkdir(parents=True, exist_ok=True)
    with _locked(sharing.folder / f"{sharing.key}.lock"):
        yield read(sharing)


def read(sharing: Sharing) -> dict[str, SplitData] | None:
    """The stored splits of ``sharing``'s key, or ``None`` (absent or unreadable)."""
    import torch

    from sm_imgclf.runtime.job.data import SplitData

    if not sharing.path.is_file():
        return None
    started = time.perf_counter()
    try:
        data = torch.load(sharing.path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file is recomputed, never trusted
        print(
            f"features: the stored file {sharing.path} is unreadable ({error}); "
            "computing them again",
            flush=True,
        )
        return None
    if data.get("described") != sharing.described:
        return None
    splits = {
        name: SplitData(
            part["features"], part["labels"], tuple(part["class_ids"]), tuple(part["class_names"])
        )
        for name, part in data["splits"].items()
    }
    print(
        f"features: read {sum(len(s) for s in splits.values())} images' backbone features "
        f"from the shared store in {time.perf_counter() - started:.1f}s (key "
        f"{sharing.key[:12]}); the backbone does not run",
        flush=True,
    )
    return splits


def write(sharing: Sharing, splits: Mapping[str, SplitData]) -> None:
    """Store computed features atomically: a temporary file, then a rename."""
    import torch

    payload = {
        "described": sharing.described,
        "splits": {
            name: {
                "features": s.images,
                "labels": s.labels,
                "class_ids": list(s.class_ids),
                "class_names": list(s.class_names),
            }
            for name, s in splits.items()
        },
    }
    partial = sharing.path.with_name(f".{sharing.key}.{os.getpid()}.partial")
    try:
        torch.save(payload, partial)
        os.replace(partial, sharing.path)
    finally:
        partial.unlink(missing_ok=True)
    print(f"features: stored for later jobs (key {sharing.key[:12]})", flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock the system releases if its holder dies."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; jobs may compute twice, never read half a file
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
