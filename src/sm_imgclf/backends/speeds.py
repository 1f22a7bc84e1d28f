"""The speeds of completed jobs, kept on disk so later estimates can say how long work takes.

``$XDG_CACHE_HOME/sm-imgclf/speeds.json`` (``~/.cache/...`` by default) maps a
:func:`~sm_imgclf.contracts.speeds.speed_key` to the latest
:class:`~sm_imgclf.contracts.speeds.Speed` measured for it. Deleting the file
forgets them all.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sm_imgclf.backends.cache_files import cache_path, read_json, write_json
from sm_imgclf.contracts.speeds import Expected, Speed, expected, speed_from_log, speed_key
from sm_imgclf.contracts.training import TrainingSpec


def speeds_path() -> Path:
    """``$XDG_CACHE_HOME/sm-imgclf/speeds.json``."""
    return cache_path("speeds.json")


def where(backend: str, spec: TrainingSpec) -> str:
    """What the speed depends on besides the job: the instance type, or this machine."""
    return spec.instance_type if backend == "sagemaker" else backend


def lookup(backend: str, spec: TrainingSpec, path: Path | None = None) -> Speed | None:
    """The speed measured for jobs like ``spec``, if one was."""
    found = read_json(path or speeds_path()).get(speed_key(where(backend, spec), spec))
    try:
        return Speed(**found) if isinstance(found, dict) else None
    except TypeError:
        return None


def record(
    backend: str, spec: TrainingSpec, log: Iterable[str], job: str, path: Path | None = None
) -> Speed | None:
    """Keep the speed of a completed job read from its log (none in it: nothing kept)."""
    rate = speed_from_log(log)
    if rate is None:
        return None
    speed = Speed(rate, job, dt.date.today().isoformat())
    path = path or speeds_path()
    data = read_json(path)
    data[speed_key(where(backend, spec), spec)] = vars(speed)
    # A read-only home loses the measurement, never the job.
    return speed if write_json(path, data) else None


def expecter(
    backend: str, count_images: Callable[[str], int | None], path: Path | None = None
) -> Callable[[TrainingSpec], Expected | None]:
    """``expect(spec)`` for :func:`~sm_imgclf.contracts.costs.estimate_for`.

    Args:
        backend: The backend's name.
        count_images: The number of images in a channel, by its URI (``None``:
            unknown, e.g. a channel uploaded without a manifest).
        path: The speeds file (default :func:`speeds_path`).
    """

    def expect(spec: TrainingSpec) -> Expected | None:
        speed = lookup(backend, spec, path)
        if speed is None:
            return None
        images = count_images(spec.channel_map["train"])
        return None if images is None else expected(spec, speed, images)

    return expect


def image_counter(store: Any) -> Callable[[str], int | None]:
    """Count a channel's images from its ``manifest.json`` in ``store`` (one read each)."""
    root = store.uri("").rstrip("/") + "/"
    counts: dict[str, int | None] = {}

    def count(uri: str) -> int | None:
        if uri not in counts:
            counts[uri] = (
                _count(store, uri[len(root) :].strip("/")) if uri.startswith(root) else None
            )
        return counts[uri]

    return count


def _count(store: Any, prefix: str) -> int | None:
    from sm_imgclf.errors import SmImgclfError

    try:
        manifest = json.loads(store.get_bytes(f"{prefix}/manifest.json"))
        return len(manifest["entries"])
    except (SmImgclfError, ValueError, KeyError, TypeError):
        return None  # no manifest: no expectation, nothing guessed
