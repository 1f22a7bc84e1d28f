"""One decode per host under torchrun: each process decodes its share into one mapped tensor."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.ranks import run_two
from sm_imgclf.runtime import images as pipeline
from sm_imgclf.runtime.job import data
from sm_imgclf.runtime.job.host_share import HostShare

pytestmark = pytest.mark.slow
COUNT = 21  # odd: the two processes decode unequal shares


def write_images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(COUNT):
        folder = root / ("a", "b")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def rank_main(rank: int, port: int, images: str, folder: str, spill: str = "") -> None:
    import os

    import torch.distributed as dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE="2",
    )
    dist.init_process_group("gloo", rank=rank, world_size=2)
    decoded = []
    real = pipeline.open_rgb
    pipeline.open_rgb = lambda raw, shorter: decoded.append(1) or real(raw, shorter)  # type: ignore[assignment]
    share = HostShare.from_env()
    assert share is not None
    share = dataclasses.replace(share, folders=(Path(folder) / "missing", Path(folder) / "shm"))
    split = data.load_split(
        "train",
        Path(images),
        16,
        shorter=18,
        workers=2,
        share=share,
        spill=Path(spill) if spill else None,
    )
    dist.barrier()
    left = sorted(p.name for p in (Path(folder) / "shm").iterdir())
    torch.save(
        {
            "images": split.images.clone(),
            "labels": split.labels,
            "decoded": len(decoded),
            "token": share.token,
            "left": left,
            "file": split.images.untyped_storage().filename,
        },
        Path(folder) / f"rank-{rank}.pt",
    )
    dist.destroy_process_group()


def run_ranks(tmp_path: Path, images: Path, spill: str = "") -> list[dict]:
    (tmp_path / "shm").mkdir(parents=True)
    return run_two(rank_main, tmp_path, str(images), str(tmp_path), spill)


def test_the_processes_of_a_host_decode_each_image_once_between_them(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images")
    first, second = run_ranks(tmp_path / "run", images)
    alone = data.load_split("train", images, 16, shorter=18, workers=2)
    assert (first["decoded"], second["decoded"]) == (11, 10)  # not 21 each
    assert first["token"] == second["token"]  # both found the one file
    for found in (first, second):
        assert torch.equal(found["images"], alone.images)  # all of it, as one process sees it
        assert torch.equal(found["labels"], alone.labels)
        assert found["left"] == []  # the shared file is gone once both mapped it


def test_a_host_short_of_memory_shares_one_file_on_its_local_disk(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images")
    (tmp_path / "disk").mkdir()
    first, second = run_ranks(tmp_path / "run", images, str(tmp_path / "disk"))
    alone = data.load_split("train", images, 16, shorter=18, workers=2)
    assert (first["decoded"], second["decoded"]) == (11, 10)
    for found in (first, second):
        assert found["file"].startswith(str(tmp_path / "disk"))  # not the memory folder
        assert torch.equal(found["images"], alone.images)
    assert list((tmp_path / "disk").iterdir()) == []  # unlinked once both mapped it


def test_a_host_without_room_decodes_as_if_each_process_were_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sm_imgclf.runtime.job import host_share

    monkeypatch.setattr(
        host_share.shutil, "disk_usage", lambda folder: type("Usage", (), {"free": 1000})()
    )
    waits = []
    for rank in (0, 1):  # the first process finds no room; the second then finds no file
        share = HostShare(rank, 2, "t", lambda r=rank: waits.append(r), folders=(tmp_path,))
        with caplog.at_level("WARNING"), share.tensor("train", (10, 3, 16, 16)) as (images, mine):
            assert images.shape == (10, 3, 16, 16) and mine == range(10)
    assert waits == [0, 1]  # both met at the one barrier, and at no other
    assert "no room for 0.0 MiB of decoded images" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_one_process_per_host_shares_nothing() -> None:
    assert HostShare.from_env({}) is None
    assert HostShare.from_env({"LOCAL_WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
    # Several local processes but no process group joined: nothing to wait on together.
    assert HostShare.from_env({"LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "1"}) is None


def test_the_shares_cover_every_image_once() -> None:
    shares = [HostShare(r, 3, "t", lambda: None).mine(10) for r in range(3)]
    assert sorted(i for share in shares for i in share) == list(range(10))
