"""Images and image folders written for tests: random pixels, so every file is unique."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(
    path: Path,
    *,
    size: tuple[int, int] = (48, 40),
    mode: str = "RGB",
    seed: int | None = None,
    fmt: str | None = None,
    **save: object,
) -> Path:
    """Write a random (hence unique) image; ``seed`` makes the same pixels twice."""
    rng = np.random.default_rng(seed if seed is not None else zlib.crc32(str(path).encode()))
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode) if mode != "RGB" else Image.fromarray(pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **save)
    return path


def make_dataset(
    root: Path,
    classes: tuple[str, ...] = ("001.cat", "002.dog", "003.bird"),
    counts: dict[str, int] | None = None,
    *,
    fixed: bool = False,
) -> Path:
    """A clean split dataset: train/valid/test with distinct images in every class.

    With ``fixed`` the pixels depend on each file's path inside ``root`` only,
    so every run writes the same images wherever ``root`` is.
    """
    counts = counts or {"train": 4, "valid": 2, "test": 2}
    for split, n in counts.items():
        for class_id in classes:
            for i in range(n):
                path = root / split / class_id / f"img_{i}.jpg"
                seed = zlib.crc32(str(path.relative_to(root)).encode()) if fixed else None
                write_image(path, seed=seed)
    return root


def manifest_text(count: int, size: tuple[int, int] = (640, 480), shards: int = 0) -> str:
    """A train split's manifest of ``count`` images of ``size`` that were never written.

    With ``shards``, the images are said to be stored in that many tar shards.
    """
    from sm_imgclf.data.manifest import FORMAT_VERSION

    width, height = size
    entries = ",".join(
        f'{{"path":"a/{i}.jpg","label":0,"bytes":1,"md5":"0","width":{width},"height":{height}}}'
        for i in range(count)
    )
    listed = ",".join(
        f'{{"name":"shards/{i}.tar","count":{count // shards + (i < count % shards)},'
        f'"bytes":1,"md5":"0","content":"{i}"}}'
        for i in range(shards)
    )
    return (
        f'{{"format_version":{FORMAT_VERSION},"split":"train","class_ids":["a"],'
        f'"class_names":["a"],"library_version":"0","entries":[{entries}],'
        f'"shards":[{listed}]}}'
    )
