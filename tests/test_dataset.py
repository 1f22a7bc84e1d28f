"""ImageFolderDataset: layouts, classes, splitting, and bad roots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sm_imgclf as smi
from helpers.images import write_image
from sm_imgclf.data.layout import display_name
from sm_imgclf.data.split import stratified_split


def test_missing_root_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(smi.DatasetNotFoundError, match="does not exist") as caught:
        smi.ImageFolderDataset(tmp_path / "nowhere").validate()
    assert str(tmp_path / "nowhere") in str(caught.value)


def test_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"PK")
    with pytest.raises(smi.DatasetNotFoundError, match="is a file"):
        _ = smi.ImageFolderDataset(tmp_path / "x.zip").class_ids


def test_root_without_class_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "loose.jpg")
    with pytest.raises(smi.DatasetNotFoundError, match="No class folders") as caught:
        smi.ImageFolderDataset(tmp_path).validate()
    assert str(tmp_path) in str(caught.value)


def test_constructor_does_no_io(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    import os

    touched: list[str] = []

    def refuse(name: str):  # type: ignore[no-untyped-def]
        def call(*args: object, **kwargs: object) -> None:
            touched.append(f"{name}{args[:1]}")
            raise AssertionError(f"the constructor called {name}")

        return call

    with monkeypatch.context() as patched:
        for name in ("stat", "lstat", "scandir", "listdir", "open", "walk"):
            patched.setattr(os, name, refuse(f"os.{name}"))
        patched.setattr(builtins, "open", refuse("open"))
        smi.ImageFolderDataset(dataset_root)
        smi.ImageFolderDataset(tmp_path / "not-yet")  # no error until used
    assert touched == []
    with pytest.raises(smi.DatasetNotFoundError):  # the disk is read on first use
        smi.ImageFolderDataset(tmp_path / "not-yet").validate()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("splits", "train"),
        ("splits", ()),
        ("splits", ("train", "a/b")),
        ("min_side", 0),
        ("max_pixels", -5),
        ("imbalance_ratio", 0.5),
        ("workers", 0),
        ("min_side", 2.5),
    ],
)
def test_bad_options_name_the_parameter(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(smi.ConfigurationError, match="must be"):
        smi.ImageFolderDataset(tmp_path, **{option: value})  # type: ignore[arg-type]


def test_classes_are_sorted_and_shared_across_splits(tmp_path: Path) -> None:
    write_image(tmp_path / "train/002.dog/a.jpg")
    write_image(tmp_path / "train/001.Affenpinscher/a.jpg")
    write_image(tmp_path / "valid/003.American_water_spaniel/a.jpg")
    dataset = smi.ImageFolderDataset(tmp_path)
    assert dataset.class_ids == ("001.Affenpinscher", "002.dog", "003.American_water_spaniel")
    assert dataset.class_names == ("Affenpinscher", "dog", "American water spaniel")
    assert dataset.splits == ("train", "valid")


@pytest.mark.parametrize(
    ("class_id", "name"),
    [
        ("001.Affenpinscher", "Affenpinscher"),
        ("12_cat", "cat"),
        ("7", "7"),
        ("cat", "cat"),
        ("2024-birds", "birds"),
        ("x_y_z", "x y z"),
    ],
)
def test_display_name(class_id: str, name: str) -> None:
    assert display_name(class_id) == name


def test_custom_split_names(tmp_path: Path) -> None:
    write_image(tmp_path / "training/a/1.jpg")
    write_image(tmp_path / "val/a/1b.jpg")
    dataset = smi.ImageFolderDataset(tmp_path, splits=("training", "val"))
    assert dataset.splits == ("training", "val")
    assert dataset.validate().counts == {"training": {"a": 1}, "val": {"a": 1}}


def test_nested_folders_inside_a_class_are_included(tmp_path: Path) -> None:
    write_image(tmp_path / "a/2019/x.jpg")
    write_image(tmp_path / "a/y.jpg")
    assert smi.ImageFolderDataset(tmp_path).validate().counts == {"train": {"a": 2}}


def test_single_folder_is_one_training_split(tmp_path: Path) -> None:
    for c in ("a", "b"):
        for i in range(10):
            write_image(tmp_path / c / f"{i}.jpg")
    dataset = smi.ImageFolderDataset(tmp_path)
    assert dataset.splits == ("train",)
    cut = dataset.split(valid=0.2, test=0.1, seed=3)
    assert cut.splits == ("train", "valid", "test")
    assert cut.validate().counts == {
        "train": {"a": 7, "b": 7},
        "valid": {"a": 2, "b": 2},
        "test": {"a": 1, "b": 1},
    }
    again = dataset.split(valid=0.2, test=0.1, seed=3)
    assert [f.split for f in again.layout.files] == [f.split for f in cut.layout.files]
    assert dataset.splits == ("train",)  # the original is untouched


def test_split_refuses_a_dataset_with_split_folders(dataset_root: Path) -> None:
    with pytest.raises(smi.ConfigurationError, match="split folders"):
        smi.ImageFolderDataset(dataset_root).split()


def test_split_fractions_must_leave_training_data(tmp_path: Path) -> None:
    write_image(tmp_path / "a/1.jpg")
    with pytest.raises(smi.ConfigurationError, match="sum below 1"):
        smi.ImageFolderDataset(tmp_path).split(valid=0.5, test=0.5)
    with pytest.raises(smi.ConfigurationError, match="valid must be"):
        smi.ImageFolderDataset(tmp_path).split(valid=-0.1)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.sampled_from("abcde"), min_size=1, max_size=200),
    valid=st.floats(0, 0.45),
    test=st.floats(0, 0.45),
    seed=st.integers(0, 2**31),
)
def test_stratified_split_properties(
    labels: list[str], valid: float, test: float, seed: int
) -> None:
    names = stratified_split(labels, {"valid": valid, "test": test}, seed)
    assert names == stratified_split(labels, {"valid": valid, "test": test}, seed)
    per_class = Counter(labels)
    for label, total in per_class.items():
        mine = Counter(n for n, lab in zip(names, labels, strict=True) if lab == label)
        assert mine["train"] >= 1  # every class keeps training data
        for split, share in (("valid", valid), ("test", test)):
            assert mine[split] <= round(total * share)
            if round(total * valid) + round(total * test) <= total - 1:
                assert mine[split] == round(total * share)
