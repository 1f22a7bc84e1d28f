"""Decoded images that must fit: refused with numbers, spilled to disk, or held at own size."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import sm_imgclf as smi
from helpers.images import manifest_text, write_image
from sm_imgclf.data.manifest import MANIFEST_NAME
from sm_imgclf.runtime.images import eval_tensor
from sm_imgclf.runtime.job import data
from sm_imgclf.runtime.job.data import load_splits
from sm_imgclf.runtime.job.feed import Batches, Feeder
from sm_imgclf.runtime.job.room import CACHE_MEMORY_VARIABLE, RESERVE, Need, Room, memory_limits

GIB = 2**30


def room(memory: int, disk: int, address_space: int | None = None) -> Room:
    return Room(memory, "cgroup limit", address_space, ((Path("/data"), disk),))


def test_what_fits_in_memory_stays_there_and_more_goes_to_disk() -> None:
    needs = [Need("train", 1000, 224)]  # 0.14 GiB
    assert room(GIB, 0).place(needs) is None
    assert room(GIB // 10, GIB).place(needs) == Path("/data")


def test_a_cache_that_fits_nowhere_is_refused_with_the_numbers() -> None:
    needs = [Need("train", 1_281_167, 256), Need("valid", 50_000, 224)]
    with pytest.raises(smi.DatasetError) as refused:
        room(14 * GIB, 98 * GIB).place(needs)
    message = str(refused.value)
    assert "241.60 GiB" in message  # 1,281,167 x 196,608 B + 50,000 x 150,528 B
    assert "1,281,167 train images at 3x256x256 (196,608 B each)" in message
    assert "memory 14.00 GiB usable (cgroup limit" in message
    assert "98.00 GiB free at /data" in message
    assert "smaller image_size" in message


def test_the_address_space_limit_is_not_escaped_by_spilling() -> None:
    with pytest.raises(smi.DatasetError, match="address-space limit"):
        room(GIB, 100 * GIB, address_space=GIB).place([Need("train", 100_000, 224)])


def test_memory_limits_read_the_cgroup_and_the_setting(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal: 99999999 kB\nMemAvailable: 8000000 kB\n")
    cgroup = tmp_path / "sys/fs/cgroup"
    cgroup.mkdir(parents=True)
    (cgroup / "memory.max").write_text("6000000000\n")
    (cgroup / "memory.current").write_text("1000000000\n")
    found = memory_limits(tmp_path, {CACHE_MEMORY_VARIABLE: "3e9"})
    assert found == [
        (8_192_000_000, "MemAvailable"),
        (5_000_000_000, "cgroup limit"),
        (3_000_000_000, CACHE_MEMORY_VARIABLE),
    ]
    (cgroup / "memory.max").write_text("max\n")
    assert [name for _, name in memory_limits(tmp_path, {})] == ["MemAvailable"]
    with pytest.raises(smi.DatasetError, match=f"{CACHE_MEMORY_VARIABLE}='lots'"):
        memory_limits(tmp_path, {CACHE_MEMORY_VARIABLE: "lots"})


def test_a_job_whose_images_cannot_fit_fails_before_decoding(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / MANIFEST_NAME).write_text(manifest_text(1_000_000))
    session = smi.LocalSession(tmp_path / "session")
    estimator = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={"image_size": 512, "epochs": 1},
    )
    with pytest.raises(smi.TrainingJobFailedError) as failed:
        estimator.fit({"train": (tmp_path / "train").as_uri()}, logs=False)
    reason = failed.value.reason or ""
    assert (
        "The decoded images need 643.73 GiB" in reason
        and "1,000,000 train images at 3x480x480" in reason
    )
    assert "Cannot decode" not in reason  # refused before the first (missing) file was read


@pytest.fixture
def small_images(tmp_path: Path) -> dict[str, Path]:
    for split, count in (("train", 6), ("valid", 3)):
        for label in ("cat", "dog"):
            for i in range(count):
                write_image(tmp_path / split / label / f"{i}.png", size=(32, 32))
    return {"train": tmp_path / "train", "valid": tmp_path / "valid"}


def test_images_smaller_than_the_model_takes_are_held_at_their_own_size(
    small_images: dict[str, Path],
) -> None:
    splits = load_splits(small_images, 224, "light", 0)
    train, valid = splits["train"], splits["valid"]
    assert train.images.shape == (12, 3, 32, 32) and train.side == 256  # the crop margin
    assert valid.images.shape == (6, 3, 32, 32) and valid.side == 224
    batches = Batches(Feeder(torch.device("cpu")), 224, "light", (0.0,) * 3, (1.0,) * 3)
    seen = batches.evaluation(valid, 0, len(valid)) * 255  # undo the division, mean 0 std 1
    files = sorted((small_images["valid"]).glob("*/*.png"))
    served = torch.stack([eval_tensor(f.read_bytes(), 224) for f in files])
    assert torch.equal(seen.round().to(torch.uint8), served)  # what serving feeds the model
    generator = torch.Generator().manual_seed(0)
    crops = batches.train(train, torch.arange(4), generator)
    assert crops.shape == (4, 3, 224, 224)


def test_a_cache_larger_than_its_memory_is_spilled_to_local_disk(
    small_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    in_memory = load_splits(small_images, 40, "none", 0)
    assert in_memory["train"].images.untyped_storage().filename is None
    monkeypatch.setenv(CACHE_MEMORY_VARIABLE, str(RESERVE))  # nothing left over for images
    with caplog.at_level(logging.INFO):
        spilled = load_splits(small_images, 40, "none", 0)
    assert "do not fit in memory" in caplog.text and "mapped to a file" in caplog.text
    for name, split in spilled.items():
        filename = split.images.untyped_storage().filename
        assert filename is not None and not Path(filename).exists()  # unlinked once mapped
        assert torch.equal(split.images, in_memory[name].images)


def test_decoding_reports_its_progress(
    small_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(data, "PROGRESS_SECONDS", 0.0)
    with caplog.at_level(logging.INFO):
        load_splits({"train": small_images["train"]}, 32, "none", 1)
    lines = [r.getMessage() for r in caplog.records if "decoded 1 of" in r.getMessage()]
    assert lines and "images/s, about" in lines[0] and "s left" in lines[0]
    assert np.isfinite(float(lines[0].split(", ")[1].split()[0]))
