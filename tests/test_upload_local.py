"""Uploading to a LocalSession and a FakeBackend: channels, manifests, idempotence, refusal."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest

import sm_imgclf as smi
from helpers.images import write_image
from sm_imgclf.contracts.storage import ObjectInfo
from sm_imgclf.data.manifest import DatasetManifest
from sm_imgclf.storage.memory import MemoryStore


def uri_path(uri: str) -> Path:
    return Path(url2pathname(urlsplit(uri).path))


def test_upload_writes_channels_and_manifests(
    dataset_root: Path, local_session: smi.LocalSession
) -> None:
    channels = smi.ImageFolderDataset(dataset_root).upload(local_session, "datasets/pets")
    assert set(channels) == {"train", "valid", "test"}
    train = uri_path(channels["train"])
    assert train == local_session.root / "store/datasets/pets/train"
    assert (train / "001.cat/img_0.jpg").read_bytes() == (
        dataset_root / "train/001.cat/img_0.jpg"
    ).read_bytes()
    manifest = DatasetManifest.from_json((train / "manifest.json").read_text())
    assert manifest.class_ids == ("001.cat", "002.dog", "003.bird")
    assert manifest.class_names == ("cat", "dog", "bird")
    assert len(manifest.entries) == 12
    entry = next(e for e in manifest.entries if e.path == "002.dog/img_1.jpg")
    assert (entry.label, entry.width, entry.height) == (1, 48, 40)
    assert channels.summary.bytes_uploaded == sum(
        p.stat().st_size for p in dataset_root.rglob("*.jpg")
    )
    report = json.loads((train.parent / "validation.json").read_text())
    assert report["files_checked"] == 24


def test_second_upload_sends_nothing(dataset_root: Path, local_session: smi.LocalSession) -> None:
    first = smi.ImageFolderDataset(dataset_root).upload(local_session, "pets")
    second = smi.ImageFolderDataset(dataset_root).upload(local_session, "pets")
    assert len(first.summary.uploaded) == 24
    assert second.summary.uploaded == [] and len(second.summary.skipped) == 24
    assert second.summary.bytes_uploaded == 0


def test_interrupted_upload_resumes(dataset_root: Path, local_session: smi.LocalSession) -> None:
    smi.ImageFolderDataset(dataset_root).upload(local_session, "pets")
    store = local_session.root / "store/pets"
    (store / "train/001.cat/img_0.jpg").unlink()  # never arrived
    (store / "valid/002.dog/img_1.jpg").write_bytes(b"half")  # cut off midway
    changed = dataset_root / "test/003.bird/img_0.jpg"
    write_image(changed, seed=99)  # edited locally since
    channels = smi.ImageFolderDataset(dataset_root).upload(local_session, "pets")
    assert channels.summary.uploaded == [
        "pets/test/003.bird/img_0.jpg",
        "pets/train/001.cat/img_0.jpg",
        "pets/valid/002.dog/img_1.jpg",
    ]
    for source in dataset_root.rglob("*.jpg"):
        assert (store / source.relative_to(dataset_root)).read_bytes() == source.read_bytes()


def test_upload_refuses_errors_and_loses_nothing(
    dataset_root: Path, local_session: smi.LocalSession
) -> None:
    (dataset_root / "train/001.cat/broken.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(smi.DatasetValidationError, match=r"(?s)broken\.jpg.*skip_invalid=True"):
        smi.ImageFolderDataset(dataset_root).upload(local_session, "pets")
    assert not (local_session.root / "store").exists()


def test_skip_invalid_leaves_out_and_lists_bad_files(
    dataset_root: Path, local_session: smi.LocalSession
) -> None:
    (dataset_root / "train/001.cat/broken.jpg").write_bytes(b"\xff\xd8garbage")
    (dataset_root / "test/001.cat/leak.jpg").write_bytes(
        (dataset_root / "train/001.cat/img_0.jpg").read_bytes()
    )
    (dataset_root / "train/002.dog/.DS_Store").write_bytes(b"x")
    channels = smi.ImageFolderDataset(dataset_root).upload(local_session, "pets", skip_invalid=True)
    assert channels.skipped == [
        "test/001.cat/leak.jpg",
        "train/001.cat/broken.jpg",
        "train/002.dog/.DS_Store",
    ]
    manifest = DatasetManifest.from_json((uri_path(channels["test"]) / "manifest.json").read_text())
    assert "001.cat/leak.jpg" not in {e.path for e in manifest.entries}
    assert not (uri_path(channels["train"]) / "001.cat/broken.jpg").exists()


def test_skip_invalid_cannot_fix_a_class_without_training_images(
    dataset_root: Path, local_session: smi.LocalSession
) -> None:
    write_image(dataset_root / "valid/004.fish/a.jpg")
    with pytest.raises(smi.DatasetValidationError, match="whole classes"):
        smi.ImageFolderDataset(dataset_root).upload(local_session, "pets", skip_invalid=True)


@pytest.mark.parametrize("prefix", ["", "/", "a/../b", "a//b", None, "a\\b"])
def test_bad_prefix(dataset_root: Path, local_session: smi.LocalSession, prefix: object) -> None:
    with pytest.raises(smi.ConfigurationError, match="prefix must be"):
        smi.ImageFolderDataset(dataset_root).upload(local_session, prefix)  # type: ignore[arg-type]


def test_split_dataset_uploads_in_split_layout(
    tmp_path: Path, local_session: smi.LocalSession
) -> None:
    smi.digits_to_folder(tmp_path / "digits", limit_per_class=10)
    dataset = smi.ImageFolderDataset(tmp_path / "digits").split(valid=0.2, test=0.2)
    channels = dataset.upload(local_session, "digits")
    valid = DatasetManifest.from_json((uri_path(channels["valid"]) / "manifest.json").read_text())
    assert len(valid.entries) == 20 and valid.class_ids == tuple(str(d) for d in range(10))
    assert all((uri_path(channels["valid"]) / e.path).is_file() for e in valid.entries)


def test_fake_backend_keeps_everything_in_memory(dataset_root: Path) -> None:
    backend = smi.FakeBackend("mem")
    channels = smi.ImageFolderDataset(dataset_root).upload(smi.Session(backend), "pets")
    assert channels["train"] == "memory://mem/pets/train"
    assert len([k for k in backend.store.objects if k.endswith(".jpg")]) == 24
    manifest = DatasetManifest.from_json(backend.store.get_bytes("pets/valid/manifest.json"))
    assert len(manifest.entries) == 6
    with pytest.raises(smi.ObjectNotFoundError, match="no-such"):
        backend.store.get_bytes("no-such")


def test_unchanged_upload_writes_nothing(dataset_root: Path) -> None:
    backend = smi.FakeBackend()
    smi.ImageFolderDataset(dataset_root).upload(smi.Session(backend), "pets")
    writes = len(backend.store.puts)
    assert writes == 24 + 3 + 1
    smi.ImageFolderDataset(dataset_root).upload(smi.Session(backend), "pets")
    assert len(backend.store.puts) == writes
    (dataset_root / "test/002.dog/img_0.jpg").unlink()
    smi.ImageFolderDataset(dataset_root).upload(smi.Session(backend), "pets")
    assert backend.store.puts[writes:] == ["pets/test/manifest.json", "pets/validation.json"]


class OpaqueTagStore(MemoryStore):
    """A store whose tags are no MD5s, as S3's ETags under SSE-KMS or SSE-C."""

    def list_objects(self, prefix: str) -> dict[str, ObjectInfo]:
        return {
            key: ObjectInfo(info.size, f"kms-{hash(key) & 0xFFFF:x}")
            for key, info in super().list_objects(prefix).items()
        }


