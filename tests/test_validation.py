"""Every validation finding, each provoked by a real bad file the test writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

import sm_imgclf as smi
from helpers.images import make_dataset, write_image

CAT = "train/001.cat"


def findings(root: Path, code: str, **options: object) -> list[smi.Finding]:
    report = smi.ImageFolderDataset(root, **options).validate()  # type: ignore[arg-type]
    return [f for f in report.findings if f.code == code]


def only(root: Path, code: str, **options: object) -> smi.Finding:
    found = findings(root, code, **options)
    assert len(found) == 1, found
    return found[0]


def test_clean_dataset_has_no_findings(dataset_root: Path) -> None:
    report = smi.ImageFolderDataset(dataset_root).validate()
    assert report.ok and report.findings == []
    assert report.classes == ["001.cat", "002.dog", "003.bird"]
    assert report.counts == {
        s: {c: n for c in report.classes} for s, n in (("train", 4), ("valid", 2), ("test", 2))
    }
    assert report.files_checked == 24
    assert report.image_sizes["train"]["width"] == {"min": 48, "median": 48, "max": 48}


def test_corrupt_image(dataset_root: Path) -> None:
    (dataset_root / CAT / "bad.jpg").write_bytes(os.urandom(2000))
    finding = only(dataset_root, "corrupt_image")
    assert finding.path == f"{CAT}/bad.jpg" and finding.severity is smi.Severity.ERROR


def test_truncated_image(dataset_root: Path) -> None:
    path = write_image(dataset_root / CAT / "cut.jpg", size=(300, 300))
    path.write_bytes(path.read_bytes()[:3000])
    finding = only(dataset_root, "truncated_image")
    assert finding.path == f"{CAT}/cut.jpg" and finding.severity is smi.Severity.ERROR


def test_zero_byte_file(dataset_root: Path) -> None:
    (dataset_root / CAT / "empty.jpg").touch()
    assert only(dataset_root, "empty_file").path == f"{CAT}/empty.jpg"


def test_non_image_file_is_skipped_and_listed(dataset_root: Path) -> None:
    (dataset_root / CAT / "notes.txt").write_text("taken on a Tuesday")
    finding = only(dataset_root, "not_an_image")
    assert finding.skipped and finding.severity is smi.Severity.WARNING
    assert finding.path in smi.ImageFolderDataset(dataset_root).validate().skipped


@pytest.mark.parametrize("mode", ["CMYK", "P", "LA", "I;16"])
def test_unusual_modes_are_reported(dataset_root: Path, mode: str) -> None:
    path = dataset_root / CAT / "odd.tif"
    if mode == "I;16":
        Image.new("I;16", (40, 40), 3000).save(dataset_root / CAT / "odd.png")
        path = dataset_root / CAT / "odd.png"
    else:
        write_image(path, mode=mode)
    finding = only(dataset_root, "unusual_mode")
    assert finding.path == f"{CAT}/{path.name}" and mode in finding.message


def test_palette_with_transparency(dataset_root: Path) -> None:
    image = Image.new("P", (40, 40), 1)
    image.info["transparency"] = 0
    image.save(dataset_root / CAT / "logo.png", transparency=0)
    assert "mode P" in only(dataset_root, "unusual_mode").message


def test_exif_rotation(dataset_root: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    write_image(dataset_root / CAT / "phone.jpg", exif=exif.tobytes())
    finding = only(dataset_root, "exif_rotation")
    assert finding.severity is smi.Severity.INFO and "6" in finding.message


def test_very_small_image(dataset_root: Path) -> None:
    write_image(dataset_root / CAT / "tiny.png", size=(1, 1))
    assert only(dataset_root, "small_image", min_side=16).path == f"{CAT}/tiny.png"


def test_decompression_bomb_is_refused_without_decoding(dataset_root: Path) -> None:
    Image.new("1", (10_000, 10_000)).save(dataset_root / CAT / "bomb.png")
    finding = only(dataset_root, "decompression_bomb")
    assert finding.severity is smi.Severity.ERROR and "100,000,000" in finding.message


def test_max_pixels_is_configurable(dataset_root: Path) -> None:
    found = findings(dataset_root, "decompression_bomb", max_pixels=1000)
    assert len(found) == 24


def test_wrong_extension_is_read_by_content(dataset_root: Path) -> None:
    write_image(dataset_root / CAT / "really_png.jpg", fmt="PNG")
    finding = only(dataset_root, "wrong_extension")
    assert "PNG" in finding.message and not finding.skipped


def test_duplicate_inside_split(dataset_root: Path) -> None:
    source = dataset_root / CAT / "img_0.jpg"
    (dataset_root / CAT / "copy.jpg").write_bytes(source.read_bytes())
    assert only(dataset_root, "duplicate_in_split").severity is smi.Severity.WARNING


def test_duplicate_across_splits_is_leakage(dataset_root: Path) -> None:
    source = dataset_root / CAT / "img_0.jpg"
    (dataset_root / "test/001.cat/leak.jpg").write_bytes(source.read_bytes())
    finding = only(dataset_root, "duplicate_across_splits")
    assert finding.severity is smi.Severity.ERROR
    assert finding.path == "test/001.cat/leak.jpg" and f"{CAT}/img_0.jpg" in finding.message


def test_same_image_in_two_classes(dataset_root: Path) -> None:
    source = dataset_root / CAT / "img_0.jpg"
    (dataset_root / "train/002.dog/which.jpg").write_bytes(source.read_bytes())
    assert only(dataset_root, "conflicting_labels").class_id == "002.dog"


def test_class_missing_from_split(dataset_root: Path) -> None:
    for path in (dataset_root / "valid/003.bird").iterdir():
        path.unlink()
    finding = only(dataset_root, "class_missing_from_split")
    assert finding.split == "valid" and finding.severity is smi.Severity.WARNING


def test_class_only_in_valid_is_an_error(dataset_root: Path) -> None:
    write_image(dataset_root / "valid/004.fish/a.jpg")
    found = findings(dataset_root, "class_missing_from_split")
    assert {(f.split, f.severity) for f in found} == {
        ("train", smi.Severity.ERROR),
        ("test", smi.Severity.WARNING),
    }


def test_empty_class(dataset_root: Path) -> None:
    (dataset_root / "train/004.fish").mkdir()
    finding = only(dataset_root, "empty_class")
    assert finding.class_id == "004.fish" and finding.severity is smi.Severity.ERROR


def test_class_whose_only_images_are_corrupt_is_empty(dataset_root: Path) -> None:
    (dataset_root / "train/004.fish").mkdir()
    (dataset_root / "train/004.fish/x.jpg").write_bytes(b"not a jpeg")
    assert only(dataset_root, "empty_class").class_id == "004.fish"


def test_class_imbalance(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", classes=("a", "b"), counts={"train": 2})
    for i in range(2, 12):
        write_image(root / "train/a" / f"more_{i}.jpg")
    finding = only(root, "class_imbalance", imbalance_ratio=3.0)
    assert "'a' has 12" in finding.message and "'b' only 2" in finding.message
    assert findings(root, "class_imbalance", imbalance_ratio=10.0) == []


def test_hidden_and_system_files_are_listed(dataset_root: Path) -> None:
    (dataset_root / CAT / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (dataset_root / "train" / "Thumbs.db").write_bytes(b"x")
    found = findings(dataset_root, "hidden_file")
    assert {f.path for f in found} == {f"{CAT}/.DS_Store", "train/Thumbs.db"}
    assert all(f.skipped for f in found)


def test_symlink_leaving_the_root_is_refused(dataset_root: Path, tmp_path: Path) -> None:
    outside = write_image(tmp_path / "elsewhere" / "secret.jpg")
    (dataset_root / CAT / "link.jpg").symlink_to(outside)
    finding = only(dataset_root, "symlink_outside_root")
    assert finding.severity is smi.Severity.ERROR and finding.skipped


def test_symlink_inside_the_root_is_followed(dataset_root: Path) -> None:
    (dataset_root / CAT / "alias.jpg").symlink_to(dataset_root / "train/002.dog/img_0.jpg")
    report = smi.ImageFolderDataset(dataset_root).validate()
    assert report.counts["train"]["001.cat"] == 5
    assert [f.code for f in report.findings] == ["conflicting_labels"]


def test_symlink_loop_and_broken_link(dataset_root: Path) -> None:
    (dataset_root / CAT / "loop").symlink_to(dataset_root / CAT / "loop")
    (dataset_root / CAT / "gone.jpg").symlink_to(dataset_root / CAT / "missing.jpg")
    unreadable = {f.path for f in findings(dataset_root, "unreadable_file")}
    assert unreadable == {f"{CAT}/loop", f"{CAT}/gone.jpg"}


def test_directory_symlink_is_not_followed(dataset_root: Path) -> None:
    (dataset_root / CAT / "more").symlink_to(dataset_root / "train/002.dog")
    assert only(dataset_root, "directory_symlink").path == f"{CAT}/more"


def test_unicode_and_long_names(dataset_root: Path) -> None:
    write_image(dataset_root / "train/001.cat" / ("ñandú-猫-" + "x" * 200 + ".jpg"))
    report = smi.ImageFolderDataset(dataset_root).validate()
    assert report.ok and report.counts["train"]["001.cat"] == 5


def test_stray_files_and_unknown_folders(dataset_root: Path) -> None:
    write_image(dataset_root / "train" / "loose.jpg")
    write_image(dataset_root / "holdout/001.cat/a.jpg")
    report = smi.ImageFolderDataset(dataset_root).validate()
    codes = {(f.code, f.path) for f in report.findings}
    assert ("stray_file", "train/loose.jpg") in codes
    assert ("unknown_folder", "holdout") in codes
    assert set(report.skipped) >= {"train/loose.jpg", "holdout"}


def test_report_text_json_and_raise(dataset_root: Path) -> None:
    (dataset_root / CAT / "empty.jpg").touch()
    report = smi.ImageFolderDataset(dataset_root).validate()
    text = str(report)
    assert "1 errors" in text and "empty_file" in text and f"{CAT}/empty.jpg" in text
    data = json.loads(report.to_json())
    assert data["summary"]["error"] == 1
    assert data["findings"][0]["severity"] == "error"
    with pytest.raises(smi.DatasetValidationError, match=r"empty\.jpg") as caught:
        report.raise_for_errors()
    assert caught.value.report is report


def test_validate_sees_files_changed_since_the_last_call(dataset_root: Path) -> None:
    dataset = smi.ImageFolderDataset(dataset_root)
    assert dataset.validate().ok
    (dataset_root / CAT / "empty.jpg").touch()
    assert not dataset.validate().ok


@pytest.mark.parametrize(
    ("check", "sample", "caught", "decoded"),
    [("full", 0.0, True, 26), ("headers", 0.0, False, 0), ("sample", 1.0, True, 26)],
)
def test_a_large_folder_can_be_checked_by_headers_or_a_sample_and_the_report_says_which(
    dataset_root: Path, check: str, sample: float, caught: bool, decoded: int
) -> None:
    path = write_image(dataset_root / CAT / "cut.jpg", size=(300, 300))
    path.write_bytes(path.read_bytes()[:3000])
    (dataset_root / CAT / "bad.jpg").write_bytes(b"not an image at all")
    report = smi.ImageFolderDataset(dataset_root).validate(check=check, sample=sample)
    codes = {f.code for f in report.findings}
    assert ("truncated_image" in codes) == caught
    assert "corrupt_image" in codes  # a file that is no image fails by its header alone
    assert report.check == check and report.decoded == decoded
    assert ("by their headers only" in str(report)) == (check != "full")


def test_a_sample_decodes_the_same_share_of_files_every_time(dataset_root: Path) -> None:
    data = smi.ImageFolderDataset(dataset_root)
    first = data.validate(check="sample", sample=0.25)
    assert first.decoded == 6 and data.validate(check="sample", sample=0.25).decoded == 6
    with pytest.raises(smi.ConfigurationError, match="check"):
        data.validate(check="quick")
    with pytest.raises(smi.ConfigurationError, match="sample"):
        data.validate(check="sample", sample=2)
