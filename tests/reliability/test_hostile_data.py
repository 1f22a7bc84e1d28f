"""A corpus of hostile files and layouts: every one reported by name, nothing dropped silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

import sm_imgclf as smi
from helpers.figures import FIGURES
from helpers.images import write_image

pytestmark = pytest.mark.reliability
CAT, DOG, BIRD = "train/001.cat", "train/002.dog", "train/003.bird"


def build_corpus(root: Path, outside: Path) -> dict[str, str]:
    """Write a dataset with one instance of each kind; return path -> expected finding code."""
    for split, count in (("train", 6), ("valid", 2), ("test", 2)):
        for cls in ("001.cat", "002.dog", "003.bird"):
            for i in range(count):
                write_image(root / split / cls / f"ok{i}.jpg")
    expected: dict[str, str] = {}

    def add(relative: str, code: str) -> Path:
        expected[relative] = code
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    add(f"{CAT}/corrupt.jpg", "corrupt_image").write_bytes(os.urandom(3000))
    cut = write_image(root / CAT / "cut.jpg", size=(300, 300))
    cut.write_bytes(cut.read_bytes()[:2500])
    expected[f"{CAT}/cut.jpg"] = "truncated_image"
    add(f"{CAT}/zero.jpg", "empty_file").touch()
    write_image(add(f"{CAT}/png_named.jpg", "wrong_extension"), fmt="PNG")
    write_image(add(f"{DOG}/cmyk.jpg", "unusual_mode"), mode="CMYK")
    Image.new("I;16", (40, 40)).save(add(f"{DOG}/deep16.png", "unusual_mode"))
    palette = Image.new("P", (40, 40))
    palette.info["transparency"] = 0
    palette.save(add(f"{DOG}/palette.png", "unusual_mode"), transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    write_image(add(f"{DOG}/rotated.jpg", "exif_rotation"), exif=exif.tobytes())
    write_image(add(f"{BIRD}/one_pixel.png", "small_image"), size=(1, 1))
    Image.new("L", (12_000, 10_000)).save(add(f"{BIRD}/bomb.png", "decompression_bomb"))
    write_image(add(f"{BIRD}/{'ü' * 3}_名前_{'x' * 180}.jpg", "small_image"), size=(4, 4))
    add(f"{BIRD}/notes.txt", "not_an_image").write_text("not a picture")
    add(f"{BIRD}/.DS_Store", "hidden_file").write_bytes(b"\0\0\0\1Bud1")
    loop = add(f"{CAT}/loop.jpg", "unreadable_file")
    os.symlink(loop, loop)
    os.symlink(outside, add(f"{CAT}/outside.jpg", "symlink_outside_root"))
    os.symlink(root / "train" / "003.bird", add("train/004.linked", "directory_symlink"))
    source = root / CAT / "ok0.jpg"
    add(f"{CAT}/copy.jpg", "duplicate_in_split").write_bytes(source.read_bytes())
    expected[f"{CAT}/copy.jpg|{CAT}/ok0.jpg"] = expected.pop(f"{CAT}/copy.jpg")
    add("valid/001.cat/leak.jpg", "duplicate_across_splits").write_bytes(
        (root / CAT / "ok1.jpg").read_bytes()
    )
    add(f"{BIRD}/conflict.jpg", "conflicting_labels").write_bytes(
        (root / DOG / "ok2.jpg").read_bytes()
    )
    add("train/005.empty/.keep", "hidden_file").write_text("")
    expected["005.empty"] = "empty_class"
    write_image(root / "valid" / "006.valid_only" / "only.jpg")
    expected["train/006.valid_only"] = "class_missing_from_split"
    add("README.txt", "stray_file").write_text("a stray file at the root")
    add("extra/readme.md", "unknown_folder").write_text("a folder that is not a split")
    expected["extra"] = expected.pop("extra/readme.md")
    return expected


def test_every_hostile_input_is_reported_by_name(tmp_path: Path) -> None:
    outside = write_image(tmp_path / "elsewhere.jpg")
    root = tmp_path / "hostile"
    expected = build_corpus(root, outside)
    report = smi.ImageFolderDataset(root).validate()
    found = {(f.path, f.code) for f in report.findings}
    missing = {
        paths: code
        for paths, code in expected.items()
        if not any((p, code) in found for p in paths.split("|"))
    }
    assert not missing, (missing, sorted(found))
    session = smi.LocalSession(tmp_path / "s")
    with pytest.raises(smi.DatasetValidationError) as refused:  # whole classes can't be skipped
        smi.ImageFolderDataset(root).upload(session, "hostile", skip_invalid=True)
    assert "005.empty" in str(refused.value) and "006.valid_only" in str(refused.value)
    import shutil

    shutil.rmtree(root / "train" / "005.empty")
    shutil.rmtree(root / "valid" / "006.valid_only")
    # Nothing silently dropped: every file is stored or named by a finding that says why.
    channels = smi.ImageFolderDataset(root).upload(
        session, "hostile", skip_invalid=True, progress=False
    )
    store = session.backend.store
    stored = {
        f"{split}/{entry.path}"
        for split in channels
        for entry in smi.DatasetManifest.from_json(
            store.get_bytes(f"hostile/{split}/manifest.json")
        ).entries
    }
    named = {f.path for f in report.findings}
    files = {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and "004.linked/" not in str(p)
    }
    unaccounted = sorted(
        f for f in files - stored - named if not any(f.startswith(n + "/") for n in named)
    )
    assert not unaccounted, unaccounted
    FIGURES["hostile datasets"] = {
        "inputs": len(expected),
        "kinds": len(set(expected.values())),
        "reported": len(expected) - len(missing),
        "stored": len(stored),
        "unaccounted": len(unaccounted),
    }
    assert len(set(expected.values())) >= 20 and len(expected) >= 24