def test_unchanged_files_are_known_by_the_manifest_where_tags_are_no_md5(
    dataset_root: Path,
) -> None:
    backend = smi.FakeBackend()
    backend._store = OpaqueTagStore("kms")  # type: ignore[assignment]
    session = smi.Session(backend)
    smi.ImageFolderDataset(dataset_root).upload(session, "pets")
    images = [k for k in backend.store.puts if k.endswith(".jpg")]
    assert len(images) == 24
    changed = dataset_root / "train/001.cat/img_0.jpg"
    write_image(changed, seed=12345)  # other pixels
    again = smi.ImageFolderDataset(dataset_root).upload(session, "pets")
    assert again.summary.uploaded == ["pets/train/001.cat/img_0.jpg"]  # only what changed
    assert len(again.summary.skipped) == 23


def test_unwritable_store_root(dataset_root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(smi.StorageError, match="Cannot create the store directory"):
        smi.ImageFolderDataset(dataset_root).upload(smi.LocalSession(blocker), "pets")


def test_manifest_rejects_garbage() -> None:
    with pytest.raises(smi.DatasetError, match="Not a valid sm-imgclf manifest"):
        DatasetManifest.from_json('{"split": "train"}')
    with pytest.raises(smi.DatasetError, match="format_version"):
        DatasetManifest.from_json('{"format_version": 99}')
