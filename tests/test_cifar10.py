"""CIFAR-10 import from small batches written in the real pickle format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sm_imgclf as smi

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_batches(folder: Path, per_class: int = 3) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in NAMES], b"num_vis": 3072}, f)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        labels = [c for c in range(10) for _ in range(per_class)]
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        with (folder / name).open("wb") as f:
            pickle.dump(
                {
                    b"batch_label": name.encode(),
                    b"labels": labels,
                    b"data": data,
                    b"filenames": [b"x.png"] * len(labels),
                },
                f,
            )
        if i == 0:
            first = data[0]
    np.save(folder / "first.npy", first)
    return folder


def test_batches_become_a_split_image_folder(tmp_path: Path) -> None:
    source = write_batches(tmp_path / "cifar-10-batches-py")
    root = smi.cifar10_to_folder(source, tmp_path / "images", valid=0.2, seed=1)
    report = smi.ImageFolderDataset(root).validate()
    assert report.classes == sorted(NAMES)
    assert report.counts["train"] == {n: 12 for n in NAMES}
    assert report.counts["valid"] == {n: 3 for n in NAMES}
    assert report.counts["test"] == {n: 3 for n in NAMES}
    expected = np.load(source / "first.npy").reshape(3, 32, 32).transpose(1, 2, 0)
    written = [np.asarray(Image.open(p)) for p in (root / "train/airplane").glob("*.png")]
    written += [np.asarray(Image.open(p)) for p in (root / "valid/airplane").glob("*.png")]
    assert any(np.array_equal(w, expected) for w in written)


def test_missing_batch_says_where_to_get_it(tmp_path: Path) -> None:
    source = write_batches(tmp_path / "b")
    (source / "data_batch_3").unlink()
    with pytest.raises(smi.DatasetNotFoundError, match=r"data_batch_3 is missing.*cifar-10-python"):
        smi.cifar10_to_folder(source, tmp_path / "out")


def test_not_a_pickle(tmp_path: Path) -> None:
    source = write_batches(tmp_path / "b")
    (source / "test_batch").write_bytes(b"GIF89a")
    with pytest.raises(smi.DatasetError, match="test_batch is not a CIFAR-10 pickle"):
        smi.cifar10_to_folder(source, tmp_path / "out")


def test_wrong_shape(tmp_path: Path) -> None:
    source = write_batches(tmp_path / "b")
    with (source / "data_batch_1").open("wb") as f:
        pickle.dump({b"labels": [0], b"data": np.zeros((1, 100), np.uint8)}, f)
    with pytest.raises(smi.DatasetError, match=r"shape \(n, 3072\)"):
        smi.cifar10_to_folder(source, tmp_path / "out")


def test_target_must_be_empty(tmp_path: Path) -> None:
    source = write_batches(tmp_path / "b")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(smi.DatasetError, match="not empty"):
        smi.cifar10_to_folder(source, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
