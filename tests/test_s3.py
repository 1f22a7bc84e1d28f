"""The S3 store and SageMakerSession uploads, against moto's server over real HTTP."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.stub import Stubber

import sm_imgclf as smi
from helpers.s3proxy import S3Proxy
from sm_imgclf.data.manifest import DatasetManifest
from sm_imgclf.storage import UploadItem, upload_files
from sm_imgclf.storage.s3 import S3Store


def listing(session: smi.SageMakerSession, prefix: str = "") -> dict[str, str]:
    client = session.backend.aws.s3_client  # type: ignore[attr-defined]
    bucket = session.backend.aws.bucket  # type: ignore[attr-defined]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["ETag"].strip('"') for p in pages for o in p.get("Contents", [])}


def test_upload_to_s3(dataset_root: Path, s3_session: smi.SageMakerSession, bucket: str) -> None:
    channels = smi.ImageFolderDataset(dataset_root).upload(s3_session, "datasets/pets")
    assert channels == {s: f"s3://{bucket}/datasets/pets/{s}" for s in ("train", "valid", "test")}
    objects = listing(s3_session, "datasets/pets/")
    source = dataset_root / "valid/003.bird/img_1.jpg"
    assert (
        objects["datasets/pets/valid/003.bird/img_1.jpg"]
        == hashlib.md5(source.read_bytes()).hexdigest()
    )
    stored = s3_session.store.get_bytes("datasets/pets/test/manifest.json")
    manifest = DatasetManifest.from_json(stored)
    assert {e.path for e in manifest.entries} == {
        f"{c}/img_{i}.jpg" for i in range(2) for c in ("001.cat", "002.dog", "003.bird")
    }
    assert len(objects) == 24 + 3 + 1  # images, a manifest per split, the report


def test_second_s3_upload_skips_everything(
    dataset_root: Path, s3_session: smi.SageMakerSession
) -> None:
    smi.ImageFolderDataset(dataset_root).upload(s3_session, "pets")
    client = s3_session.backend.aws.s3_client  # type: ignore[attr-defined]
    client.delete_object(Bucket=s3_session.backend.aws.bucket, Key="pets/train/002.dog/img_3.jpg")  # type: ignore[attr-defined]
    again = smi.ImageFolderDataset(dataset_root).upload(s3_session, "pets")
    assert again.summary.uploaded == ["pets/train/002.dog/img_3.jpg"]
    assert len(again.summary.skipped) == 23


def test_multipart_objects_are_recognised_as_unchanged(
    tmp_path: Path, moto_url: str, bucket: str, boto_session
) -> None:  # type: ignore[no-untyped-def]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * 2**20))
    client = boto_session.client("s3", endpoint_url=moto_url)
    store = S3Store(client, bucket, multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20)
    item = UploadItem(big, "blobs/big.bin", big.stat().st_size)
    first = upload_files(store, [item])
    assert first.uploaded == ["blobs/big.bin"]
    assert store.list_objects("blobs/")["blobs/big.bin"].etag.endswith("-3")
    second = upload_files(store, [item])
    assert second.skipped == ["blobs/big.bin"] and second.bytes_uploaded == 0
    assert store.get_bytes("blobs/big.bin") == big.read_bytes()


def test_missing_bucket_is_named(dataset_root: Path, moto_url: str, boto_session) -> None:  # type: ignore[no-untyped-def]
    session = smi.SageMakerSession(
        "no-such-bucket-here", boto_session=boto_session, endpoint_urls={"s3": moto_url}
    )
    with pytest.raises(smi.BucketNotFoundError, match="'no-such-bucket-here' does not exist"):
        smi.ImageFolderDataset(dataset_root).upload(session, "pets")


def test_access_denied_is_explained(dataset_root: Path, moto_url: str, boto_session) -> None:  # type: ignore[no-untyped-def]
    session = smi.SageMakerSession(
        "locked", boto_session=boto_session, endpoint_urls={"s3": moto_url}
    )
    with Stubber(session.backend.aws.s3_client) as stub:  # type: ignore[attr-defined]
        stub.add_client_error(
            "head_bucket",
            service_error_code="403",
            http_status_code=403,
            expected_params={"Bucket": "locked"},
        )
        with pytest.raises(
            smi.StorageAccessDeniedError, match="Access denied: HeadBucket on s3://locked"
        ):
            smi.ImageFolderDataset(dataset_root).upload(session, "pets")


def test_expected_bucket_owner_is_sent_on_every_call(tmp_path: Path, boto_session) -> None:  # type: ignore[no-untyped-def]
    client = boto_session.client("s3")
    store = S3Store(client, "b", expected_bucket_owner="111122223333")
    owner = {"ExpectedBucketOwner": "111122223333"}
    with Stubber(client) as stub:
        stub.add_response("head_bucket", {}, {"Bucket": "b", **owner})
        stub.add_response(
            "list_objects_v2", {"KeyCount": 0}, {"Bucket": "b", "Prefix": "p/", **owner}
        )
        stub.add_response(
            "put_object", {"ETag": '"x"'}, {"Bucket": "b", "Key": "p/m", "Body": b"{}", **owner}
        )
        store.check_access()
        assert store.list_objects("p/") == {}
        store.put_bytes("p/m", b"{}")
        stub.assert_no_pending_responses()


def test_missing_credentials(
    dataset_root: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    session = smi.SageMakerSession(
        "whatever",
        boto_session=boto3.Session(region_name="us-east-1"),
        endpoint_urls={"s3": moto_url},
    )
    with pytest.raises(smi.StorageAccessDeniedError, match="needs AWS credentials"):
        smi.ImageFolderDataset(dataset_root).upload(session, "pets")


def test_throttling_is_retried(
    dataset_root: Path, moto_url: str, bucket: str, boto_session
) -> None:  # type: ignore[no-untyped-def]
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def throttle_first_two_puts(method: str, path: str) -> int | str | None:
        with lock:
            seen[path] += method == "PUT"
            return 503 if method == "PUT" and seen[path] <= 2 else None

    with S3Proxy(moto_url, fault=throttle_first_two_puts) as proxy:
        session = smi.SageMakerSession(
            bucket, boto_session=boto_session, endpoint_urls={"s3": proxy.url}
        )
        channels = smi.ImageFolderDataset(dataset_root).upload(session, "pets")
    assert channels.summary.ok and len(channels.summary.uploaded) == 24
    assert all(count == 3 for path, count in seen.items() if path.endswith(".jpg"))


def test_persistent_failures_raise_after_the_rest_is_stored(
    dataset_root: Path, moto_url: str, bucket: str, boto_session
) -> None:  # type: ignore[no-untyped-def]
    def refuse_cats(method: str, path: str) -> int | str | None:
        return 503 if method == "PUT" and "001.cat" in path else None

    with S3Proxy(moto_url, fault=refuse_cats) as proxy:
        session = smi.SageMakerSession(
            bucket, boto_session=boto_session, endpoint_urls={"s3": proxy.url}
        )
        session.backend.aws.s3_client = boto_session.client(  # type: ignore[attr-defined]
            "s3", endpoint_url=proxy.url, config=Config(retries={"max_attempts": 2})
        )
        with pytest.raises(smi.TransferError, match="8 of 24 files failed") as caught:
            smi.ImageFolderDataset(dataset_root).upload(session, "pets")
    summary = caught.value.summary
    assert sorted(summary.failed) == sorted(
        f"pets/{s}/001.cat/img_{i}.jpg"
        for s, n in (("train", 4), ("valid", 2), ("test", 2))
        for i in range(n)
    )
    assert len(summary.uploaded) == 16
    direct = smi.SageMakerSession(bucket, boto_session=boto_session, endpoint_urls={"s3": moto_url})
    resumed = smi.ImageFolderDataset(dataset_root).upload(direct, "pets")
    assert sorted(resumed.summary.uploaded) == sorted(summary.failed)


def test_dropped_connections_are_retried(
    dataset_root: Path, moto_url: str, bucket: str, boto_session
) -> None:  # type: ignore[no-untyped-def]
    dropped: set[str] = set()
    lock = threading.Lock()

    def drop_once(method: str, path: str) -> int | str | None:
        with lock:
            if method == "PUT" and path not in dropped:
                dropped.add(path)
                return "drop"
        return None

    with S3Proxy(moto_url, fault=drop_once) as proxy:
        session = smi.SageMakerSession(
            bucket, boto_session=boto_session, endpoint_urls={"s3": proxy.url}
        )
        channels = smi.ImageFolderDataset(dataset_root).upload(session, "pets")
    assert channels.summary.ok and len(dropped) >= 24


def test_client_retries_with_backoff(s3_session: smi.SageMakerSession) -> None:
    config = s3_session.backend.aws.s3_client.meta.config  # type: ignore[attr-defined]
    assert config.retries == {"mode": "standard", "total_max_attempts": 10}
    assert "sm-imgclf/" in config.user_agent_extra


def test_the_default_bucket_is_made_once_private_and_owned(  # type: ignore[no-untyped-def]
    moto_url: str, boto_session
) -> None:
    urls = {"s3": moto_url, "sts": moto_url}
    session = smi.SageMakerSession(
        region="eu-west-1", boto_session=boto_session, endpoint_urls=urls
    )
    assert "sagemaker-<region>-<account>" in repr(session.backend)  # nothing looked up yet
    session.store.put_bytes("k", b"v")
    name = "sagemaker-eu-west-1-123456789012"
    assert session.store.uri("k") == f"s3://{name}/k"
    s3 = boto_session.client("s3", endpoint_url=moto_url)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert session.backend.aws.expected_bucket_owner == "123456789012"  # type: ignore[attr-defined]
    again = smi.SageMakerSession(region="eu-west-1", boto_session=boto_session, endpoint_urls=urls)
    assert again.store.get_bytes("k") == b"v"  # the same bucket, found, not made again


def test_a_default_bucket_name_taken_by_another_account_is_refused() -> None:
    import boto3
    from botocore.stub import Stubber

    from sm_imgclf.backends.sagemaker.bucket import default_bucket

    s3 = boto3.client("s3", region_name="us-east-1")
    sts = boto3.client("sts", region_name="us-east-1")
    with Stubber(s3) as s3_stub, Stubber(sts) as sts_stub:
        sts_stub.add_response("get_caller_identity", {"Account": "111122223333"})
        s3_stub.add_client_error(
            "head_bucket",
            "403",
            "Forbidden",
            http_status_code=403,
            expected_params={
                "Bucket": "sagemaker-us-east-1-111122223333",
                "ExpectedBucketOwner": "111122223333",
            },
        )
        with pytest.raises(smi.StorageAccessDeniedError, match="taken by another account"):
            default_bucket(s3, sts, "us-east-1")
        s3_stub.assert_no_pending_responses()  # nothing was created in its place


def test_an_s3_channel_is_copied_for_evaluation(
    dataset_root: Path,
    tmp_path: Path,
    s3_session: smi.SageMakerSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sm_imgclf.evaluation.channels import channel_folder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    channels = smi.ImageFolderDataset(dataset_root).upload(s3_session, "datasets/pets")
    folder = channel_folder(channels["test"], s3_session.store)
    assert folder.is_relative_to(tmp_path / "cache")
    copied = {p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")}
    assert copied == {
        p.relative_to(dataset_root / "test").as_posix()
        for p in (dataset_root / "test").rglob("*.jpg")
    }
    image = folder / "001.cat/img_0.jpg"
    assert image.read_bytes() == (dataset_root / "test/001.cat/img_0.jpg").read_bytes()
    before = image.stat().st_mtime_ns
    assert channel_folder(channels["test"], s3_session.store) == folder
    assert image.stat().st_mtime_ns == before  # unchanged objects are not fetched again


def test_delete_prefix_deletes_only_that_prefix_and_names_a_refusal(
    s3_session: smi.SageMakerSession,
) -> None:
    store = s3_session.store
    for key in ("ck/t-1/a.pth", "ck/t-1/b.pth", "ck/t-10/a.pth"):
        store.put_bytes(key, b"x")
    assert store.delete_prefix("ck/t-1/") == 2
    assert sorted(store.list_objects("ck/")) == ["ck/t-10/a.pth"]
    with Stubber(store.client) as stub:
        stub.add_response(
            "list_objects_v2",
            {"Contents": [{"Key": "ck/t-10/a.pth", "Size": 1, "ETag": '"e"'}]},
        )
        stub.add_response(
            "delete_objects",
            {"Errors": [{"Key": "ck/t-10/a.pth", "Code": "AccessDenied", "Message": "no"}]},
        )
        with pytest.raises(smi.StorageError, match=r"t-10/a.pth: AccessDenied.*s3:DeleteObject"):
            store.delete_prefix("ck/t-10/")
